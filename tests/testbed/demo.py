"""`make demo`: create a demo tracker deployment, run one real maintenance window, show it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.testbed.stack import TrackerStack

ROOT = Path("/var/tmp/torrust-maint-demo")
REPO = Path(__file__).resolve().parents[2]


def demo_stack() -> TrackerStack:
    return TrackerStack(ROOT / "opt/torrust", "torrust-maint-demo-tracker", journal_mode="wal")


def cli(config: Path, *args: str) -> int:
    command = ["/usr/bin/python3", "-m", "torrust_maint", "--config", str(config), *args]
    print(f"\n$ torrust-maint --config {config} {' '.join(args)}", flush=True)
    return subprocess.run(command, cwd=REPO, env={"PYTHONPATH": str(REPO),
                                                   "PATH": "/usr/local/bin:/usr/bin:/bin"}).returncode


def main() -> int:
    tracker = demo_stack()
    if sys.argv[1:] == ["--down"]:
        tracker.down()
        tracker.remove_files()
        print(f"removed the demo deployment in {ROOT}")
        return 0
    print(f"creating a demo deployment in {tracker.compose_dir} (stand-in tracker, SQLite/WAL)")
    tracker.down()
    tracker.remove_files()
    tracker.create()
    tracker.up()
    tracker.wait_for_writes(500)
    time.sleep(1)
    config = ROOT / "torrust-maint.toml"
    config.write_text(tracker.config_toml())
    print(f"config {config}:\n{config.read_text()}")
    for args in (["check"], ["backup", "--dry-run"], ["backup"], ["list"]):
        code = cli(config, *args)
        if code != 0:
            print(f"demo: torrust-maint {' '.join(args)} exited {code}", file=sys.stderr)
            return code
    in_backup = tracker.startup_seqs()[-1]
    print(f"\nthe tracker kept writing: {in_backup} transactions were in the "
          "backup; it is running again:", tracker.state()["Status"])
    tracker.wait_for_writes(in_backup + 200)
    for args in (["restore", "latest", "--dry-run"], ["restore", "latest", "--yes"], ["list"], ["status"]):
        code = cli(config, *args)
        if code != 0:
            print(f"demo: torrust-maint {' '.join(args)} exited {code}", file=sys.stderr)
            return code
    print(f"\nrestored: the tracker started again at transaction {tracker.startup_seqs()[-1]} "
          "(the backup's); the state before the restore is in the safety set listed above")
    print("explore:  docker logs torrust-maint-demo-tracker;  make demo-down  removes it all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
