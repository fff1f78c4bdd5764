"""``torrust-maint list``: the backup sets, as a table or as JSON."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from torrust_maint import catalog, legacy_backups, offsite, restore_record
from torrust_maint.config import Config


def row(backup_set: catalog.BackupSet, offsite_sets: dict | None = None) -> str:
    """One line of the table; a garbled value shows as `-`, odd characters escaped."""
    data = backup_set.to_json()
    created = catalog.printable((data["created_at"] or "-")[:19].replace("T", " "))
    size = sum(a["size"] for a in data["artifacts"] if type(a.get("size")) is int)
    driver = data["database"].get("driver")
    driver = catalog.printable(driver) if isinstance(driver, str) else "-"
    downtime = data["downtime_seconds"]
    downtime_text = f"{downtime:.3f}s" if isinstance(downtime, (int, float)) else "-"
    if data["window_mode"] == "online":
        downtime_text = "online"  # the tracker ran throughout
    state = (f"complete, {backup_set.verification}" if backup_set.complete
             else f"incomplete: {catalog.printable(backup_set.problem)}")
    if backup_set.complete and backup_set.kind == catalog.SAFETY:
        state += f", state before restoring {_restored(backup_set)}"
    elif backup_set.complete and backup_set.kind == catalog.RAW:
        state = (f"RAW files of the database before restoring {_restored(backup_set)} "
                 "(it could not be exported); never pruned")
    uploaded = (offsite_sets or {}).get(backup_set.id)
    if isinstance(uploaded, dict):
        state += f", off-site ({catalog.printable(str(uploaded.get('short_id')))})"
    return (f"{catalog.printable(backup_set.id):<20} {created:<20} {driver:<10} {size:>12} "
            f"{downtime_text:>9}  {state}")


def legacy_row(legacy: legacy_backups.LegacySet) -> str:
    """One line of the table for a backup the cron-based setup wrote."""
    created = catalog.rfc3339(legacy.created_at)[:19].replace("T", " ")
    files = " + ".join(catalog.printable(f.relative) for f in legacy.files)
    return (f"{legacy.id:<20} {created:<20} {legacy.driver or '-':<10} {legacy.size:>12} "
            f"{'-':>9}  legacy cron backup ({files}), {legacy.verification}")


def _restored(backup_set: catalog.BackupSet) -> str:
    restore_of = ((backup_set.manifest or {}).get("pre_restore") or {}).get("restore_of")
    return catalog.printable(restore_of) if isinstance(restore_of, str) else "-"


def run(config: Config, *, as_json: bool = False, echo: Callable[[str], None] = print) -> int:
    """Print the sets as a table, or as JSON (every odd character escaped); an interrupted
    restore is named after them (where the state from before it is kept)."""
    sets = catalog.list_sets(config.backup.directory)
    legacy = legacy_backups.list_sets(config.backup.directory, config.state.directory)
    record = restore_record.read(config.backup.directory)
    uploaded = offsite.read_record(config.state.directory) if config.offsite.configured else {}
    everything = merged(sets, legacy)
    if as_json:
        echo(json.dumps([dict(s.to_json(), offsite=uploaded.get(s.id)) for s in everything],
                        indent=2))
        return 0
    if not everything:
        echo(f"no backup sets in {config.backup.directory}")
    else:
        echo(f"{'ID':<20} {'CREATED (UTC)':<20} {'DRIVER':<10} {'SIZE':>12} {'DOWNTIME':>9}  "
             "STATE")
        for found in everything:
            echo(legacy_row(found) if isinstance(found, legacy_backups.LegacySet)
                 else row(found, uploaded))
    if record is not None:
        echo(f"INTERRUPTED RESTORE: {catalog.printable(restore_record.describe(record))}")
    return 0


def merged(sets: list[catalog.BackupSet], legacy: list[legacy_backups.LegacySet]) -> list:
    """Own and legacy sets together, oldest first; sets without a readable time last."""
    latest = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted([*sets, *legacy], key=lambda s: (s.created_at is None, s.created_at or latest))


def run_offsite(config: Config, *, as_json: bool = False,
                echo: Callable[[str], None] = print) -> int:
    """What the off-site repository holds (our snapshots, every host), newest last."""
    from torrust_maint.actions import offsite as offsite_action

    restic = offsite_action.restic_for(config)
    snapshots = offsite.parse_snapshots(offsite_action.unlocking(
        restic, lambda: restic.snapshots(None)))
    local = {s.id for s in catalog.list_sets(config.backup.directory) if s.complete}
    if as_json:
        echo(json.dumps([dict(s.to_json(), local=s.set_id in local) for s in snapshots],
                        indent=2))
        return 0
    if not snapshots:
        echo(f"no torrust-maint sets in the off-site repository {restic.shown}")
        return 0
    echo(f"off-site repository {restic.shown}:")
    echo(f"{'ID':<20} {'HOST':<24} {'TIME (UTC)':<20} {'SNAPSHOT':<10} LOCAL")
    for snapshot in snapshots:
        when = catalog.rfc3339(snapshot.time)[:19].replace("T", " ")
        echo(f"{snapshot.set_id:<20} {catalog.printable(snapshot.host):<24} {when:<20} "
             f"{snapshot.short_id:<10} {'yes' if snapshot.set_id in local else 'no'}")
    return 0
