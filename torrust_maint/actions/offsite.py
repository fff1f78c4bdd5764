"""``torrust-maint offsite init|upload|check|configured``: off-site copies through restic.

``upload`` (torrust-offsite.service, started when a backup succeeds) sends every local set
that passed verification and is not off-site yet, oldest first, one snapshot per set, then
forgets and prunes by the off-site keep_* rules among this host's snapshots of ours only.
It reads the sets and writes nothing but the state directory: its unit has the network but
no Docker socket and sees the backups read-only.

``check`` (torrust-offsite-check.service, before the weekly verify) runs ``restic check``
on a share of the data and fetches the newest off-site set into the state directory, where
``verify --scheduled`` restores it somewhere throwaway like any local set.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torrust_maint import catalog, offsite
from torrust_maint.actions import verify as verify_action
from torrust_maint.config import Config
from torrust_maint.errors import ConfigError, MaintError
from torrust_maint.journal import event
from torrust_maint.restic import SET_TAG_PREFIX, TAG, Restic, ResticError

log = logging.getLogger(__name__)

FETCH_STAGING = catalog.STAGING_PREFIX + "fetch-"
T = TypeVar("T")


def restic_for(config: Config) -> Restic:
    if not config.offsite.configured:
        raise ConfigError(f"{config.path}: [offsite] repository: not set; off-site copies "
                          "are off (see the [offsite] section of the configuration)")
    return Restic(config.offsite)


def unlocking(restic: Restic, call: Callable[[], T]) -> T:
    """Run `call`; when the repository is locked, remove stale locks only (`restic unlock`,
    as restic advises: a lock of a dead process on this host, or one older than 30 minutes)
    and try once more. A live lock of another host or process is left alone."""
    try:
        return call()
    except ResticError as error:
        if error.kind != "locked":
            raise
        log.warning("the repository is locked; removing stale locks (restic unlock) and "
                    "trying again")
    restic.unlock()
    try:
        return call()
    except ResticError as error:
        if error.kind != "locked":
            raise
        raise ResticError("locked", f"{error} (a live lock: another restic process, here or "
                          "on another host, is using the repository; nothing was removed. "
                          "If none is, see `restic list locks`)") from None


# -- init -------------------------------------------------------------------------------------

def init(config: Config, echo: Callable[[str], None] = print) -> int:
    """Create the repository (compression on); nothing to do when it opens already."""
    restic = restic_for(config)
    try:
        restic.open_repository()
    except ResticError as error:
        if error.kind != "no-repository":
            raise
    else:
        echo(f"the repository {restic.shown} exists and opens with the password; "
             "nothing to do")
        return 0
    restic.init()
    restic.open_repository()
    echo(f"created the repository {restic.shown} (restic repository format 2: compressed)")
    return 0


# -- upload -----------------------------------------------------------------------------------

def upload(config: Config, details: dict[str, Any] | None = None,
           echo: Callable[[str], None] = print) -> int:
    """Upload the verified sets not yet off-site, then forget and prune by retention."""
    details = {} if details is None else details
    restic = restic_for(config)
    host = config.offsite.host
    with offsite.upload_lock(config.state.directory):
        remote = offsite.by_set(offsite.parse_snapshots(
            unlocking(restic, lambda: restic.snapshots(host))))
        local = catalog.list_sets(config.backup.directory)
        waiting = [s for s in local if s.complete and s.kind == catalog.BACKUP
                   and s.verification != "passed" and s.id not in remote]
        for backup_set in waiting:
            log.warning("set %s is not uploaded: its verification is %s", backup_set.id,
                        backup_set.verification)
        pending = [s for s in offsite.uploadable(local) if s.id not in remote]
        uploads: dict[str, dict[str, Any]] = {}
        for backup_set in pending:
            uploads[backup_set.id] = upload_set(restic, config, backup_set)
            details["backup_id"] = backup_set.id
        retention_error: ResticError | None = None
        try:
            forgotten = forget(restic, config)
        except ResticError as error:  # the uploads are done: record them, then say so
            retention_error, forgotten = error, 0
        snapshots = offsite.parse_snapshots(restic.snapshots(host))
        offsite.write_record(config.state.directory, restic.shown, host, snapshots, uploads)
    if retention_error is not None:
        details.update(uploaded=len(uploads))
        raise ResticError(retention_error.kind, f"{len(uploads)} set(s) uploaded, but the "
                          f"off-site retention was not applied: {retention_error}; the next "
                          "run applies it")
    added = sum(u["data_added"] for u in uploads.values())
    details.update(uploaded=len(uploads), bytes_added=added)
    echo(f"off-site ({restic.shown}, host {host}): {len(uploads)} set(s) uploaded, "
         f"{added} bytes added; {len(snapshots)} snapshot(s) kept, {forgotten} forgotten")
    return 0


def upload_set(restic: Restic, config: Config, backup_set: catalog.BackupSet) -> dict[str, Any]:
    """One set as one snapshot, stored as its directory name, at the set's own time."""
    created = backup_set.created_at or catalog.utc_now()
    started = time.monotonic()
    try:
        result = unlocking(restic, lambda: restic.backup(
            config.backup.directory, backup_set.id, host=config.offsite.host,
            tags=[TAG, SET_TAG_PREFIX + backup_set.id], time=offsite.restic_time(created)))
    except ResticError as error:
        event("offsite_failed", "set %s was not uploaded: %s", backup_set.id, error,
              level=logging.ERROR, BACKUP_ID=backup_set.id, ERROR=str(error),
              RESTIC_FAILURE=error.kind)
        raise
    seconds = round(time.monotonic() - started, 3)
    added = int(result.get("data_added") or 0)
    event("offsite_uploaded", "set %s uploaded off-site: snapshot %s, %d bytes added, "
          "%.1f s", backup_set.id, result.get("snapshot_id"), added, seconds,
          BACKUP_ID=backup_set.id, SNAPSHOT_ID=result.get("snapshot_id"), BYTES_ADDED=added,
          DURATION_SEC=seconds)
    return {"data_added": added, "upload_seconds": seconds,
            "uploaded_at": catalog.rfc3339(catalog.utc_now()),
            "bytes_processed": int(result.get("total_bytes_processed") or 0)}


def forget(restic: Restic, config: Config) -> int:
    """restic forget --prune by the off-site keep_* rules, scoped to this host's snapshots
    tagged torrust-maint (grouped by host: each set is its own path). How many it removed."""
    groups = unlocking(restic, lambda: restic.forget(
        config.offsite.host, offsite.keep_rules(config.offsite)))
    removed = [s.get("short_id") or s.get("id") for group in (groups or [])
               if isinstance(group, dict) for s in (group.get("remove") or [])
               if isinstance(s, dict)]
    if removed:
        event("offsite_forgotten", "forgot %d off-site snapshot(s) by retention: %s",
              len(removed), ", ".join(map(str, removed)), SNAPSHOTS=" ".join(map(str, removed)))
    return len(removed)


# -- fetch and check ----------------------------------------------------------------------------

def choose_snapshot(restic: Restic, config: Config, which: str) -> offsite.Snapshot:
    """`latest` (this host's newest) or a set id, among this [offsite] host's snapshots."""
    host = config.offsite.host
    snapshots = offsite.parse_snapshots(unlocking(restic, lambda: restic.snapshots(None)))
    mine = [s for s in snapshots if s.host == host]
    if not mine:
        others = sorted({s.host for s in snapshots})
        hint = (f"; it holds sets of host(s) {', '.join(others)}: set [offsite] host to the "
                "lost host's name" if others else "")
        raise ConfigError(f"[offsite] host: the repository {restic.shown} holds no set of "
                          f"host {host!r}{hint}")
    if which == "latest":
        return mine[-1]
    for snapshot in reversed(mine):
        if snapshot.set_id == which:
            return snapshot
    raise ConfigError(f"no set {which!r} of host {host!r} off-site (see `torrust-maint list "
                      "--offsite`)")


def fetch(restic: Restic, snapshot: offsite.Snapshot, directory: Path) -> catalog.BackupSet:
    """Download a set into directory/<set id> (through a staging directory beside it) and
    check its files against its manifest; a damaged copy is removed and refused."""
    staging = directory / (FETCH_STAGING + snapshot.set_id)
    final = directory / snapshot.set_id
    if final.exists() or final.is_symlink():
        raise MaintError(f"{final} exists already; refusing to fetch over it")
    if staging.exists():
        shutil.rmtree(staging)  # a killed fetch's leftover: only ever restic's files
    staging.mkdir(mode=0o700, parents=True)
    started = time.monotonic()
    try:
        unlocking(restic, lambda: restic.restore(snapshot.id, staging))
        fetched = staging / snapshot.set_id
        manifest, problem = catalog.read_manifest(fetched)
        if manifest is None or manifest.get("id") != snapshot.set_id:
            raise MaintError(f"the off-site copy of set {snapshot.set_id} (snapshot "
                             f"{snapshot.short_id}) is no set of ours: {problem or 'wrong id'}")
        problems = verify_action.artifact_problems(
            catalog.BackupSet(snapshot.set_id, fetched, manifest))
        if problems:
            raise MaintError(f"the off-site copy of set {snapshot.set_id} (snapshot "
                             f"{snapshot.short_id}) is damaged: {'; '.join(problems)}")
        fetched.rename(final)
        catalog.fsync_directory(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.monotonic() - started
    size = sum(p.stat().st_size for p in final.iterdir() if p.is_file())
    event("offsite_fetched", "fetched set %s from off-site (snapshot %s): %d bytes in %.1f s, "
          "checksums match", snapshot.set_id, snapshot.short_id, size, seconds,
          BACKUP_ID=snapshot.set_id, SNAPSHOT_ID=snapshot.id, DURATION_SEC=round(seconds, 3))
    fetched_set = next(s for s in catalog.list_sets(directory) if s.id == snapshot.set_id)
    return fetched_set


def check(config: Config, echo: Callable[[str], None] = print) -> int:
    """restic check on [offsite] check_subset of the data, then fetch the newest set into
    the state directory for `verify --scheduled` to restore somewhere throwaway."""
    restic = restic_for(config)
    directory = config.state.directory / offsite.FETCH_DIRECTORY
    with offsite.upload_lock(config.state.directory):
        started = time.monotonic()
        unlocking(restic, lambda: restic.check(config.offsite.check_subset))
        checked = time.monotonic() - started
        event("offsite_checked", "restic check of %s passed (%s of the data read) in %.1f s",
              restic.shown, config.offsite.check_subset, checked, DURATION_SEC=round(checked, 3))
        snapshot = choose_snapshot(restic, config, "latest")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in catalog.list_sets(directory):  # an older fetch verify never took
            shutil.rmtree(leftover.path, ignore_errors=True)
        fetched = fetch(restic, snapshot, directory)
    echo(f"off-site check passed ({config.offsite.check_subset} of the data read); fetched set "
         f"{fetched.id} for the next `verify --scheduled`")
    return 0


def configured(config_path: Path) -> int:
    """Exit 0 when [offsite] is set (or the configuration is broken, so that the unit runs
    and says why), 1 when off-site copies are off: the units' ExecCondition=."""
    from torrust_maint import config as config_module

    try:
        loaded = config_module.load(config_path)
    except ConfigError:
        return 0
    return 0 if loaded.offsite.configured else 1
