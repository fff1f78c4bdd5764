"""``torrust-maint backup``: one maintenance window, then export, compress, commit, prune."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import socket
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from torrust_maint import __version__, catalog, lock, notify, retry
from torrust_maint.actions import prune as prune_action
from torrust_maint.actions import verify as verify_action
from torrust_maint.compress import SUFFIXES, Artifact, compressed_writer
from torrust_maint.config import Config
from torrust_maint.deployment import (
    Deployment,
    MysqlDatabase,
    PostgresqlDatabase,
    SqliteDatabase,
    discover,
)
from torrust_maint.docker import Container, Docker
from torrust_maint.engines import ENGINES
from torrust_maint.engines import mysql as mysql_engine
from torrust_maint.engines import postgresql as postgresql_engine
from torrust_maint.engines import sqlite as sqlite_engine
from torrust_maint.errors import ConfigError, Interrupted, MaintError, SkippedError
from torrust_maint.journal import event
from torrust_maint.lock import run_lock
from torrust_maint.progress import Progress
from torrust_maint.recovery import WindowGuard, WindowMarker, recover
from torrust_maint.window import (
    WindowReport,
    maintenance_window,
    pending_signal,
    signals_raise,
    started_by_someone_else,
)

log = logging.getLogger(__name__)

CONFIG_STEM = "config.tar"
ONLINE_NOTE = "online: no window, the tracker keeps running"  # [window] mode "online"


@dataclass
class Phases:
    """Wall-clock durations of the phases outside the window."""

    clock: Callable[[], float] = time.monotonic
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.seconds[name] = round(self.clock() - start, 6)


def trackers_to_stop(deployment: Deployment, force: bool) -> list[Container]:
    """The running tracker containers; every one must run unless --force."""
    stopped = [c for c in deployment.trackers if not c.running]
    if stopped and not force:
        states = ", ".join(f"{c.name} ({c.status})" for c in stopped)
        event("backup_skipped", "backup skipped: tracker not running (%s)", states,
              level=logging.WARNING, TRACKER_CONTAINERS=states)
        raise SkippedError(
            f"the tracker is not running: {states}; nothing was done. "
            "Start it, or run with --force to back up the database as it is "
            "(a stopped tracker is left stopped)."
        )
    return [c for c in deployment.trackers if c.running]


def database_files(database) -> list[tuple[Path, int]]:
    """The SQLite file and side files that a snapshot copies, with their sizes (none for MySQL)."""
    if database.driver != "sqlite3":
        return []
    return regular_files(database.host_path, ("", *sqlite_engine.SIDE_FILES))


def regular_files(path: Path, suffixes: tuple[str, ...]) -> list[tuple[Path, int]]:
    """The regular files `path` + suffix that exist, with their sizes; a planted symlink is
    neither followed nor sized."""
    found: list[tuple[Path, int]] = []
    for suffix in suffixes:
        candidate = Path(f"{path}{suffix}")
        try:
            info = os.stat(candidate, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode):
            found.append((candidate, info.st_size))
    return found


def check_free_space(directory: Path, needed: int) -> None:
    """Fail before the window when the backup directory's filesystem is too full."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise MaintError(
            f"[backup] directory: {directory} has {free / 1e6:.1f} MB free, the backup needs "
            f"about {needed / 1e6:.1f} MB (a snapshot copy plus its compressed form); "
            "nothing was done"
        )


def existing_config_paths(deployment: Deployment, config: Config) -> tuple[list[str], list[str]]:
    present: list[str] = []
    missing: list[str] = []
    for relative in config.backup.config_paths:
        (present if (deployment.compose_dir / relative).exists() else missing).append(relative)
    return present, missing


def archive_config(deployment: Deployment, config: Config, target_dir: Path,
                   warnings: list[str]) -> Artifact:
    """A compressed tar of the deployment's config paths (relative to compose_dir)."""
    present, missing = existing_config_paths(deployment, config)
    for relative in missing:
        warnings.append(f"config path {deployment.compose_dir / relative} does not exist; "
                        "not in the backup")
        log.warning(warnings[-1])
    with compressed_writer(target_dir, "config", CONFIG_STEM, config.backup.compression,
                           config.backup.compression_level) as (stream, artifact):
        with tarfile.open(fileobj=cast(BinaryIO, stream), mode="w|",
                          format=tarfile.PAX_FORMAT) as tar:
            for relative in present:
                tar.add(deployment.compose_dir / relative, arcname=relative, recursive=True)
    return artifact


def export_database(snapshot, stem: str, config: Config, target_dir: Path) -> Artifact:
    """Export the snapshot (after the window) and compress it into the set."""
    notify.status("exporting the database")
    with Progress(f"exporting database ({config.backup.compression})",
                  export_size(snapshot)) as progress, \
            compressed_writer(target_dir, "database", stem, config.backup.compression,
                              config.backup.compression_level) as (stream, artifact):
        snapshot.export_to(stream, progress)
    return artifact


def export_size(snapshot) -> int | None:
    """An upper bound of the bytes an SQLite export writes (the file and its -wal, which a
    checkpoint folds in); None for a MySQL dump, whose size is not known before."""
    if isinstance(snapshot, sqlite_engine.LiveWalSnapshot):
        path = snapshot.database_path
    elif isinstance(snapshot, sqlite_engine.SqliteSnapshot):
        path = snapshot.path
    else:
        return None
    return sum(size for _, size in regular_files(Path(path), ("", "-wal"))) or None


def print_plan(config: Config, deployment: Deployment, to_stop: list[Container],
               echo: Callable[[str], None], docker: Docker) -> None:
    """--dry-run: every step and docker command, touching nothing."""
    directory = config.backup.directory
    suffix = SUFFIXES[config.backup.compression]
    echo("dry run: nothing will be changed")
    echo(f"deployment: {deployment.compose_dir}")
    for container in deployment.trackers:
        health = f", {container.health}" if container.health else ""
        echo(f"tracker container: {container.name} ({container.status}{health})")
    echo(f"database: {deployment.database.describe()}")
    files = database_files(deployment.database)
    engine = ENGINES[deployment.driver]
    echo("would lock: " + str(directory / ".torrust-maint.lock"))
    echo(f"would create backup set in: {directory}")
    database = deployment.database
    if isinstance(database, PostgresqlDatabase):
        echo("would connect to PostgreSQL, find the container's pg_dump and prove how it logs "
             "in (local socket first, no password)")
    if isinstance(database, MysqlDatabase):
        echo("would connect to MySQL and start the container's dump tool (waiting for its "
             "credentials on stdin): docker exec --interactive "
             f"{database.container.name} mariadb-dump|mysqldump "
             f"--defaults-extra-file=/dev/stdin {' '.join(mysql_engine.DUMP_OPTIONS)} "
             f"{database.database}")
    if config.window.online:
        print_online_snapshot(config, database, echo)
    else:
        print_window(config, database, files, to_stop, echo, docker)
    if isinstance(database, PostgresqlDatabase):
        when = "while the tracker serves" if config.window.online else "after the restart"
        echo(f"would dump the snapshot {when}: docker exec "
             f"{database.container.name} pg_dump --snapshot=<id> "
             f"{' '.join(postgresql_engine.DUMP_OPTIONS)}")
    echo(f"would check and export the snapshot into {engine.FILE_STEM}{suffix} "
         f"({config.backup.compression})")
    present, missing = existing_config_paths(deployment, config)
    echo(f"would archive config paths into {CONFIG_STEM}{suffix}: {', '.join(present) or 'none'}")
    for relative in missing:
        echo(f"warning: config path {deployment.compose_dir / relative} does not exist")
    echo("would write manifest.json and rename the set into place")
    prune_action.print_decision(config, echo, prefix="would ")


def print_window(config: Config, database, files: list[tuple[Path, int]],
                 to_stop: list[Container], echo: Callable[[str], None], docker: Docker) -> None:
    """--dry-run, [window] mode "stop": the window's docker commands and its snapshot."""
    if to_stop:
        docker.stop([c.id for c in to_stop], config.deployment.stop_timeout)
    if isinstance(database, MysqlDatabase):
        echo("would open the consistent snapshot (START TRANSACTION WITH CONSISTENT SNAPSHOT; "
             "the dump starts its single transaction)")
    elif isinstance(database, PostgresqlDatabase):
        echo("would open the snapshot: BEGIN ISOLATION LEVEL REPEATABLE READ; "
             "SELECT pg_export_snapshot()")
    elif sqlite_engine.is_wal_database(database.host_path):
        echo("would snapshot the WAL-mode database: a reflink where the filesystem can, else "
             f"an open read transaction on {database.host_path} (exported after "
             "the restart)")
    else:
        echo("would snapshot (reflink where the filesystem can, else an in-kernel copy): "
             + ", ".join(f"{p} ({size} bytes)" for p, size in files))
    if to_stop:
        docker.start([c.id for c in to_stop])
        echo(f"would wait until the tracker runs (and is healthy), at most "
             f"{config.deployment.start_timeout} s")
    else:
        echo("would not stop or start the tracker (it is not running; --force)")


def print_online_snapshot(config: Config, database, echo: Callable[[str], None]) -> None:
    """--dry-run, [window] mode "online": the snapshot opened while the tracker runs."""
    echo(f"{ONLINE_NOTE}: nothing is stopped or started")
    bound = f"at most {config.deployment.snapshot_timeout} s ([deployment] snapshot_timeout)"
    if isinstance(database, MysqlDatabase):
        echo("would hold the tracker's writes (LOCK TABLES <table> READ, a connection per "
             "table), open the consistent snapshot (START TRANSACTION WITH CONSISTENT "
             f"SNAPSHOT; the dump starts its single transaction), then UNLOCK TABLES: {bound}")
    elif isinstance(database, PostgresqlDatabase):
        echo("would open the snapshot: BEGIN ISOLATION LEVEL REPEATABLE READ; "
             f"SELECT pg_export_snapshot(): {bound}")
    else:
        echo(f"would open a read transaction on the live WAL-mode database "
             f"{database.host_path} (never a copy of its files): {bound}")



def build_manifest(set_id: str, created_at, deployment: Deployment,
                   snapshot, artifacts: list[Artifact],
                   report: WindowReport, phases: dict[str, float],
                   warnings: list[str], window_mode: str = "stop") -> dict:
    """The manifest of a set; `window_mode` ([window] mode) says whether the tracker was
    stopped for its snapshot."""
    return {
        "format": catalog.MANIFEST_FORMAT,
        "tool": catalog.TOOL,
        "tool_version": __version__,
        "id": set_id,
        "created_at": catalog.rfc3339(created_at),
        "complete": True,
        "host": socket.gethostname(),
        "deployment": {
            "compose_dir": str(deployment.compose_dir),
            "tracker_containers": [c.name for c in deployment.trackers],
        },
        "database": {
            "driver": deployment.driver,
            **database_location(deployment),
            **snapshot.manifest(),
        },
        "artifacts": [a.to_manifest() for a in artifacts],
        "window_mode": window_mode,
        "downtime_seconds": report.downtime,
        "phases": phases,
        "warnings": warnings,
    }


def database_location(deployment: Deployment) -> dict:
    database = deployment.database
    if isinstance(database, SqliteDatabase):
        return {"path": database.container_path, "host_path": str(database.host_path)}
    return {"user": database.user}


def run(config: Config, docker: Docker, *, dry_run: bool = False, force: bool = False,
        echo: Callable[[str], None] = print, details: dict | None = None) -> int:
    """Run one backup; return the exit code (errors are raised as MaintError).

    The run lock is taken first: while another run's window has the tracker stopped, this run
    must say "locked" (exit 5), not "tracker not running" (exit 3). The lock and the
    preflight are tried again after a transient fault ([retry]); nothing after them is.
    `details` receives the set id and the downtime as soon as they are known.
    """
    phases = Phases()
    started = phases.clock()
    run_started_at = catalog.utc_now()
    if dry_run:
        deployment, to_stop = preflight(config, docker, force)
        print_plan(config, deployment, to_stop, echo, docker)
        holder = lock.holder(config.backup.directory)
        if holder is not None:
            echo(f"note: the run of pid {holder} holds the lock now: a real run would exit 5")
        return 0
    catalog.ensure_directory(config.backup.directory)
    with contextlib.ExitStack() as held, signals_raise():
        with phases.timed("preflight"):
            deployment, to_stop = retry.call(
                config.retry, "backup preflight",
                lambda: locked_preflight(held, config, docker, force, echo))
        set_id = write_set(config, docker, deployment, to_stop, phases, started,
                           run_started_at, echo, details=details)
        notify.status("pruning")
        prune_action.apply(config, echo)
        notify.status(f"backup {set_id} committed")
    return 0


def locked_preflight(held: contextlib.ExitStack, config: Config, docker: Docker, force: bool,
                     echo: Callable[[str], None]) -> tuple[Deployment, list[Container]]:
    """Take the run lock into `held` and run the preflight; on any error the lock is
    released again (a retry takes it anew)."""
    with contextlib.ExitStack() as attempt:
        attempt.enter_context(run_lock(config.backup.directory))
        verify_action.remove_leftovers(docker, config.backup.directory)
        if WindowMarker.read(config.backup.directory):
            log.warning("an earlier window was interrupted; starting its tracker first")
            recover(config.backup.directory, docker, config.deployment.start_timeout, echo,
                    lock_held=True)
        settle_interrupted_restore(config, docker, echo)
        found = preflight(config, docker, force)
        held.enter_context(attempt.pop_all())
    return found


def settle_interrupted_restore(config: Config, docker: Docker,
                               echo: Callable[[str], None]) -> None:
    """Secure the state from before an interrupted restore (or undo its unfinished swap)
    before this backup; a failure is reported and the backup goes on (the state stays)."""
    from torrust_maint.actions import restore as restore_action

    try:
        restore_action.finish_pending(config, docker, echo)
    except MaintError as error:
        log.error("an interrupted restore could not be settled: %s; its state from before "
                  "stays where it is", error)


def preflight(config: Config, docker: Docker, force: bool) -> tuple[Deployment, list[Container]]:
    """Everything checked before the window: the deployment, the tracker's state, the space."""
    deployment = discover(config.deployment, docker)
    to_stop = trackers_to_stop(deployment, force)
    if isinstance(deployment.database, SqliteDatabase):
        refuse_online_rollback_journal(config, deployment.database)
        sqlite_engine.preflight(deployment.database)  # a WAL snapshot writes -wal/-shm there
    else:  # a server restarting now is retried; once the window is open, nothing is
        ENGINES[deployment.driver].connect(deployment.database).close()
    files = database_files(deployment.database)
    total = sum(size for _, size in files)
    check_free_space(config.backup.directory, total + total // 2)
    return deployment, to_stop


def refuse_online_rollback_journal(config: Config, database: SqliteDatabase) -> None:
    """[window] mode "online" with an SQLite database not in WAL mode: a ConfigError before
    anything is done (a reader there would block the tracker's commits)."""
    if not config.window.online:
        return
    refusal = sqlite_engine.online_refusal(database.host_path)
    if refusal:
        raise ConfigError(f"{refusal}; nothing was done")


@contextlib.contextmanager
def set_storage_errors(directory: Path) -> Iterator[None]:
    """A file system error while a set is written (a full disk, a read-only or removed backup
    directory) as one clear MaintError; the window has started the tracker again by then."""
    try:
        yield
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        raise MaintError(f"[backup] directory: writing the set in {directory} failed: "
                         f"{error.strerror or error}{where}; nothing older was touched") from None


def write_set(config: Config, docker: Docker, deployment: Deployment,
              to_stop: list[Container], phases: Phases, started: float, run_started_at,
              echo: Callable[[str], None], inside_window: Callable[[], None] | None = None,
              reason: str = "scheduled", details: dict | None = None) -> str:
    """Window, snapshot, commit and verify one set (caller holds the lock); its id.
    `details` receives the set id and the downtime once it is committed."""
    set_id = catalog.set_id_for(run_started_at, config.backup.directory)
    with set_storage_errors(config.backup.directory):
        staged = catalog.StagedSet(config.backup.directory, set_id)
    try:
        with set_storage_errors(config.backup.directory):
            manifest, deferred = _backup_into(staged, config, docker, deployment, to_stop,
                                              phases, started, inside_window, reason)
            path = staged.commit(manifest)
    except BaseException:
        staged.discard()
        raise
    if details is not None:
        details.update(backup_id=set_id, downtime_seconds=manifest["downtime_seconds"])
    database = manifest["artifacts"][0]
    event("backup_committed", "backup %s committed at %s", set_id, path,
          BACKUP_ID=set_id, BACKUP_PATH=str(path), DB_DRIVER=deployment.driver,
          BACKUP_BYTES=sum(a["size"] for a in manifest["artifacts"]),
          DB_BYTES=database["uncompressed_size"],
          TRACKER_DOWNTIME_SEC=manifest["downtime_seconds"], WINDOW_MODE=manifest["window_mode"])
    echo(summary(manifest, path))
    if config.verify.after_backup:
        committed = next(s for s in catalog.list_sets(config.backup.directory) if s.id == set_id)
        outcome = verify_action.verify_set(committed, docker, config.backup.directory)
        # Either way the run fails, and a failed run deletes nothing: no pruning.
        if outcome.result == "failed":
            raise MaintError(f"backup {set_id} was written but FAILED verification: "
                             + "; ".join(outcome.problems))
        if outcome.result == "inconclusive":
            raise MaintError(f"backup {set_id} was written but could not be verified: "
                             f"{'; '.join(outcome.problems)}; {verify_action.INCONCLUSIVE_NOTE}"
                             f" (`torrust-maint verify {set_id}` tries again)")
        echo(f"  verified: restored and checked in {outcome.seconds:.1f} s")
    if deferred:
        raise MaintError(f"{deferred[0]} (the state from before is in set {set_id}: "
                         f"`torrust-maint restore {set_id}` puts it back)")
    return set_id


def _backup_into(staged: catalog.StagedSet, config: Config, docker: Docker,
                 deployment: Deployment, to_stop: list[Container], phases: Phases,
                 started: float, inside_window: Callable[[], None] | None = None,
                 reason: str = "scheduled") -> tuple[dict, list[MaintError]]:
    """Snapshot in a window (or online) and write the set into `staged`; errors of
    `inside_window`.

    `inside_window` (restore) runs after the snapshot while the tracker is still stopped;
    the config is archived before the window so that it shows the state before that.
    """
    snapshot_dir = staged.path / "snapshot"
    snapshot_dir.mkdir(mode=0o700)
    report = WindowReport()
    engine = ENGINES[deployment.driver]
    warnings: list[str] = []
    notify.status("archiving config files")
    with phases.timed("config"):
        config_artifact = archive_config(deployment, config, staged.path, warnings)
    notify.status("preparing the snapshot")
    online = config.window.online and inside_window is None  # a restore stops the tracker
    # A restore replaces the live files: it needs a snapshot that does not hold them open.
    prepared = engine.prepare(docker, deployment.database, snapshot_dir,
                              live_handle_ok=inside_window is None,
                              timeout=config.deployment.snapshot_timeout, online=online)
    deferred: list[MaintError] = []
    try:
        if online:
            opened = open_online(prepared, phases)
        else:
            opened = open_in_window(staged, config, docker, deployment, to_stop, report,
                                    prepared, phases, inside_window, deferred)
    except BaseException:
        prepared.abort()
        raise
    snapshot, database = opened.snapshot, opened.database
    try:
        if to_stop and not online and isinstance(snapshot, sqlite_engine.SqliteSnapshot):
            refuse_a_snapshot_taken_while_running(docker, to_stop, opened.window_opened,
                                                  opened.taken_at)
        if database is None:
            log.info("snapshot open; exporting it while the tracker serves")
            yield_cpu_to_the_tracker()
            with phases.timed("export"):
                database = export_database(snapshot, engine.FILE_STEM, config, staged.path)
    finally:
        snapshot.close()
        snapshot_dir.rmdir()
    all_phases = {**report.phases(), **phases.seconds}
    all_phases["total"] = round(phases.clock() - started, 6)
    manifest = build_manifest(staged.id, opened.opened_at, deployment, snapshot,
                              [database, config_artifact], report, all_phases, warnings,
                              window_mode="online" if online else "stop")
    if online and to_stop:  # the tracker ran throughout (None: --force, it was not running)
        manifest["downtime_seconds"] = 0.0
    manifest["snapshot_opened_at"] = catalog.rfc3339(opened.opened_at)
    manifest["snapshot_taken_at"] = catalog.rfc3339(opened.taken_at)
    manifest["reason"] = reason
    return manifest, deferred


@dataclass
class Opened:
    """A snapshot just opened, the wall-clock times around its opening (and the window's
    start), and the database artifact if it was exported inside the window."""

    snapshot: Any
    opened_at: dt.datetime
    taken_at: dt.datetime
    window_opened: dt.datetime | None = None
    database: Artifact | None = None


EXPORT_NICE = 10  # the export's CPU priority: the serving tracker comes first


def yield_cpu_to_the_tracker() -> None:
    """After the window: run on at nice EXPORT_NICE, so that the tracker serving beside the
    export gets the CPU first. Linux sets it per thread; threads started from here on (zstd's
    workers) inherit it. Never raised back: the rest of the run is background work too."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < EXPORT_NICE:
            os.setpriority(os.PRIO_PROCESS, 0, EXPORT_NICE)
    except OSError as error:  # a sandbox without the right: the export runs as it is
        log.debug("could not lower the export's priority: %s", error)


def open_online(prepared, phases: Phases) -> Opened:
    """[window] mode "online": open the snapshot while the tracker runs (bounded by
    [deployment] snapshot_timeout)."""
    notify.status(f"{ONLINE_NOTE}: opening the snapshot")
    opened_at = catalog.utc_now()
    with phases.timed("snapshot"):
        snapshot = prepared.open()
    opened = Opened(snapshot, opened_at, catalog.utc_now())
    log.info("%s: snapshot opened in %.3f s", ONLINE_NOTE, phases.seconds["snapshot"])
    return opened


def open_in_window(staged: catalog.StagedSet, config: Config, docker: Docker,
                   deployment: Deployment, to_stop: list[Container], report: WindowReport,
                   prepared, phases: Phases, inside_window: Callable[[], None] | None,
                   deferred: list[MaintError]) -> Opened:
    """Stop the tracker, open the snapshot (run `inside_window`, its MaintError into
    `deferred`), start the tracker again; without a running tracker (--force), no window."""
    engine = ENGINES[deployment.driver]
    # A MySQL snapshot is an open transaction on the live database: a restore has to wait for
    # the dump to finish, so it is exported inside the window.
    export_first = inside_window is not None and deployment.driver == "mysql"
    with contextlib.ExitStack() as stack:
        window_opened = catalog.utc_now()
        if to_stop:
            stack.enter_context(WindowGuard(
                config.path, config.backup.directory, to_stop,
                config.deployment.stop_timeout, report))
            stack.enter_context(maintenance_window(
                docker, to_stop, config.deployment.stop_timeout,
                config.deployment.start_timeout, report))
        else:
            log.warning("the tracker is not running: snapshot without a window")
        held = pending_signal()
        if held is not None:  # asked to stop during `docker stop`: no snapshot, restart
            raise Interrupted(held)
        opened_at = catalog.utc_now()
        snapshot = prepared.open()
        opened = Opened(snapshot, opened_at, catalog.utc_now(), window_opened)
        if export_first:
            with phases.timed("export"):
                opened.database = export_database(snapshot, engine.FILE_STEM, config,
                                                  staged.path)
        if inside_window is not None:
            try:
                inside_window()
            except MaintError as error:  # the safety set is still committed, then raised
                deferred.append(error)
    return opened


def refuse_a_snapshot_taken_while_running(docker: Docker, to_stop: list[Container],
                                          window_opened, snapshot_taken) -> None:
    """Fail (no set) when someone else started or recreated the tracker inside the window
    before a file-copy snapshot was taken: it may have written while we copied. (A MySQL or
    WAL read-transaction snapshot is consistent whoever writes.)"""
    others = started_by_someone_else(docker, to_stop, window_opened, snapshot_taken)
    if others:
        raise MaintError(
            "the tracker was started by someone else during the window ("
            + ", ".join(f"{c.name} started {c.started_at}" for c in others)
            + ") before the snapshot was taken: it may hold a state torn by the tracker's "
            "writes, so no set was written; run the backup again")


def summary(manifest: dict, path: Path) -> str:
    """The lines a committed backup prints: downtime, sizes, rows, total time."""
    database = manifest["artifacts"][0]
    downtime = manifest["downtime_seconds"]
    phases = manifest["phases"]
    window = ", ".join(f"{name} {phases[name]:.3f} s"
                       for name in ("stop", "snapshot", "start", "wait_healthy") if name in phases)
    rows = ", ".join(f"{t}={n}" for t, n in manifest["database"]["tables"].items())
    downtime_text = f"{downtime:.3f} s ({window})" if downtime is not None else "none (--force)"
    if manifest.get("window_mode") == "online" and downtime is not None:
        held = manifest["database"].get("writes_held_seconds")
        held_text = f", its writes held {held:.3f} s" if held is not None else ""
        downtime_text = (f"{downtime:.3f} s ({ONLINE_NOTE}; snapshot opened in "
                         f"{phases['snapshot']:.3f} s{held_text})")
    method = manifest["database"].get("snapshot_method", "consistent transaction + dump")
    return (
        f"backup {manifest['id']} committed: {path}\n"
        f"  tracker downtime: {downtime_text}\n"
        f"  database: {database['uncompressed_size']} bytes -> {database['size']} bytes "
        f"{database['compression']} (snapshot: {method})\n"
        f"  rows: {rows}\n"
        f"  total: {phases['total']:.3f} s"
    )
