"""`make bench`: tracker downtime and backup timings against database size, on the test bed.

For MySQL the window holds only the stop, opening a snapshot and the start: its downtime
should stay flat as the database grows, while the dump (after the restart) grows. For SQLite
the window copies the files: flat with reflinks (XFS), growing with disk speed on ext4.
Then `verify` and `restore` of that set are timed (wall clock of the command; the restore's
downtime is the safety set's). Prints one line per run; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.testbed.stack import TrackerStack

REPO = Path(__file__).resolve().parents[1]
ROOT = Path("/var/tmp/torrust-maint-bench")


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/python3", "-m", "torrust_maint", "--config", str(config),
                           *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def seed_mysql(tracker: TrackerStack, rows: int) -> None:
    """Grow the torrents table to about `rows` rows inside the server (INSERT ... SELECT)."""
    connection = tracker.mysql_connect()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO torrents (info_hash, completed) VALUES (SHA1('seed'), 1)")
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


def seed_sqlite(path: Path, rows: int) -> None:
    """Create the tracker's database with `rows` torrents before the stack starts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "tests/testbed"))
    from standin_tracker import SQLITE_SCHEMA

    connection = sqlite3.connect(path)
    for statement in SQLITE_SCHEMA:
        connection.execute(statement)
    connection.executemany(
        "INSERT INTO torrents (info_hash, completed) VALUES (?, ?)",
        ((f"{i:040x}", i % 100) for i in range(10_000_000, 10_000_000 + rows)))
    connection.commit()
    connection.close()


def run_once(driver: str, rows: int, root: Path, label: str) -> dict:
    tracker = TrackerStack(root / label / "opt/torrust", f"tm-bench-{label}", driver=driver,
                           journal_mode="wal", interval_ms=5)
    tracker.down()
    tracker.remove_files()
    tracker.create()
    if driver == "sqlite3":
        seed_sqlite(tracker.db_host_path, rows)
    tracker.up(timeout=180)
    try:
        if driver == "mysql":  # seed with the tracker stopped: no lock contention with it
            subprocess.run(["docker", "stop", tracker.container_name], check=True,
                           capture_output=True)
            seed_mysql(tracker, rows)
            subprocess.run(["docker", "start", tracker.container_name], check=True,
                           capture_output=True)
            tracker.wait_healthy(timeout=120)
        time.sleep(2)
        config = tracker.compose_dir.parent / "torrust-maint.toml"
        config.write_text(tracker.config_toml())
        done = cli(config, "backup")
        if done.returncode != 0:
            raise SystemExit(f"backup failed: {done.stderr}")
        backup = json.loads(cli(config, "list", "--json").stdout)[-1]
        database = backup["artifacts"][0]
        phases = backup["phases"]
        verify_started = time.monotonic()
        if cli(config, "verify", backup["id"]).returncode != 0:
            raise SystemExit("verify failed")
        verify_seconds = time.monotonic() - verify_started
        restore_started = time.monotonic()
        restore = cli(config, "restore", backup["id"], "--yes")
        if restore.returncode != 0:
            raise SystemExit(f"restore failed: {restore.stderr}")
        restore_seconds = time.monotonic() - restore_started
        safety = json.loads(cli(config, "list", "--json").stdout)[-1]
        return {
            "driver": driver, "label": label, "rows": backup["database"]["tables"]["torrents"],
            "db_bytes": database["uncompressed_size"], "compressed_bytes": database["size"],
            "downtime_s": backup["downtime_seconds"], "snapshot_s": phases.get("snapshot"),
            "stop_s": phases.get("stop"), "start_s": phases.get("start"),
            "export_s": phases.get("export"), "total_s": phases.get("total"),
            "method": backup["database"].get("snapshot_method", "consistent snapshot + dump"),
            "verify_s": verify_seconds, "restore_s": restore_seconds,
            "restore_downtime_s": safety["downtime_seconds"],
        }
    finally:
        tracker.down()
        tracker.remove_files()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,2000000", help="torrent rows per run")
    parser.add_argument("--drivers", default="mysql,sqlite3")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"{'driver':<8} {'rows':>9} {'db MB':>8} {'zst MB':>7} {'downtime':>9} "
          f"{'snapshot':>9} {'export':>8} {'total':>7} {'verify':>7} {'restore':>8} "
          f"{'(down)':>8}  method")
    for driver in args.drivers.split(","):
        for rows in sizes:
            result = run_once(driver, rows, ROOT, f"{driver}-{rows}")
            print(f"{result['driver']:<8} {result['rows']:>9} {result['db_bytes'] / 1e6:>8.1f} "
                  f"{result['compressed_bytes'] / 1e6:>7.1f} {result['downtime_s']:>8.3f}s "
                  f"{result['snapshot_s']:>8.3f}s {result['export_s']:>7.2f}s "
                  f"{result['total_s']:>6.2f}s {result['verify_s']:>6.2f}s "
                  f"{result['restore_s']:>7.2f}s {result['restore_downtime_s']:>7.2f}s  "
                  f"{result['method']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
