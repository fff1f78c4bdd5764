"""`make bench`: restore downtime against a bare stop+start of the tracker, on the test bed.

Each run builds one tracker stack (MySQL seeded to `--sizes` torrent rows, default 2,000,000;
SQLite grown to a `--sqlite-bytes` database file, default 1 GiB) and measures, in that run and
on that stack:

- `backup`: its downtime (the window holds only the stop, opening a snapshot and the start for
  MySQL; for SQLite it copies the files: flat with reflinks (XFS), growing with disk speed on
  ext4), its phases, then `verify` of that set (wall clock of the command);
- a bare stop+start, 3 times: `docker stop` of the tracker container, `docker start`, then
  wait until it is healthy. Its downtime is torrust-maint's own definition ("stop requested ->
  every tracker container running again"): from just before `docker stop` until `docker
  inspect` shows the container running;
- `restore --yes` of that set, 3 times: its downtime is the `downtime_seconds` of the safety
  set the restore writes (the newest set in `list --json`), and its wall time.

Reported are the medians and the ratio restore downtime / bare stop+start downtime. The target
is a restore downtime within 1.5x a bare stop+start. One line per run is printed and every
result (with each trial) is written as JSON to build/bench-results.json (`--out`). Nothing here
is asserted: it only reports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.testbed.stack import TrackerStack

REPO = Path(__file__).resolve().parents[1]
ROOT = Path("/var/tmp/torrust-maint-bench")
TRIALS = 3
TARGET_RATIO = 1.5  # restore downtime within 1.5x a bare stop+start
SQLITE_BATCH_ROWS = 500_000


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/python3", "-m", "torrust_maint", "--config", str(config),
                           *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def list_sets(config: Path) -> list[dict]:
    done = cli(config, "list", "--json")
    if done.returncode != 0:
        raise SystemExit(f"list failed: {done.stderr}")
    return json.loads(done.stdout)


def seed_mysql(tracker: TrackerStack, rows: int) -> None:
    """Grow the torrents table to about `rows` rows inside the server (INSERT ... SELECT)."""
    connection = tracker.mysql_connect()
    with connection.cursor() as cursor:
        cursor.execute("INSERT IGNORE INTO torrents (info_hash, completed) "
                       "VALUES (SHA1('seed'), 1)")
        while True:
            cursor.execute("SELECT COUNT(*) FROM torrents")
            count = cursor.fetchone()[0]
            if count >= rows:
                break
            cursor.execute(
                "INSERT IGNORE INTO torrents (info_hash, completed) "
                "SELECT SHA1(CONCAT(info_hash, RAND())), completed FROM torrents LIMIT %s",
                (rows - count,))
    connection.close()


def seed_sqlite(path: Path, target_bytes: int) -> int:
    """Create the tracker's database before the stack starts, with torrents rows (40-hex
    info_hash, as the tracker's) until the file is at least `target_bytes`; returns the rows.

    Journal and fsync are off while seeding; the file is left in WAL mode, as the stack runs it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "tests/testbed"))
    from standin_tracker import SQLITE_SCHEMA

    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-262144")  # 256 MiB
    for statement in SQLITE_SCHEMA:
        connection.execute(statement)
    rows = 0
    batch = min(SQLITE_BATCH_ROWS, target_bytes // 200 + 1000)  # about half: rows are ~107 B
    while os.path.getsize(path) < target_bytes:
        first = 10_000_000 + rows  # ascending keys: the rows and the index append
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO torrents (info_hash, completed) VALUES (?, ?)",
            ((f"{i:040x}", i % 100) for i in range(first, first + batch)))
        connection.execute("COMMIT")
        rows += batch
        size = os.path.getsize(path)
        if size < target_bytes:  # the next batch: what is missing at this size per row, +1%
            batch = max(1000, min(SQLITE_BATCH_ROWS,
                                  int((target_bytes - size) / (size / rows) * 1.01) + 1))
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    return rows


def bare_restart(tracker: TrackerStack) -> dict:
    """`docker stop`, `docker start`, wait healthy; seconds to running again and to healthy."""
    name = tracker.container_name
    stop_requested = time.monotonic()
    subprocess.run(["docker", "stop", name], check=True, capture_output=True)
    stopped = time.monotonic()
    subprocess.run(["docker", "start", name], check=True, capture_output=True)
    while not tracker.running():
        time.sleep(0.05)
    running = time.monotonic()
    tracker.wait_healthy(timeout=120)
    healthy = time.monotonic()
    return {"downtime_s": running - stop_requested, "stop_s": stopped - stop_requested,
            "start_s": running - stopped, "healthy_s": healthy - stop_requested}


def timed_restore(config: Path, set_id: str) -> dict:
    """`restore ID --yes`: its wall time and the downtime recorded in the safety set it wrote."""
    before = {s["id"] for s in list_sets(config)}
    started = time.monotonic()
    done = cli(config, "restore", set_id, "--yes")
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"restore failed: {done.stderr}")
    new = [s for s in list_sets(config) if s["id"] not in before]
    if not new:
        raise SystemExit(f"restore wrote no safety set: {done.stdout}")
    safety = new[-1]
    return {"downtime_s": safety["downtime_seconds"], "wall_s": wall,
            "safety_set": safety["id"], "phases": safety["phases"]}


def median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def run_once(driver: str, size: int, root: Path, label: str) -> dict:
    """One stack: `size` is torrent rows for MySQL, database file bytes for SQLite."""
    tracker = TrackerStack(root / label / "opt/torrust", f"tm-bench-{label}", driver=driver,
                           journal_mode="wal", interval_ms=5)
    tracker.down()
    tracker.remove_files()
    tracker.create()
    seeded: dict = {}
    if driver == "sqlite3":
        seeding = time.monotonic()
        seeded["rows"] = seed_sqlite(tracker.db_host_path, size)
        seeded["file_bytes"] = os.path.getsize(tracker.db_host_path)
        seeded["seconds"] = time.monotonic() - seeding
    tracker.up(timeout=180)
    try:
        if driver == "mysql":  # seed with the tracker stopped: no lock contention with it
            subprocess.run(["docker", "stop", tracker.container_name], check=True,
                           capture_output=True)
            seeding = time.monotonic()
            seed_mysql(tracker, size)
            seeded["seconds"] = time.monotonic() - seeding
            subprocess.run(["docker", "start", tracker.container_name], check=True,
                           capture_output=True)
            tracker.wait_healthy(timeout=120)
        time.sleep(2)
        config = tracker.compose_dir.parent / "torrust-maint.toml"
        config.write_text(tracker.config_toml())
        done = cli(config, "backup")
        if done.returncode != 0:
            raise SystemExit(f"backup failed: {done.stderr}")
        backup = list_sets(config)[-1]
        database = backup["artifacts"][0]
        phases = backup["phases"]
        verify_started = time.monotonic()
        if cli(config, "verify", backup["id"]).returncode != 0:
            raise SystemExit("verify failed")
        verify_seconds = time.monotonic() - verify_started

        bare = [bare_restart(tracker) for _ in range(TRIALS)]
        time.sleep(2)
        restores = [timed_restore(config, backup["id"]) for _ in range(TRIALS)]

        bare_median = median([t["downtime_s"] for t in bare])
        restore_median = median([t["downtime_s"] for t in restores])
        ratio = (restore_median / bare_median
                 if restore_median is not None and bare_median else None)
        return {
            "driver": driver, "label": label, "rows": backup["database"]["tables"]["torrents"],
            "db_bytes": database["uncompressed_size"], "compressed_bytes": database["size"],
            "seeded": seeded,
            "downtime_s": backup["downtime_seconds"], "snapshot_s": phases.get("snapshot"),
            "stop_s": phases.get("stop"), "start_s": phases.get("start"),
            "export_s": phases.get("export"), "total_s": phases.get("total"),
            "method": backup["database"].get("snapshot_method", "consistent snapshot + dump"),
            "verify_s": verify_seconds,
            "bare_downtime_s": bare_median,
            "bare_healthy_s": median([t["healthy_s"] for t in bare]),
            "bare_trials": bare,
            "restore_downtime_s": restore_median,
            "restore_s": median([t["wall_s"] for t in restores]),
            "restore_trials": restores,
            "ratio": ratio, "target_ratio": TARGET_RATIO,
            "within_target": ratio <= TARGET_RATIO if ratio is not None else None,
        }
    finally:
        tracker.down()
        tracker.remove_files()


def seconds(value: float | None, width: int, digits: int = 3) -> str:
    return f"{value:>{width - 1}.{digits}f}s" if value is not None else f"{'-':>{width}}"


def write_results(path: Path, results: list[dict]) -> None:
    document = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trials": TRIALS, "target_ratio": TARGET_RATIO,
        "target": "restore downtime within 1.5x a bare stop+start of the tracker",
        "cpus": os.cpu_count(), "runs": results,
    }
    write_json(path, document)


def write_json(path: Path, document: dict) -> None:
    """Write a results document in one rename: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000000",
                        help="MySQL torrent rows per run, comma-separated (default 2000000)")
    parser.add_argument("--sqlite-bytes", type=int, default=1 << 30,
                        help="SQLite database file size to seed, bytes (default 1 GiB)")
    parser.add_argument("--drivers", default="mysql,sqlite3")
    parser.add_argument("--out", type=Path, default=REPO / "build/bench-results.json",
                        help="JSON results (default build/bench-results.json)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    runs = []
    for driver in args.drivers.split(","):
        if driver == "mysql":
            runs += [(driver, rows, f"{driver}-{rows}") for rows in sizes]
        elif driver == "sqlite3":
            runs.append((driver, args.sqlite_bytes, f"{driver}-{args.sqlite_bytes}b"))
        else:
            parser.error(f"unknown driver {driver!r} (mysql, sqlite3)")
    print(f"restore downtime vs bare stop+start: medians of {TRIALS}; "
          f"target ratio <= {TARGET_RATIO}x")
    print(f"{'driver':<8} {'rows':>9} {'db MB':>8} {'backup':>9} {'bare':>9} {'restore':>9} "
          f"{'ratio':>6} {'restore':>9} | {'zst MB':>7} {'snapshot':>9} {'export':>8} "
          f"{'verify':>7}  method")
    print(f"{'':<8} {'':>9} {'':>8} {'down':>9} {'down':>9} {'down':>9} "
          f"{'':>6} {'wall':>9} |")
    results: list[dict] = []
    for driver, size, label in runs:
        result = run_once(driver, size, ROOT, label)
        results.append(result)
        write_results(args.out, results)
        ratio = f"{result['ratio']:>5.2f}x" if result["ratio"] is not None else f"{'-':>6}"
        print(f"{result['driver']:<8} {result['rows']:>9} {result['db_bytes'] / 1e6:>8.1f} "
              f"{seconds(result['downtime_s'], 9)} {seconds(result['bare_downtime_s'], 9)} "
              f"{seconds(result['restore_downtime_s'], 9)} {ratio} "
              f"{seconds(result['restore_s'], 9, 2)} | "
              f"{result['compressed_bytes'] / 1e6:>7.1f} {seconds(result['snapshot_s'], 9)} "
              f"{seconds(result['export_s'], 8, 2)} {seconds(result['verify_s'], 7, 2)}  "
              f"{result['method']}", flush=True)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
