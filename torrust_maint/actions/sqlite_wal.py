"""``torrust-maint sqlite-wal``: switch the tracker's SQLite database to WAL mode, once.

In rollback-journal mode a backup's window copies the whole database file while the tracker is
stopped; in WAL mode it holds only a read transaction (engines/sqlite.py), whatever the size.
The switch shares ONE maintenance window with a normal backup: the window stops the tracker,
copies the database into a safety set, then (the `inside_window` hook of backup.write_set)
opens the live file as root, runs ``PRAGMA journal_mode=WAL`` (it rewrites two header bytes,
nothing else) and closes it, and starts the tracker. No check of the whole file runs in the
window: it would cost several times the copy, and the safety set holds the same pages, which
its export (quick_check) and verification (integrity_check) check after the restart.

`window_report` is what `check` prints about it: the journal mode and, for a rollback-journal
database, the expected in-window copy time from its size and the disk's measured read speed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from torrust_maint import catalog, disk_speed, retry
from torrust_maint.actions import backup as backup_action
from torrust_maint.config import Config
from torrust_maint.deployment import Deployment, SqliteDatabase, discover
from torrust_maint.docker import Docker
from torrust_maint.engines import sqlite as sqlite_engine
from torrust_maint.errors import ConfigError, MaintError, SkippedError
from torrust_maint.journal import event
from torrust_maint.window import signals_raise

log = logging.getLogger(__name__)

THRESHOLD_SECONDS = 5.0  # an expected in-window copy longer than this: recommend WAL
REASON = "safety backup before switching the SQLite database to WAL mode"
BUSY_TIMEOUT = 10  # seconds SQLite waits for a lock (nothing should hold one: tracker stopped)
WAL, ROLLBACK = "wal", "rollback journal"


# -- what `check` reports ------------------------------------------------------------------

def header_journal_mode(path: Path) -> str | None:
    """WAL or ROLLBACK as the file's header says (bytes 18-19: 2 = WAL, 1 = rollback); None
    for an empty file. Opened without following a symlink; MaintError for a non-SQLite file."""
    header = sqlite_engine.read_header(path)
    if not header:
        return None
    if header[:16] != sqlite_engine.SQLITE_MAGIC or len(header) < 20:
        raise MaintError(f"{path} does not start with the SQLite header: not an SQLite database")
    return {b"\x02\x02": WAL, b"\x01\x01": ROLLBACK}.get(header[18:20], ROLLBACK)


def human_size(size: int) -> str:
    """A byte count in GB, MB or bytes, for a report line."""
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    if size >= 1e6:
        return f"{size / 1e6:.1f} MB"
    return f"{size} bytes"


def window_report(database: SqliteDatabase,
                  measure: Callable[[Path], disk_speed.ReadSpeed] = disk_speed.measure
                  ) -> list[str]:
    """The lines `check` prints about the database's journal mode and a backup's in-window
    copy time (a "warning:" line above THRESHOLD_SECONDS); never an error."""
    path = Path(database.host_path)
    try:
        mode = header_journal_mode(path)
    except FileNotFoundError:
        return [f"sqlite journal mode: {path} does not exist yet (the tracker creates it)"]
    except (MaintError, OSError) as error:
        return [f"warning: sqlite journal mode: not read: {_reason(error)}"]
    if mode == WAL:
        return ["sqlite journal mode: WAL: a backup's window holds no copy (stop, a read "
                "transaction, start), whatever the database's size"]
    if mode is None:
        return [f"sqlite journal mode: none yet: {path} is empty"]
    lines = [f"sqlite journal mode: {mode}: a backup's window copies the database file while "
             "the tracker is stopped"]
    return lines + copy_estimate(path, _copied_bytes(database), measure)


def copy_estimate(path: Path, size: int,
                  measure: Callable[[Path], disk_speed.ReadSpeed]) -> list[str]:
    """The measured read speed and the expected in-window copy time of `size` bytes, with a
    warning recommending WAL above THRESHOLD_SECONDS."""
    try:
        speed = measure(path)
    except (MaintError, OSError) as error:
        return [f"sqlite read speed: not measured ({_reason(error)}): no estimate of the "
                "window's copy time"]
    if not speed.bytes_read:
        return ["sqlite read speed: not measured (nothing was read): no estimate of the "
                "window's copy time"]
    seconds = size / speed.bytes_per_second
    lines = [f"sqlite read speed: {speed.describe()}",
             f"sqlite window copy: expected in-window copy time at least {seconds:.1f} s for "
             f"{human_size(size)} (the read alone; the copy also writes it; WAL recommended "
             f"above {THRESHOLD_SECONDS:.0f} s)"]
    if seconds > THRESHOLD_SECONDS:
        lines.append(
            f"warning: every backup stops the tracker for at least {seconds:.1f} s to copy the "
            f"{human_size(size)} rollback-journal database; in WAL mode the window holds no "
            "copy: `torrust-maint sqlite-wal` switches it, after a safety backup, in one "
            "window (see torrust-maint(8))")
    return lines


def _copied_bytes(database: SqliteDatabase) -> int:
    """What a backup's window copies: the database file and its -wal/-journal."""
    return sum(size for _, size in backup_action.database_files(database))


def _reason(error: BaseException) -> str:
    """An OSError or MaintError in a few words."""
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror or error}{where}"
    return str(error)


# -- refusals --------------------------------------------------------------------------------

def sqlite_database(deployment: Deployment) -> SqliteDatabase:
    """The deployment's SQLite database; ConfigError naming the driver for any other."""
    database = deployment.database
    if not isinstance(database, SqliteDatabase):
        raise ConfigError(f"sqlite-wal switches an SQLite database; this deployment's database "
                          f"driver is {deployment.driver} ({database.describe()}): refusing")
    return database


def journal_mode_now(database: SqliteDatabase) -> str | None:
    """The live file's journal mode by its header; MaintError when it is missing or unsafe."""
    try:
        return header_journal_mode(Path(database.host_path))
    except FileNotFoundError:
        raise MaintError(f"the SQLite database {database.host_path} does not exist; nothing "
                         "was done") from None
    except OSError as error:
        raise MaintError(f"cannot read the SQLite database: {_reason(error)}") from None


def check_directory(database: SqliteDatabase) -> None:
    """MaintError unless the database's directory is writable: SQLite (and then the tracker)
    creates the -wal and -shm files beside it."""
    directory = Path(database.host_path).parent
    if os.access(directory, os.W_OK):
        return
    read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    why = "a read-only file system here" if read_only else "no write permission"
    raise MaintError(f"the SQLite database's directory {directory} is not writable ({why}); "
                     "WAL mode keeps -wal and -shm files beside the database, so the tracker "
                     "must be able to create them there; nothing was done")


def running_trackers(deployment: Deployment) -> None:
    """SkippedError (exit 3) unless every tracker container runs: the switch shares a normal
    backup's window."""
    stopped = [c for c in deployment.trackers if not c.running]
    if stopped:
        states = ", ".join(f"{c.name} ({c.status})" for c in stopped)
        raise SkippedError(f"the tracker is not running: {states}; nothing was done. Start it: "
                           "sqlite-wal switches inside a backup's maintenance window")


def confirm(deployment: Deployment, database: SqliteDatabase, ask: Callable[[str], str]) -> bool:
    """Ask on a terminal (ConfigError off one: pass --yes); whether the answer is yes."""
    if not sys.stdin.isatty():
        raise ConfigError("sqlite-wal asks for confirmation on a terminal; pass --yes to skip it")
    answer = ask(f"Switch the SQLite database {database.host_path} of {deployment.compose_dir} "
                 "to WAL mode? The tracker is stopped once, for a safety backup and the switch. "
                 "[y/N] ")
    return answer.strip().lower() in ("y", "yes")


# -- the flow --------------------------------------------------------------------------------

def run(config: Config, docker: Docker, *, assume_yes: bool = False, dry_run: bool = False,
        echo: Callable[[str], None] = print, ask: Callable[[str], str] = input) -> int:
    """Refuse what cannot or need not be switched, then (after a confirmation) take a safety
    set and switch to WAL in its window; the exit code."""
    deployment = discover(config.deployment, docker)
    database = sqlite_database(deployment)
    if journal_mode_now(database) == WAL:
        echo(f"{database.host_path} is already in WAL mode: nothing to do")
        return 0
    check_directory(database)
    running_trackers(deployment)
    if dry_run:
        print_plan(config, deployment, database, docker, echo)
        return 0
    if not assume_yes and not confirm(deployment, database, ask):
        raise MaintError("sqlite-wal cancelled; nothing was changed")
    return switch(config, docker, echo)


def switch(config: Config, docker: Docker, echo: Callable[[str], None]) -> int:
    """Under the run lock: a safety set whose window switches the database to WAL."""
    phases = backup_action.Phases()
    started, run_started_at = phases.clock(), catalog.utc_now()
    timings: dict[str, float] = {}
    catalog.ensure_directory(config.backup.directory)
    with contextlib.ExitStack() as held, signals_raise():
        deployment, to_stop = retry.call(
            config.retry, "sqlite-wal preflight",
            lambda: backup_action.locked_preflight(held, config, docker, False, echo))
        database = sqlite_database(deployment)
        if journal_mode_now(database) == WAL:
            echo(f"{database.host_path} is already in WAL mode: nothing to do")
            return 0
        check_directory(database)
        path = Path(database.host_path)
        try:
            set_id = backup_action.write_set(
                config, docker, deployment, to_stop, phases, started, run_started_at, echo,
                inside_window=lambda: switch_to_wal(path, timings), reason=REASON)
        except MaintError:
            if timings:  # the switch ran: say where it left the database
                echo(f"sqlite-wal: {_left_in(path)}")
            raise
    event("switched_to_wal", "switched %s to WAL mode inside the window of safety set %s",
          path, set_id, DATABASE_PATH=str(path), BACKUP_ID=set_id,
          SWITCH_SEC=timings["journal_mode"])
    echo(f"switched {path} to WAL mode inside the window of safety set {set_id} "
         f"(journal_mode=WAL {timings['journal_mode']:.3f} s); back with the tracker stopped: "
         "PRAGMA journal_mode=DELETE")
    return 0


def switch_to_wal(path: Path, timings: dict[str, float]) -> None:
    """Inside the window (tracker stopped): switch the live database to WAL, as root without
    following symlinks; MaintError saying which mode it is left in."""
    info = sqlite_engine.check_live_files(path)  # lstat: a regular file, no symlink on the way
    try:
        connection = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=rw", uri=True,
                                     isolation_level=None, timeout=BUSY_TIMEOUT)  # never creates
    except sqlite3.Error as error:
        raise MaintError(f"cannot open the SQLite database {path}: {error}") from None
    try:
        _switch(connection, path, info, timings)
    except sqlite3.Error as error:
        raise MaintError(f"switching {path} to WAL mode failed: {error}; "
                         f"{_left_in(path)}") from None
    finally:
        connection.close()
        sqlite_engine.give_side_files_to_owner(path, info)  # any left after the close
    if not sqlite_engine.is_wal_database(path):
        raise MaintError(f"{path}: the header does not say WAL after the switch; {_left_in(path)}")
    log.info("switched %s to WAL mode (journal_mode=WAL %.3f s)", path,
             timings["journal_mode"])


def _switch(connection: sqlite3.Connection, path: Path, info: os.stat_result,
            timings: dict[str, float]) -> None:
    """PRAGMA journal_mode=WAL (must answer "wal"); -wal/-shm get the file's owner."""
    timed = time.monotonic()
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    timings["journal_mode"] = round(time.monotonic() - timed, 6)
    if str(mode).lower() != WAL:
        raise MaintError(f"PRAGMA journal_mode=WAL on {path} answered {mode!r}, not 'wal' "
                         "(this file system or SQLite build cannot use WAL); the database is "
                         "unchanged")
    connection.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()  # reads as WAL now,
    # which makes -wal and -shm: SQLite made them as root; they get the file's owner
    sqlite_engine.give_side_files_to_owner(path, info)


def _left_in(path: Path) -> str:
    """Which mode the live database is left in, by its header, in words."""
    return ("the database is now in WAL mode" if sqlite_engine.is_wal_database(path)
            else "the database is unchanged (rollback journal)")


# -- --dry-run -------------------------------------------------------------------------------

def print_plan(config: Config, deployment: Deployment, database: SqliteDatabase,
               docker: Docker, echo: Callable[[str], None]) -> None:
    """Every step the switch would take (docker's as `would run:` lines), touching nothing."""
    path = Path(database.host_path)
    info = os.stat(path, follow_symlinks=False)
    running = [c for c in deployment.trackers if c.running]
    echo("dry run: nothing will be changed")
    echo(f"deployment: {deployment.compose_dir}")
    echo(f"database: {database.describe()}, {_copied_bytes(database)} bytes, {ROLLBACK} "
         f"mode; its directory {path.parent} is writable")
    echo(f"would lock {config.backup.directory / '.torrust-maint.lock'} and take a safety set "
         f"in {config.backup.directory} (a normal backup: config archived first)")
    echo(f"window: would stop {', '.join(c.name for c in running)}")
    docker.stop([c.id for c in running], config.deployment.stop_timeout)
    echo(f"  would copy {path} into the safety set (a reflink where the file system can)")
    echo(f"  would open {path} as root (checked with lstat: a regular file, no symlink), run "
         "PRAGMA journal_mode=WAL (it must answer 'wal') and close it; -wal/-shm get owner "
         f"{info.st_uid}:{info.st_gid} and mode {info.st_mode & 0o777:04o} of the database")
    docker.start([c.id for c in running])
    echo(f"would wait until the tracker runs (and is healthy), at most "
         f"{config.deployment.start_timeout} s")
    echo("after the restart: would export the copy into the safety set, commit and verify it")
    for line in copy_estimate(path, _copied_bytes(database), disk_speed.measure):
        if not line.startswith("warning:"):
            echo(line)
    echo("the switch itself rewrites two header bytes: the window lasts the copy, as any "
         "backup's in rollback-journal mode")
