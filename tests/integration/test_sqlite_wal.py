"""sqlite-wal end to end: the stand-in tracker on a rollback-journal database (journal mode
"keep", as the real tracker, which sets none) is switched to WAL in one window after a safety
set, loses no write, and carries on; `check` says what a window costs before."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import (
    PYTHON,
    REPO,
    backup_state,
    decompress,
    list_sets,
    run_cli,
    write_config,
)
from tests.integration.test_restore import assert_carries_on_from, stopped_seqs
from torrust_maint.actions.sqlite_wal import REASON

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import expected_state  # noqa: E402

TRACKER_USER = (1000, 1000)  # the real image runs the tracker unprivileged
ROLLBACK, WAL = b"\x01\x01", b"\x02\x02"


def header_mode(path: Path) -> bytes:
    """Bytes 18-19 of the SQLite header (the file format's read/write versions)."""
    with open(path, "rb") as handle:
        return handle.read(20)[18:20]


def journal_mode(path: Path) -> str:
    """PRAGMA journal_mode of the live database, asked over a read-only connection."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()


def set_state(backup: dict, tmp_path: Path, name: str) -> tuple[int, dict]:
    """(N, tables) of a set's database, decompressed with the stock tool."""
    database = next(a for a in backup["artifacts"] if a["name"] == "database")
    return backup_state(decompress(database, tmp_path / name))


def run_off_a_terminal(config: Path, *args: str) -> subprocess.CompletedProcess:
    """run_cli with stdin not a terminal (/dev/null), whatever runs the tests."""
    return subprocess.run([PYTHON, "-m", "torrust_maint", "--config", str(config), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_check_estimates_the_window_and_dry_run_and_no_yes_change_nothing(make_stack):
    tracker = make_stack(journal_mode="keep")
    tracker.wait_for_writes(100)
    config = write_config(tracker)
    assert header_mode(tracker.db_host_path) == ROLLBACK  # a fresh file: rollback journal

    checked = run_cli(config, "check")

    assert "Traceback" not in checked.stderr
    assert ("sqlite journal mode: rollback journal: a backup's window copies the database file "
            "while the tracker is stopped") in checked.stdout
    assert re.search(r"^sqlite read speed: [\d.]+ MB/s \(read the whole file in \d+ reads?, "
                     r"[\d.]+ s, page cache bypassed with (O_DIRECT|posix_fadvise\("
                     r"POSIX_FADV_DONTNEED\))\)$", checked.stdout, re.MULTILINE), checked.stdout
    assert re.search(r"^sqlite window copy: expected in-window copy time at least [\d.]+ s for "
                     r"\d+ bytes \(the read alone; the copy also writes it; WAL recommended above "
                     r"5 s\)$", checked.stdout, re.MULTILINE), checked.stdout

    planned = run_cli(config, "sqlite-wal", "--dry-run")
    refused = run_off_a_terminal(config, "sqlite-wal")

    assert planned.returncode == 0, planned.stderr
    assert "dry run: nothing will be changed" in planned.stdout
    assert "would run: docker stop" in planned.stdout
    assert "PRAGMA journal_mode=WAL" in planned.stdout
    assert refused.returncode == 2, refused.stderr
    assert "pass --yes" in refused.stderr and "Traceback" not in refused.stderr
    assert header_mode(tracker.db_host_path) == ROLLBACK
    assert len(tracker.startup_seqs()) == 1  # never stopped
    assert list_sets(config) == []


def test_switch_keeps_every_write_and_the_tracker_carries_on_in_wal_mode(make_stack, tmp_path):
    tracker = make_stack(journal_mode="keep", user=":".join(map(str, TRACKER_USER)))
    tracker.wait_for_writes(300)
    config = write_config(tracker)
    database = tracker.db_host_path
    assert header_mode(database) == ROLLBACK

    done = run_cli(config, "sqlite-wal", "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"switched {database} to WAL mode inside the window of safety set" in done.stdout
    # the safety set: exactly the transactions committed before the stop
    [safety] = list_sets(config)
    n = stopped_seqs(tracker)[-1]
    assert set_state(safety, tmp_path, "safety.sqlite3") == (n, expected_state(n))
    assert safety["database"]["journal_mode"] == "delete"
    assert safety["verification"]["outcome"] == "passed"
    manifest = json.loads((Path(safety["path"]) / "manifest.json").read_text())
    assert manifest["reason"] == REASON
    # the tracker restarts on exactly N, now in WAL mode, and keeps committing
    assert len(tracker.startup_seqs()) == 2
    assert_carries_on_from(tracker, n)
    assert header_mode(database) == WAL and journal_mode(database) == "wal"
    tracker.wait_for_writes(n + 300)
    for suffix in ("", "-wal", "-shm"):
        side = Path(f"{database}{suffix}")
        if suffix == "" or side.exists():
            info = side.stat()
            assert (info.st_uid, info.st_gid) == TRACKER_USER, suffix
    assert_carries_on_from(tracker, n)  # the live state is still 1..n_live, nothing lost
    assert "Traceback" not in tracker.logs()

    backed_up = run_cli(config, "backup")

    assert backed_up.returncode == 0, backed_up.stderr
    after = list_sets(config)[-1]
    assert after["database"]["journal_mode"] == "wal"
    n_after = stopped_seqs(tracker)[-1]
    assert n_after > n and tracker.startup_seqs()[-1] == n_after
    assert set_state(after, tmp_path, "after.sqlite3") == (n_after, expected_state(n_after))

    again = run_cli(config, "sqlite-wal", "--yes")

    assert again.returncode == 0, again.stderr
    assert f"{database} is already in WAL mode: nothing to do" in again.stdout
    assert len(list_sets(config)) == 2
