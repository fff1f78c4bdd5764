"""SQLite: a file-level snapshot inside the window, exported as one database file after it.

Inside the window the tracker is stopped, so its database file and any ``-wal`` or hot
``-journal`` beside it are quiescent: copying them together (a reflink where the filesystem
has them) is a consistent snapshot whatever the journal mode. After the restart, opening the
copy lets SQLite itself replay committed WAL frames or roll back an unfinished transaction;
the checkpointed single file is what the backup holds.

In [window] mode "online" nothing is stopped: the snapshot is only ever a read transaction on
the live WAL-mode database (a copy of files the tracker is writing would be torn), and a
database in rollback-journal mode is refused, since a reader there blocks every commit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from torrust_maint import notify, safefs
from torrust_maint.engines import sqlite_pages
from torrust_maint.errors import MaintError, VerificationFailed
from torrust_maint.progress import Progress
from torrust_maint.swap import FileSwap

log = logging.getLogger(__name__)

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
SIDE_FILES = ("-wal", "-journal")  # never -shm: SQLite rebuilds it from the WAL
# A rollback journal is hot (rolled back on open) only with this magic at its start; SQLite
# writes the magic last, so a writer killed before that leaves a journal SQLite ignores.
JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
SNAPSHOT_NAME = "database.sqlite3"
# Beside the live database, in a directory the tracker can write: what root checks with lstat
# before SQLite (as root) opens, truncates or creates them there.
LIVE_SIDE_FILES = ("-wal", "-shm", "-journal")
RESTORE_SUFFIX = ".torrust-maint-restore"
FILE_STEM = "database.sqlite3"
BUSY_TIMEOUT = 30  # seconds SQLite waits for a lock (a stopped tracker holds none)
NO_REFLINK = {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS,
              errno.EBADF, errno.EPERM}


def _drop_cold_journal(path: Path) -> None:
    """Remove a copied -journal that is not hot (no magic): it holds nothing to roll back."""
    journal = Path(f"{path}-journal")
    try:
        with open(journal, "rb") as handle:
            head = handle.read(len(JOURNAL_MAGIC))
    except FileNotFoundError:
        return
    if head != JOURNAL_MAGIC:
        log.debug("removing a cold rollback journal from the snapshot copy (no magic)")
        journal.unlink()


@dataclass
class SqliteSnapshot:
    """Copies of the database files, taken while the tracker was stopped."""

    path: Path
    method: str
    copied_bytes: int
    side_files: list[str] = field(default_factory=list)
    journal_mode: str = ""
    table_rows: dict[str, int] = field(default_factory=dict)
    sqlite_version: str = sqlite3.sqlite_version

    def export(self) -> Path:
        """Recover the copy into one self-contained, checked file and return its path."""
        try:
            connection = sqlite3.connect(self.path, isolation_level=None)
            try:
                self.journal_mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
                if self.journal_mode == "wal":
                    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self.table_rows = checked_row_counts(connection)
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            raise MaintError(f"the SQLite snapshot cannot be read: {error}") from None
        _drop_cold_journal(self.path)
        leftovers = [s for s in ("-wal", "-journal") if Path(f"{self.path}{s}").exists()]
        if leftovers and any(Path(f"{self.path}{s}").stat().st_size for s in leftovers):
            raise MaintError(f"SQLite left {', '.join(leftovers)} beside the exported snapshot")
        return self.path

    def export_to(self, stream, progress: Callable[[int], None] | None = None) -> None:
        """Recover and check the copy, then write the single database file into `stream`."""
        from torrust_maint.compress import copy_stream

        with open(self.export(), "rb") as source:
            copy_stream(source, stream, progress)

    def manifest(self) -> dict:
        return {
            "snapshot_method": self.method,
            "snapshot_bytes": self.copied_bytes,
            "snapshot_side_files": self.side_files,
            "journal_mode": self.journal_mode,
            "sqlite_version": self.sqlite_version,
            "tables": self.table_rows,
        }

    def close(self) -> None:
        """Remove the copies."""
        for suffix in ("", "-wal", "-journal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def checked_row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    """quick_check the database as the connection sees it (MaintError unless "ok"), then its
    row counts."""
    result = connection.execute("PRAGMA quick_check").fetchall()
    if result != [("ok",)]:
        problems = "; ".join(row[0] for row in result[:5])
        raise MaintError(f"the SQLite snapshot fails quick_check: {problems}")
    return row_counts(connection)


@dataclass
class SnapshotFiles:
    """Read-only fds of the live database file and its WAL, with the snapshot's page map:
    what export streams from, with no copy written beside them. The fds are the snapshot's
    (LiveWalSnapshot.held_fds) and closed only after SQLite's connection: closing any fd of a
    file drops every POSIX lock this process holds on it, SQLite's read lock too."""

    database_fd: int
    wal_fd: int
    pages: sqlite_pages.PageMap


@dataclass
class LiveWalSnapshot:
    """An open read transaction on the live WAL-mode database: the handle of a snapshot.

    Taken in microseconds whatever the size, inside the window or, in [window] mode "online",
    while the tracker runs; the tracker writes on (readers and the writer do not block each
    other in WAL mode, and checkpoints cannot pass our read mark). With `files`, export
    streams the snapshot's pages (sqlite_pages); without, the backup API copies them first.
    """

    connection: sqlite3.Connection
    database_path: Path
    path: Path
    inner: SqliteSnapshot | None = None
    files: SnapshotFiles | None = None
    held_fds: list[int] = field(default_factory=list)  # closed after the connection
    table_rows: dict[str, int] = field(default_factory=dict)
    streamed_bytes: int = 0

    def export_to(self, stream, progress: Callable[[int], None] | None = None) -> None:
        self.files = _map_frames(self.files)  # after the window: the WAL may hold many frames
        if self.files is not None:
            self._stream_to(self.files, stream, progress)
            return
        target = sqlite3.connect(self.path)
        try:
            self.connection.backup(target)  # uses our open read transaction: our snapshot
        except sqlite3.DatabaseError as error:
            raise MaintError(f"copying the SQLite snapshot failed: {error}") from None
        finally:
            target.close()
        self._release()
        self.inner = SqliteSnapshot(path=self.path, method="wal-read", copied_bytes=0)
        self.inner.export_to(stream, progress)

    def _stream_to(self, files: SnapshotFiles, stream,
                   progress: Callable[[int], None] | None) -> None:
        """Stream the pages, then check the same snapshot through SQLite (quick_check, row
        counts) before the read transaction ends."""
        self.streamed_bytes = sqlite_pages.copy_pages(files.database_fd, files.wal_fd,
                                                      files.pages, stream, progress)
        try:
            self.table_rows = checked_row_counts(self.connection)
        except sqlite3.DatabaseError as error:
            raise MaintError(f"the SQLite snapshot cannot be read: {error}") from None
        self._release()

    def manifest(self) -> dict:
        if self.files is not None:
            return {"snapshot_method": "wal-read", "snapshot_reader": "pages",
                    "snapshot_bytes": self.streamed_bytes, "snapshot_side_files": [],
                    "wal_frames": self.files.pages.frames, "journal_mode": "wal",
                    "sqlite_version": sqlite3.sqlite_version, "tables": self.table_rows}
        data = self.inner.manifest() if self.inner else {"snapshot_method": "wal-read"}
        data["snapshot_reader"] = "backup-api"
        data["journal_mode"] = "wal"
        return data

    def _release(self) -> None:
        try:
            self.connection.rollback()
            self.connection.close()
        except sqlite3.Error:
            pass
        _close_fds(self.held_fds)

    def close(self) -> None:
        self._release()
        if self.inner:
            self.inner.close()
        else:
            for suffix in ("", "-wal", "-journal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


class ReflinkUnavailable(Exception):
    """The filesystem cannot share blocks between these files."""


SQLITE_MAGIC = sqlite_pages.SQLITE_MAGIC


def read_header(path: Path) -> bytes:
    """The first 20 bytes of a database file (its magic and journal versions), opened without
    following a symlink."""
    with open(safefs.open_nofollow(path), "rb") as handle:
        return handle.read(20)


def header_says_wal(header: bytes) -> bool:
    """Whether a database header says WAL mode (read and write versions 2)."""
    return header[:16] == SQLITE_MAGIC and header[18:20] == b"\x02\x02"


def is_wal_database(path: Path) -> bool:
    """Whether the file's header says WAL mode (False when it cannot be read)."""
    try:
        return header_says_wal(read_header(path))
    except OSError:
        return False


def check_live_files(database_path: Path) -> os.stat_result:
    """Refuse a symlink in the database's directory path, or a database or -wal/-shm/-journal
    that is a symlink, special file or hard link, before root opens them; the database's stat.

    Called inside the window: the tracker, which can write that directory, is stopped.
    """
    info = _check_database_files(database_path)
    if info is None:
        raise MaintError(f"the SQLite database {database_path} disappeared")
    return info


def _check_database_files(database_path: Path) -> os.stat_result | None:
    """The checks of check_live_files; the database's stat, None if it does not exist."""
    try:
        os.close(safefs.open_dir_beneath("/", database_path.parent))
    except FileNotFoundError:
        return None
    for suffix in LIVE_SIDE_FILES:
        side = Path(f"{database_path}{suffix}")
        _refuse_hard_link(side, safefs.check_regular(side))
    return safefs.check_regular(database_path)


def _refuse_hard_link(path: Path, info: os.stat_result | None) -> None:
    """A side file with another name elsewhere would let SQLite, as root, write that file."""
    if info is not None and info.st_nlink > 1:
        raise safefs.UnsafePath(f"{path} has {info.st_nlink} hard links: refusing to let SQLite "
                                "open it as root (it may be another file planted under this name)")


def open_live_snapshot(database_path: Path, staging_dir: Path,
                       timeout: float = BUSY_TIMEOUT) -> LiveWalSnapshot:
    """Open a read transaction on the live database: its first read is the snapshot instant
    (WAL mode: consistent whether or not the tracker writes); waits at most `timeout` s.

    It opens while a second connection holds the write lock for a moment (microseconds: the
    tracker's next commit waits that long), so that the wal-index header read then is the
    snapshot's: what lets export stream its pages (SnapshotFiles)."""
    info = check_live_files(database_path)
    connection = _connect_existing(database_path, timeout)
    held: list[int] = []
    try:
        with _writers_held(database_path, timeout):
            connection.execute("BEGIN")
            connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            sqlite_files = _inodes_open_here()
            _refuse_another_file(database_path, info, sqlite_files)
            files = _open_snapshot_files(database_path, info, sqlite_files, held)
        give_side_files_to_owner(database_path, info)
    except sqlite3.DatabaseError as error:
        _close_all(connection, held)
        raise MaintError(f"cannot open the SQLite database {database_path}: {error}") from None
    except BaseException:
        _close_all(connection, held)
        raise
    return LiveWalSnapshot(connection, database_path, staging_dir / SNAPSHOT_NAME, files=files,
                           held_fds=held)


def _connect_existing(database_path: Path, timeout: float) -> sqlite3.Connection:
    """A connection (autocommit) to the database; mode=rw: one that vanished meanwhile is never
    created anew (as root)."""
    try:
        return sqlite3.connect(f"file:{urllib.parse.quote(str(database_path))}?mode=rw",
                               uri=True, isolation_level=None, timeout=timeout)
    except sqlite3.DatabaseError as error:
        raise MaintError(f"cannot open the SQLite database {database_path}: {error}") from None


@contextlib.contextmanager
def _writers_held(database_path: Path, timeout: float) -> Iterator[None]:
    """Hold the database's write lock (BEGIN IMMEDIATE on a second connection: no commit can
    happen meanwhile), waiting at most `timeout` s for a writer's transaction to end."""
    gate = _connect_existing(database_path, timeout)
    try:
        gate.execute("BEGIN IMMEDIATE")
        yield
    finally:
        try:
            gate.rollback()
        finally:
            gate.close()


def _close_all(connection: sqlite3.Connection, fds: list[int]) -> None:
    """Close the connection, then our fds of its files (see SnapshotFiles)."""
    connection.close()
    _close_fds(fds)


def _close_fds(fds: list[int]) -> None:
    """Close each fd once (a number closed twice may belong to another file by then)."""
    while fds:
        os.close(fds.pop())


def _inodes_open_here() -> set[tuple[int, int]]:
    """(device, inode) of every file this process holds open: SQLite's among them."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            info = os.stat(f"/proc/self/fd/{name}")
        except OSError:  # the fd of the listing itself, gone by now
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def _refuse_another_file(database_path: Path, info: os.stat_result,
                         open_here: set[tuple[int, int]]) -> None:
    """Fail unless this process now holds open the very file that was checked: a directory
    swapped for a symlink between the check and SQLite's open (the tracker runs in [window]
    mode "online") would have led SQLite, as root, to another file."""
    if (info.st_dev, info.st_ino) not in open_here:
        raise safefs.UnsafePath(f"{database_path} changed while SQLite opened it (a directory "
                                "or the file swapped meanwhile): refusing the snapshot; run "
                                "the backup again")


def _open_snapshot_files(database_path: Path, info: os.stat_result,
                         sqlite_files: set[tuple[int, int]],
                         held: list[int]) -> SnapshotFiles | None:
    """Our own fds of the database, its -wal and -shm (added to `held`), and the snapshot's
    size and last frame from the -shm (writes held: see open_live_snapshot); each must be the
    very file SQLite holds open. None (the backup API then copies the snapshot) when a file is
    missing or its layout is not one sqlite_pages knows."""
    try:
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{database_path}{suffix}")
            held.append(safefs.open_nofollow(path))
            found = os.fstat(held[-1])
            if (found.st_dev, found.st_ino) not in sqlite_files:
                raise sqlite_pages.Unreadable(f"{path} is not the file SQLite has open")
            _refuse_hard_link(path, found)
            if not suffix and (found.st_dev, found.st_ino) != (info.st_dev, info.st_ino):
                raise sqlite_pages.Unreadable(f"{database_path} is not the file checked")
        pages = sqlite_pages.read_snapshot_index(held[2], held[0])
    except (FileNotFoundError, sqlite_pages.Unreadable) as why:
        log.info("the snapshot will be copied by SQLite's backup API first: %s", why)
        return None
    return SnapshotFiles(database_fd=held[0], wal_fd=held[1], pages=pages)


def _map_frames(files: SnapshotFiles | None) -> SnapshotFiles | None:
    """The page map with its WAL frames, read at export time (the read transaction keeps them
    in place: see map_wal_frames); None when there are no files or the WAL does not have the
    layout sqlite_pages knows."""
    if files is None:
        return None
    try:
        sqlite_pages.map_wal_frames(files.pages, files.wal_fd)
    except sqlite_pages.Unreadable as why:
        log.info("the snapshot will be copied by SQLite's backup API first: %s", why)
        return None
    return files


def give_side_files_to_owner(database_path: Path, info: os.stat_result) -> None:
    """We run as root: -wal/-shm we created must stay usable by the tracker's own user.

    Changed through an O_PATH fd opened without following symlinks, never by name: an
    ordinary fd's close would drop SQLite's lock on -shm, our snapshot's read mark.
    """
    for suffix in ("-wal", "-shm"):
        side = Path(f"{database_path}{suffix}")
        try:
            fd = safefs.open_path_nofollow(side)
        except FileNotFoundError:
            continue
        try:
            side_info = os.fstat(fd)
            _refuse_hard_link(side, side_info)
            if (side_info.st_uid, side_info.st_gid) != (info.st_uid, info.st_gid):
                os.chown(safefs.fd_path(fd), info.st_uid, info.st_gid)
            os.chmod(safefs.fd_path(fd), (side_info.st_mode | (info.st_mode & 0o666)) & 0o7777)
        finally:
            os.close(fd)


@dataclass
class SqlitePrepared:
    """What the window will snapshot, and where to; `online`: the tracker keeps running."""

    database_path: Path
    staging_dir: Path
    live_handle_ok: bool = True
    opened: SqliteSnapshot | LiveWalSnapshot | None = field(default=None, repr=False)
    online: bool = False
    timeout: float = BUSY_TIMEOUT

    def open(self) -> SqliteSnapshot | LiveWalSnapshot:
        """Inside the window (tracker stopped): reflink, else (WAL) a read handle, else copy.
        Online: only the read handle (a copy of files being written would be torn)."""
        self.opened = self._open()
        return self.opened

    def _open(self) -> SqliteSnapshot | LiveWalSnapshot:
        """The snapshot open() hands out (and remembers for abort)."""
        if self.online:
            refusal = online_refusal(self.database_path)
            if refusal:  # switched back since the preflight
                raise MaintError(f"{refusal}; no set was written")
            return open_live_snapshot(self.database_path, self.staging_dir, self.timeout)
        if self.live_handle_ok and is_wal_database(self.database_path):
            try:
                return snapshot(self.database_path, self.staging_dir, reflink_only=True)
            except ReflinkUnavailable:
                return open_live_snapshot(self.database_path, self.staging_dir)
        return snapshot(self.database_path, self.staging_dir)

    def abort(self) -> None:
        """On an error path: release the read handle (a WAL snapshot) and remove any copies."""
        if self.opened is not None:
            self.opened.close()
            self.opened = None


def preflight(database, *, replacing: bool = False) -> None:
    """Before the window: the database's directory must be writable for a WAL-mode database
    (SQLite creates -wal/-shm there) or a restore (`replacing`); MaintError otherwise."""
    directory = Path(database.host_path).parent
    if not (replacing or is_wal_database(Path(database.host_path))):
        return
    if os.access(directory, os.W_OK):
        return
    read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    why = "a read-only file system here" if read_only else "no write permission"
    need = ("a restore replaces the database file there" if replacing else
            "the database is in WAL mode: its snapshot creates -wal/-shm there")
    raise MaintError(
        f"the SQLite database's directory {directory} is not writable ({why}), and {need}; "
        "under systemd (ProtectSystem=strict) add it to ReadWritePaths= with a drop-in: "
        f"`systemctl edit torrust-backup.service`, [Service] ReadWritePaths={directory}; "
        "nothing was done")


def prepare(docker, database, staging_dir: Path, live_handle_ok: bool = True,
            timeout: float | None = None, online: bool = False) -> SqlitePrepared:
    """Before the window: nothing to open for SQLite, only the plan; `timeout` bounds the
    wait for the database's locks, `online` snapshots it while the tracker runs."""
    return SqlitePrepared(database.host_path, staging_dir, live_handle_ok, online=online,
                          timeout=BUSY_TIMEOUT if timeout is None else timeout)


def online_refusal(database_path: Path) -> str | None:
    """Why [window] mode "online" cannot snapshot this database: an SQLite database that is
    not in WAL mode (None for a WAL database, or a missing or unreadable file)."""
    try:
        header = read_header(database_path)
    except (OSError, MaintError):
        return None  # the snapshot names what is wrong with the file
    if header[:16] != SQLITE_MAGIC or header_says_wal(header):
        return None
    return (f"[window] mode = \"online\": the SQLite database {database_path} is in "
            "rollback-journal mode, where a reader blocks the tracker's commits for the whole "
            "export; switch it to WAL mode with `torrust-maint sqlite-wal --yes`, or set "
            "[window] mode = \"stop\"")


def row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    """Rows per table, for the manifest and for later verification."""
    tables = [row[0] for row in connection.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    quoted = {table: '"' + table.replace('"', '""') + '"' for table in tables}
    return {table: connection.execute(f"SELECT count(*) FROM {quoted[table]}").fetchone()[0]
            for table in tables}


def snapshot(database_path: Path, staging_dir: Path, reflink_only: bool = False) -> SqliteSnapshot:
    """Copy the database file and its -wal/-journal into staging_dir (tracker must be stopped).

    With reflink_only, raise ReflinkUnavailable (leaving nothing behind) unless the main file
    can be cloned.
    """
    target = staging_dir / SNAPSHOT_NAME
    check_live_files(database_path)
    methods = set()
    copied = 0
    side_files = []
    for suffix in ("", *SIDE_FILES):
        source = Path(f"{database_path}{suffix}")
        try:
            method, size = clone_or_copy(source, Path(f"{target}{suffix}"),
                                         reflink_only=reflink_only and suffix == "")
        except FileNotFoundError as error:
            if Path(error.filename or "") != source:
                raise  # the staging directory went: the caller names the backup directory
            if suffix == "":
                raise MaintError(f"the SQLite database {database_path} disappeared") from None
            continue
        methods.add(method)
        copied += size
        if suffix:
            side_files.append(suffix)
    method = "reflink" if methods == {"reflink"} else "copy"
    return SqliteSnapshot(path=target, method=method, copied_bytes=copied, side_files=side_files)


def clone_or_copy(source: Path, target: Path, reflink_only: bool = False) -> tuple[str, int]:
    """Copy a file, sharing its blocks (FICLONE) where the filesystem can; (method, bytes).

    The source is opened without following a symlink (UnsafePath), the target created anew.
    """
    with open(safefs.open_nofollow(source), "rb") as src:
        size = os.fstat(src.fileno()).st_size
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as dst:
            try:
                fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
                return "reflink", size
            except OSError as error:
                if error.errno not in NO_REFLINK:
                    raise
                if reflink_only:
                    dst.close()
                    target.unlink()
                    raise ReflinkUnavailable(str(error)) from None
            _copy_range(src, dst, size)
    return "copy", size


def _copy_range(src, dst, size: int) -> None:
    """In-kernel copy (copy_file_range), falling back to a plain copy across filesystems."""
    offset = 0
    try:
        while offset < size:
            done = os.copy_file_range(src.fileno(), dst.fileno(), size - offset)
            if done == 0:
                break
            offset += done
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        src.seek(offset)
        dst.seek(offset)
        shutil.copyfileobj(src, dst, 1 << 20)


def verify(docker, artifact: Path, compression: str, expected: dict, scratch: Path,
           size: int | None = None) -> dict:
    """Restore the artifact into scratch, run integrity_check and compare row counts (`size`:
    the manifest's uncompressed size, for the progress)."""
    from torrust_maint.compress import copy_stream, open_decompressed

    target = scratch / "verify.sqlite3"
    with open_decompressed(artifact, compression) as source, open(target, "wb") as sink, \
            Progress(f"verify: decompressing the database ({compression})", size) as progress:
        copy_stream(source, sink, progress)
    counts = check_file(target, expected, pragma="integrity_check")
    return {"integrity_check": "ok", "tables": counts}


def expected_counts(expected: dict) -> dict[str, int] | None:
    """The row counts a set recorded; None for a legacy cron backup, which recorded none (its
    check is that it restores)."""
    return None if expected.get("legacy") is True else expected.get("tables", {})


def compare_counts(found: dict[str, int], expected: dict[str, int] | None) -> None:
    """Raise naming every table whose row count differs from the manifest's (None: the set
    recorded none)."""
    if expected is None:
        return
    problems = [f"table {table}: {found.get(table, 'missing')} rows, manifest says {count}"
                for table, count in sorted(expected.items()) if found.get(table) != count]
    problems += [f"table {table}: not in the manifest" for table in sorted(found)
                 if table not in expected]
    if problems:
        raise VerificationFailed("row counts differ: " + "; ".join(problems))


PRE_RESTORE_INFIX = ".torrust-maint-pre-restore-"


def stage_restore(docker, database, artifact: Path, compression: str, expected: dict,
                  restore_id: str, size: int | None = None) -> FileSwap:
    """While the tracker serves: write the set's database beside the live one (same
    filesystem), with the live file's owner and mode, fsynced, and check it (integrity_check,
    row counts); the swap that puts it in place inside the window. VerificationFailed when
    the set's database does not check out (the file is removed again)."""
    from torrust_maint.compress import copy_stream, open_decompressed

    live = Path(database.host_path)
    incoming = live.with_name(live.name + RESTORE_SUFFIX)
    info = _check_restore_target(live, incoming)
    fd = safefs.create_exclusive(incoming)  # never through a name planted meanwhile
    try:
        with open(fd, "wb") as sink, open_decompressed(artifact, compression) as source:
            if info is not None:
                os.fchown(sink.fileno(), info.st_uid, info.st_gid)
                os.fchmod(sink.fileno(), info.st_mode & 0o7777)
            with Progress(f"restore: staging the database ({compression})", size) as progress:
                copy_stream(source, sink, progress)
            sink.flush()
            os.fsync(sink.fileno())
            inode = os.fstat(sink.fileno()).st_ino
        notify.status("restore: database staged beside the live one, checking it")
        check_file(incoming, expected, pragma="integrity_check")
    except BaseException:
        incoming.unlink(missing_ok=True)
        raise
    _fsync_directory(live.parent)
    # An old -wal or hot -journal beside the new file would be replayed into it: they go aside
    # with the file they belong to; -shm is rebuilt by SQLite.
    return FileSwap(directory=str(live.parent), name=live.name, incoming=incoming.name,
                    aside=f"{live.name}{PRE_RESTORE_INFIX}{restore_id}", incoming_ino=inode,
                    companions=("-wal", "-journal"), stale=("-shm",), existed=info is not None)


def remove_staged_restore(database) -> None:
    """Remove the file a restore killed while staging left beside the database (never a
    symlink or anything but a regular file: refused)."""
    live = Path(database.host_path)
    incoming = live.with_name(live.name + RESTORE_SUFFIX)
    if safefs.check_regular(incoming) is not None:
        log.warning("removing %s, staged by an interrupted restore", incoming)
        incoming.unlink()


def pre_restore_snapshot(swap: FileSwap, staging_dir: Path) -> SqliteSnapshot:
    """After the window: a copy of the database set aside by the swap (with its -wal or
    -journal: SQLite replays or rolls them back in the copy), to export as the safety set."""
    return snapshot(swap.aside_path, staging_dir)


def _check_restore_target(live: Path, incoming: Path) -> os.stat_result | None:
    """lstat what restore will replace or remove (refusing symlinks and special files), drop
    a regular file left by an earlier restore; the live database's stat, None if absent."""
    info = _check_database_files(live)
    if safefs.check_regular(incoming) is not None:
        log.warning("removing %s, left by an earlier restore", incoming)
        incoming.unlink()
    return info


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (opened without following symlinks)."""
    fd = safefs.open_dir_beneath("/", directory)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_file(path: Path, expected: dict, pragma: str = "quick_check") -> dict[str, int]:
    """Integrity (quick_check or integrity_check) and row counts of a database file compared
    with the manifest's, read without creating -wal/-shm files."""
    try:
        connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            result = [row[0] for row in connection.execute(f"PRAGMA {pragma}")]
            counts = row_counts(connection)
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise VerificationFailed(f"{path}: cannot be read: {error}") from None
    if result != ["ok"]:
        raise VerificationFailed(f"{path}: {pragma} failed: {'; '.join(result[:5])}")
    compare_counts(counts, expected_counts(expected))
    return counts
