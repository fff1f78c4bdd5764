"""``torrust-maint restore ID``: put a set back without ever losing the state it replaces.

1. **Prepare, while the tracker serves**: check the set (checksums, driver, room on disk),
   archive the current config into the safety set's staging directory, and stage the set's
   database: SQLite decompressed beside the live file and checked (integrity_check, row
   counts); MySQL imported into shadow tables of the live database and checked (row counts,
   checksums). A failure here changes nothing live.
2. **Window**: swap by renames (SQLite: the live file and its -wal/-journal aside, the new one
   in; MySQL: one atomic ``RENAME TABLE``), whatever the size. An error undoes the swap
   before the tracker starts; a kill is undone by ``recover`` (restore_record).
3. **After the restart**: the state set aside becomes the safety set (exported, committed,
   verified). Only then is it removed. A corrupt database from before is kept raw (its files,
   checksummed) in a set that retention never deletes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from torrust_maint import catalog, legacy_backups, legacy_check, notify, restore_record, safefs
from torrust_maint.actions import backup as backup_action
from torrust_maint.actions import verify as verify_action
from torrust_maint.compress import compressed_writer, copy_stream, open_decompressed
from torrust_maint.config import Config
from torrust_maint.deployment import Deployment, SqliteDatabase, discover
from torrust_maint.docker import Container, Docker
from torrust_maint.engines import ENGINES
from torrust_maint.engines import mysql as mysql_engine
from torrust_maint.engines import postgresql as postgresql_engine
from torrust_maint.engines import sqlite as sqlite_engine
from torrust_maint.errors import ConfigError, Interrupted, MaintError, VerificationFailed
from torrust_maint.journal import event
from torrust_maint.lock import run_lock
from torrust_maint.progress import Progress
from torrust_maint.recovery import (
    WindowGuard,
    WindowMarker,
    container_records,
    marked_containers,
    recover,
)
from torrust_maint.swap import FileSwap
from torrust_maint.window import (
    WindowReport,
    maintenance_window,
    pending_signal,
    signals_held,
    signals_raise,
    wait_until_ready,
)

log = logging.getLogger(__name__)

CONFIG_INCOMING = ".torrust-maint-restore"
CONFIG_ASIDE = ".torrust-maint-pre-restore-"
TableSwap = mysql_engine.MysqlSwap | postgresql_engine.PostgresqlSwap
DatabaseSwap = FileSwap | TableSwap
TABLE_SWAPS = (mysql_engine.MysqlSwap, postgresql_engine.PostgresqlSwap)
SWAP_CLASSES: dict[str, type[TableSwap]] = {"mysql": mysql_engine.MysqlSwap,
                                            "postgresql": postgresql_engine.PostgresqlSwap}
WINDOW_PHASES = {"snapshot": "swap"}  # a restore's window swaps where a backup's snapshots


def choose(config: Config, set_id: str) -> catalog.BackupSet:
    """The complete set to restore (`latest`: the newest); never a raw pre-restore set."""
    sets = [s for s in catalog.list_sets(config.backup.directory)
            if s.complete and s.kind != catalog.RAW]
    if set_id == "latest":
        if not sets:
            legacy = legacy_backups.list_sets(config.backup.directory)
            hint = (f" (a legacy cron backup is restored by its id: `torrust-maint restore "
                    f"{legacy[-1].id}`)" if legacy else "")
            raise ConfigError(f"no complete backup set in {config.backup.directory}{hint}")
        return sets[-1]
    for backup_set in sets:
        if backup_set.id == set_id:
            return backup_set
    raise ConfigError(f"no complete backup set {set_id!r} (see `torrust-maint list`)")


def choose_legacy(config: Config, docker: Docker, set_id: str,
                  dry_run: bool) -> catalog.BackupSet:
    """A legacy cron backup, proven first by restoring it somewhere throwaway (what it holds
    becomes what the restore checks against); a dry run only reads its files."""
    legacy = legacy_backups.find(config.backup.directory, config.state.directory, set_id)
    if legacy is None:
        raise ConfigError(f"no legacy backup set {set_id!r} (see `torrust-maint list`)")
    if legacy.database is None:
        raise ConfigError(f"legacy set {set_id} holds only a config archive; refusing (the "
                          "restore of config files goes with a database)")
    if dry_run:
        return legacy_check.as_backup_set(legacy, config.backup.directory, None)
    log.info("checking legacy set %s by restoring it somewhere throwaway first", set_id)
    notify.status(f"checking legacy set {set_id}")
    image = (verify_action.legacy_database_image(config, docker)
             if legacy.driver == "mysql" else None)
    try:
        with signals_raise():
            details = legacy_check.inspect(legacy, docker, image, config.backup.directory)
    except verify_action.DECOMPRESSION_ERRORS as error:
        raise MaintError(f"refusing to restore legacy set {set_id}: a file does not gunzip: "
                         f"{error}") from None
    except VerificationFailed as error:
        raise MaintError(f"refusing to restore legacy set {set_id}: {error}") from None
    return legacy_check.as_backup_set(legacy, config.backup.directory, details)


def manifest_of(backup_set: catalog.BackupSet) -> dict:
    """The manifest of a set chosen as complete (choose() returns only those)."""
    if backup_set.manifest is None:
        raise MaintError(f"{backup_set.path}: not a complete set ({backup_set.problem})")
    return backup_set.manifest


def database_artifact(backup_set: catalog.BackupSet) -> dict:
    found = next((a for a in manifest_of(backup_set)["artifacts"] if a["name"] == "database"),
                 None)
    if found is None:
        raise MaintError(f"set {backup_set.id} holds no database artifact; refusing")
    return found


def confirm(backup_set: catalog.BackupSet, deployment: Deployment,
            ask: Callable[[str], str]) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError("restore asks for confirmation on a terminal; pass --yes to skip it")
    answer = ask(f"Restore set {backup_set.id} ({manifest_of(backup_set)['created_at']}) over the "
                 f"live database of {deployment.compose_dir}? The current state is backed up "
                 "first. [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def check_artifacts(backup_set: catalog.BackupSet) -> None:
    """Refuse, before anything else, a set whose files do not match their checksums."""
    problems = verify_action.artifact_problems(backup_set)
    if problems:
        raise MaintError("refusing to restore a damaged set: " + "; ".join(problems))


def check_set(backup_set: catalog.BackupSet, deployment: Deployment) -> None:
    """Refuse a set whose database is not the deployment's driver."""
    driver = manifest_of(backup_set)["database"].get("driver")
    if driver != deployment.driver:
        raise ConfigError(f"set {backup_set.id} holds a {driver} database, the deployment uses "
                          f"{deployment.driver}; refusing")
    database_artifact(backup_set)


# -- room on disk ---------------------------------------------------------------------------

def check_room(config: Config, docker: Docker, deployment: Deployment,
               backup_set: catalog.BackupSet) -> None:
    """Refuse before the window when the new database and the safety set do not both fit."""
    incoming = database_artifact(backup_set).get("uncompressed_size", 0)
    database = deployment.database
    needs: dict[int, list[tuple[str, Path, int]]] = {}

    def need(what: str, where: Path, size: int) -> None:
        probe = where
        while not probe.exists():
            probe = probe.parent
        needs.setdefault(os.stat(probe).st_dev, []).append((what, probe, size))

    if isinstance(database, SqliteDatabase):
        current = sum(size for _, size in backup_action.database_files(database))
        need("the restored database beside the live one", database.host_path.parent, incoming)
        need("the safety set of the current database ([backup] directory)",
             config.backup.directory, current + current // 2)
    else:
        free, current = ENGINES[database.driver].shadow_room(docker, database)
        if free is not None and free < incoming:
            raise MaintError(
                f"the database server has {free / 1e6:.1f} MB free in its data directory, the "
                f"restore's shadow copy needs about {incoming / 1e6:.1f} MB (the set's dump); "
                "nothing was changed")
        need("the safety set of the current database ([backup] directory)",
             config.backup.directory, current)
    for parts in needs.values():
        total = sum(size for _, _, size in parts)
        free = shutil.disk_usage(parts[0][1]).free
        if free < total:
            wanted = "; ".join(f"{what}: about {size / 1e6:.1f} MB" for what, _, size in parts)
            raise MaintError(f"not enough room: {parts[0][1]} has {free / 1e6:.1f} MB free, the "
                             f"restore needs {total / 1e6:.1f} MB there ({wanted}); "
                             "nothing was changed")


# -- config files ---------------------------------------------------------------------------

def stage_config(backup_set: catalog.BackupSet, compose_dir: Path,
                 restore_id: str) -> list[FileSwap]:
    """Write the set's config files beside the live ones (never through a symlink: the tracker
    can write parts of compose_dir); the swaps that put them in place."""
    artifact = next((a for a in manifest_of(backup_set)["artifacts"] if a["name"] == "config"),
                    None)
    if artifact is None:
        raise MaintError(f"set {backup_set.id} holds no config archive")
    swaps: list[FileSwap] = []
    prefix = artifact.get("member_prefix", "")  # a legacy archive's data/ (the compose dir)
    try:
        with open_decompressed(backup_set.path / artifact["path"],
                               artifact["compression"]) as raw:
            with tarfile.open(fileobj=raw, mode="r|") as tar:
                for member in tar:
                    name = _plain_member_name(member)
                    if prefix:
                        beneath = legacy_backups.config_member_path(name, prefix)
                        if beneath is None:
                            raise MaintError(f"config archive member {member.name!r} is not "
                                             f"beneath {prefix}; refusing")
                        if not beneath:
                            continue
                        name = beneath
                    if member.isdir():
                        os.close(safefs.open_dir_beneath(compose_dir, name, create=True))
                        continue
                    source = tar.extractfile(member)
                    assert source is not None
                    swaps.append(_stage_config_file(compose_dir, name, source,
                                                    member.mode & 0o777, restore_id))
    except BaseException:
        for swap in swaps:
            swap.remove_incoming()
        raise
    return swaps


def restore_config(backup_set: catalog.BackupSet, compose_dir: Path) -> list[str]:
    """Stage and put the set's config files in place at once (files from before removed)."""
    swaps = stage_config(backup_set, compose_dir, catalog.utc_now().strftime("%Y%m%dT%H%M%SZ"))
    for swap in swaps:
        swap.apply()
        swap.remove_aside()
    return [str(Path(swap.directory).relative_to(compose_dir) / swap.name) for swap in swaps]


def _plain_member_name(member: tarfile.TarInfo) -> str:
    """The member's normalised relative path; MaintError for anything but a plain file or
    directory beneath the compose dir."""
    name = os.path.normpath(member.name)
    if name.startswith(("/", "..")) or not (member.isfile() or member.isdir()):
        raise MaintError(f"config archive member {member.name!r} is not a plain "
                         "relative file or directory; refusing")
    return name


def _stage_config_file(compose_dir: Path, name: str, source, mode: int,
                       restore_id: str) -> FileSwap:
    """Write compose_dir/name's new content under a temporary name beside it."""
    directory, filename = os.path.split(name)
    temporary = filename + CONFIG_INCOMING
    dir_fd = safefs.open_dir_beneath(compose_dir, directory, create=True)
    try:
        shown = compose_dir / directory / temporary
        if safefs.check_regular(temporary, dir_fd=dir_fd, shown=shown) is not None:
            os.unlink(temporary, dir_fd=dir_fd)  # left by a killed restore
        try:
            os.lstat(filename, dir_fd=dir_fd)  # a symlink there is moved aside, never followed
            existed = True
        except FileNotFoundError:
            existed = False
        with open(safefs.create_exclusive(temporary, mode, dir_fd=dir_fd), "wb") as sink:
            copy_stream(source, sink)
            sink.flush()
            os.fsync(sink.fileno())
            inode = os.fstat(sink.fileno()).st_ino
    finally:
        os.close(dir_fd)
    return FileSwap(directory=str(compose_dir / directory), name=filename, incoming=temporary,
                    aside=f"{filename}{CONFIG_ASIDE}{restore_id}", incoming_ino=inode,
                    existed=existed)


# -- the flow -------------------------------------------------------------------------------

def run(config: Config, docker: Docker, set_id: str | None, *, assume_yes: bool = False,
        with_config: bool = False, dry_run: bool = False, no_start: bool = False,
        finish: bool = False, echo: Callable[[str], None] = print,
        ask: Callable[[str], str] = input) -> int:
    """Restore a set (or, with finish, only secure an interrupted restore's state)."""
    if finish:
        if set_id is not None:
            raise ConfigError("restore --finish takes no set ID")
        return finish_command(config, docker, echo)
    if set_id is None:
        raise ConfigError("restore needs a set ID (or `latest`), or --finish")
    target = (choose_legacy(config, docker, set_id, dry_run)
              if legacy_backups.is_legacy_id(set_id) else choose(config, set_id))
    check_artifacts(target)
    deployment = discover(config.deployment, docker)
    check_set(target, deployment)
    if dry_run:
        print_plan(config, deployment, target, with_config, no_start, echo)
        return 0
    if not assume_yes and not confirm(target, deployment, ask):
        raise MaintError("restore cancelled; nothing was changed")
    catalog.ensure_directory(config.backup.directory)
    with run_lock(config.backup.directory), signals_raise():
        verify_action.remove_leftovers(docker, config.backup.directory)
        if WindowMarker.read(config.backup.directory):
            recover(config.backup.directory, docker, config.deployment.start_timeout, echo,
                    lock_held=True)
        finish_pending(config, docker, echo)
        deployment = discover(config.deployment, docker)  # after any recovery
        check_room(config, docker, deployment, target)
        return _restore(config, docker, deployment, target, with_config, no_start, echo)


def _restore(config: Config, docker: Docker, deployment: Deployment,
             target: catalog.BackupSet, with_config: bool, no_start: bool,
             echo: Callable[[str], None]) -> int:
    directory = config.backup.directory
    phases = backup_action.Phases()
    started = phases.clock()
    was_running = [c for c in deployment.trackers if c.running]
    safety_id = catalog.set_id_for(catalog.utc_now(), directory)
    with backup_action.set_storage_errors(directory):
        staged = catalog.StagedSet(directory, safety_id)
    record = {"id": safety_id, "restore_of": target.id, "driver": deployment.driver,
              "started_at": catalog.rfc3339(catalog.utc_now()), "phase": restore_record.PREPARED,
              "files": [], "mysql": {}, "safety_set": None,
              "containers": container_records(list(deployment.trackers))}
    event("restore_started", "restoring set %s: preparing while the tracker serves", target.id,
          BACKUP_ID=target.id, DB_DRIVER=deployment.driver)
    warnings: list[str] = []
    database_swap: DatabaseSwap | None = None
    config_swaps: list[FileSwap] = []
    try:
        # Written first: a kill while staging leaves a record, so what was staged (a file
        # beside the database, shadow tables) is found and removed by the next run.
        restore_record.write(directory, record)
        with backup_action.set_storage_errors(directory), phases.timed("config"):
            config_artifact = backup_action.archive_config(deployment, config, staged.path,
                                                           warnings)
        with phases.timed("prepare"):
            database_swap = stage_database(config, docker, deployment, target, safety_id)
            if with_config:
                config_swaps = stage_config(target, deployment.compose_dir, safety_id)
        _fill_record(record, database_swap, config_swaps)
        restore_record.write(directory, record)
    except BaseException as error:
        _discard(database_swap, config_swaps)
        staged.discard()
        restore_record.clear(directory)
        _refused(target, error)
        _raise_unchanged(target, error)
        raise
    echo(f"prepared set {target.id} in {phases.seconds['prepare']:.1f} s while the tracker "
         "served; swapping it in")
    report = WindowReport()
    try:
        with contextlib.ExitStack() as stack:
            if was_running:
                stack.enter_context(WindowGuard(config.path, directory, was_running,
                                                config.deployment.stop_timeout, report))
                stack.enter_context(maintenance_window(
                    docker, was_running, config.deployment.stop_timeout,
                    config.deployment.start_timeout, report))
            stack.enter_context(signals_held())
            held = pending_signal()
            if held is not None:
                raise Interrupted(held)
            swapped_at = swap_in(directory, record, database_swap, config_swaps)
    except BaseException as error:
        if record["phase"] == restore_record.PREPARED:
            _discard(database_swap, config_swaps)
            staged.discard()
            restore_record.clear(directory)
            _refused(target, error)
            _raise_unchanged(target, error)
        else:
            staged.discard()  # the next run makes the safety set afresh from the record
            event("restore_failed", "restore of %s: %s during or after its swap: %s",
                  target.id, record["phase"], error, level=logging.ERROR, BACKUP_ID=target.id,
                  ERROR=str(error))
            echo(restore_record.describe(record))
        raise
    finally:
        if isinstance(database_swap, TABLE_SWAPS):
            database_swap.close()
    if not no_start:  # trackers that were not running before (a broken database?) start too
        wait_until_ready(docker, list(deployment.trackers), config.deployment.start_timeout,
                         WindowReport())
    downtime = f"{report.downtime:.3f} s" if report.downtime is not None else "none"
    event("restore_swapped", "set %s is live; tracker downtime %s", target.id, downtime,
          BACKUP_ID=target.id, TRACKER_DOWNTIME_SEC=report.downtime)
    window = ", ".join(f"{WINDOW_PHASES.get(name, name)} {seconds:.3f} s"
                       for name, seconds in report.phases().items())
    echo(f"restored set {target.id}: tracker downtime {downtime} ({window or 'no window'})")
    if config_swaps:
        echo("restored config files: " + ", ".join(
            str(Path(s.directory).relative_to(deployment.compose_dir) / s.name)
            for s in config_swaps))
    if no_start and not was_running:
        echo("the tracker was not running and is left stopped (--no-start)")
    secure(config, docker, deployment, record, staged, config_artifact, report, phases,
           started, swapped_at, warnings, echo)
    return 0


def stage_database(config: Config, docker: Docker, deployment: Deployment,
                   target: catalog.BackupSet, restore_id: str) -> DatabaseSwap:
    """Prepare the set's database for the swap, checked, while the tracker serves."""
    artifact = database_artifact(target)
    expected = manifest_of(target)["database"]
    source = target.path / artifact["path"]
    size = artifact.get("uncompressed_size")
    database = deployment.database
    notify.status(f"preparing set {target.id}")
    if isinstance(database, SqliteDatabase):
        sqlite_engine.preflight(database, replacing=True)
        return sqlite_engine.stage_restore(docker, database, source, artifact["compression"],
                                           expected, restore_id, size)
    return ENGINES[database.driver].stage_restore(
        docker, database, source, artifact["compression"], expected,
        config.deployment.snapshot_timeout, size)


def _fill_record(record: dict, database_swap: DatabaseSwap, config_swaps: list[FileSwap]) -> None:
    files = [database_swap] if isinstance(database_swap, FileSwap) else []
    record["files"] = [swap.to_json() for swap in files + config_swaps]
    if isinstance(database_swap, TABLE_SWAPS):
        record[record["driver"]] = database_swap.record()


def swap_in(directory: Path, record: dict, database_swap: DatabaseSwap,
            config_swaps: list[FileSwap]) -> dt.datetime:
    """Inside the window: record, swap, record; undo everything on any error. The instant the
    state from before was set aside."""
    files = [database_swap] if isinstance(database_swap, FileSwap) else []
    files += config_swaps
    for swap in files:
        swap.check_ready()
    if isinstance(database_swap, FileSwap) and database_swap.existed:
        sqlite_engine.check_live_files(database_swap.live_path)  # the tracker is stopped now
    if isinstance(database_swap, TABLE_SWAPS):
        database_swap.plan()
        record[record["driver"]] = database_swap.record()
    record["phase"] = restore_record.SWAPPING
    restore_record.write(directory, record)
    swapped_at = catalog.utc_now()
    notify.status("restore: swapping the restored state in")
    try:
        for swap in files:
            swap.apply()
        if isinstance(database_swap, TABLE_SWAPS):
            database_swap.apply()
        notify.status("restore: swapped in, recording it")
        record["phase"] = restore_record.SWAPPED
        restore_record.write(directory, record)
    except BaseException:
        if _undo_all(database_swap, files):
            record["phase"] = restore_record.PREPARED
            restore_record.write(directory, record)
        raise
    return swapped_at


def _undo_all(database_swap: DatabaseSwap, files: list[FileSwap]) -> bool:
    """Undo every swap, each on its own (one failing never stops the others); whether all
    were undone. A failure is logged; the record then stays in phase swapping."""
    undos: list[Callable[[], None]] = [swap.undo for swap in reversed(files)]
    if isinstance(database_swap, TABLE_SWAPS):
        undos.insert(0, database_swap.undo)
    undone = True
    for undo in undos:
        try:
            undo()
        except (OSError, MaintError) as error:
            log.critical("undoing the restore's swap failed: %s; the record stays for "
                         "`torrust-maint recover` and `restore --finish`", error)
            undone = False
    return undone


def _discard(database_swap: DatabaseSwap | None, config_swaps: list[FileSwap]) -> None:
    """Remove what a restore that did not happen staged (never anything live)."""
    for swap in [database_swap, *config_swaps]:
        if swap is None:
            continue
        try:
            swap.remove_incoming()
        except (OSError, MaintError) as error:
            log.warning("could not remove what the restore staged: %s", error)


def _raise_unchanged(target: catalog.BackupSet, error: BaseException) -> None:
    """Raise a MaintError (not a signal's Interrupted) again, saying that nothing live changed;
    its exit code is kept."""
    if isinstance(error, MaintError) and not isinstance(error, Interrupted):
        refused = MaintError(f"restore of set {target.id} failed: {error}; nothing live was "
                             "changed")
        refused.exit_code = error.exit_code
        raise refused from None


def _refused(target: catalog.BackupSet, error: BaseException) -> None:
    event("restore_failed", "restore of %s failed: %s; nothing live was changed", target.id,
          error, level=logging.ERROR, BACKUP_ID=target.id, ERROR=str(error))


# -- after the window: the safety set -------------------------------------------------------

def secure(config: Config, docker: Docker, deployment: Deployment, record: dict,
           staged: catalog.StagedSet, config_artifact, report: WindowReport,
           phases: backup_action.Phases, started: float, swapped_at,
           warnings: list[str], echo: Callable[[str], None]) -> str | None:
    """Export the state set aside into the safety set, commit and verify it; only then remove
    the state set aside. Raises (keeping it) when the set cannot be made or verified."""
    directory = config.backup.directory
    swaps = restore_record.file_swaps(record)
    database_swap = _database_swap(docker, deployment, record, config)
    if isinstance(database_swap, FileSwap) and not database_swap.existed:
        staged.discard()
        _remove_aside(None, swaps)
        restore_record.clear(directory)
        echo("there was no database before the restore: no safety set")
        return None
    try:
        notify.status("exporting the state from before the restore")
        with backup_action.set_storage_errors(directory):
            manifest = _safety_manifest(config, deployment, record, staged, database_swap,
                                        config_artifact, report, phases, started, swapped_at,
                                        warnings)
            staged.commit(manifest)
    except BaseException:
        staged.discard()
        if isinstance(database_swap, TABLE_SWAPS):
            database_swap.close()
        raise
    record["safety_set"] = staged.id
    restore_record.write(directory, record)
    notify.status(f"restore: safety set {staged.id} committed, verifying it")
    committed = next(s for s in catalog.list_sets(directory) if s.id == staged.id)
    kind = manifest["pre_restore"]["kind"]
    if kind == catalog.RAW:
        problems = verify_action.artifact_problems(committed)
        verified = not problems
        what = ("its files read back with matching checksums" if verified
                else "; ".join(problems))
    else:
        outcome = verify_action.verify_set(committed, docker, directory)
        verified = outcome.passed
        what = "verified" if verified else f"{outcome.result}: {'; '.join(outcome.problems)}"
    try:
        if not verified:
            raise MaintError(f"the safety set {staged.id} was written but is not verified "
                             f"({what}); the state from before stays where it is: "
                             f"{restore_record.describe(record)}")
        notify.status("restore: removing the state set aside (a verified set holds it)")
        with signals_held():
            _remove_aside(database_swap, swaps)
    finally:
        if isinstance(database_swap, TABLE_SWAPS):
            database_swap.close()
    restore_record.clear(directory)
    event("restore_completed", "restored set %s; the state before it is in set %s (%s)",
          record["restore_of"], staged.id, kind, BACKUP_ID=record["restore_of"],
          SAFETY_BACKUP_ID=staged.id)
    if kind == catalog.RAW:
        echo(f"the database from before could not be exported ({manifest['warnings'][-1]}); "
             f"its raw files are kept in set {staged.id} ({what}), which retention never "
             "deletes")
    else:
        echo(f"the state before the restore is in safety set {staged.id} ({what})")
    return staged.id


def _database_swap(docker: Docker, deployment: Deployment, record: dict,
                   config: Config) -> DatabaseSwap:
    driver = record.get("driver")
    if driver in SWAP_CLASSES:
        database = deployment.database
        if database.driver != driver or isinstance(database, SqliteDatabase):
            raise MaintError(f"the interrupted restore was of a {driver} database; the "
                             f"deployment now uses {deployment.driver}")
        return SWAP_CLASSES[driver].from_record(
            docker, database, record.get(driver, {}),  # type: ignore[arg-type]
            config.deployment.snapshot_timeout)
    return restore_record.file_swaps(record)[0]


def _remove_aside(database_swap: DatabaseSwap | None, swaps: list[FileSwap]) -> None:
    """A verified copy holds the state from before: remove what was set aside."""
    if isinstance(database_swap, TABLE_SWAPS):
        database_swap.remove_aside()
    for swap in swaps:
        swap.remove_aside()


def _safety_manifest(config: Config, deployment: Deployment, record: dict,
                     staged: catalog.StagedSet, database_swap: DatabaseSwap, config_artifact,
                     report: WindowReport, phases: backup_action.Phases, started: float,
                     swapped_at, warnings: list[str]) -> dict:
    """Write the safety set's database artifact (or, for a database SQLite cannot read, its
    raw files) into the staging directory; the manifest."""
    snapshot_dir = staged.path / "snapshot"
    snapshot_dir.mkdir(mode=0o700, exist_ok=True)
    kind = catalog.SAFETY
    snapshot: (sqlite_engine.SqliteSnapshot | mysql_engine.MysqlSnapshot
               | postgresql_engine.PostgresqlSnapshot | None) = None
    try:
        if isinstance(database_swap, FileSwap):
            snapshot = sqlite_engine.pre_restore_snapshot(database_swap, snapshot_dir)
        else:
            snapshot = database_swap.pre_restore_snapshot()
        with phases.timed("export"):
            stem = ENGINES[deployment.driver].FILE_STEM
            artifacts = [backup_action.export_database(snapshot, stem, config, staged.path)]
    except MaintError as error:
        # Only a database SQLite cannot read is kept raw: a signal or an unsafe file is no
        # verdict on the data.
        if isinstance(error, (Interrupted, safefs.UnsafePath)) or \
                not isinstance(database_swap, FileSwap):
            raise
        log.error("the database from before the restore cannot be exported: %s", error)
        warnings.append(f"the database from before the restore cannot be exported: {error}")
        _remove_partial(staged.path)
        kind = catalog.RAW
        artifacts = raw_artifacts(database_swap, config, staged.path)
    finally:
        if snapshot is not None:
            snapshot.close()
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    if config_artifact is not None:
        artifacts.append(config_artifact)
    all_phases = {**report.phases(), **phases.seconds}
    all_phases["total"] = round(phases.clock() - started, 6)
    details = snapshot.manifest() if kind == catalog.SAFETY and snapshot is not None else \
        {"tables": {}, "raw": True}
    manifest = backup_action.build_manifest(staged.id, swapped_at, deployment,
                                            _Manifested(details), artifacts, report,
                                            all_phases, warnings)
    manifest["reason"] = f"safety backup before restoring {record['restore_of']}"
    manifest["pre_restore"] = {"restore_of": record["restore_of"], "kind": kind}
    return manifest


class _Manifested:
    """What build_manifest asks of a snapshot: its manifest fields."""

    def __init__(self, details: dict):
        self.details = details

    def manifest(self) -> dict:
        return self.details


def _remove_partial(path: Path) -> None:
    """A database artifact a failed export began (the config archive stays)."""
    for entry in path.iterdir():
        if entry.name.startswith(sqlite_engine.FILE_STEM) and entry.is_file():
            entry.unlink()


def raw_artifacts(swap: FileSwap, config: Config, target_dir: Path) -> list:
    """The raw files set aside (database, -wal, -journal), compressed and checksummed."""
    sqlite_engine.check_live_files(swap.aside_path)  # no symlink, no hard link, no FIFO
    artifacts = []
    for path in swap.aside_paths():
        suffix = path.name[len(swap.aside):]
        with open(safefs.open_nofollow(path), "rb") as source, compressed_writer(
                target_dir, f"raw-database{suffix}", f"raw-database.sqlite3{suffix}",
                config.backup.compression, config.backup.compression_level) as (stream, artifact):
            size = os.fstat(source.fileno()).st_size
            with Progress(f"exporting {artifact.path}", size) as progress:
                copy_stream(source, stream, progress)
        artifacts.append(artifact)
    return artifacts


# -- an interrupted restore -----------------------------------------------------------------

def finish_pending(config: Config, docker: Docker, echo: Callable[[str], None]) -> bool:
    """Settle a restore that was interrupted (caller holds the lock): undo one that did not
    swap, secure the state set aside by one that did. Whether there was one."""
    directory = config.backup.directory
    record = restore_record.read(directory)
    if record is None:
        return False
    if record.get("phase") == "unreadable":
        raise MaintError(restore_record.describe(record))
    if record.get("phase") == restore_record.SWAPPING and \
            record.get("driver") not in restore_record.TABLE_SWAP_DRIVERS:
        _settle_file_swapping(directory, record, docker)  # discover() needs the database there
    deployment = discover(config.deployment, docker)
    if record.get("phase") == restore_record.SWAPPING:
        _settle_swapping(directory, record, docker, deployment, config)
    if record.get("phase") == restore_record.PREPARED:
        _remove_staged(docker, deployment, record, config)
        restore_record.clear(directory)
        echo(f"cleaned up after the restore of set {record.get('restore_of')} that was "
             "interrupted before its swap (nothing live had changed)")
        return True
    database_swap = _database_swap(docker, deployment, record, config)
    swaps = restore_record.file_swaps(record)
    if _already_secured(record, docker, directory, database_swap, swaps):
        restore_record.clear(directory)
        echo(f"the state from before the interrupted restore of set {record.get('restore_of')} "
             f"is in the verified set {record.get('safety_set')}; removed what was set aside")
        return True
    echo(f"securing the state from before the interrupted restore of set "
         f"{record.get('restore_of')}")
    warnings = ["made after an interrupted restore: the config archive holds the config of "
                "the time it was made"]
    phases = backup_action.Phases()
    staged = catalog.StagedSet(directory, catalog.set_id_for(catalog.utc_now(), directory))
    with backup_action.set_storage_errors(directory):
        config_artifact = backup_action.archive_config(deployment, config, staged.path, warnings)
    swapped_at = catalog.parse_rfc3339(str(record.get("started_at")))
    secure(config, docker, deployment, record, staged, config_artifact, WindowReport(), phases,
           phases.clock(), swapped_at, warnings, echo)
    return True


def _remove_staged(docker: Docker, deployment: Deployment, record: dict,
                   config: Config) -> None:
    """What a restore killed before its swap staged: the file beside the database (also one
    the record does not name yet), shadow tables, config files written beside the live ones."""
    for swap in restore_record.file_swaps(record):
        swap.remove_incoming()
    database = deployment.database
    if isinstance(database, SqliteDatabase):
        sqlite_engine.remove_staged_restore(database)
    else:
        tables = SWAP_CLASSES[database.driver](
            docker, database, [], config.deployment.snapshot_timeout)  # type: ignore[arg-type]
        try:
            tables.remove_incoming()
        finally:
            tables.close()


def _already_secured(record: dict, docker: Docker, directory: Path,
                     database_swap: DatabaseSwap, swaps: list[FileSwap]) -> bool:
    """Whether the record's safety set was committed and holds the state (verified now if it
    was not yet): then what was set aside is removed. False when there is no such set."""
    found = [s for s in catalog.list_sets(directory)
             if s.id == record.get("safety_set") and s.complete]
    if not found:
        return False
    backup_set = found[0]
    if backup_set.kind == catalog.RAW:
        problems = verify_action.artifact_problems(backup_set)
    elif backup_set.verification != "passed":
        outcome = verify_action.verify_set(backup_set, docker, directory)
        problems = [] if outcome.passed else [f"{outcome.result}: {'; '.join(outcome.problems)}"]
    else:
        problems = []
    if problems:
        raise MaintError(f"the safety set {backup_set.id} of the interrupted restore is not "
                         f"verified ({'; '.join(problems)}); the state from before stays "
                         f"where it is: {restore_record.describe(record)}")
    try:
        with signals_held():
            _remove_aside(database_swap, swaps)
    finally:
        if isinstance(database_swap, TABLE_SWAPS):
            database_swap.close()
    return True


def _settle_swapping(directory: Path, record: dict, docker: Docker, deployment: Deployment,
                     config: Config) -> None:
    """A swap cut short: MySQL's RENAME is atomic (see whether it happened); files are rolled
    back, unless a tracker already runs on the new state (then it counts as swapped)."""
    if record.get("driver") in restore_record.TABLE_SWAP_DRIVERS:
        swap = _database_swap(docker, deployment, record, config)
        assert isinstance(swap, TABLE_SWAPS)
        try:
            done = swap.applied()
        finally:
            swap.close()
        if not done:  # its config files (swapped before the tables) go back too
            restore_record.roll_back(directory, tables_not_swapped=True)
            record["phase"] = restore_record.PREPARED
            return
        record["phase"] = restore_record.SWAPPED
    restore_record.write(directory, record)


def _settle_file_swapping(directory: Path, record: dict, docker: Docker) -> None:
    """A file swap cut short: rolled back while no tracker runs; if one was started since
    and the swap is complete, it counts as swapped (the tracker writes on the new state)."""
    from torrust_maint.window import resolve_targets

    current, _ = resolve_targets(docker, list(marked_containers(record)))
    running = [c.name for c in current if c.running]
    swaps = restore_record.file_swaps(record)
    if not running:
        restore_record.roll_back(directory)
        record["phase"] = restore_record.PREPARED
    elif all(swap.applied() for swap in swaps):
        record["phase"] = restore_record.SWAPPED
        restore_record.write(directory, record)
    else:
        raise MaintError(f"an interrupted restore's swap is incomplete and the tracker "
                         f"({', '.join(running)}) was started since: stop it, then run "
                         "`torrust-maint restore --finish`")


def finish_command(config: Config, docker: Docker, echo: Callable[[str], None]) -> int:
    with run_lock(config.backup.directory), signals_raise():
        if not finish_pending(config, docker, echo):
            echo("no interrupted restore: nothing to do")
    return 0


# -- --dry-run ------------------------------------------------------------------------------

def print_plan(config: Config, deployment: Deployment, target: catalog.BackupSet,
               with_config: bool, no_start: bool, echo: Callable[[str], None]) -> None:
    """Every step a restore would take, touching nothing."""
    artifact = database_artifact(target)
    database = deployment.database
    running = [c for c in deployment.trackers if c.running]
    echo("dry run: nothing will be changed")
    echo(f"set {target.id}: checksums match; {deployment.driver} database, "
         f"{artifact.get('uncompressed_size', 0)} bytes uncompressed")
    echo(f"deployment: {deployment.compose_dir}; database: {database.describe()}")
    echo(f"would lock {config.backup.directory / '.torrust-maint.lock'} and finish any "
         "interrupted restore first")
    echo("would check the room for the restored database and the safety set")
    echo("while the tracker serves:")
    echo(f"  would archive the current config into the safety set ({config.backup.directory})")
    if isinstance(database, SqliteDatabase):
        echo(f"  would decompress the set's database to {database.host_path}"
             f"{sqlite_engine.RESTORE_SUFFIX} and run integrity_check and the row counts")
    elif database.driver == "postgresql":
        echo(f"  would load the set's dump into schema {postgresql_engine.NEW_SCHEMA} of "
             f"{database.database} and compare row counts, checksums and _sqlx_migrations")
    else:
        echo(f"  would import the set's dump into shadow tables {mysql_engine.NEW_PREFIX}<table> "
             f"of {database.database} and compare row counts and checksums")
    if with_config:
        echo(f"  would write the set's config files beside the live ones "
             f"(<name>{CONFIG_INCOMING})")
    echo(f"  would record the restore in {config.backup.directory / restore_record.RECORD_NAME}")
    _print_window(running, database, with_config, echo)
    if not running:
        echo("would start the tracker afterwards" if not no_start
             else "would leave the stopped tracker stopped (--no-start)")
    echo("after the restart:")
    echo("  would export the state set aside into a safety set, commit and verify it")
    if isinstance(database, SqliteDatabase):
        echo("  would then remove the state set aside (a database SQLite cannot read is kept "
             "raw in a set that retention never deletes)")
    else:
        echo("  would then remove the state set aside")


def _print_window(running: list[Container], database, with_config: bool,
                  echo: Callable[[str], None]) -> None:
    names = ", ".join(c.name for c in running)
    echo(f"window: would stop {names}" if running
         else "no window: the tracker is not running")
    if isinstance(database, SqliteDatabase):
        echo(f"  would rename {database.host_path} (and any -wal, -journal) to "
             f"<name>{sqlite_engine.PRE_RESTORE_INFIX}<id>, remove -shm, and rename the "
             "restored file in")
    elif database.driver == "postgresql":
        echo(f"  would rename schema {postgresql_engine.SCHEMA} to "
             f"{postgresql_engine.OLD_SCHEMA} and {postgresql_engine.NEW_SCHEMA} to "
             f"{postgresql_engine.SCHEMA}, in one transaction")
    else:
        echo(f"  would RENAME TABLE every live table to {mysql_engine.OLD_PREFIX}<table> and "
             f"every {mysql_engine.NEW_PREFIX}<table> to <table>, in one statement")
    if with_config:
        echo(f"  would rename the config files aside (<name>{CONFIG_ASIDE}<id>) and the "
             "restored ones in")
    if running:
        echo(f"  would start {names} and wait until it is healthy")

