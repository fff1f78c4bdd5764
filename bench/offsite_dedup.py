"""What the nightly off-site upload should send to restic: bytes added per day, and time.

A tracker-like database is built (SQLite: `--rows` torrents rows with random 40-hex info_hash,
plus whitelist, keys and torrent_aggregate_metrics; the tracker's schema) and changed for
`--days` days: each day `--new-fraction` new torrents and `completed = completed + k` on
`--update-fraction` of the rows (drawn from the newest `--hot-fraction` of the rows; 1.0 is
uniform over the table). After each change that day's copy is taken (SQLite's backup API, as
`sqlite3 .backup`; for the MySQL-like engine a plain SQL dump in mysqldump's extended-insert
format: primary key order, INSERT lines of up to about 1 MB) and a backup set is built as
torrust-maint builds it: the database compressed by `torrust_maint.compress` (zstd, `--level`,
default 3), a small config tar and manifest.json. Day 0 is the first full upload. Then:

- A: `restic backup <set dir>` (the set's compressed files as they are on disk);
- B: the uncompressed database streamed in, `restic backup --stdin --stdin-filename tracker.db`
  (fed by decompressing the set's database file, the bytes the nightly job would have), plus
  the set's two small files (manifest.json, config.tar.zst) in a second `restic backup`;
- C: the uncompressed database as a file, with the two small files, in one `restic backup` of
  a fixed directory (so restic finds its parent snapshot).

Each strategy of each engine has its own fresh local repository (`restic init
--repository-version 2`; backups with `--compression auto`). An engine's repositories share one
chunker polynomial (`--copy-chunker-params`): restic draws it at random per repository, and it
decides where chunk boundaries fall. `--repeats N` uploads the same sets into N such rounds of
repositories, each with a polynomial of its own, to show how much of a result is that luck.

Per day and strategy: restic's JSON summary `data_added` (restic 0.14 counts it before
compression), the repository's growth (`du -sb` of its directory, before and after), the
upload's wall time and restic's CPU time; per day also how the export differs from the day
before's (unchanged prefix, changed 4 KiB blocks and 1 MiB regions at fixed offsets). After the
last day the latest snapshots are fetched back (A: `restic restore`, then the manifest's sha256;
B: `restic dump`, re-compressed like the set, its sha256 compared with the set's).

One line per day and strategy is printed; everything goes to `--out` as JSON
(bench/results/offsite-dedup.json). The work directory is removed at the end (`--keep` keeps
it). Nothing here is asserted: it only reports. Results and conclusion: docs/offsite-dedup.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from tests.testbed import standin_tracker
from torrust_maint import __version__
from torrust_maint.compress import compressed_writer, copy_stream, open_decompressed, sha256_of

REPO = Path(__file__).resolve().parents[1]
WORK = Path("/var/tmp/torrust-maint-bench-offsite")
RESTIC = "/usr/bin/restic"
FIRST_DAY = dt.datetime(2025, 1, 6, 3, 0, tzinfo=dt.UTC)  # the sets' timestamps (fixed)
MYSQLDUMP_NET_BUFFER_LENGTH = 1024 * 1024 - 1025  # mysqldump's default: INSERT lines < 1 MB
SEED_BATCH = 100_000
PAGE = 4096
REGION = 1 << 20

SQLITE_SCHEMA = standin_tracker.SQLITE_SCHEMA  # the stand-in tracker's (Torrust v3) tables

# The tables as the MySQL tracker creates them, in mysqldump's SHOW CREATE TABLE form.
MYSQL_TABLES = {
    "keys": "CREATE TABLE `keys` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
            "  `key` varchar(32) NOT NULL,\n  `valid_until` int(10) DEFAULT NULL,\n"
            "  PRIMARY KEY (`id`),\n  UNIQUE KEY `key` (`key`)\n)",
    "torrent_aggregate_metrics":
        "CREATE TABLE `torrent_aggregate_metrics` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
        "  `metric_name` varchar(50) NOT NULL,\n  `value` int(11) NOT NULL DEFAULT 0,\n"
        "  PRIMARY KEY (`id`),\n  UNIQUE KEY `metric_name` (`metric_name`)\n)",
    "torrents": "CREATE TABLE `torrents` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
                "  `info_hash` varchar(40) NOT NULL,\n"
                "  `completed` int(11) NOT NULL DEFAULT 0,\n"
                "  PRIMARY KEY (`id`),\n  UNIQUE KEY `info_hash` (`info_hash`)\n)",
    "whitelist": "CREATE TABLE `whitelist` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
                 "  `info_hash` varchar(40) NOT NULL,\n"
                 "  PRIMARY KEY (`id`),\n  UNIQUE KEY `info_hash` (`info_hash`)\n)",
}
MYSQL_COLUMNS = {
    "keys": "id, key, valid_until",
    "torrent_aggregate_metrics": "id, metric_name, value",
    "torrents": "id, info_hash, completed",
    "whitelist": "id, info_hash",
}

# A deployment's config paths, archived into config.tar.zst as torrust-maint does.
CONFIG_FILES = {
    "storage/tracker/etc/tracker.toml":
        '[metadata]\nschema_version = "2.0.0"\n\n[core.database]\ndriver = "sqlite3"\n'
        'path = "/var/lib/torrust/tracker/database/sqlite3.db"\n',
    ".env": "TORRUST_TRACKER_CONFIG_TOML_PATH='/etc/torrust/tracker/tracker.toml'\n"
            "MYSQL_ROOT_PASSWORD='bench'\n",
    "compose.yaml": "services:\n  tracker:\n    image: torrust/tracker:develop\n",
}


# --- the tracker-like database ----------------------------------------------------------------

def random_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def build_database(path: Path, rows: int, rng: random.Random) -> None:
    """The tracker's SQLite database with `rows` torrents (inserted in id order, random
    info_hash: the unique index grows by random inserts as on a tracker), left in WAL mode."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-524288")  # 512 MiB: the random index inserts
    for statement in SQLITE_SCHEMA:
        connection.execute(statement)
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO whitelist (info_hash) VALUES (?)",
                           ((random_hash(rng),) for _ in range(1000)))
    connection.executemany("INSERT INTO keys (key, valid_until) VALUES (?, ?)",
                           ((f"{rng.getrandbits(128):032x}", 1_767_225_600 + i * 3600)
                            for i in range(200)))
    connection.execute("INSERT INTO torrent_aggregate_metrics (metric_name, value) "
                       "VALUES ('torrents_downloads_total', 0)")
    connection.execute("COMMIT")
    done = 0
    while done < rows:
        batch = min(SEED_BATCH, rows - done)
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO torrents (info_hash, completed) VALUES (?, ?)",
            ((random_hash(rng), int(rng.expovariate(1 / 20))) for _ in range(batch)))
        connection.execute("COMMIT")
        done += batch
    connection.execute("UPDATE torrent_aggregate_metrics SET value = "
                       "(SELECT SUM(completed) FROM torrents)")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()


def change_one_day(path: Path, args: argparse.Namespace, rng: random.Random) -> dict:
    """A day of tracker writes: new torrents, then `completed += k` on random rows."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA cache_size=-524288")
    count, last_id = connection.execute("SELECT COUNT(*), MAX(id) FROM torrents").fetchone()
    new = round(count * args.new_fraction)
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO torrents (info_hash, completed) VALUES (?, ?)",
                           ((random_hash(rng), rng.randint(0, 3)) for _ in range(new)))
    connection.execute("COMMIT")
    count += new
    last_id += new
    hot = max(1, round(count * args.hot_fraction))
    first_hot = last_id - hot + 1
    ids = rng.sample(range(first_hot, last_id + 1), min(hot, round(count * args.update_fraction)))
    increments = [(rng.randint(1, args.max_increment), torrent_id) for torrent_id in ids]
    connection.execute("BEGIN")
    connection.executemany("UPDATE torrents SET completed = completed + ? WHERE id = ?",
                           increments)
    connection.execute("UPDATE torrent_aggregate_metrics SET value = value + ? "
                       "WHERE metric_name = 'torrents_downloads_total'",
                       (sum(k for k, _ in increments),))
    connection.execute("COMMIT")
    connection.close()
    return {"rows": count, "inserted": new, "updated": len(increments)}


def sqlite_copy(live: Path, target: Path) -> None:
    """That day's copy through SQLite's backup API (as `sqlite3 .backup`)."""
    target.unlink(missing_ok=True)
    source = sqlite3.connect(live)
    copy = sqlite3.connect(target)
    with copy:
        source.backup(copy)
    copy.close()
    source.close()


def sql_value(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def mysql_dump(live: Path, target: Path, moment: dt.datetime) -> None:
    """A plain SQL dump of the same tables in mysqldump's default (--opt) form: per table DROP,
    CREATE, LOCK, DISABLE KEYS, extended INSERTs in primary key order (a new INSERT line when a
    row would take it past net_buffer_length), ENABLE KEYS, UNLOCK; a dated last line."""
    connection = sqlite3.connect(f"file:{live}?mode=ro", uri=True)
    with open(target, "w", encoding="utf-8", newline="\n") as out:
        out.write("-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB, for debian-linux-gnu "
                  "(x86_64)\n--\n-- Host: localhost    Database: torrust_tracker\n"
                  "-- ------------------------------------------------------\n"
                  "-- Server version\t10.11.6-MariaDB-0+deb12u1\n\n"
                  "/*!40101 SET NAMES utf8mb4 */;\n"
                  "/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n"
                  "/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, "
                  "FOREIGN_KEY_CHECKS=0 */;\n\n")
        for table, create in MYSQL_TABLES.items():
            next_id = connection.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
            auto_increment = next_id.fetchone()[0]
            out.write(f"--\n-- Table structure for table `{table}`\n--\n\n"
                      f"DROP TABLE IF EXISTS `{table}`;\n{create} ENGINE=InnoDB "
                      f"AUTO_INCREMENT={auto_increment} DEFAULT CHARSET=utf8mb4 "
                      "COLLATE=utf8mb4_general_ci;\n\n"
                      f"--\n-- Dumping data for table `{table}`\n--\n\n"
                      f"LOCK TABLES `{table}` WRITE;\n"
                      f"/*!40000 ALTER TABLE `{table}` DISABLE KEYS */;\n")
            head = f"INSERT INTO `{table}` VALUES "
            line = 0
            cursor = connection.execute(f"SELECT {MYSQL_COLUMNS[table]} FROM {table} ORDER BY id")
            for row in cursor:
                text = "(" + ",".join(sql_value(v) for v in row) + ")"
                if line and line + len(text) + 1 < MYSQLDUMP_NET_BUFFER_LENGTH:
                    out.write("," + text)
                    line += len(text) + 1
                else:
                    out.write((";\n" if line else "") + head + text)
                    line = len(head) + len(text)
            out.write((";\n" if line else "") + f"/*!40000 ALTER TABLE `{table}` ENABLE KEYS */;\n"
                      "UNLOCK TABLES;\n\n")
        out.write("/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;\n"
                  "/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;\n\n"
                  f"-- Dump completed on {moment:%Y-%m-%d %H:%M:%S}\n")
    connection.close()


ENGINES: dict[str, tuple[str, Callable[[Path, Path, dt.datetime], None]]] = {
    "sqlite": ("database.sqlite3", lambda live, target, _moment: sqlite_copy(live, target)),
    "mysql": ("database.sql", mysql_dump),
}


def compare_exports(previous: Path, current: Path) -> dict:
    """How the day's export differs from the day before's, at fixed offsets: the unchanged
    prefix, and how many aligned 4 KiB blocks (SQLite's pages) and 1 MiB regions (restic's
    average chunk size) differ. Content that moved (a dump's rows after a longer line) counts
    as changed here, though restic's content-defined chunks can still find it."""
    pages = regions = 0
    prefix = None
    offset = 0
    with open(previous, "rb") as old, open(current, "rb") as new:
        while True:
            a, b = old.read(REGION), new.read(REGION)
            if not a and not b:
                break
            if a != b:
                regions += 1
                changed = [i for i in range(0, max(len(a), len(b)), PAGE)
                           if a[i:i + PAGE] != b[i:i + PAGE]]
                pages += len(changed)
                if prefix is None:
                    first, x, y = changed[0], a[changed[0]:], b[changed[0]:]
                    prefix = offset + first + next(
                        (i for i in range(min(len(x), len(y))) if x[i] != y[i]),
                        min(len(x), len(y)))
            offset += max(len(a), len(b))
    size = current.stat().st_size
    return {"unchanged_prefix_bytes": size if prefix is None else prefix,
            "changed_4k_blocks": pages, "blocks": -(-size // PAGE),
            "changed_1m_regions": regions, "regions": -(-size // REGION)}


# --- the backup set, as torrust-maint writes it ----------------------------------------------

def make_config_tree(root: Path) -> Path:
    """A deployment's config files, written once (their tar is the same every day)."""
    for relative, text in CONFIG_FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (1_736_000_000, 1_736_000_000))
    return root


def build_set(sets: Path, moment: dt.datetime, engine: str, export: Path, config_root: Path,
              level: int, day_info: dict) -> tuple[Path, dict]:
    """A set directory: database.<ext>.zst, config.tar.zst and manifest.json."""
    set_id = moment.strftime("%Y%m%dT%H%M%SZ")
    directory = sets / set_id
    directory.mkdir(parents=True)
    stem = ENGINES[engine][0]
    with open(export, "rb") as source, \
            compressed_writer(directory, "database", stem, "zstd", level) as (stream, database):
        copy_stream(source, stream)
    with compressed_writer(directory, "config", "config.tar", "zstd", level) as (stream, conf):
        with tarfile.open(fileobj=cast(BinaryIO, stream), mode="w|",
                          format=tarfile.PAX_FORMAT) as tar:
            for relative in CONFIG_FILES:
                tar.add(config_root / relative, arcname=relative)
    manifest = {
        "format": 1, "id": set_id, "kind": "backup", "complete": True,
        "created_at": moment.isoformat().replace("+00:00", "Z"),
        "tool": "torrust-maint", "tool_version": __version__, "hostname": "tracker-bench",
        "database": {"driver": "sqlite3" if engine == "sqlite" else "mysql",
                     "row_counts": {"torrents": day_info["rows"]}},
        "artifacts": [database.to_manifest(), conf.to_manifest()],
        "downtime_seconds": 1.5, "phases": {"export": 1.0}, "warnings": [],
    }
    with open(directory / "manifest.json", "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=False)
    return directory, manifest


# --- restic -----------------------------------------------------------------------------------

class Restic:
    """One local repository, driven by argv lists; password and repository by environment."""

    def __init__(self, repository: Path, password_file: Path, cache: Path, logs: Path):
        self.repository = repository
        self.logs = logs
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        self.env.update(RESTIC_REPOSITORY=str(repository),
                        RESTIC_PASSWORD_FILE=str(password_file), RESTIC_CACHE_DIR=str(cache))
        self.runs = 0

    def run(self, *args: str, feed: BinaryIO | None = None,
            env: dict[str, str] | None = None) -> tuple[Path, dict]:
        """Run restic (stdout and stderr to files: no pipe to fill); the file of its stdout,
        its wall time and the CPU seconds it used. `feed` is copied to its stdin."""
        self.runs += 1
        out = self.logs / f"{self.repository.name}-{self.runs}.out"
        err = self.logs / f"{self.repository.name}-{self.runs}.err"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen([RESTIC, *args], env={**self.env, **(env or {})},
                                       stdout=stdout,
                                       stderr=stderr,
                                       stdin=subprocess.PIPE if feed else subprocess.DEVNULL)
            if feed is not None:
                assert process.stdin is not None
                with process.stdin:
                    copy_stream(feed, process.stdin)
            code = process.wait()
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if code != 0:
            raise SystemExit(f"restic {' '.join(args)} failed ({code}): {err.read_text()}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return out, {"seconds": wall, "cpu_seconds": cpu}

    def backup(self, *args: str, feed: BinaryIO | None = None) -> dict:
        out, timing = self.run("backup", "--json", "--compression", "auto", *args, feed=feed)
        summary = [json.loads(line) for line in out.read_text().splitlines()
                   if line.startswith("{") and '"summary"' in line][-1]
        return {**timing, "data_added": summary["data_added"],
                "restic_seconds": summary["total_duration"],
                "bytes_processed": summary["total_bytes_processed"],
                "snapshot_id": summary["snapshot_id"]}

    def size(self) -> int:
        done = subprocess.run(["du", "-sb", str(self.repository)], capture_output=True,
                              text=True, check=True)
        return int(done.stdout.split()[0])


def upload(repo: Restic, steps: list[Callable[[], dict]]) -> dict:
    """Run the backups of one strategy's day; sum them and measure the repository's growth."""
    before = repo.size()
    parts = [step() for step in steps]
    after = repo.size()
    return {"data_added": sum(p["data_added"] for p in parts), "repo_growth": after - before,
            "repo_size": after, "seconds": sum(p["seconds"] for p in parts),
            "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
            "restic_seconds": sum(p["restic_seconds"] for p in parts), "parts": parts}


# --- the run ----------------------------------------------------------------------------------

def machine() -> dict:
    cpu = ""
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    restic = subprocess.run([RESTIC, "version"], capture_output=True, text=True, check=True)
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "restic_version": restic.stdout.strip(), "python": sys.version.split()[0],
            "python_executable": sys.executable, "zstandard": zstandard.__version__,
            "libzstd": ".".join(str(part) for part in zstandard.ZSTD_VERSION),
            "sqlite": sqlite3.sqlite_version}


def run_engine(engine: str, args: argparse.Namespace, work: Path, password: Path) -> dict:
    rng = random.Random(f"{args.seed}-{engine}")  # noqa: S311 (repeatable data, not secrets)
    root = work / engine
    root.mkdir()
    logs = root / "logs"
    logs.mkdir()
    live = root / "live.sqlite3"
    started = time.monotonic()
    build_database(live, args.rows, rng)
    print(f"{engine}: built {args.rows} rows in {time.monotonic() - started:.1f} s "
          f"({live.stat().st_size} bytes)", flush=True)
    config_root = make_config_tree(root / "deployment")
    stem, export_fn = ENGINES[engine]
    export = root / stem
    rounds = []  # per round, its repositories by strategy, sharing one chunker polynomial
    for round_ in range(args.repeats):
        repos: dict[str, Restic] = {}
        for strategy in args.strategies:
            repo = Restic(root / f"repo-{strategy}-{round_ + 1}", password, work / "cache", logs)
            if not repos:
                repo.run("init", "--repository-version", "2")
            else:  # the same content-defined chunk boundaries in the round's repositories
                first = next(iter(repos.values()))
                repo.run("init", "--repository-version", "2", "--copy-chunker-params",
                         env={"RESTIC_FROM_REPOSITORY": str(first.repository),
                              "RESTIC_FROM_PASSWORD_FILE": str(password)})
            repos[strategy] = repo
        (root / f"plain-{round_ + 1}").mkdir()  # C: a fixed path, so restic finds its parent
        rounds.append(repos)
    chunker = []
    for repos in rounds:
        config, _ = next(iter(repos.values())).run("cat", "config")
        chunker.append(json.loads(config.read_text())["chunker_polynomial"])
    days = []
    for day in range(args.days + 1):
        moment = FIRST_DAY + dt.timedelta(days=day)
        if day == 0:
            count = args.rows
            info = {"rows": count, "inserted": count, "updated": 0}
        else:
            info = change_one_day(live, args, rng)
        previous = export.with_name(export.name + ".previous")
        if day:
            export.replace(previous)
        started = time.monotonic()
        export_fn(live, export, moment)
        export_seconds = time.monotonic() - started
        changes = compare_exports(previous, export) if day else None
        previous.unlink(missing_ok=True)
        started = time.monotonic()
        set_dir, manifest = build_set(root / "sets", moment, engine, export, config_root,
                                      args.level, info)
        set_seconds = time.monotonic() - started
        database = manifest["artifacts"][0]
        small = [str(set_dir / "manifest.json"), str(set_dir / "config.tar.zst")]
        record: dict = {
            "day": day, **info, "uncompressed_bytes": export.stat().st_size,
            "live_db_bytes": live.stat().st_size, "artifact_bytes": database["size"],
            "set_bytes": sum(p.stat().st_size for p in set_dir.iterdir()),
            "export_seconds": export_seconds, "set_build_seconds": set_seconds,
            "changes_since_previous_day": changes,
            "uploads": {strategy: [] for strategy in args.strategies}}
        for round_, repos in enumerate(rounds, start=1):
            for strategy, repo in repos.items():
                steps = upload_steps(strategy, repo, set_dir, database, small, export,
                                     root / f"plain-{round_}")
                result = upload(repo, steps)
                record["uploads"][strategy].append(result)
                label = strategy if args.repeats == 1 else f"{strategy}#{round_}"
                print(f"{engine} day {day} {label}: data_added {result['data_added']:>11} B, "
                      f"repo growth {result['repo_growth']:>11} B, {result['seconds']:6.2f} s "
                      f"(restic CPU {result['cpu_seconds']:.1f} s); uncompressed "
                      f"{record['uncompressed_bytes']} B, zstd {record['artifact_bytes']} B",
                      flush=True)
        days.append(record)
        if day < args.days:
            shutil.rmtree(set_dir)
    fetch = fetch_back(root, rounds[0], set_dir, manifest,
                       {s: results[0] for s, results in days[-1]["uploads"].items()})
    shutil.rmtree(set_dir)
    return {"chunker_polynomial_per_round": chunker, "days": days,
            "totals": totals(days, args.strategies, args.repeats), "fetch": fetch}


def upload_steps(strategy: str, repo: Restic, set_dir: Path, database: dict, small: list[str],
                 export: Path, plain_dir: Path) -> list[Callable[[], dict]]:
    """The restic runs of one strategy for one day's set."""
    if strategy == "A":
        return [lambda: repo.backup(str(set_dir))]
    if strategy == "B":
        def stream() -> dict:
            with open_decompressed(set_dir / database["path"], "zstd") as feed:
                return repo.backup("--stdin", "--stdin-filename", "tracker.db", feed=feed)
        return [stream, lambda: repo.backup(*small)]
    for name in ("tracker.db", "manifest.json", "config.tar.zst"):
        (plain_dir / name).unlink(missing_ok=True)
    os.link(export, plain_dir / "tracker.db")
    shutil.copy2(set_dir / "manifest.json", plain_dir)
    shutil.copy2(set_dir / "config.tar.zst", plain_dir)
    return [lambda: repo.backup(str(plain_dir))]


def fetch_back(root: Path, repos: dict[str, Restic], set_dir: Path, manifest: dict,
               last: dict) -> dict:
    """The last day's set fetched back: A restored and checked against its manifest; B
    dumped and re-compressed like the set, its sha256 compared with the set's."""
    fetched: dict[str, dict] = {}
    database = manifest["artifacts"][0]
    if "A" in repos:
        target = root / "fetch-A"
        snapshot = last["A"]["parts"][0]["snapshot_id"]
        _, timing = repos["A"].run("restore", snapshot, "--target", str(target))
        started = time.monotonic()
        restored = target / set_dir.relative_to("/") / database["path"]
        same = sha256_of(restored) == database["sha256"]
        fetched["A"] = {**timing, "verify_seconds": time.monotonic() - started,
                        "sha256_matches_manifest": same}
        shutil.rmtree(target)
    if "B" in repos:
        target = root / "fetch-B"
        target.mkdir()
        snapshot = last["B"]["parts"][0]["snapshot_id"]
        dumped, timing = repos["B"].run("dump", snapshot, "/tracker.db")  # the file's bytes
        started = time.monotonic()
        with open(dumped, "rb") as source, compressed_writer(
                target, "database", Path(database["path"]).stem, "zstd") as (stream, again):
            copy_stream(source, stream)
        fetched["B"] = {**timing, "recompress_seconds": time.monotonic() - started,
                        "sha256_matches_manifest": again.sha256 == database["sha256"]}
        shutil.rmtree(target)
        dumped.unlink()
    return fetched


def totals(days: list[dict], strategies: list[str], repeats: int) -> dict:
    """Per strategy and round: the sums over all days, day 0, and the mean of the later days."""
    result: dict[str, list[dict]] = {}
    for strategy in strategies:
        result[strategy] = []
        for round_ in range(repeats):
            rows = [d["uploads"][strategy][round_] for d in days]
            later = rows[1:]
            total = {key: sum(r[key] for r in rows)
                     for key in ("data_added", "repo_growth", "seconds", "cpu_seconds")}
            total["final_repo_size"] = rows[-1]["repo_size"]
            for key in ("data_added", "repo_growth", "seconds", "cpu_seconds"):
                total[f"day0_{key}"] = rows[0][key]
                total[f"per_day_after_day0_{key}"] = (
                    sum(r[key] for r in later) / len(later) if later else None)
            result[strategy].append(total)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.offsite_dedup", description=__doc__.splitlines()[0],
        epilog="Strategies: A = the set's compressed files (restic backup <set dir>); "
               "B = the uncompressed database on stdin (restic backup --stdin) plus the set's "
               "small files; C = the uncompressed database as a file, with the small files.")
    parser.add_argument("--rows", type=int, default=1_500_000,
                        help="torrents rows on day 0 (default 1500000: a SQLite file of about "
                             "160 MB)")
    parser.add_argument("--days", type=int, default=7,
                        help="days of changes after the day-0 full upload (default 7)")
    parser.add_argument("--new-fraction", type=float, default=0.005,
                        help="new torrents per day, as a fraction of the rows (default 0.005)")
    parser.add_argument("--update-fraction", type=float, default=0.01,
                        help="rows whose completed grows each day (default 0.01)")
    parser.add_argument("--hot-fraction", type=float, default=1.0,
                        help="draw the updated rows from the newest fraction of the table "
                             "(default 1.0: uniform over all rows)")
    parser.add_argument("--max-increment", type=int, default=10,
                        help="completed += k, k uniform in 1..this (default 10)")
    parser.add_argument("--engines", default="sqlite,mysql",
                        help="sqlite (the file via the backup API) and/or mysql (a plain SQL "
                             "dump of the same tables); default sqlite,mysql")
    parser.add_argument("--strategies", default="A,B,C",
                        help="comma-separated subset of A,B,C (default A,B,C)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="upload every day's set into this many independent rounds of "
                             "repositories (restic draws each round's chunk boundaries anew; "
                             "the data stays the same); default 1")
    parser.add_argument("--level", type=int, default=3, help="zstd level of the set (default 3)")
    parser.add_argument("--seed", type=int, default=20250106, help="RNG seed (default 20250106)")
    parser.add_argument("--work", type=Path, default=WORK,
                        help=f"work directory, removed first and at the end (default {WORK})")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/offsite-dedup.json",
                        help="JSON results (default bench/results/offsite-dedup.json)")
    args = parser.parse_args()
    args.strategies = [s.strip().upper() for s in args.strategies.split(",") if s.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if (not set(args.strategies) <= {"A", "B", "C"} or not set(engines) <= set(ENGINES)
            or args.repeats < 1 or args.days < 0):
        parser.error("--strategies takes A, B, C; --engines takes sqlite, mysql; --repeats >= 1")

    wall = time.monotonic()
    load_before = os.getloadavg()  # the timings are only as quiet as the machine was
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True, mode=0o700)
    try:
        fd, name = tempfile.mkstemp(dir=args.work, prefix="restic-password-")  # mode 0600
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(16))
        results = {}
        for engine in engines:
            results[engine] = run_engine(engine, args, args.work, Path(name))
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    report = {
        "bench": "offsite_dedup", "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "command": "python3 -m bench.offsite_dedup " + " ".join(sys.argv[1:]),
        "wall_seconds": time.monotonic() - wall,
        "machine": {**machine(), "loadavg_1_5_15_before": load_before,
                    "loadavg_1_5_15_after": os.getloadavg()},
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "engines": results,
    }
    for engine, result in results.items():
        for strategy, per_round in result["totals"].items():
            for round_, total in enumerate(per_round, start=1):
                label = strategy if args.repeats == 1 else f"{strategy}#{round_}"
                print(f"{engine} {label} days 0-{args.days}: data_added {total['data_added']} B, "
                      f"repo growth {total['repo_growth']} B, {total['seconds']:.1f} s; days "
                      f"1-{args.days} per day: data_added "
                      f"{total['per_day_after_day0_data_added'] or 0:.0f} B, growth "
                      f"{total['per_day_after_day0_repo_growth'] or 0:.0f} B, "
                      f"{total['per_day_after_day0_seconds'] or 0:.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
