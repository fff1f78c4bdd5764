"""Soak: consecutive maintenance windows under continuous tracker writes, run in-process so
that leaked threads and file descriptors show in this very process.

Every set must be committed, verified, and hold exactly the transactions the stand-in tracker
had committed before its stop (N = the `startup seq` it prints when the window restarts it).
Afterwards nothing is left behind. TORRUST_MAINT_SOAK_WINDOWS sets the number of windows per
engine (`make test-reliability`: 50; default 3, the fast subset of `make test`).
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import backup_state, decompress
from tests.reliability.conftest import soak_windows
from tests.reliability.scenario import DumpChecker
from tests.reliability.support import (
    ProcessBaseline,
    StackBaseline,
    assert_no_leaks,
    downtime_figures,
    wait_for_writes,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testbed"))
from standin_tracker import expected_state  # noqa: E402

ENGINES = {
    "sqlite-wal": {"journal_mode": "wal"},
    "sqlite-rollback": {"journal_mode": "delete"},
    "mysql": {"driver": "mysql"},
}
KEEP_LAST = 5


class HangSpy:
    """If a MySQL window takes longer than `after` seconds, what the server and the database
    container were doing then (for the failure message)."""

    def __init__(self, tracker, after: float = 15):
        self.tracker, self.seen = tracker, []
        self.timer = threading.Timer(after, self._look)

    def _look(self) -> None:
        try:
            connection = self.tracker.mysql_connect()
            with connection.cursor() as cursor:
                cursor.execute("SELECT id, user, command, time, state, info "
                               "FROM information_schema.processlist")
                self.seen.append(f"processlist: {cursor.fetchall()}")
            connection.close()
        except Exception as error:
            self.seen.append(f"processlist: {error}")
        top = subprocess.run(["docker", "top", self.tracker.mysql_container_name, "-eo",
                              "pid,stat,args"], capture_output=True, text=True).stdout
        self.seen.append(f"docker top: {top}")

    def __enter__(self) -> HangSpy:
        if self.tracker.driver == "mysql":
            self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        if self.timer.is_alive():
            self.timer.join()


def in_process(capsys, *argv: str) -> tuple[int, str, str]:
    """The command line, in this process (cli.main), and what it printed."""
    from torrust_maint import cli

    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("engine", list(ENGINES))
def test_soak_windows_hold_exactly_the_committed_transactions_and_leak_nothing(
        engine, make_stack, tmp_path, capsys, soak_results, quiet_root_logger):
    windows = soak_windows()
    tracker = make_stack(**ENGINES[engine])
    gc.collect()  # no stale connection of an earlier test left in this process
    wait_for_writes(tracker, 100)
    directory = tracker.compose_dir / "storage/backup"
    config = tracker.compose_dir.parent / "soak.toml"
    config.write_text(tracker.config_toml(extra=(
        f"[retention]\nkeep_last = {KEEP_LAST}\nkeep_daily = 0\nkeep_weekly = 0\n"
        "keep_monthly = 0\n")))
    checker = DumpChecker(f"tm-rel-soak-{os.getpid()}") if tracker.driver == "mysql" else None
    stack = StackBaseline.of(tracker)
    process = ProcessBaseline()
    downtimes: list[float] = []
    made: list[str] = []
    started = time.monotonic()
    try:
        for window in range(1, windows + 1):
            startups = len(tracker.startup_seqs())
            with HangSpy(tracker) as spy:
                code, out, err = in_process(capsys, "--config", str(config), "backup")
            assert code == 0, f"window {window}: exit {code}\n{out}\n{err}\n{spy.seen}"
            set_id = re.search(r"^backup (\S+) committed:", out, re.M).group(1)
            made.append(set_id)
            code, listing, err = in_process(capsys, "--config", str(config), "list", "--json")
            assert code == 0, err
            [backup] = [s for s in json.loads(listing) if s["id"] == set_id]
            assert backup["complete"] is True
            assert (backup["verification"] or {}).get("outcome") == "passed", backup
            seqs = tracker.startup_seqs()
            assert len(seqs) == startups + 1, f"window {window}: one stop and one start"
            database = next(a for a in backup["artifacts"] if a["name"] == "database")
            restored = decompress(database, tmp_path / f"window-{window}.db")
            if checker is not None:
                n, state = checker.state_of(restored)
            else:
                n, state = backup_state(restored)
            restored.unlink()
            assert n == seqs[-1], (f"window {window}: the set holds {n} transactions, the "
                                   f"tracker had committed {seqs[-1]} before the stop")
            assert n > 0 and state == expected_state(n), f"window {window}: torn state"
            downtimes.append(backup["downtime_seconds"])
            wait_for_writes(tracker, n + 20)  # it writes on between the windows
        elapsed = time.monotonic() - started

        code, listing, err = in_process(capsys, "--config", str(config), "list", "--json")
        remaining = json.loads(listing)
        assert [s["id"] for s in remaining] == made[-KEEP_LAST:]
        assert all(s["complete"] and s["verification"]["outcome"] == "passed"
                   for s in remaining)
        tracker.wait_healthy(timeout=30)
        assert_no_leaks(tracker, directory, config, stack, process)
    finally:
        if checker is not None:
            checker.remove()

    figures = {**downtime_figures(downtimes), "seconds_per_window": round(elapsed / windows, 2),
               "downtimes": downtimes}
    (tmp_path / "soak-downtime.json").write_text(json.dumps({engine: figures}, indent=2))
    soak_results[engine] = figures
    print(f"soak {engine}: {windows} windows, downtime p50 {figures['p50']:.3f} s, "
          f"p95 {figures['p95']:.3f} s, max {figures['max']:.3f} s "
          f"({tmp_path / 'soak-downtime.json'})")
