"""engines/sqlite: a file-level snapshot (db + -wal/-journal) exported as one checked file."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from torrust_maint.engines import sqlite as engine
from torrust_maint.errors import MaintError

COMMITTED_ROWS = 250


def count_rows(path: Path, table: str = "torrents") -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        connection.close()


def main_file_only_view(db: Path, scratch: Path) -> object:
    """What a naive copy of the main file alone holds: a row count, or the error."""
    scratch.mkdir()
    shutil.copyfile(db, scratch / "alone.db")
    try:
        return count_rows(scratch / "alone.db")
    except sqlite3.DatabaseError as error:
        return str(error)


def write_wal_database(db: Path) -> sqlite3.Connection:
    """Committed rows that live only in the -wal file; the writer stays open."""
    connection = sqlite3.connect(db, isolation_level=None)
    assert connection.execute("PRAGMA journal_mode=wal").fetchone() == ("wal",)
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash BLOB)")
    connection.execute("CREATE TABLE keys (key TEXT)")
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO torrents (info_hash) VALUES (?)",
                           [(os.urandom(20),) for _ in range(COMMITTED_ROWS)])
    connection.execute("INSERT INTO keys VALUES ('k1')")
    connection.execute("COMMIT")
    return connection


def in_child(work) -> None:
    """Run work() in a forked child that dies without closing anything."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def staging(tmp_path) -> Path:
    path = tmp_path / "staging"
    path.mkdir()
    return path


def assert_exported(snapshot: engine.SqliteSnapshot, rows: int) -> None:
    exported = snapshot.export()
    assert exported == snapshot.path
    assert not Path(f"{exported}-wal").exists() or Path(f"{exported}-wal").stat().st_size == 0
    assert not Path(f"{exported}-journal").exists()
    assert snapshot.table_rows["torrents"] == rows
    assert count_rows(exported) == rows


# -- WAL -------------------------------------------------------------------------------------

def test_wal_with_an_open_writer(tmp_path, staging):
    db = tmp_path / "sqlite3.db"
    writer = write_wal_database(db)
    try:
        assert Path(f"{db}-wal").stat().st_size > 0
        assert main_file_only_view(db, tmp_path / "naive") != COMMITTED_ROWS  # data is in -wal
        snapshot = engine.snapshot(db, staging)
    finally:
        writer.close()
    assert snapshot.side_files == ["-wal"]
    assert not Path(f"{snapshot.path}-shm").exists()
    assert_exported(snapshot, COMMITTED_ROWS)
    assert snapshot.journal_mode == "wal"
    assert snapshot.table_rows == {"keys": 1, "torrents": COMMITTED_ROWS}
    assert not Path(f"{snapshot.path}-wal").exists()


def test_wal_of_a_writer_that_died(tmp_path, staging):
    db = tmp_path / "sqlite3.db"

    def work():
        write_wal_database(db)  # never closed: the -wal keeps every committed row

    in_child(work)
    assert Path(f"{db}-wal").stat().st_size > 0
    assert main_file_only_view(db, tmp_path / "naive") != COMMITTED_ROWS
    snapshot = engine.snapshot(db, staging)
    assert snapshot.copied_bytes == db.stat().st_size + Path(f"{db}-wal").stat().st_size
    assert_exported(snapshot, COMMITTED_ROWS)
    assert snapshot.manifest()["journal_mode"] == "wal"


# -- rollback journal ------------------------------------------------------------------------

def test_hot_journal_of_a_killed_transaction_is_rolled_back(tmp_path, staging):
    db = tmp_path / "sqlite3.db"
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, payload BLOB)")
    connection.executemany("INSERT INTO torrents (payload) VALUES (?)",
                           [(os.urandom(100),) for _ in range(COMMITTED_ROWS)])
    connection.close()

    def work():
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("PRAGMA cache_size=5")  # spill uncommitted pages into the main file
        writer.execute("BEGIN")
        writer.execute("DELETE FROM torrents WHERE id % 2 = 0")
        writer.executemany("INSERT INTO torrents (payload) VALUES (?)",
                           [(os.urandom(500),) for _ in range(3000)])
        # no COMMIT: the child dies mid-transaction

    in_child(work)
    assert Path(f"{db}-journal").stat().st_size > 0
    assert main_file_only_view(db, tmp_path / "naive") != COMMITTED_ROWS

    snapshot = engine.snapshot(db, staging)
    assert snapshot.side_files == ["-journal"]
    assert_exported(snapshot, COMMITTED_ROWS)
    assert snapshot.journal_mode == "delete"


def test_plain_database_has_no_side_files(tmp_path, staging):
    db = tmp_path / "sqlite3.db"
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY)")
        connection.executemany("INSERT INTO torrents VALUES (?)", [(n,) for n in range(7)])
    connection.close()
    snapshot = engine.snapshot(db, staging)
    assert snapshot.side_files == []
    assert snapshot.copied_bytes == db.stat().st_size
    assert (staging / engine.SNAPSHOT_NAME).read_bytes() == db.read_bytes()
    assert_exported(snapshot, 7)
    manifest = snapshot.manifest()
    assert manifest["snapshot_method"] in ("copy", "reflink")
    assert manifest["tables"] == {"torrents": 7}
    assert manifest["sqlite_version"] == sqlite3.sqlite_version


def test_close_removes_every_copy(tmp_path, staging):
    db = tmp_path / "sqlite3.db"
    writer = write_wal_database(db)
    try:
        snapshot = engine.snapshot(db, staging)
    finally:
        writer.close()
    snapshot.export()
    count_rows(snapshot.path)  # leaves a -shm/-wal behind in WAL mode
    snapshot.close()
    assert list(staging.iterdir()) == []


# -- failures --------------------------------------------------------------------------------

def test_missing_database(tmp_path, staging):
    with pytest.raises(MaintError, match=f"the SQLite database {tmp_path}/gone.db disappeared"):
        engine.snapshot(tmp_path / "gone.db", staging)


def test_not_a_database(tmp_path, staging):
    db = tmp_path / "sqlite3.db"
    db.write_bytes(b"this is not a database file at all" * 200)
    snapshot = engine.snapshot(db, staging)
    with pytest.raises(MaintError, match="^the SQLite snapshot cannot be read: "):
        snapshot.export()


def test_corrupt_database_fails_quick_check(tmp_path, staging):
    db = tmp_path / "sqlite3.db"
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info TEXT)")
        connection.execute("CREATE INDEX torrents_info ON torrents (info)")
        connection.executemany("INSERT INTO torrents (info) VALUES (?)",
                               [(f"row {n}" * 20,) for n in range(2000)])
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.close()
    data = bytearray(db.read_bytes())
    for page in range(pages // 2, pages // 2 + 3):  # scribble over a few pages in the middle
        start = page * page_size + 100
        data[start:start + 200] = b"\x07" * 200
    db.write_bytes(bytes(data))
    snapshot = engine.snapshot(db, staging)
    with pytest.raises(MaintError, match="^the SQLite snapshot (fails quick_check|cannot be read)"):
        snapshot.export()


# -- row counts ------------------------------------------------------------------------------

def test_row_counts_skip_internal_tables_and_views_and_quote_names():
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY AUTOINCREMENT)")
    connection.execute('CREATE TABLE "odd ""name""" (x)')
    connection.execute("CREATE TABLE empty (x)")
    connection.execute("CREATE VIEW everything AS SELECT * FROM torrents")
    connection.executemany("INSERT INTO torrents DEFAULT VALUES", [()] * 4)
    connection.executemany('INSERT INTO "odd ""name""" VALUES (?)', [(1,), (2,)])
    assert engine.row_counts(connection) == {"empty": 0, 'odd "name"': 2, "torrents": 4}


# -- copying ---------------------------------------------------------------------------------

def filesystem_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.mark.parametrize("where", ["tmp_path", "/dev/shm"])
def test_clone_or_copy_falls_back_to_copy_without_reflinks(tmp_path, where):
    base = tmp_path if where == "tmp_path" else Path(where)
    if not base.is_dir():
        pytest.skip(f"{where} does not exist")
    kind = filesystem_type(base)
    if kind not in ("ext2/ext3", "ext4", "tmpfs"):
        pytest.skip(f"{base} is {kind}, which may support reflinks")
    directory = Path(os.path.realpath(base)) / f"torrust-maint-test-{os.getpid()}"
    directory.mkdir()
    try:
        source = directory / "source.db"
        payload = os.urandom(3 * 1024 * 1024 + 17)
        source.write_bytes(payload)
        method, size = engine.clone_or_copy(source, directory / "target.db")
        assert (method, size) == ("copy", len(payload))
        assert (directory / "target.db").read_bytes() == payload
        assert stat.S_IMODE((directory / "target.db").stat().st_mode) == 0o600
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL])
def test_clone_or_copy_treats_reflink_refusals_as_copy(tmp_path, monkeypatch, code):
    def refuse(fd, request, arg):
        assert request == engine.FICLONE
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(engine.fcntl, "ioctl", refuse)
    (tmp_path / "a").write_bytes(b"abc" * 1000)
    assert engine.clone_or_copy(tmp_path / "a", tmp_path / "b") == ("copy", 3000)
    assert (tmp_path / "b").read_bytes() == b"abc" * 1000


def test_clone_or_copy_reports_other_errors(tmp_path, monkeypatch):
    def broken(fd, request, arg):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(engine.fcntl, "ioctl", broken)
    (tmp_path / "a").write_bytes(b"abc")
    with pytest.raises(OSError) as caught:
        engine.clone_or_copy(tmp_path / "a", tmp_path / "b")
    assert caught.value.errno == errno.EIO


def test_clone_or_copy_reports_a_reflink(tmp_path, monkeypatch):
    def clone(dst_fd, request, src_fd):
        os.sendfile(dst_fd, src_fd, 0, os.fstat(src_fd).st_size)

    monkeypatch.setattr(engine.fcntl, "ioctl", clone)
    (tmp_path / "a").write_bytes(b"xyz" * 10)
    assert engine.clone_or_copy(tmp_path / "a", tmp_path / "b") == ("reflink", 30)
    assert (tmp_path / "b").read_bytes() == b"xyz" * 10


def test_copy_falls_back_when_copy_file_range_cannot(tmp_path, monkeypatch):
    def no_range(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(engine.os, "copy_file_range", no_range)
    payload = os.urandom(2 * 1024 * 1024 + 5)
    (tmp_path / "a").write_bytes(payload)
    assert engine.clone_or_copy(tmp_path / "a", tmp_path / "b") == ("copy", len(payload))
    assert (tmp_path / "b").read_bytes() == payload


def test_clone_or_copy_never_overwrites(tmp_path):
    (tmp_path / "a").write_bytes(b"new")
    (tmp_path / "b").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        engine.clone_or_copy(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"old"
