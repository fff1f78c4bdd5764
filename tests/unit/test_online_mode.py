"""[window] mode = "online": the snapshot is opened while the tracker runs (against a fake
docker CLI and real SQLite files); a rollback-journal SQLite database is refused."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pymysql
import pytest

from tests.unit.conftest import make_sqlite
from tests.unit.test_cli import _no_config_from_the_environment  # noqa: F401 -- autouse
from torrust_maint import cli
from torrust_maint.catalog import MANIFEST, list_sets, parse_rfc3339
from torrust_maint.engines import mysql as mysql_engine
from torrust_maint.engines import sqlite as sqlite_engine
from torrust_maint.errors import MaintError

PREFIX = "torrust-maint: error: "
ONLINE = '[window]\nmode = "online"\n'


def write_config(directory: Path, compose_dir: Path, backups: Path, extra: str = "") -> Path:
    path = directory / "torrust-maint.toml"
    path.write_text(f'[deployment]\ncompose_dir = "{compose_dir}"\n\n'
                    f'[state]\ndirectory = "{directory / "state"}"\n\n'
                    f'[backup]\ndirectory = "{backups}"\n\n{extra}')
    return path


def run(capsys, config: Path, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--config", str(config), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line[len(PREFIX):] for line in err.splitlines() if line.startswith(PREFIX)]


def to_wal(path: Path) -> None:
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA journal_mode=wal").fetchone() == ("wal",)
    connection.close()


def rows(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT count(*) FROM torrents").fetchone()[0]
    finally:
        connection.close()


def manifest_of(backups: Path) -> dict:
    (backup_set,) = list_sets(backups)
    return json.loads((backup_set.path / MANIFEST).read_text())


def window_calls(fake) -> list[str]:
    return [argv[1] for argv in fake.calls if argv[1] in ("stop", "start")]




# -- a WAL-mode SQLite database: nothing is stopped ---------------------------------------------

def test_online_backup_stops_nothing_and_records_the_mode(tmp_path, capsys, stack,
                                                          fake_cli_docker):
    cid = stack.add_tracker()
    to_wal(stack.db_path)
    backups = tmp_path / "backups"
    config = write_config(tmp_path, stack.compose_dir, backups, ONLINE)

    code, out, err = run(capsys, config, "backup")

    assert code == 0, err
    assert window_calls(fake_cli_docker) == []
    assert fake_cli_docker.running(cid)
    assert "tracker downtime: 0.000 s (online: no window, the tracker keeps running; " \
           "snapshot opened in " in out
    manifest = manifest_of(backups)
    assert manifest["window_mode"] == "online"
    assert manifest["downtime_seconds"] == 0.0
    assert manifest["database"]["snapshot_method"] == "wal-read"
    assert manifest["database"]["tables"] == {"torrents": 3}
    for key in ("snapshot_opened_at", "snapshot_taken_at"):  # RFC 3339, microseconds
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", manifest[key])
    opened = parse_rfc3339(manifest["snapshot_opened_at"])
    assert opened <= parse_rfc3339(manifest["snapshot_taken_at"])
    assert opened == parse_rfc3339(manifest["created_at"])
    assert not {"stop", "start", "wait_healthy"} & set(manifest["phases"])
    assert 0 <= manifest["phases"]["snapshot"] < 5
    assert manifest["verification"]["outcome"] == "passed"


def test_the_default_mode_stops_the_tracker_and_says_so(tmp_path, capsys, stack,
                                                         fake_cli_docker):
    stack.add_tracker()
    to_wal(stack.db_path)
    backups = tmp_path / "backups"
    config = write_config(tmp_path, stack.compose_dir, backups)

    code, out, err = run(capsys, config, "backup")

    assert code == 0, err
    assert window_calls(fake_cli_docker) == ["stop", "start"]
    manifest = manifest_of(backups)
    assert manifest["window_mode"] == "stop"
    assert manifest["downtime_seconds"] > 0
    assert "online" not in out


@pytest.mark.parametrize("mode", ["online", "stop"])
def test_online_never_copies_the_files_of_a_live_database(tmp_path, capsys, stack,
                                                          fake_cli_docker, monkeypatch, mode):
    """A reflink or copy of a WAL database being written is torn: online takes only the read
    transaction, even where a reflink would work (here: every copy fails the run)."""
    stack.add_tracker()
    to_wal(stack.db_path)
    backups = tmp_path / "backups"
    extra = f'[window]\nmode = "{mode}"\n'
    config = write_config(tmp_path, stack.compose_dir, backups, extra)

    def no_copy(*args, **kwargs):
        raise MaintError("a copy of the live files was taken")

    monkeypatch.setattr(sqlite_engine, "snapshot", no_copy)

    code, _, err = run(capsys, config, "backup")

    if mode == "online":
        assert code == 0, err
        assert manifest_of(backups)["database"]["snapshot_method"] == "wal-read"
    else:  # the control: the window tries a reflink first
        assert code == 1
        assert "a copy of the live files was taken" in err


def test_the_online_snapshot_holds_what_was_committed_when_it_opened(tmp_path):
    db = tmp_path / "lib/sqlite3.db"
    make_sqlite(db, rows=3)
    to_wal(db)
    staging = tmp_path / "staging"
    staging.mkdir()
    database = type("Db", (), {"host_path": db})()
    prepared = sqlite_engine.prepare(None, database, staging, timeout=2, online=True)
    snapshot = prepared.open()
    try:
        assert isinstance(snapshot, sqlite_engine.LiveWalSnapshot)
        writer = sqlite3.connect(db, isolation_level=None, timeout=0.5)  # the tracker writes on
        writer.executemany("INSERT INTO torrents (info_hash) VALUES (?)",
                           [(f"new-{n}",) for n in range(10)])
        writer.close()
        with open(tmp_path / "export.sqlite3", "wb") as sink:
            snapshot.export_to(sink)
    finally:
        snapshot.close()
    assert rows(tmp_path / "export.sqlite3") == 3
    assert rows(db) == 13


def test_the_busy_timeout_of_the_online_snapshot_is_snapshot_timeout(tmp_path):
    db = tmp_path / "lib/sqlite3.db"
    make_sqlite(db)
    to_wal(db)
    database = type("Db", (), {"host_path": db})()
    prepared = sqlite_engine.prepare(None, database, tmp_path, timeout=0.2, online=True)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")  # holds every lock, WAL or not
    try:
        started = time.monotonic()
        with pytest.raises(MaintError, match="cannot open the SQLite database .*locked"):
            prepared.open()
        assert time.monotonic() - started < 5
    finally:
        blocker.close()


def test_a_database_swapped_while_sqlite_opens_it_is_refused(tmp_path, monkeypatch):
    """The tracker runs meanwhile and can write the directory: had a swapped directory led
    SQLite (as root) to another file, the file it holds is not the one checked."""
    db, elsewhere = tmp_path / "lib/sqlite3.db", tmp_path / "elsewhere/sqlite3.db"
    for path in (db, elsewhere):
        make_sqlite(path)
        to_wal(path)
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite_engine.sqlite3, "connect",
                        lambda *args, **kwargs: real_connect(elsewhere, **kwargs))

    with pytest.raises(MaintError, match=f"^{db} changed while SQLite opened it"):
        sqlite_engine.open_live_snapshot(db, tmp_path)


def test_a_database_gone_before_sqlite_opens_it_is_never_created(tmp_path, monkeypatch):
    db = tmp_path / "lib/sqlite3.db"
    make_sqlite(db)
    to_wal(db)
    checked = sqlite_engine.check_live_files(db)
    db.unlink()
    monkeypatch.setattr(sqlite_engine, "check_live_files", lambda path: checked)

    with pytest.raises(MaintError, match=f"^cannot open the SQLite database {db}: "):
        sqlite_engine.open_live_snapshot(db, tmp_path)
    assert not db.exists()


# -- a rollback-journal SQLite database: refused before anything happens ----------------------

def test_online_refusal_names_the_mode_and_the_ways_out(tmp_path):
    db = tmp_path / "sqlite3.db"
    make_sqlite(db)
    refusal = sqlite_engine.online_refusal(db)
    assert refusal is not None
    assert refusal.startswith(f'[window] mode = "online": the SQLite database {db} is in '
                              "rollback-journal mode")
    assert "blocks the tracker's commits for the whole export" in refusal
    assert "`torrust-maint sqlite-wal --yes`" in refusal and 'mode = "stop"' in refusal
    to_wal(db)
    assert sqlite_engine.online_refusal(db) is None
    assert sqlite_engine.online_refusal(tmp_path / "missing.db") is None
    (tmp_path / "text").write_text("not a database")
    assert sqlite_engine.online_refusal(tmp_path / "text") is None


def test_check_refuses_online_mode_on_a_rollback_journal_database(tmp_path, capsys, stack,
                                                                  fake_cli_docker):
    stack.add_tracker()
    config = write_config(tmp_path, stack.compose_dir, tmp_path / "backups", ONLINE)

    code, out, err = run(capsys, config, "check")

    assert code == 2
    [problem] = [line for line in error_lines(err) if "[window] mode" in line]
    assert "rollback-journal mode" in problem and "torrust-maint sqlite-wal --yes" in problem
    assert 'window: mode "online"' in out
    assert "check: ok" not in out


def test_check_accepts_online_mode_on_a_wal_database(tmp_path, capsys, stack, fake_cli_docker):
    stack.add_tracker()
    to_wal(stack.db_path)
    config = write_config(tmp_path, stack.compose_dir, tmp_path / "backups", ONLINE)

    code, out, err = run(capsys, config, "check")

    assert code == 0, err
    assert 'window: mode "online" (no window, the tracker keeps running' in out
    assert "not what it keeps only in memory" in out


@pytest.mark.parametrize("dry_run", [False, True])
def test_backup_refuses_online_mode_on_a_rollback_journal_database(tmp_path, capsys, stack,
                                                                   fake_cli_docker, dry_run):
    cid = stack.add_tracker()
    before = {p.name: p.read_bytes() for p in stack.db_path.parent.iterdir()}
    backups = tmp_path / "backups"
    config = write_config(tmp_path, stack.compose_dir, backups, ONLINE)

    code, out, err = run(capsys, config, "backup", *(["--dry-run"] if dry_run else []))

    assert code == 2
    [problem] = error_lines(err)
    assert problem.startswith('[window] mode = "online": the SQLite database ')
    assert "torrust-maint sqlite-wal --yes" in problem and problem.endswith("nothing was done")
    assert window_calls(fake_cli_docker) == []
    assert fake_cli_docker.running(cid)
    assert {p.name: p.read_bytes() for p in stack.db_path.parent.iterdir()} == before
    if backups.exists():  # the run lock lives there; nothing else was written
        assert [p.name for p in backups.iterdir()] == [".torrust-maint.lock"]
    assert "would" not in out


# -- --dry-run ---------------------------------------------------------------------------------

def test_dry_run_in_online_mode_plans_no_window(tmp_path, capsys, stack, fake_cli_docker):
    stack.add_tracker()
    to_wal(stack.db_path)
    config = write_config(tmp_path, stack.compose_dir, tmp_path / "backups", ONLINE)

    code, out, err = run(capsys, config, "backup", "--dry-run")

    assert code == 0, err
    lines = out.splitlines()
    assert "online: no window, the tracker keeps running: nothing is stopped or started" in lines
    assert (f"would open a read transaction on the live WAL-mode database {stack.db_path} "
            "(never a copy of its files): at most 15 s ([deployment] snapshot_timeout)") in lines
    assert not [line for line in lines if "docker stop" in line or "docker start" in line]
    assert window_calls(fake_cli_docker) == []


# -- MySQL: the tracker's writes held while both read views open -------------------------------

class LockConnection:
    """A lock connection: LOCK TABLES answers from `answers` (an exception or None), in turn."""

    def __init__(self, log: list[str], table: str, answers: list | None = None):
        self.log, self.table, self.answers = log, table, list(answers or [])
        self._read_timeout: float | None = 30
        self._write_timeout: float | None = 30

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql: str, params=None) -> None:
        self.log.append(f"{self.table}: {sql}")
        if sql.startswith("LOCK TABLES") and self.answers:
            answer = self.answers.pop(0)
            if answer is not None:
                raise answer

    def close(self) -> None:
        self.log.append(f"{self.table}: closed")


def wait_timeout() -> pymysql.err.OperationalError:
    return pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")


def test_writes_are_held_one_table_per_connection():
    log: list[str] = []
    connections = {t: LockConnection(log, t) for t in ("keys", "torrents")}

    mysql_engine.hold_writes(connections, time.monotonic() + 10)

    assert log == ["keys: LOCK TABLES `keys` READ", "torrents: LOCK TABLES `torrents` READ"]
    mysql_engine.release_writes(connections)
    assert log[2:] == ["keys: UNLOCK TABLES", "torrents: UNLOCK TABLES"]


def test_a_lock_wait_timeout_releases_every_table_and_tries_again():
    """A writer holding `torrents` and waiting for `keys` (which we hold): released so that
    it goes on, then tried again."""
    log: list[str] = []
    connections = {"keys": LockConnection(log, "keys"),
                   "torrents": LockConnection(log, "torrents", [wait_timeout()])}

    mysql_engine.hold_writes(connections, time.monotonic() + 10)

    assert log == ["keys: LOCK TABLES `keys` READ", "torrents: LOCK TABLES `torrents` READ",
                   "keys: UNLOCK TABLES", "torrents: UNLOCK TABLES",
                   "keys: LOCK TABLES `keys` READ", "torrents: LOCK TABLES `torrents` READ"]


def test_lock_waits_end_at_the_deadline():
    log: list[str] = []
    connections = {"torrents": LockConnection(log, "torrents", [wait_timeout()] * 3)}

    with pytest.raises(pymysql.err.OperationalError):
        mysql_engine.hold_writes(connections, time.monotonic() - 1)

    assert log == ["torrents: LOCK TABLES `torrents` READ", "torrents: UNLOCK TABLES"]


def test_a_missing_lock_privilege_names_the_setting_and_the_grant():
    from tests.unit.test_mysql_engine import database

    denied = pymysql.err.OperationalError(
        1142, "LOCK TABLES command denied to user 'db_user'@'172.20.0.1' for table 'torrents'")
    message = mysql_engine.lock_problem(database(), denied)
    assert message.startswith('[window] mode = "online" holds the tracker\'s writes with '
                              "LOCK TABLES ... READ")
    assert "grant it LOCK TABLES on `torrust_tracker`" in message
    assert 'or set [window] mode = "stop"' in message
    assert "Pw-S3cret" not in message
