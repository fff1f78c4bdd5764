"""``torrust-maint prune``: apply the retention policy to complete sets."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

from torrust_maint import catalog, legacy_backups, retention
from torrust_maint.config import Config
from torrust_maint.journal import event
from torrust_maint.lock import run_lock
from torrust_maint.window import signals_held

log = logging.getLogger(__name__)


Prunable = catalog.BackupSet | legacy_backups.LegacySet


def decision(config: Config) -> tuple[retention.Decision, dict[str, Prunable]]:
    """Retention over the complete sets not failed (unverified ones count like any), keeping
    the newest passed set too; a failed set goes only once a newer set has passed. The state
    from before a restore is never deleted: raw sets at all, safety sets until verified.
    Legacy cron backups count like sets, by the time in their names; the newest of them is
    kept until a set of ours has passed verification."""
    complete: list[Prunable] = [s for s in catalog.list_sets(config.backup.directory)
                                if s.complete]
    legacy = legacy_backups.list_sets(config.backup.directory, config.state.directory)
    if legacy and not any(s.verification == "passed" and s.kind == catalog.BACKUP
                          for s in complete):
        protected = {legacy[-1].id: ["newest legacy cron backup, no verified torrust-maint set "
                                     "yet"]}
    else:
        protected = {}
    complete += legacy
    protected.update({s.id: [_protection(s)] for s in complete if _protection(s)})
    sets = {s.id: s for s in complete if s.id not in protected}
    failed = [s for s in sets.values() if s.verification == "failed"]
    chosen = retention.decide([s for s in sets.values() if s.verification != "failed"],
                              config.retention)
    newest_passed = max((s for s in sets.values() if s.verification == "passed"
                         and s.created_at is not None),
                        key=lambda s: (s.created_at, s.id), default=None)
    if newest_passed is not None:
        chosen.keep.setdefault(newest_passed.id, []).append("newest verified set")
        if newest_passed.id in chosen.delete:
            chosen.delete.remove(newest_passed.id)
    for backup_set in failed:
        if superseded(backup_set, newest_passed):
            chosen.delete.append(backup_set.id)
        else:
            chosen.keep[backup_set.id] = ["failed verification, no newer verified set"]
    chosen.delete.sort(key=lambda set_id: (sets[set_id].created_at, set_id))
    chosen.keep.update(protected)
    return chosen, sets


def _protection(backup_set: Prunable) -> str:
    """Why retention may never delete a set ("" when it may)."""
    if backup_set.kind == catalog.RAW:
        return "raw files of a database from before a restore: never pruned (remove by hand)"
    if backup_set.kind == catalog.SAFETY and backup_set.verification != "passed":
        return "state from before a restore, not verified yet"
    return ""


def superseded(failed: Prunable, newest_passed: Prunable | None) -> bool:
    """Whether a set that failed verification has a newer set that passed."""
    passed_at = newest_passed.created_at if newest_passed is not None else None
    return passed_at is not None and failed.created_at is not None \
        and failed.created_at < passed_at


def print_decision(config: Config, echo: Callable[[str], None], prefix: str = "") -> None:
    """Say what retention keeps and deletes, without deleting."""
    chosen, _ = decision(config)
    for set_id, reasons in sorted(chosen.keep.items()):
        echo(f"{prefix}keep {set_id} ({', '.join(reasons)})")
    for set_id in chosen.delete:
        echo(f"{prefix}delete {set_id}")
    if not chosen.keep and not chosen.delete:
        echo(f"{prefix}prune nothing: no complete sets in {config.backup.directory}")


def remove_unfinished(config: Config) -> None:
    """Remove staging directories of runs that died (we hold the lock: none is being written)."""
    for leftover in catalog.list_sets(config.backup.directory):
        if leftover.path.name.startswith(catalog.STAGING_PREFIX):
            log.warning("removing %s, left by an interrupted run", leftover.path)
            shutil.rmtree(leftover.path)


def apply(config: Config, echo: Callable[[str], None]) -> int:
    """Delete the sets retention does not keep (caller holds the lock)."""
    remove_unfinished(config)
    chosen, sets = decision(config)
    for set_id in chosen.delete:
        chosen_set = sets[set_id]
        with signals_held():  # a signal never leaves a set half deleted
            if isinstance(chosen_set, legacy_backups.LegacySet):
                legacy_backups.delete_set(chosen_set)
                strangers = []
            else:
                strangers = catalog.delete_set(chosen_set)
        event("sets_pruned", "pruned %s", set_id, BACKUP_ID=set_id)
        echo(f"pruned {set_id}")
        if strangers:
            log.warning("left %s in %s: not written by torrust-maint",
                        ", ".join(strangers), chosen_set.files[0].path.parent
                        if isinstance(chosen_set, legacy_backups.LegacySet) else chosen_set.path)
    return len(chosen.delete)


def run(config: Config, *, dry_run: bool = False, echo: Callable[[str], None] = print) -> int:
    if dry_run:
        echo("dry run: nothing will be deleted")
        print_decision(config, echo, prefix="would ")
        return 0
    if not config.backup.directory.is_dir():
        echo(f"prune nothing: {config.backup.directory} does not exist")
        return 0
    with run_lock(config.backup.directory):
        deleted = apply(config, echo)
    echo(f"pruned {deleted} set(s)")
    return 0
