"""One fault case's deployment: a fresh stack, a config, an older set to keep intact, and the
checks every fault case ends with (issue 8): the tracker running, older sets byte-identical,
no partial set listed, the documented exit code with one clear line, a later backup working,
nothing leaked."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.conftest import backup_state, decompress, list_sets, run_cli
from tests.reliability.support import (
    MARKER,
    FaultRun,
    StackBaseline,
    TrackerWatch,
    assert_no_leaks,
    container_state,
    fingerprint_sets,
    guardians,
    parse_docker_time,
    throwaway_containers,
    tracker_ready,
    wait_for_writes,
    wait_until,
)
from tests.testbed.stack import compose

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testbed"))
from standin_tracker import expected_state, read_state  # noqa: E402

ENGINES = {
    "sqlite-wal": {"journal_mode": "wal"},
    "sqlite-rollback": {"journal_mode": "delete"},
    "mysql": {"driver": "mysql"},
    "postgresql": {"driver": "postgresql"},
}
STOP_TIMEOUT = 4
START_TIMEOUT = 60
GUARDIAN_GRACE = 5  # recovery.STOP_GRACE: a dead run's `docker stop` may take this much longer


class Scenario:
    """A fresh stand-in deployment with one verified set made before the fault."""

    def __init__(self, make_stack, engine: str, record: dict, *, ignore_sigterm: bool = False,
                 stop_timeout: int = STOP_TIMEOUT, start_timeout: int = START_TIMEOUT,
                 window_mode: str = "stop", **stack_settings):
        self.engine = engine
        self.record = record
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.tracker = make_stack(**{**ENGINES[engine], **stack_settings},
                                  ignore_sigterm=ignore_sigterm)
        self.name = self.tracker.container_name
        self.directory = self.tracker.compose_dir / "storage/backup"
        self.config = self.tracker.compose_dir.parent / "reliability.toml"
        self.config.write_text(self.tracker.config_toml(
            deployment_extra=f"stop_timeout = {stop_timeout}\nstart_timeout = {start_timeout}\n",
            extra="[retention]\nkeep_last = 10\n" + f'[window]\nmode = "{window_mode}"\n'))
        self.older: dict[str, dict[str, str]] = {}
        self.stack: StackBaseline | None = None
        record.update(engine=engine, stop_timeout=stop_timeout, window_mode=window_mode)

    # -- before the fault -----------------------------------------------------------------

    def prepare(self, writes: int = 100) -> None:
        """An older, verified set; fingerprints of everything that must stay intact."""
        wait_for_writes(self.tracker, writes)
        self.backup()
        self.older = fingerprint_sets(self.directory)
        assert len(self.older) == 1
        self.stack = StackBaseline.of(self.tracker)

    def backup(self) -> dict:
        done = run_cli(self.config, "backup")
        assert done.returncode == 0, f"a backup must work here: {done.stdout}\n{done.stderr}"
        newest = list_sets(self.config)[-1]
        assert newest["complete"] and newest["verification"]["outcome"] == "passed", newest
        return newest

    def started_at(self) -> str:
        return (container_state(self.name) or {}).get("StartedAt", "")

    def run(self, pause: str | None, workdir: Path, **kwargs) -> FaultRun:
        return FaultRun(self.config, workdir, pause, **kwargs)

    # -- faults that are not signals --------------------------------------------------------

    def recreate(self) -> None:
        """What an operator's `docker compose up -d --force-recreate` does to the stack."""
        compose(self.tracker.compose_dir, "up", "--detach", "--force-recreate", "--wait",
                "--wait-timeout", "120", project=self.tracker.project)

    # -- the checks every case ends with ------------------------------------------------------

    def settle(self, timeout: float | None = None) -> None:
        """Wait until any recovery is over (no marker, no guardian) and the tracker is
        healthy; fail if that does not happen in time."""
        timeout = timeout or self.stop_timeout + GUARDIAN_GRACE + 45
        wait_until(lambda: not (self.directory / MARKER).exists()
                   and not guardians(self.config), timeout,
                   what="the window marker to go and the guardian to exit")
        wait_until(lambda: tracker_ready(self.name), 60, what=f"{self.name} healthy")

    def measure(self, watch: TrackerWatch, moment: float) -> None:
        time.sleep(0.3)  # one more sample of the settled state
        self.record["tracker_back_s"] = watch.back_after(moment)
        self.record["tracker_healthy_s"] = watch.healthy_after(moment)

    def outcome(self, run: FaultRun, code: int) -> None:
        lines = run.error_lines()
        self.record.update(exit_code=code, error_line=lines[0] if lines else None,
                           error_lines=len(lines))

    def assert_one_clear_line(self, run: FaultRun, code: int, expected: tuple[int, ...]) -> None:
        """The documented exit code, and (unless 0) exactly one error line, not an internal
        error nor a traceback."""
        assert code in expected, f"exit {code}, expected one of {expected}\n{run.output()}"
        assert "Traceback" not in run.stderr, run.output()
        if code == 0:
            assert run.error_lines() == [], run.output()
            return
        lines = run.error_lines()
        assert len(lines) == 1, f"one clear error line expected, got {lines}\n{run.output()}"
        assert "internal error" not in lines[0], f"an unhandled exception: {lines[0]}"

    def assert_older_sets_intact(self) -> None:
        now = fingerprint_sets(self.directory)
        for set_id, files in self.older.items():
            assert now.get(set_id) == files, f"older set {set_id} changed: {now.get(set_id)}"

    def assert_no_partial_set(self, allow_unfinished: bool) -> list[dict]:
        """Every listed entry is a complete set, or (after a SIGKILL) a staging directory
        marked unfinished; the listing, for more checks."""
        listing = list_sets(self.config)
        for entry in listing:
            if entry["complete"]:
                continue
            assert allow_unfinished, f"a partial set is listed: {entry}"
            assert "unfinished" in (entry.get("problem") or ""), f"not marked unfinished: {entry}"
            assert entry["artifacts"] == [] and entry["created_at"] is None, entry
        return listing

    def assert_new_sets(self, listing: list[dict], allowed: int) -> list[dict]:
        """Complete sets made by the faulted run (at most `allowed`): never marked failed
        by an interruption."""
        new = [s for s in listing if s["complete"] and s["id"] not in self.older]
        assert len(new) <= allowed, f"the faulted run left {len(new)} new sets: {new}"
        for entry in new:
            assert (entry["verification"] or {}).get("outcome") != "failed", entry
        return new

    def assert_later_backup_works(self, tmp_path: Path) -> dict:
        """The next scheduled run: exit 0, an exact set, every leftover gone, no leaks."""
        self.settle()
        startups = len(self.tracker.startup_seqs())
        newest = self.backup()
        listing = list_sets(self.config)
        assert all(s["complete"] for s in listing), f"leftovers after the next run: {listing}"
        self.assert_older_sets_intact()
        if self.tracker.driver == "sqlite3" and len(self.tracker.startup_seqs()) == startups + 1:
            database = next(a for a in newest["artifacts"] if a["name"] == "database")
            n, state = backup_state(decompress(database, tmp_path / "next.sqlite3"))
            assert n == self.tracker.startup_seqs()[-1] and state == expected_state(n)
        left = throwaway_containers(self.directory)
        assert left == [], f"throwaway containers still there after the next run: {left}"
        assert self.stack is not None
        assert_no_leaks(self.tracker, self.directory, self.config, self.stack)
        return newest


class DumpChecker:
    """A throwaway MariaDB server to import each window's dump into and read it back."""

    def __init__(self, name: str):
        from tests.integration.test_backup_mysql import FreshServer

        self.server = FreshServer(name)

    def state_of(self, dump: Path) -> tuple[int, dict]:
        connection = self.server.connect()
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS restored")
            cursor.execute("CREATE DATABASE restored")
        connection.close()
        self.server.import_dump(dump)
        connection = self.server.connect()
        try:
            return read_state(connection)
        finally:
            connection.close()

    def remove(self) -> None:
        self.server.remove()


def set_state(entry: dict, workdir: Path, checker: DumpChecker | None = None) -> tuple[int, dict]:
    """(N, tables) of a listed set's database artifact."""
    database = next(a for a in entry["artifacts"] if a["name"] == "database")
    restored = decompress(database, workdir / f"{entry['id']}.restored")
    try:
        return checker.state_of(restored) if checker else backup_state(restored)
    finally:
        restored.unlink()


def started_after(started_at: str, moment: float) -> bool:
    return parse_docker_time(started_at) > moment


@contextlib.contextmanager
def mounted(argv_mount: list[str], target: Path):
    """A mount for the duration of a test (umount, lazily if busy, afterwards)."""
    subprocess.run(argv_mount, check=True, capture_output=True)
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


SIGNALS = {signal.SIGKILL: "SIGKILL", signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT",
           signal.SIGHUP: "SIGHUP"}
