"""`make bench-postgresql`: the PostgreSQL window, against the deployer's `pg_dump | gzip`.

For each size (`--sizes`, default `small,1GiB`) one tracker stack is built on the test bed
(the v4 stand-in tracker and `postgres:<--version>`, default 17). "small" is the stand-in's
own rows (it runs until it has committed 3,000 transactions); a byte size (`1GiB`, `256MiB`)
grows the `torrents` table, with the tracker stopped, by `INSERT ... SELECT` over
`generate_series` (40-hex md5-based `info_hash`, unique) until `pg_database_size` reaches it,
then `VACUUM ANALYZE` and `CHECKPOINT`. On that stack, `--trials` times (default 3),
interleaved, the stand-in writing all the while:

- ours: `torrust-maint backup` (`[verify] after_backup = false`: the backup only). From the
  new set's manifest (`list --json`): `downtime_seconds` and the phases stop, snapshot, start,
  wait_healthy, export and total; and the command's wall time;
- the deployer's plan: `docker stop` of the tracker, `docker exec <postgres> pg_dump -U
  torrust torrust_tracker | gzip > file`, `docker start`, wait healthy. Its downtime is
  measured as bench/downtime.py measures a bare restart (from just before `docker stop` until
  `docker inspect` shows the tracker running), with the dump+gzip time inside it;
- a bare `docker stop` + `docker start` (bench.downtime.bare_restart): the physical floor.

On the largest size, the dump format: `pg_dump --format=plain`, `--format=custom -Z0` and
`--format=custom` (its default compression), each streamed through zstd level 3 with every
core (Python's zstandard, as torrust-maint compresses) into a file, plus `--format=custom
--compress=zstd:3` written as it is; wall time and bytes, `--trials` times each.

One line per measurement, then a summary table; everything (machine, sizes, medians, each
trial) goes to `--out` (default bench/results/postgresql-window.json). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard

from bench.downtime import REPO, ROOT, bare_restart, cli, list_sets, median, write_json
from tests.testbed.stack import POSTGRES_USER, TrackerStack

SMALL_TRANSACTIONS = 3000  # "small": the stand-in's own rows after this many transactions
FIRST_BATCH_ROWS = 500_000
MAX_BATCH_ROWS = 2_000_000
CHUNK = 1 << 20
DATABASE = "torrust_tracker"
# The format variants: (name, pg_dump options, compressed afterwards with zstd -3 -T0).
FORMATS = (
    ("plain", ["--format=plain"], True),
    ("custom -Z0", ["--format=custom", "--compress=0"], True),
    ("custom", ["--format=custom"], True),
    ("custom zstd:3", ["--format=custom", "--compress=zstd:3"], False),
)
DUMP_SCOPE = ["--schema=public", "--no-owner", "--no-privileges"]  # as torrust-maint dumps
UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
         "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_size(text: str) -> int | None:
    """None for "small", else bytes ("1GiB", "256MiB", "1073741824")."""
    if text.strip().lower() == "small":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (small, 256MiB, 1GiB)")
    return int(float(match.group(1)) * UNITS[match.group(2) or ""])


def run(*argv: str, check: bool = True) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def query(tracker: TrackerStack, sql: str, params: tuple = ()) -> list[tuple]:
    connection = tracker.postgres_connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []
    finally:
        connection.close()


def database_size(tracker: TrackerStack) -> int:
    return int(query(tracker, "SELECT pg_database_size(current_database())")[0][0])


def torrent_rows(tracker: TrackerStack) -> int:
    return int(query(tracker, "SELECT count(*) FROM torrents")[0][0])


def seed(tracker: TrackerStack, target_bytes: int) -> dict:
    """With the tracker stopped: torrents rows until pg_database_size >= target_bytes."""
    connection = tracker.postgres_connect()
    started = time.monotonic()
    # The first batch about half of what target_bytes holds (a row costs about 190 bytes).
    inserted, first = 0, 1
    batch = min(FIRST_BATCH_ROWS, max(10_000, target_bytes // 400))
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SELECT pg_database_size(current_database())")
        empty = size = int(cursor.fetchone()[0])
        while size < target_bytes:
            cursor.execute(
                "INSERT INTO torrents (info_hash, completed) "
                "SELECT md5('bench-' || g) || left(md5('seed-' || g), 8), g %% 100 "
                "FROM generate_series(%s::bigint, %s::bigint) AS g "
                "ON CONFLICT (info_hash) DO NOTHING", (first, first + batch - 1))
            inserted += cursor.rowcount
            first += batch
            cursor.execute("SELECT pg_database_size(current_database())")
            size = int(cursor.fetchone()[0])
            print(f"  seeding: {inserted:,} rows, pg_database_size {size / 2**20:,.0f} MiB "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
            if size < target_bytes:  # what is missing at this size per row, +1%
                per_row = (size - empty) / inserted
                batch = max(10_000, min(MAX_BATCH_ROWS,
                                        int((target_bytes - size) / per_row * 1.01) + 1))
        inserting = time.monotonic() - started
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")
    connection.close()
    return {"rows_inserted": inserted, "insert_s": inserting,
            "seconds": time.monotonic() - started}


def build_stack(tracker: TrackerStack, size: int | None) -> dict:
    """The stack up, then seeded to `size` (None: the stand-in's own rows)."""
    tracker.down()
    tracker.remove_files()
    tracker.create()
    tracker.up(timeout=180)
    seeded: dict = {"target_bytes": size}
    if size is None:
        tracker.wait_for_writes(SMALL_TRANSACTIONS, timeout=180)
    else:  # seed with the tracker stopped: no contention with its writes
        run("docker", "stop", tracker.container_name)
        seeded.update(seed(tracker, size))
        run("docker", "start", tracker.container_name)
        tracker.wait_healthy(timeout=120)
    time.sleep(2)
    seeded["db_bytes"] = database_size(tracker)
    seeded["torrents_rows"] = torrent_rows(tracker)
    return seeded


def ours(config: Path) -> dict:
    """`torrust-maint backup`: its wall time and what the new set's manifest recorded."""
    before = {s["id"] for s in list_sets(config)}
    started = time.monotonic()
    done = cli(config, "backup")
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"backup failed: {done.stderr}")
    new = [s for s in list_sets(config) if s["id"] not in before]
    if not new:
        raise SystemExit(f"backup wrote no set: {done.stdout}")
    backup = new[-1]
    database = backup["artifacts"][0]
    phases = backup["phases"]
    return {"set": backup["id"], "downtime_s": backup["downtime_seconds"], "wall_s": wall,
            **{f"{name}_s": phases.get(name)
               for name in ("stop", "snapshot", "start", "wait_healthy", "export", "total")},
            "dump_bytes": database["uncompressed_size"], "zst_bytes": database["size"],
            "torrents_rows": backup["database"]["tables"].get("torrents"),
            "warnings": backup["database"].get("warnings", []) + backup.get("warnings", [])}


def deployer(tracker: TrackerStack, directory: Path) -> dict:
    """`docker stop`, `docker exec <pg> pg_dump -U torrust torrust_tracker | gzip > file`,
    `docker start`, wait healthy; downtime as bench.downtime.bare_restart measures it."""
    name = tracker.container_name
    target = directory / "deployer-dump.sql.gz"
    stop_requested = time.monotonic()
    subprocess.run(["docker", "stop", name], check=True, capture_output=True)
    stopped = time.monotonic()
    try:
        with open(target, "wb") as out, tempfile.TemporaryFile() as errors:
            dump = subprocess.Popen(["docker", "exec", tracker.postgres_container_name,
                                     "pg_dump", "-U", POSTGRES_USER, DATABASE],
                                    stdout=subprocess.PIPE, stderr=errors)
            assert dump.stdout is not None
            gzip = subprocess.Popen(["gzip"], stdin=dump.stdout, stdout=out)
            dump.stdout.close()
            gzip_code, dump_code = gzip.wait(), dump.wait()
            if dump_code or gzip_code:
                errors.seek(0)
                raise SystemExit(f"pg_dump | gzip failed ({dump_code}, {gzip_code}): "
                                 f"{errors.read().decode(errors='replace')}")
        dumped = time.monotonic()
    finally:
        start_requested = time.monotonic()
        subprocess.run(["docker", "start", name], check=True, capture_output=True)
    while not tracker.running():
        time.sleep(0.05)
    running = time.monotonic()
    tracker.wait_healthy(timeout=120)
    healthy = time.monotonic()
    gz_bytes = target.stat().st_size
    target.unlink()
    return {"downtime_s": running - stop_requested, "stop_s": stopped - stop_requested,
            "dump_gzip_s": dumped - stopped, "start_s": running - start_requested,
            "healthy_s": healthy - stop_requested, "gz_bytes": gz_bytes}


def dump_format(tracker: TrackerStack, options: list[str], outer_zstd: bool,
                directory: Path) -> dict:
    """pg_dump with `options` from the database container into a file, through zstd level 3
    with every core (as torrust-maint's compressor) when `outer_zstd`; wall time and bytes."""
    target = directory / "format-dump"
    argv = ["docker", "exec", tracker.postgres_container_name, "pg_dump", "-U", POSTGRES_USER,
            *options, *DUMP_SCOPE, DATABASE]
    started = time.monotonic()
    raw = 0
    with open(target, "wb") as out, tempfile.TemporaryFile() as errors:
        dump = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        assert dump.stdout is not None
        if outer_zstd:
            compressor = zstandard.ZstdCompressor(level=3, threads=-1, write_checksum=True)
            with compressor.stream_writer(out, closefd=False) as writer:
                while chunk := dump.stdout.read(CHUNK):
                    raw += len(chunk)
                    writer.write(chunk)
        else:
            while chunk := dump.stdout.read(CHUNK):
                raw += len(chunk)
                out.write(chunk)
        code = dump.wait()
        if code:
            errors.seek(0)
            raise SystemExit(f"{' '.join(argv[3:])} failed ({code}): "
                             f"{errors.read().decode(errors='replace')}")
    wall = time.monotonic() - started
    written = target.stat().st_size
    target.unlink()
    return {"wall_s": wall, "pg_dump_bytes": raw, "file_bytes": written}


def machine(tracker: TrackerStack) -> dict:
    """The machine, the Docker engine and the server the numbers were taken on."""
    meminfo = Path("/proc/meminfo").read_text()
    ram_kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    df = run("df", "-B1", "--output=source,fstype,size,avail", str(ROOT)).splitlines()[-1]
    source, fstype, size, avail = df.split()
    device = Path(source).name
    rotational = Path(f"/sys/block/{device}/queue/rotational")
    os_release = Path("/etc/os-release").read_text()
    pretty = re.search(r'PRETTY_NAME="?([^"\n]*)', os_release)
    docker_info = json.loads(run("docker", "info", "--format", "{{json .}}"))
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu.group(1) if cpu else None,
        "ram_bytes": ram_kib * 1024,
        "disk": {"path": str(ROOT), "device": source, "fstype": fstype, "size_bytes": int(size),
                 "avail_bytes": int(avail),
                 "kernel_says_rotational": (rotational.read_text().strip() == "1"
                                            if rotational.exists() else None)},
        "kernel": platform.release(), "os": pretty.group(1) if pretty else None,
        "docker_version": run("docker", "version", "--format", "{{.Server.Version}}"),
        "docker_storage_driver": docker_info.get("Driver"),
        "postgresql_version": query(tracker, "SELECT version()")[0][0],
        "postgresql_settings": dict(query(
            tracker, "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
            "('shared_buffers', 'max_wal_size', 'synchronous_commit', 'fsync') ORDER BY 1")),
        "pg_dump_version": run("docker", "exec", tracker.postgres_container_name, "pg_dump",
                               "--version"),
        "gzip": run("gzip", "--version").splitlines()[0],
        "zstandard": zstandard.__version__,
        "libzstd": ".".join(str(part) for part in zstandard.ZSTD_VERSION),
        "python": platform.python_version(),
        "loadavg_before": list(os.getloadavg()),
    }


def git_state() -> dict:
    commit = run("git", "-C", str(REPO), "rev-parse", "HEAD", check=False)
    dirty = run("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no",
                check=False)
    return {"commit": commit, "modified_files": dirty.splitlines()}


def fmt(value: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if value is not None else "-"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def measure_size(size_text: str, size: int | None, args, formats: bool, document: dict) -> dict:
    """One stack of `size`: the trials (and the formats), torn down afterwards."""
    label = f"postgresql{args.version}-{size_text.lower()}"
    started = time.monotonic()
    print(f"[{size_text}] building the stack ({label})", flush=True)
    tracker = TrackerStack(ROOT / label / "opt/torrust", f"tm-bench-{label}",
                           driver="postgresql", postgres_version=args.version, interval_ms=5)
    work = ROOT / label / "work"
    try:
        seeded = build_stack(tracker, size)
        work.mkdir(parents=True, exist_ok=True)
        print(f"[{size_text}] pg_database_size {seeded['db_bytes']:,} bytes, "
              f"{seeded['torrents_rows']:,} torrents rows"
              + (f", seeded in {seeded['seconds']:.0f} s" if "seconds" in seeded else ""),
              flush=True)
        config = tracker.compose_dir.parent / "torrust-maint.toml"
        config.write_text(tracker.config_toml(extra="\n[verify]\nafter_backup = false\n"))
        result: dict = {"size": size_text, "label": label, "seeded": seeded,
                        "machine": machine(tracker), "ours": [], "deployer": [], "bare": []}
        for trial in range(1, args.trials + 1):
            tag = f"[{size_text}] trial {trial}/{args.trials}"
            one = ours(config)
            result["ours"].append(one)
            print(f"{tag} ours:     downtime {fmt(one['downtime_s'])} s (stop "
                  f"{fmt(one['stop_s'])}, snapshot {fmt(one['snapshot_s'], 4)}, start "
                  f"{fmt(one['start_s'])}), wait_healthy {fmt(one['wait_healthy_s'])} s, "
                  f"export {fmt(one['export_s'], 2)} s, total {fmt(one['total_s'], 2)} s, "
                  f"wall {fmt(one['wall_s'], 2)} s; dump {one['dump_bytes']:,} B -> zst "
                  f"{one['zst_bytes']:,} B", flush=True)
            time.sleep(2)
            plan = deployer(tracker, work)
            result["deployer"].append(plan)
            print(f"{tag} deployer: downtime {fmt(plan['downtime_s'])} s (stop "
                  f"{fmt(plan['stop_s'])}, pg_dump|gzip {fmt(plan['dump_gzip_s'], 2)}, start "
                  f"{fmt(plan['start_s'])}), healthy after {fmt(plan['healthy_s'], 2)} s; gz "
                  f"{plan['gz_bytes']:,} B", flush=True)
            time.sleep(2)
            bare = bare_restart(tracker)
            result["bare"].append(bare)
            print(f"{tag} bare:     downtime {fmt(bare['downtime_s'])} s (stop "
                  f"{fmt(bare['stop_s'])}, start {fmt(bare['start_s'])}), healthy after "
                  f"{fmt(bare['healthy_s'], 2)} s", flush=True)
            time.sleep(2)
        result["medians"] = {
            "ours": {key: median([t[key] for t in result["ours"]])
                     for key in ("downtime_s", "stop_s", "snapshot_s", "start_s",
                                 "wait_healthy_s", "export_s", "total_s", "wall_s",
                                 "dump_bytes", "zst_bytes")},
            "deployer": {key: median([t[key] for t in result["deployer"]])
                         for key in ("downtime_s", "stop_s", "dump_gzip_s", "start_s",
                                     "healthy_s", "gz_bytes")},
            "bare": {key: median([t[key] for t in result["bare"]])
                     for key in ("downtime_s", "stop_s", "start_s", "healthy_s")},
        }
        medians = result["medians"]
        result["ratios"] = {
            "ours_downtime_over_bare": ratio(medians["ours"]["downtime_s"],
                                             medians["bare"]["downtime_s"]),
            "ours_downtime_over_deployer": ratio(medians["ours"]["downtime_s"],
                                                 medians["deployer"]["downtime_s"]),
        }
        document.setdefault("machine", result["machine"])
        if formats:
            result["formats"] = measure_formats(tracker, size_text, work, args.trials)
        result["db_bytes_after"] = database_size(tracker)
        result["machine"]["loadavg_after"] = list(os.getloadavg())
        result["seconds"] = time.monotonic() - started
        return result
    finally:
        tracker.down()
        tracker.remove_files()
        shutil.rmtree(ROOT / label, ignore_errors=True)


def measure_formats(tracker: TrackerStack, size_text: str, work: Path, trials: int) -> dict:
    """Each variant `trials` times, round by round, each round starting with the next
    variant (the tracker serving meanwhile)."""
    found: dict[str, list[dict]] = {name: [] for name, _, _ in FORMATS}
    for trial in range(1, trials + 1):
        turn = (trial - 1) % len(FORMATS)  # each round starts with the next variant
        for name, options, outer in FORMATS[turn:] + FORMATS[:turn]:
            one = dump_format(tracker, options, outer, work)
            found[name].append(one)
            print(f"[{size_text}] format trial {trial}/{trials} {name:<14} "
                  f"{'| zstd -3 -T0' if outer else '(no outer zstd)':<16} wall "
                  f"{fmt(one['wall_s'], 2)} s, pg_dump {one['pg_dump_bytes']:,} B, file "
                  f"{one['file_bytes']:,} B", flush=True)
    variants = []
    for name, options, outer in FORMATS:
        variants.append({
            "name": name, "pg_dump_options": options + DUMP_SCOPE, "outer_zstd_level_3": outer,
            "wall_s": median([t["wall_s"] for t in found[name]]),
            "pg_dump_bytes": median([t["pg_dump_bytes"] for t in found[name]]),
            "file_bytes": median([t["file_bytes"] for t in found[name]]),
            "trials": found[name]})
    return {"size": size_text, "variants": variants}


def print_summary(results: list[dict]) -> None:
    print()
    print("medians of each trial set; downtime = stop requested -> tracker running again")
    print(f"{'size':<7} {'db MiB':>7} {'rows':>10} | {'ours':>7} {'snap':>7} {'export':>7} "
          f"{'wall':>7} | {'deployer':>8} {'dump|gz':>8} | {'bare':>6} | {'ours/':>6} "
          f"{'ours/':>6}")
    print(f"{'':<7} {'':>7} {'':>10} | {'down s':>7} {'s':>7} {'s':>7} {'s':>7} | "
          f"{'down s':>8} {'s':>8} | {'down s':>6} | {'bare':>6} {'deploy':>6}")
    for result in results:
        ours_m, plan, bare = (result["medians"][k] for k in ("ours", "deployer", "bare"))
        ratios = result["ratios"]
        print(f"{result['size']:<7} {result['seeded']['db_bytes'] / 2**20:>7.0f} "
              f"{result['seeded']['torrents_rows']:>10,} | {fmt(ours_m['downtime_s']):>7} "
              f"{fmt(ours_m['snapshot_s'], 4):>7} {fmt(ours_m['export_s'], 2):>7} "
              f"{fmt(ours_m['wall_s'], 2):>7} | {fmt(plan['downtime_s'], 2):>8} "
              f"{fmt(plan['dump_gzip_s'], 2):>8} | {fmt(bare['downtime_s']):>6} | "
              f"{fmt(ratios['ours_downtime_over_bare'], 2):>6} "
              f"{fmt(ratios['ours_downtime_over_deployer'], 3):>6}")
    for result in results:
        if "formats" not in result:
            continue
        print()
        print(f"dump format at {result['size']} (medians; tracker serving)")
        print(f"{'variant':<15} {'compression':<16} {'wall s':>7} {'pg_dump MiB':>12} "
              f"{'file MiB':>9}")
        for variant in result["formats"]["variants"]:
            outer = "| zstd -3 -T0" if variant["outer_zstd_level_3"] else "(none outside)"
            print(f"{variant['name']:<15} {outer:<16} {fmt(variant['wall_s'], 2):>7} "
                  f"{variant['pg_dump_bytes'] / 2**20:>12.1f} "
                  f"{variant['file_bytes'] / 2**20:>9.1f}")


def snapshot_scaling(results: list[dict]) -> dict | None:
    """The in-window snapshot phase at the largest size against the smallest."""
    if len(results) < 2:
        return None
    smallest = min(results, key=lambda r: r["seeded"]["db_bytes"])
    largest = max(results, key=lambda r: r["seeded"]["db_bytes"])
    low = smallest["medians"]["ours"]["snapshot_s"]
    high = largest["medians"]["ours"]["snapshot_s"]
    return {"from": smallest["size"], "to": largest["size"], "snapshot_s_from": low,
            "snapshot_s_to": high, "ratio": ratio(high, low),
            "db_bytes_ratio": largest["seeded"]["db_bytes"] / smallest["seeded"]["db_bytes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,1GiB",
                        help="comma-separated: small (the stand-in's own rows) or a "
                             "pg_database_size to seed to, e.g. 256MiB, 1GiB "
                             "(default small,1GiB)")
    parser.add_argument("--trials", type=int, default=3, help="trials of each (default 3)")
    parser.add_argument("--version", type=int, default=17,
                        help="PostgreSQL major version of the stack's image (default 17)")
    parser.add_argument("--no-formats", action="store_true",
                        help="skip the dump format measurement (made on the largest size)")
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench/results/postgresql-window.json",
                        help="JSON results (default bench/results/postgresql-window.json)")
    args = parser.parse_args()
    sizes = [(text.strip(), parse_size(text)) for text in args.sizes.split(",")]
    largest = max(range(len(sizes)), key=lambda i: sizes[i][1] or 0)
    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    document: dict = {
        "bench": "postgresql_window", "started_at": started_at.isoformat(timespec="seconds"),
        "command": "python3 -m bench.postgresql_window " + " ".join(sys.argv[1:]),
        "trials": args.trials, "postgres_version": args.version, "git": git_state(),
        "downtime": "stop requested -> tracker container running again (docker inspect)",
        "runs": [],
    }
    print(f"PostgreSQL {args.version} window: ours vs the deployer's pg_dump | gzip vs a bare "
          f"stop+start; {args.trials} trials each, sizes {args.sizes}", flush=True)
    for index, (text, size) in enumerate(sizes):
        result = measure_size(text, size, args,
                              formats=not args.no_formats and index == largest,
                              document=document)
        document["runs"].append(result)
        document["snapshot_scaling"] = snapshot_scaling(document["runs"])
        document["wall_seconds"] = time.monotonic() - started
        write_json(args.out, document)
    print_summary(document["runs"])
    scaling = document["snapshot_scaling"]
    if scaling and scaling["ratio"] is not None:
        print(f"\nin-window snapshot phase: {fmt(scaling['snapshot_s_from'], 4)} s at "
              f"{scaling['from']}, {fmt(scaling['snapshot_s_to'], 4)} s at {scaling['to']} "
              f"({scaling['ratio']:.2f}x for {scaling['db_bytes_ratio']:.0f}x the bytes)")
    print(f"\nwall time {document['wall_seconds'] / 60:.1f} min; results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
