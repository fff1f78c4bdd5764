"""sqlite-wal: what `check` says about an SQLite database's window, and the switch to WAL
(refusals, --dry-run, the switch inside a safety backup's window), with the fake docker."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import sys
import urllib.parse
from pathlib import Path

import pytest

from torrust_maint import safefs
from torrust_maint.actions import check, sqlite_wal
from torrust_maint.catalog import list_sets
from torrust_maint.config import BackupConfig, Config, RetryConfig, StateConfig
from torrust_maint.deployment import Deployment, MysqlDatabase, SqliteDatabase
from torrust_maint.disk_speed import O_DIRECT, ReadSpeed
from torrust_maint.docker import Container, Docker
from torrust_maint.engines import sqlite as sqlite_engine
from torrust_maint.errors import ConfigError, MaintError, SkippedError

OWNER = (1000, 1001)


def config_for(stack, tmp_path: Path) -> Config:
    return Config(path=tmp_path / "torrust-maint.toml", deployment=stack.settings(),
                  backup=BackupConfig(directory=tmp_path / "backups", compression="gzip"),
                  retry=RetryConfig(attempts=1, delay=0, max_delay=0),
                  state=StateConfig(directory=tmp_path / "state"))


def header_mode(path: Path) -> bytes:
    """Bytes 18-19 of the database header: 01 01 rollback journal, 02 02 WAL."""
    return path.read_bytes()[18:20]


def rows(path: Path) -> int:
    connection = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?immutable=1", uri=True)
    try:
        return connection.execute("SELECT count(*) FROM torrents").fetchone()[0]
    finally:
        connection.close()


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    info = os.stat(path, follow_symlinks=False)
    return info.st_uid, info.st_gid, info.st_mode & 0o777


def database_of(path: Path) -> SqliteDatabase:
    return SqliteDatabase(container_path="/var/lib/torrust/tracker/database/sqlite3.db",
                          host_path=path)


def speed_giving(seconds: float, size: int) -> ReadSpeed:
    """A measurement whose speed makes `size` bytes take `seconds` to copy."""
    return ReadSpeed(file_size=size, bytes_read=size, reads=1, seconds=seconds, method=O_DIRECT)


def must_not_measure(path: Path) -> ReadSpeed:
    raise AssertionError("a WAL database needs no measurement")


def not_a_terminal(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def to_wal(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    assert connection.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    connection.close()


@pytest.fixture
def running(stack):
    """The stack's tracker, running; its id."""
    return stack.add_tracker()


@pytest.fixture
def lines() -> list[str]:
    return []


def assert_untouched(stack, fake_docker, tmp_path: Path) -> None:
    """Still in rollback-journal mode, never stopped, no set written."""
    assert header_mode(stack.db_path) == b"\x01\x01"
    assert fake_docker.calls_to("stop") == [] and fake_docker.calls_to("start") == []
    assert not (tmp_path / "backups").exists() or list_sets(tmp_path / "backups") == []


# -- what check reports ---------------------------------------------------------------------

def test_a_wal_database_holds_no_copy_in_the_window_and_is_not_measured(stack):
    to_wal(stack.db_path)

    report = sqlite_wal.window_report(database_of(stack.db_path), must_not_measure)

    assert report == ["sqlite journal mode: WAL: a backup's window holds no copy (stop, a read "
                      "transaction, start), whatever the database's size"]


def test_a_rollback_database_under_the_threshold_gets_an_estimate_and_no_warning(stack):
    size = stack.db_path.stat().st_size

    report = sqlite_wal.window_report(database_of(stack.db_path),
                                      lambda path: speed_giving(4.9, size))

    assert report[0].startswith("sqlite journal mode: rollback journal: a backup's window "
                                "copies the database file")
    assert report[1].startswith("sqlite read speed: ")
    assert report[2] == (f"sqlite window copy: expected in-window copy time at least 4.9 s for "
                         f"{size} bytes (the read alone; the copy also writes it; WAL recommended "
                         "above 5 s)")
    assert len(report) == 3


def test_a_rollback_database_over_the_threshold_gets_a_warning_naming_the_command(stack):
    size = stack.db_path.stat().st_size

    report = sqlite_wal.window_report(database_of(stack.db_path),
                                      lambda path: speed_giving(5.1, size))

    assert sqlite_wal.THRESHOLD_SECONDS == 5.0
    assert "at least 5.1 s" in report[2]
    assert report[3].startswith("warning: every backup stops the tracker for at least 5.1 s "
                                f"to copy the {size} bytes rollback-journal database")
    assert "`torrust-maint sqlite-wal`" in report[3]


def test_the_estimate_counts_a_side_file_the_window_copies_too(stack):
    size = stack.db_path.stat().st_size
    Path(f"{stack.db_path}-journal").write_bytes(b"\0" * size)  # cold: no magic

    report = sqlite_wal.window_report(database_of(stack.db_path),
                                      lambda path: speed_giving(3.0, size))

    assert "at least 6.0 s" in report[2] and report[3].startswith("warning:")


def test_the_real_measurement_reads_the_database_file(stack):
    report = sqlite_wal.window_report(database_of(stack.db_path))

    assert report[1].startswith("sqlite read speed: ")
    assert "read the whole file in 1 read" in report[1]
    assert "page cache bypassed with" in report[1]
    assert report[2].startswith("sqlite window copy: expected in-window copy time at least ")


def test_a_failed_measurement_is_a_note_not_an_error(stack):
    def unreadable(path: Path) -> ReadSpeed:
        raise PermissionError(13, "Permission denied", str(path))

    report = sqlite_wal.window_report(database_of(stack.db_path), unreadable)

    assert report[1] == (f"sqlite read speed: not measured (Permission denied ({stack.db_path}))"
                         ": no estimate of the window's copy time")


@pytest.mark.parametrize("make, expected", [
    (lambda path: path.symlink_to(path.with_name("elsewhere")), "is a symbolic link"),
    (lambda path: path.write_bytes(b"not a database at all, not at all"),
     "not an SQLite database"),
])
def test_an_unsafe_or_foreign_file_is_a_warning(tmp_path, make, expected):
    path = tmp_path / "sqlite3.db"
    make(path)

    [line] = sqlite_wal.window_report(database_of(path), must_not_measure)

    assert line.startswith("warning: sqlite journal mode: not read: ") and expected in line


def test_a_missing_or_empty_file_is_said_so(tmp_path):
    path = tmp_path / "sqlite3.db"
    assert sqlite_wal.window_report(database_of(path), must_not_measure) == [
        f"sqlite journal mode: {path} does not exist yet (the tracker creates it)"]
    path.touch()
    assert sqlite_wal.window_report(database_of(path), must_not_measure) == [
        f"sqlite journal mode: none yet: {path} is empty"]


def test_check_prints_the_report_lines(stack, lines):
    check.check_sqlite_journal(database_of(stack.db_path), lines.append)

    assert lines[0].startswith("sqlite journal mode: rollback journal")
    assert lines[2].startswith("sqlite window copy: ")


# -- refusals ---------------------------------------------------------------------------------

def test_a_server_database_is_refused_naming_its_driver(tmp_path):
    server = Container(id="b" * 64, name="compose-mysql-1", service="mysql", project="compose",
                       working_dir=str(tmp_path), running=True, status="running", health=None)
    database = MysqlDatabase(container=server, host="10.0.0.2", port=3306,
                             database="torrust_tracker", user="db_user", password="secret")
    deployment = Deployment(compose_dir=tmp_path, env={}, trackers=(), database=database)

    with pytest.raises(ConfigError, match="database driver is mysql") as raised:
        sqlite_wal.sqlite_database(deployment)
    assert raised.value.exit_code == 2 and "secret" not in str(raised.value)


def test_a_wal_database_is_left_alone_with_exit_0(stack, running, fake_docker, docker, tmp_path,
                                                  lines):
    to_wal(stack.db_path)

    assert sqlite_wal.run(config_for(stack, tmp_path), docker, assume_yes=True,
                          echo=lines.append) == 0

    assert lines == [f"{stack.db_path} is already in WAL mode: nothing to do"]
    assert fake_docker.calls_to("stop") == [] and not (tmp_path / "backups").exists()


def test_without_yes_off_a_terminal_it_refuses(stack, running, fake_docker, docker, tmp_path,
                                               monkeypatch):
    not_a_terminal(monkeypatch)

    with pytest.raises(ConfigError, match="pass --yes"):
        sqlite_wal.run(config_for(stack, tmp_path), docker, ask=pytest.fail)

    assert_untouched(stack, fake_docker, tmp_path)


@pytest.mark.parametrize("answer", ["", "n", "no", "yess"])
def test_anything_but_yes_on_a_terminal_cancels(stack, running, fake_docker, docker, tmp_path,
                                                monkeypatch, answer):
    monkeypatch.setattr(sys, "stdin", Terminal())
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return answer

    with pytest.raises(MaintError, match="cancelled; nothing was changed"):
        sqlite_wal.run(config_for(stack, tmp_path), docker, ask=ask)

    assert len(asked) == 1 and str(stack.db_path) in asked[0] and "WAL" in asked[0]
    assert_untouched(stack, fake_docker, tmp_path)


def test_a_directory_sqlite_cannot_write_is_refused(stack, running, fake_docker, docker,
                                                    tmp_path, monkeypatch):
    directory = str(stack.db_path.parent)
    real_access = os.access
    # root may write anywhere but on a read-only file system: the one way this fails for root
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: (
        str(path) != directory and real_access(path, mode, **kwargs)))

    with pytest.raises(MaintError, match=f"directory {directory} is not writable") as raised:
        sqlite_wal.run(config_for(stack, tmp_path), docker, assume_yes=True)

    assert "-wal and -shm" in str(raised.value) and "nothing was done" in str(raised.value)
    assert_untouched(stack, fake_docker, tmp_path)


def test_a_stopped_tracker_is_refused_with_exit_3(stack, fake_docker, docker, tmp_path):
    stack.add_tracker(running=False)

    with pytest.raises(SkippedError, match="the tracker is not running") as raised:
        sqlite_wal.run(config_for(stack, tmp_path), docker, assume_yes=True)

    assert raised.value.exit_code == 3
    assert_untouched(stack, fake_docker, tmp_path)


def test_a_symlink_at_the_database_path_is_refused(stack, running, docker, tmp_path):
    real = stack.db_path.with_name("real.db")
    stack.db_path.rename(real)
    stack.db_path.symlink_to(real)

    with pytest.raises(MaintError, match="is a symbolic link"):  # discovery refuses it
        sqlite_wal.run(config_for(stack, tmp_path), docker, assume_yes=True)
    # planted after discovery: the window's own lstat refuses it
    with pytest.raises(safefs.UnsafePath, match="symbolic link"):
        sqlite_wal.switch_to_wal(stack.db_path, {})

    assert header_mode(real) == b"\x01\x01"


# -- --dry-run --------------------------------------------------------------------------------

def test_dry_run_prints_each_step_and_changes_nothing(stack, running, fake_docker, tmp_path,
                                                      lines):
    docker = Docker(runner=fake_docker, dry_run=True, echo=lines.append)
    os.chown(stack.db_path, *OWNER)
    os.chmod(stack.db_path, 0o640)

    assert sqlite_wal.run(config_for(stack, tmp_path), docker, dry_run=True,
                          echo=lines.append) == 0

    text = "\n".join(lines)
    assert lines[0] == "dry run: nothing will be changed"
    for step in ("would lock", "take a safety set", f"would run: docker stop -t 10 {running}",
                 f"would copy {stack.db_path} into the safety set", "PRAGMA journal_mode=WAL",
                 "-wal/-shm get owner 1000:1001 and mode 0640",
                 f"would run: docker start {running}", "commit and verify it",
                 "sqlite window copy: expected in-window copy time at least",
                 "the switch itself rewrites two header bytes"):
        assert step in text, step
    assert text.index("docker stop") < text.index("PRAGMA journal_mode=WAL") < text.index(
        "docker start")
    assert_untouched(stack, fake_docker, tmp_path)


# -- the switch -------------------------------------------------------------------------------

def test_the_switch_runs_in_the_safety_sets_window_and_keeps_the_owner(
        stack, running, fake_docker, docker, tmp_path, monkeypatch, lines, caplog):
    caplog.set_level(logging.INFO)
    os.chown(stack.db_path, *OWNER)
    os.chmod(stack.db_path, 0o640)
    seen: dict[str, object] = {}
    real_switch, real_give = sqlite_wal.switch_to_wal, sqlite_engine.give_side_files_to_owner

    def switch(path: Path, timings: dict) -> None:
        seen["tracker running during the switch"] = fake_docker.running(running)
        [staged] = list_sets(tmp_path / "backups")  # unfinished: committed after the window
        seen["copy during the switch"] = header_mode(staged.path / "snapshot/database.sqlite3")
        real_switch(path, timings)

    def give(path: Path, info: os.stat_result) -> None:
        real_give(path, info)
        if "side files" not in seen:  # the first call: inside the switch, the files open
            seen["side files"] = {suffix: owner_and_mode(Path(f"{path}{suffix}"))
                                  for suffix in ("-wal", "-shm")}

    monkeypatch.setattr(sqlite_wal, "switch_to_wal", switch)
    monkeypatch.setattr(sqlite_engine, "give_side_files_to_owner", give)

    assert sqlite_wal.run(config_for(stack, tmp_path), docker, assume_yes=True,
                          echo=lines.append) == 0

    assert seen["tracker running during the switch"] is False
    assert seen["copy during the switch"] == b"\x01\x01"  # copied before the switch
    assert seen["side files"] == {"-wal": (*OWNER, 0o640), "-shm": (*OWNER, 0o640)}
    assert header_mode(stack.db_path) == b"\x02\x02"
    assert owner_and_mode(stack.db_path) == (*OWNER, 0o640)
    leftovers = sorted(p.name for p in stack.db_path.parent.iterdir())
    assert leftovers == ["sqlite3.db"]  # the last close removed -wal and -shm
    assert len(fake_docker.calls_to("stop")) == 1 and len(fake_docker.calls_to("start")) == 1
    assert fake_docker.running(running)
    [safety] = list_sets(tmp_path / "backups")
    assert safety.manifest["reason"] == sqlite_wal.REASON
    assert safety.manifest["database"]["journal_mode"] == "delete"  # the state from before
    assert safety.verification == "passed"
    assert lines[-1].startswith(f"switched {stack.db_path} to WAL mode inside the window of "
                                f"safety set {safety.id} (journal_mode=WAL ")
    assert rows(stack.db_path) == 3
    [switched] = [r for r in caplog.records
                  if getattr(r, "TORRUST_EVENT", None) == "switched_to_wal"]
    assert (switched.MESSAGE_ID, switched.BACKUP_ID, switched.DATABASE_PATH) == \
        ("b1eff495dcea47b1bb92faf478923f7e", safety.id, str(stack.db_path))
    assert 0 <= switched.SWITCH_SEC < 5


def test_a_second_run_says_it_is_done(stack, running, docker, tmp_path, lines):
    config = config_for(stack, tmp_path)
    sqlite_wal.run(config, docker, assume_yes=True, echo=lines.append)

    assert sqlite_wal.run(config, docker, assume_yes=True, echo=lines.append) == 0

    assert lines[-1] == f"{stack.db_path} is already in WAL mode: nothing to do"
    assert len(list_sets(tmp_path / "backups")) == 1


def test_a_locked_database_is_left_unchanged_and_the_safety_set_kept(
        stack, running, fake_docker, docker, tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_wal, "BUSY_TIMEOUT", 0.1)
    holder = sqlite3.connect(stack.db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # some other process on the host holds it
    try:
        with pytest.raises(MaintError) as raised:
            sqlite_wal.run(config_for(stack, tmp_path), docker, assume_yes=True)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    [safety] = list_sets(tmp_path / "backups")
    message = str(raised.value)
    assert "database is locked" in message
    assert "the database is unchanged (rollback journal)" in message
    assert f"the state from before is in set {safety.id}" in message
    assert header_mode(stack.db_path) == b"\x01\x01"
    assert fake_docker.running(running)


def test_a_path_with_uri_characters_is_switched_as_it_is(tmp_path):
    from tests.unit.conftest import make_sqlite

    path = tmp_path / "odd ?#% dir" / "sqlite3.db"
    make_sqlite(path)
    timings: dict[str, float] = {}

    sqlite_wal.switch_to_wal(path, timings)

    assert header_mode(path) == b"\x02\x02" and rows(path) == 3
    assert set(timings) == {"journal_mode"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["sqlite3.db"]


def test_a_database_gone_before_the_window_is_not_created(tmp_path):
    path = tmp_path / "sqlite3.db"

    with pytest.raises(MaintError, match="disappeared"):
        sqlite_wal.switch_to_wal(path, {})

    assert list(tmp_path.iterdir()) == []
