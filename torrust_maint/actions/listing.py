"""``torrust-maint list``: the backup sets, as a table or as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable

from torrust_maint import catalog, restore_record
from torrust_maint.config import Config


def row(backup_set: catalog.BackupSet) -> str:
    """One line of the table; a garbled value shows as `-`, odd characters escaped."""
    data = backup_set.to_json()
    created = catalog.printable((data["created_at"] or "-")[:19].replace("T", " "))
    size = sum(a["size"] for a in data["artifacts"] if type(a.get("size")) is int)
    driver = data["database"].get("driver")
    driver = catalog.printable(driver) if isinstance(driver, str) else "-"
    downtime = data["downtime_seconds"]
    state = (f"complete, {backup_set.verification}" if backup_set.complete
             else f"incomplete: {catalog.printable(backup_set.problem)}")
    if backup_set.complete and backup_set.kind == catalog.SAFETY:
        state += f", state before restoring {_restored(backup_set)}"
    elif backup_set.complete and backup_set.kind == catalog.RAW:
        state = (f"RAW files of the database before restoring {_restored(backup_set)} "
                 "(it could not be exported); never pruned")
    return (f"{catalog.printable(backup_set.id):<20} {created:<20} {driver:<8} {size:>12} "
            f"{f'{downtime:.3f}s' if downtime is not None else '-':>9}  {state}")


def _restored(backup_set: catalog.BackupSet) -> str:
    restore_of = ((backup_set.manifest or {}).get("pre_restore") or {}).get("restore_of")
    return catalog.printable(restore_of) if isinstance(restore_of, str) else "-"


def run(config: Config, *, as_json: bool = False, echo: Callable[[str], None] = print) -> int:
    """Print the sets as a table, or as JSON (every odd character escaped); an interrupted
    restore is named after them (where the state from before it is kept)."""
    sets = catalog.list_sets(config.backup.directory)
    record = restore_record.read(config.backup.directory)
    if as_json:
        echo(json.dumps([s.to_json() for s in sets], indent=2))
        return 0
    if not sets:
        echo(f"no backup sets in {config.backup.directory}")
    else:
        echo(f"{'ID':<20} {'CREATED (UTC)':<20} {'DRIVER':<8} {'SIZE':>12} {'DOWNTIME':>9}  "
             "STATE")
        for backup_set in sets:
            echo(row(backup_set))
    if record is not None:
        echo(f"INTERRUPTED RESTORE: {catalog.printable(restore_record.describe(record))}")
    return 0
