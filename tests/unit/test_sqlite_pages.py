"""The WAL snapshot's pages streamed from the live files (engines/sqlite_pages.py), against
real SQLite: another process commits and checkpoints all the while, and the streamed file must
be exactly the snapshot the read transaction saw."""

from __future__ import annotations

import io
import multiprocessing
import os
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torrust_maint.engines import sqlite as engine
from torrust_maint.engines import sqlite_pages
from torrust_maint.errors import MaintError

ROWS = 20_000


def make_database(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    connection.execute("CREATE TABLE n (k INTEGER)")
    connection.execute("INSERT INTO n VALUES (0)")
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO t (v) VALUES (?)",
                           [(os.urandom(150).hex(),) for _ in range(ROWS)])
    connection.execute("COMMIT")
    connection.close()


def write_on(path: str, stop, checkpoint_every: int) -> None:
    """A tracker's writes: a row and the counter per commit, small auto-checkpoints, and now
    and then a checkpoint that restarts the WAL whenever readers let it."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=5)
    connection.execute("PRAGMA wal_autocheckpoint=20")
    commits = 0
    while not stop.is_set():
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t (v) VALUES (?)", (os.urandom(150).hex(),))
        connection.execute("UPDATE n SET k = k + 1")
        connection.execute("COMMIT")
        commits += 1
        if commits % checkpoint_every == 0:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    connection.close()


@pytest.fixture
def writer(tmp_path):
    """Start a writing process on the database; yields a function that starts it."""
    processes = []
    stop = multiprocessing.get_context("fork").Event()

    def start(path: Path, checkpoint_every: int = 7) -> None:
        process = multiprocessing.get_context("fork").Process(
            target=write_on, args=(str(path), stop, checkpoint_every))
        process.start()
        processes.append(process)
        deadline = time.monotonic() + 10
        while counter(path) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)

    yield start
    stop.set()
    for process in processes:
        process.join(10)


def counter(path: Path) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return connection.execute("SELECT k FROM n").fetchone()[0]
    finally:
        connection.close()


def state_of(connection: sqlite3.Connection) -> tuple[int, int, int]:
    return connection.execute(
        "SELECT k, (SELECT count(*) FROM t), (SELECT max(id) FROM t) FROM n").fetchone()


def exported_state(data: bytes, tmp_path: Path) -> tuple[str, tuple[int, int, int]]:
    path = tmp_path / "exported.sqlite3"
    path.write_bytes(data)
    connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0], state_of(connection)
    finally:
        connection.close()
        path.unlink()


@pytest.fixture
def database(tmp_path) -> Path:
    (tmp_path / "staging").mkdir()
    path = tmp_path / "sqlite3.db"
    make_database(path)
    return path


def test_streamed_pages_are_exactly_the_snapshot_while_another_process_writes(
        database, tmp_path, writer):
    writer(database)
    seen = []
    for _ in range(4):
        snapshot = engine.open_live_snapshot(database, tmp_path / "staging")
        try:
            assert snapshot.files is not None  # the pages reader, not the backup API
            assert snapshot.files.pages.wal_pages == {}  # frames mapped at export, not in a window
            at_snapshot = state_of(snapshot.connection)
            time.sleep(0.3)  # the writer commits and checkpoints meanwhile
            stream = io.BytesIO()
            snapshot.export_to(stream)
        finally:
            snapshot.close()
        assert counter(database) > at_snapshot[0]  # it did write on
        assert exported_state(stream.getvalue(), tmp_path) == ("ok", at_snapshot)
        assert snapshot.table_rows == {"n": 1, "t": at_snapshot[1]}
        assert snapshot.manifest()["snapshot_reader"] == "pages"
        assert snapshot.manifest()["snapshot_bytes"] == len(stream.getvalue())
        seen.append(snapshot.files.pages.frames)
    assert any(seen)  # some snapshots had pages only in the WAL


def test_a_fully_checkpointed_wal_restarted_during_the_export(database, tmp_path, writer):
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("UPDATE n SET k = 7")
    assert connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    connection.close()
    snapshot = engine.open_live_snapshot(database, tmp_path / "staging")
    try:
        assert snapshot.files is not None
        assert not snapshot.files.pages.needs_wal  # everything is in the database file
        at_snapshot = state_of(snapshot.connection)
        writer(database, checkpoint_every=3)  # the WAL starts over, new frames pile up
        time.sleep(0.3)
        stream = io.BytesIO()
        snapshot.export_to(stream)
    finally:
        snapshot.close()
    assert at_snapshot[0] == 7 and counter(database) > 7
    assert exported_state(stream.getvalue(), tmp_path) == ("ok", at_snapshot)


CHECKPOINT_FROM_ANOTHER_PROCESS = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
for _ in range(30):
    connection.execute("UPDATE n SET k = k + 1")
print(connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0])
"""


def test_our_own_fds_do_not_drop_sqlites_read_lock(database, tmp_path):
    """Closing any fd of a file drops this process's POSIX locks on it: our fds stay open
    until SQLite's connection is closed, so another process's checkpoint cannot restart the
    WAL over our snapshot."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("UPDATE n SET k = 1")  # a frame in the WAL: a read mark above 0
    snapshot = engine.open_live_snapshot(database, tmp_path / "staging")
    try:
        assert snapshot.files is not None and snapshot.files.pages.needs_wal
        done = subprocess.run([sys.executable, "-c", CHECKPOINT_FROM_ANOTHER_PROCESS,
                               str(database)], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "1"  # busy: our reader holds the WAL
        stream = io.BytesIO()
        snapshot.export_to(stream)
    finally:
        snapshot.close()
        connection.close()
    assert exported_state(stream.getvalue(), tmp_path)[1][0] == 1


def test_an_unknown_layout_falls_back_to_the_backup_api(database, tmp_path, monkeypatch):
    def unreadable(*_args):
        raise sqlite_pages.Unreadable("wal-index version 1, initialised 1")

    monkeypatch.setattr(sqlite_pages, "read_snapshot_index", unreadable)
    snapshot = engine.open_live_snapshot(database, tmp_path / "staging")
    try:
        assert snapshot.files is None
        at_snapshot = state_of(snapshot.connection)
        stream = io.BytesIO()
        snapshot.export_to(stream)
    finally:
        snapshot.close()
    assert snapshot.manifest()["snapshot_reader"] == "backup-api"
    assert exported_state(stream.getvalue(), tmp_path) == ("ok", at_snapshot)
    assert not list((tmp_path / "staging").iterdir())


def test_a_wal_it_cannot_map_at_export_falls_back_to_the_backup_api(database, tmp_path,
                                                                    monkeypatch):
    def unreadable(*_args):
        raise sqlite_pages.Unreadable("WAL frame 1 of 1 is missing or stale")

    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("UPDATE n SET k = 5")  # a frame in the WAL
    monkeypatch.setattr(sqlite_pages, "map_wal_frames", unreadable)
    snapshot = engine.open_live_snapshot(database, tmp_path / "staging")
    try:
        assert snapshot.files is not None  # the index was read; the frames fail at export
        at_snapshot = state_of(snapshot.connection)
        stream = io.BytesIO()
        snapshot.export_to(stream)
    finally:
        snapshot.close()
        connection.close()
    assert snapshot.files is None
    assert snapshot.manifest()["snapshot_reader"] == "backup-api"
    assert exported_state(stream.getvalue(), tmp_path) == ("ok", at_snapshot)
    assert at_snapshot[0] == 5


def index_header(**fields) -> bytes:
    values = {"version": 3007000, "unused": 0, "change": 1, "init": 1, "big_end": 0,
              "page_size": 4096, "frames": 3, "pages": 10, "ck1": 0, "ck2": 0,
              "salt": b"saltsalt", "ck3": 0, "ck4": 0, **fields}
    return sqlite_pages.INDEX_HEADER.pack(*values.values())


def shm_with(first: bytes, second: bytes | None = None, backfilled: int = 0) -> bytes:
    info = struct.pack("=I", backfilled) + bytes(36)
    return first + (second if second is not None else first) + info


def database_header(page_size_field: int = 4096) -> bytes:
    return (b"SQLite format 3\x00" + struct.pack(">H", page_size_field)).ljust(100, b"\0")


@pytest.mark.parametrize(("shm", "db", "why"), [
    (shm_with(index_header(), index_header(change=2)), database_header(), "two copies differ"),
    (shm_with(index_header(version=3007001)), database_header(), "wal-index version 3007001"),
    (shm_with(index_header(init=0)), database_header(), "initialised 0"),
    (shm_with(index_header(page_size=1024)), database_header(),
     "page size 1024 in the wal-index, 4096 in the file"),
    (shm_with(index_header()), database_header(1000), "page size 1000"),
    (shm_with(index_header()), bytes(100), "no SQLite header"),
    (index_header(), database_header(), "incomplete"),
])
def test_a_wal_index_it_does_not_know_is_unreadable(tmp_path, shm, db, why):
    (tmp_path / "shm").write_bytes(shm)
    (tmp_path / "db").write_bytes(db.ljust(4096, b"\0"))
    with open(tmp_path / "shm", "rb") as shm_file, open(tmp_path / "db", "rb") as db_file, \
            pytest.raises(sqlite_pages.Unreadable) as caught:
        sqlite_pages.read_snapshot_index(shm_file.fileno(), db_file.fileno())
    assert why in str(caught.value)


def test_the_index_gives_size_frames_and_what_is_backfilled(tmp_path):
    (tmp_path / "shm").write_bytes(shm_with(index_header(page_size=1, pages=0), backfilled=3))
    (tmp_path / "db").write_bytes(database_header(1).ljust(3 * 65536, b"\0"))
    with open(tmp_path / "shm", "rb") as shm_file, open(tmp_path / "db", "rb") as db_file:
        pages = sqlite_pages.read_snapshot_index(shm_file.fileno(), db_file.fileno())
    assert (pages.page_size, pages.page_count, pages.frames, pages.backfilled) == \
        (65536, 3, 3, 3)  # size field 1 is 64 KiB; no page count: the file's size
    assert not pages.needs_wal


def wal_with(frames: list[tuple[int, bytes]], salt: bytes = b"saltsalt",
             page_size: int = 512) -> bytes:
    header = struct.pack(">4I", 0x377F0682, 3007000, page_size, 0) + b"saltsalt" + bytes(8)
    body = b"".join(struct.pack(">2I", page, 0) + salt + bytes(8) + data.ljust(page_size, b"\0")
                    for page, data in frames)
    return header + body


def test_frames_map_to_the_newest_per_page_and_pages_stream_in_order(tmp_path):
    (tmp_path / "wal").write_bytes(wal_with([(2, b"two-old"), (4, b"four"), (2, b"two-new")]))
    (tmp_path / "db").write_bytes(b"".join(f"page{n}".encode().ljust(512, b"\0")
                                           for n in range(1, 4)))
    pages = sqlite_pages.PageMap(512, 4, frames=3, salt=b"saltsalt")
    with open(tmp_path / "wal", "rb") as wal, open(tmp_path / "db", "rb") as db:
        sqlite_pages.map_wal_frames(pages, wal.fileno())
        out = io.BytesIO()
        assert sqlite_pages.copy_pages(db.fileno(), wal.fileno(), pages, out) == 4 * 512
    got = [out.getvalue()[i:i + 512].rstrip(b"\0") for i in range(0, 4 * 512, 512)]
    assert got == [b"page1", b"two-new", b"page3", b"four"]


def test_a_stale_frame_is_unreadable(tmp_path):
    (tmp_path / "wal").write_bytes(wal_with([(2, b"x")]) + wal_with([(3, b"y")], b"oldsalt!")[32:])
    pages = sqlite_pages.PageMap(512, 4, frames=2, salt=b"saltsalt")
    with open(tmp_path / "wal", "rb") as wal, pytest.raises(sqlite_pages.Unreadable) as caught:
        sqlite_pages.map_wal_frames(pages, wal.fileno())
    assert str(caught.value) == "WAL frame 2 of 2 is missing or stale"


def test_a_database_file_shorter_than_the_snapshot_fails_the_export(tmp_path):
    (tmp_path / "db").write_bytes(bytes(2 * 512))
    (tmp_path / "wal").write_bytes(b"")
    pages = sqlite_pages.PageMap(512, 3)
    with open(tmp_path / "db", "rb") as db, open(tmp_path / "wal", "rb") as wal, \
            pytest.raises(MaintError) as caught:
        sqlite_pages.copy_pages(db.fileno(), wal.fileno(), pages, io.BytesIO())
    assert "the SQLite database file ended early while reading the snapshot at page 1" in \
        str(caught.value)
