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


# -- symlinks planted by a compromised tracker (issue 8, defect 7) ---------------------------

TRACKER_UID = 1000
RESTORE_SUFFIX = ".torrust-maint-restore"  # written beside the live database
VICTIM_TEXT = b"root's file: must stay as it is\n" * 64


def tracker_wal_database(directory: Path) -> Path:
    """A closed WAL-mode database owned by the tracker's uid (no -wal/-shm left)."""
    directory.mkdir(exist_ok=True)
    db = directory / "sqlite3.db"
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash BLOB)")
    connection.executemany("INSERT INTO torrents (info_hash) VALUES (?)",
                           [(os.urandom(20),) for _ in range(5)])
    connection.close()
    os.chown(db, TRACKER_UID, TRACKER_UID)
    os.chmod(db, 0o664)
    return db


def make_victim(path: Path) -> Path:
    """A root-owned 0600 file that a planted symlink points at."""
    path.write_bytes(VICTIM_TEXT)
    os.chmod(path, 0o600)
    return path


def assert_untouched(victim: Path) -> None:
    info = victim.stat()
    assert victim.read_bytes() == VICTIM_TEXT
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)


@pytest.mark.parametrize("suffix", ["-shm", "-wal", "-journal"])
def test_planted_side_file_symlink_refuses_the_live_snapshot(tmp_path, staging, suffix):
    db = tracker_wal_database(tmp_path / "lib")
    victim = make_victim(tmp_path / "victim")
    Path(f"{db}{suffix}").symlink_to(victim)
    with pytest.raises(MaintError, match=f"^{db}{suffix} is a symbolic link, not a regular "
                                         "file: refusing to use it as root"):
        engine.open_live_snapshot(db, staging)
    assert_untouched(victim)
    created = {"-shm", "-wal"} - {suffix}  # SQLite never opened the database as root
    assert not [s for s in created if Path(f"{db}{s}").exists()]


def test_planted_database_symlink_refuses_every_snapshot(tmp_path, staging):
    elsewhere = tracker_wal_database(tmp_path / "elsewhere")
    (tmp_path / "lib").mkdir()
    db = tmp_path / "lib/sqlite3.db"
    db.symlink_to(elsewhere)
    for take in (engine.open_live_snapshot, engine.snapshot):
        with pytest.raises(MaintError, match=f"^{db} is a symbolic link, not a regular file"):
            take(db, staging)
    assert list(staging.iterdir()) == []
    assert not Path(f"{elsewhere}-shm").exists()


def test_symlinked_database_directory_is_refused(tmp_path, staging):
    real = tracker_wal_database(tmp_path / "real").parent
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/database").symlink_to(real)
    with pytest.raises(MaintError, match=f"^{tmp_path}/lib/database is a symbolic link, "
                                         "not a directory"):
        engine.open_live_snapshot(tmp_path / "lib/database/sqlite3.db", staging)
    assert not Path(f"{real}/sqlite3.db-shm").exists()


def test_hard_linked_side_file_is_refused(tmp_path, staging):
    db = tracker_wal_database(tmp_path / "lib")
    victim = make_victim(tmp_path / "victim")
    os.link(victim, f"{db}-shm")
    with pytest.raises(MaintError, match=f"^{db}-shm has 2 hard links"):
        engine.open_live_snapshot(db, staging)
    assert_untouched(victim)


def test_side_file_swapped_for_a_symlink_is_never_chowned(tmp_path, staging, monkeypatch):
    """An SQLite that followed the link, or a link appearing once SQLite has its files open:
    the owner and mode are changed through an fd opened with O_NOFOLLOW, never by name."""
    db = tracker_wal_database(tmp_path / "lib")
    victim = make_victim(tmp_path / "victim")
    shm = Path(f"{db}-shm")
    real_connect = sqlite3.connect

    def connect_then_swap(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # creates -shm
        shm.unlink()
        shm.symlink_to(victim)
        return connection

    monkeypatch.setattr(engine.sqlite3, "connect", connect_then_swap)
    with pytest.raises(MaintError, match=f"^{shm} is a symbolic link"):
        engine.open_live_snapshot(db, staging)
    assert_untouched(victim)


def test_live_snapshot_gives_the_side_files_to_the_database_owner(tmp_path, staging):
    db = tracker_wal_database(tmp_path / "lib")
    snapshot = engine.open_live_snapshot(db, staging)
    try:
        for suffix in ("-wal", "-shm"):
            info = Path(f"{db}{suffix}").stat()
            assert (info.st_uid, info.st_gid) == (TRACKER_UID, TRACKER_UID)
            assert stat.S_IMODE(info.st_mode) & 0o664 == 0o664
    finally:
        snapshot.close()


TRACKER_WRITES = """\
import os, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0.5)
connection.executemany("INSERT INTO torrents (info_hash) VALUES (?)",
                       [(os.urandom(20),) for _ in range(10)])
print(connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
"""


def test_live_snapshot_keeps_its_read_mark_after_fixing_the_side_files(tmp_path, staging):
    """Closing an ordinary fd of -shm drops this process's POSIX locks on it, SQLite's read
    lock included: the tracker (another process) could then checkpoint past our snapshot."""
    db = tmp_path / "sqlite3.db"
    write_wal_database(db).close()
    os.chown(db, TRACKER_UID, TRACKER_UID)  # the side files we create get a chown too
    snapshot = engine.open_live_snapshot(db, staging)
    try:
        tracker = subprocess.run(["/usr/bin/python3", "-c", TRACKER_WRITES, str(db)],
                                 capture_output=True, text=True, timeout=60)
        assert tracker.stdout == "1\n", tracker.stderr  # busy: our read mark pins the WAL
        with open(tmp_path / "export.sqlite3", "wb") as sink:
            snapshot.export_to(sink)
    finally:
        snapshot.close()
    assert count_rows(tmp_path / "export.sqlite3") == COMMITTED_ROWS
    assert count_rows(db) == COMMITTED_ROWS + 10


def restore_into(db: Path, artifact: Path) -> dict:
    from torrust_maint.deployment import SqliteDatabase

    database = SqliteDatabase(container_path="/var/lib/torrust/tracker/database/sqlite3.db",
                              host_path=db)
    expected = {"tables": {"torrents": 9}}
    swap = engine.stage_restore(None, database, artifact, "none", expected, "R1")
    swap.check_ready()
    swap.apply()
    return {"tables": engine.check_file(db, expected)}


def set_database(path: Path) -> Path:
    """The database a backup set holds (an uncompressed artifact): 9 torrents."""
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash BLOB)")
        connection.executemany("INSERT INTO torrents (info_hash) VALUES (?)",
                               [(os.urandom(20),) for _ in range(9)])
    connection.close()
    return path


def test_planted_restore_file_symlink_is_not_followed(tmp_path):
    db = tracker_wal_database(tmp_path / "lib")
    before = db.read_bytes()
    victim = make_victim(tmp_path / "victim")
    planted = Path(f"{db}{RESTORE_SUFFIX}")
    planted.symlink_to(victim)
    with pytest.raises(MaintError, match=f"^{planted} is a symbolic link, not a regular file"):
        restore_into(db, set_database(tmp_path / "set.sqlite3"))
    assert_untouched(victim)
    assert db.read_bytes() == before and not db.is_symlink()


def test_planted_side_file_symlink_refuses_the_restore(tmp_path):
    db = tracker_wal_database(tmp_path / "lib")
    before = db.read_bytes()
    victim = make_victim(tmp_path / "victim")
    Path(f"{db}-wal").symlink_to(victim)
    with pytest.raises(MaintError, match=f"^{db}-wal is a symbolic link"):
        restore_into(db, set_database(tmp_path / "set.sqlite3"))
    assert_untouched(victim)
    assert db.read_bytes() == before
    assert not Path(f"{db}{RESTORE_SUFFIX}").exists()


def test_restore_replaces_a_leftover_file_and_keeps_owner_and_mode(tmp_path):
    db = tracker_wal_database(tmp_path / "lib")
    Path(f"{db}{RESTORE_SUFFIX}").write_bytes(b"left by a killed restore")
    Path(f"{db}-shm").write_bytes(b"stale")
    result = restore_into(db, set_database(tmp_path / "set.sqlite3"))
    assert result == {"tables": {"torrents": 9}}
    info = db.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (TRACKER_UID, TRACKER_UID,
                                                                       0o664)
    aside = Path(f"{db}.torrust-maint-pre-restore-R1")
    assert sorted(p.name for p in db.parent.iterdir() if not p.name.startswith(aside.name)) \
        == ["sqlite3.db"]  # the leftover and the stale -shm are gone
    assert count_rows(db) == 9
    assert count_rows(aside) == 5  # the state from before, set aside


# -- the prepared snapshot on error paths (issue 8, defect 8) --------------------------------

def test_abort_releases_the_wal_read_handle_and_removes_copies(tmp_path, staging, monkeypatch):
    def no_reflink(fd, request, arg):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(engine.fcntl, "ioctl", no_reflink)
    db = tmp_path / "sqlite3.db"
    writer = write_wal_database(db)
    try:
        prepared = engine.SqlitePrepared(db, staging)
        snapshot = prepared.open()
        assert isinstance(snapshot, engine.LiveWalSnapshot)
        # Our read transaction pins the WAL: a TRUNCATE checkpoint cannot finish.
        assert writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 1
        prepared.abort()
        assert writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() == (0, 0, 0)
        assert Path(f"{db}-wal").stat().st_size == 0
    finally:
        writer.close()
    assert list(staging.iterdir()) == []
    prepared.abort()  # twice is harmless


def test_abort_removes_the_copies_of_a_copied_snapshot(tmp_path, staging):
    db = tmp_path / "sqlite3.db"
    writer = write_wal_database(db)
    writer.close()
    prepared = engine.SqlitePrepared(db, staging, live_handle_ok=False)
    prepared.open()
    assert list(staging.iterdir()) != []
    prepared.abort()
    assert list(staging.iterdir()) == []


# -- before the window: the database directory must be writable (issue 8, defect 8) ----------

PREFLIGHT = """\
import sys
from pathlib import Path
from torrust_maint.deployment import SqliteDatabase
from torrust_maint.engines import sqlite
from torrust_maint.errors import MaintError
database = SqliteDatabase("/var/lib/torrust/tracker/database/sqlite3.db", Path(sys.argv[1]))
try:
    sqlite.preflight(database, replacing=sys.argv[2] == "replacing")
except MaintError as error:
    print(error)
else:
    print("ok")
"""


def preflight_read_only(db: Path, mode: str) -> str:
    """Run preflight in a mount namespace where db's directory is a read-only bind mount, as
    ProtectSystem=strict makes every path outside ReadWritePaths=."""
    directory = str(db.parent)
    script = (f"mount --bind {directory} {directory} && "
              f"mount -o remount,bind,ro {directory} && "
              f'exec /usr/bin/python3 -c "$0" {db} {mode}')
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script, PREFLIGHT], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_preflight_refuses_a_wal_database_in_a_read_only_directory(tmp_path):
    db = tracker_wal_database(tmp_path / "lib")
    message = preflight_read_only(db, "backup")
    assert message == (
        f"the SQLite database's directory {db.parent} is not writable (a read-only file system "
        "here), and the database is in WAL mode: its snapshot creates -wal/-shm there; under "
        "systemd (ProtectSystem=strict) add it to ReadWritePaths= with a drop-in: "
        f"`systemctl edit torrust-backup.service`, [Service] ReadWritePaths={db.parent}; "
        "nothing was done")


def test_preflight_lets_a_rollback_journal_database_be_read_only(tmp_path):
    (tmp_path / "lib").mkdir()
    db = tmp_path / "lib/sqlite3.db"
    set_database(db)
    assert preflight_read_only(db, "backup") == "ok"
    assert preflight_read_only(db, "replacing").startswith(
        f"the SQLite database's directory {db.parent} is not writable (a read-only file system "
        "here), and a restore replaces the database file there;")


def test_preflight_passes_where_the_directory_is_writable(tmp_path):
    from torrust_maint.deployment import SqliteDatabase

    db = tracker_wal_database(tmp_path / "lib")
    engine.preflight(SqliteDatabase("/x/sqlite3.db", db))
    engine.preflight(SqliteDatabase("/x/sqlite3.db", db), replacing=True)
