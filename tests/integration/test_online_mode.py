"""[window] mode = "online" on a real Docker engine: under the stand-in's continuous writes a
backup never stops or restarts the tracker, and its set holds exactly the transactions
committed before the snapshot's instant (bracketed by a poller of the live database), for
SQLite in WAL mode, MySQL/MariaDB and PostgreSQL. A rollback-journal SQLite is refused."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.conftest import (
    REPO,
    backup_state,
    decompress,
    list_sets,
    run_cli,
    write_config,
)
from tests.integration.test_backup_mysql import FreshServer as FreshMysql
from tests.integration.test_backup_postgresql import FreshServer as FreshPostgres
from torrust_maint.catalog import parse_rfc3339

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import METRIC, expected_state, read_state  # noqa: E402

ONLINE = '[window]\nmode = "online"\n'
POLL_SECONDS = 0.002
N_QUERY = f"SELECT value FROM torrent_aggregate_metrics WHERE metric_name = '{METRIC}'"


@dataclass
class LivePoller:
    """Reads the live N every few ms in a thread: (wall clock before, after, N) each time."""

    connect: object
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _poll(self) -> None:
        connection = self.connect()
        try:
            while not self._stop.is_set():
                before = time.time()
                cursor = connection.cursor()
                cursor.execute(N_QUERY)
                row = cursor.fetchone()
                self.samples.append((before, time.time(), int(row[0]) if row else 0))
                time.sleep(POLL_SECONDS)
        finally:
            connection.close()

    def __enter__(self) -> LivePoller:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        while not self.samples and self._thread.is_alive():
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def bracket(self, opened_at: float, taken_at: float) -> tuple[int, int]:
        """(the last N read entirely before the snapshot began to open, the first N read
        entirely after it was open): the backup's N must lie between."""
        before = [n for _, after, n in self.samples if after <= opened_at]
        after = [n for start, _, n in self.samples if start >= taken_at]
        assert before and after, "the poller must have read N before and after the snapshot"
        return max(before), min(after)


def sqlite_reader(tracker):
    """A reader of the live WAL database on the host (each SELECT sees the newest commit)."""
    return lambda: sqlite3.connect(f"file:{tracker.db_host_path}?mode=ro", uri=True,
                                   isolation_level=None, timeout=5)


def tracker_identity(tracker) -> tuple:
    """What changes if the tracker is stopped, restarted or recreated."""
    state = tracker.state()
    return state["StartedAt"], state.get("Pid"), tracker.startup_seqs()


def manifest_of(entry: dict) -> dict:
    return json.loads((Path(entry["path"]) / "manifest.json").read_text())


def online_backup(tracker, record_property) -> tuple[dict, dict, LivePoller]:
    """One online backup under the stand-in's writes, with the live N polled throughout:
    (list entry, manifest, poller). The tracker must never have been stopped."""
    tracker.wait_for_writes(300)
    config = write_config(tracker, extra=ONLINE)
    identity = tracker_identity(tracker)
    connect = tracker.mysql_connect if tracker.driver == "mysql" else \
        tracker.postgres_connect if tracker.driver == "postgresql" else sqlite_reader(tracker)

    with LivePoller(connect) as poller:
        done = run_cli(config, "backup")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "online: no window, the tracker keeps running" in done.stdout
    assert tracker_identity(tracker) == identity, "the tracker must never stop or restart"
    assert "standin: stopped seq=" not in tracker.logs()
    [entry] = list_sets(config)
    manifest = manifest_of(entry)
    assert manifest["window_mode"] == "online"
    assert manifest["downtime_seconds"] == 0.0
    assert not {"stop", "start", "wait_healthy"} & set(manifest["phases"])
    assert entry["verification"]["outcome"] == "passed"
    verified = run_cli(config, "verify", entry["id"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    record_property("snapshot_open_seconds", manifest["phases"]["snapshot"])
    return entry, manifest, poller


def assert_exactly_the_committed_prefix(n: int, state: dict, manifest: dict,
                                        poller: LivePoller, record_property) -> None:
    """The set holds transactions 1..n, nothing torn, and n is what was committed at the
    snapshot's instant: between the live N read just before and just after it opened."""
    assert n >= 300
    assert state == expected_state(n)
    assert manifest["database"]["tables"]["torrents"] == len(state["torrents"])
    opened = parse_rfc3339(manifest["snapshot_opened_at"]).timestamp()
    taken = parse_rfc3339(manifest["snapshot_taken_at"]).timestamp()
    low, high = poller.bracket(opened, taken)
    record_property("bracket", f"{low} <= {n} <= {high}")
    assert low <= n <= high
    # Not vacuous: the stand-in commits every ~5 ms, so the bracket is as wide as the time
    # the snapshot took to open (plus a poll on either side), never the whole run.
    assert high - low <= 50 + 400 * (taken - opened), (low, high, taken - opened)


# -- SQLite (WAL) -----------------------------------------------------------------------------

def test_sqlite_wal_online_backup_holds_the_prefix_committed_at_its_snapshot(
        make_stack, tmp_path, record_property):
    tracker = make_stack(journal_mode="wal")

    entry, manifest, poller = online_backup(tracker, record_property)

    assert manifest["database"]["snapshot_method"] == "wal-read"
    assert manifest["database"]["snapshot_reader"] == "pages"
    database = next(a for a in entry["artifacts"] if a["name"] == "database")
    n, state = backup_state(decompress(database, tmp_path / "restored.sqlite3"))
    assert_exactly_the_committed_prefix(n, state, manifest, poller, record_property)
    tracker.wait_for_writes(n + 100)  # it carries on writing


# -- MySQL / MariaDB --------------------------------------------------------------------------

def test_mysql_online_backup_holds_the_prefix_committed_at_its_snapshot(
        make_stack, tmp_path, record_property):
    fresh = FreshMysql(f"tm-it-online-fresh-{os.getpid()}")
    try:
        tracker = make_stack(driver="mysql")
        config = write_config(tracker, extra=ONLINE)
        plan = run_cli(config, "backup", "--dry-run")
        assert plan.returncode == 0, plan.stderr
        assert "LOCK TABLES <table> READ" in plan.stdout and "docker stop" not in plan.stdout

        entry, manifest, poller = online_backup(tracker, record_property)

        held = manifest["database"]["writes_held_seconds"]
        record_property("writes_held_seconds", held)
        assert 0 < held <= manifest["phases"]["snapshot"]
        dump = decompress(next(a for a in entry["artifacts"] if a["name"] == "database"),
                          tmp_path / "dump.sql")
        fresh.import_dump(dump)
        connection = fresh.connect()
        try:
            n, state = read_state(connection)
        finally:
            connection.close()
        assert_exactly_the_committed_prefix(n, state, manifest, poller, record_property)
        assert manifest["database"]["tables"]["torrent_aggregate_metrics"] == 1
    finally:
        fresh.remove()


# -- PostgreSQL -------------------------------------------------------------------------------

def test_postgresql_online_backup_holds_the_prefix_committed_at_its_snapshot(
        make_stack, tmp_path, record_property):
    fresh = FreshPostgres(f"tm-it-online-pgfresh-{os.getpid()}", 17)
    try:
        tracker = make_stack(driver="postgresql", postgres_version=17)

        entry, manifest, poller = online_backup(tracker, record_property)

        dump = decompress(next(a for a in entry["artifacts"] if a["name"] == "database"),
                          tmp_path / "dump.sql")
        fresh.load(dump)
        connection = fresh.connect()
        try:
            n, state = read_state(connection, "postgresql")
        finally:
            connection.close()
        assert_exactly_the_committed_prefix(n, state, manifest, poller, record_property)
        assert manifest["database"]["tables"]["torrents"] == n
    finally:
        fresh.remove()


# -- SQLite in rollback-journal mode: refused -----------------------------------------------

def test_a_rollback_journal_database_is_refused_and_the_tracker_left_alone(make_stack):
    tracker = make_stack()  # the stand-in's default: journal_mode=delete
    tracker.wait_for_writes(50)
    config = write_config(tracker, extra=ONLINE)
    identity = tracker_identity(tracker)

    checked = run_cli(config, "check")
    backed_up = run_cli(config, "backup")

    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "[window] mode" in checked.stderr and "torrust-maint sqlite-wal" in checked.stderr
    assert backed_up.returncode == 2, backed_up.stdout + backed_up.stderr
    assert "[window] mode" in backed_up.stderr
    assert "torrust-maint sqlite-wal --yes" in backed_up.stderr
    assert "nothing was done" in backed_up.stderr
    assert list_sets(config) == []
    assert [p.name for p in (tracker.compose_dir / "storage/backup").iterdir()] == \
        [".torrust-maint.lock"]
    assert tracker_identity(tracker) == identity
    assert not Path(f"{tracker.db_host_path}-wal").exists()


def test_check_and_backup_name_a_missing_lock_tables_privilege(make_stack):
    tracker = make_stack(driver="mysql")
    config = write_config(tracker, extra=ONLINE)
    granted = run_cli(config, "check")
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert "window: MySQL user 'db_user' has the LOCK TABLES privilege: ok" in granted.stdout

    root = tracker.mysql_connect()
    try:
        with root.cursor() as cursor:
            cursor.execute("REVOKE LOCK TABLES ON torrust_tracker.* FROM 'db_user'@'%'")
    finally:
        root.close()
    identity = tracker_identity(tracker)
    checked = run_cli(config, "check")
    backed_up = run_cli(config, "backup")

    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "MySQL user 'db_user' has no LOCK TABLES privilege on `torrust_tracker`" in \
        checked.stderr
    assert "[window] mode = \"stop\"" in checked.stderr
    assert backed_up.returncode != 0
    assert "may not" in backed_up.stderr and "grant it LOCK TABLES" in backed_up.stderr
    assert "the tracker was not stopped, no set was written" in backed_up.stderr
    assert list_sets(config) == []
    assert tracker_identity(tracker) == identity
