"""``torrust-maint list``: the backup sets, as a table or as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable

from torrust_maint import catalog
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
    return (f"{catalog.printable(backup_set.id):<20} {created:<20} {driver:<8} {size:>12} "
            f"{f'{downtime:.3f}s' if downtime is not None else '-':>9}  {state}")


def run(config: Config, *, as_json: bool = False, echo: Callable[[str], None] = print) -> int:
    """Print the sets as a table, or as JSON (every odd character escaped)."""
    sets = catalog.list_sets(config.backup.directory)
    if as_json:
        echo(json.dumps([s.to_json() for s in sets], indent=2))
        return 0
    if not sets:
        echo(f"no backup sets in {config.backup.directory}")
        return 0
    echo(f"{'ID':<20} {'CREATED (UTC)':<20} {'DRIVER':<8} {'SIZE':>12} {'DOWNTIME':>9}  STATE")
    for backup_set in sets:
        echo(row(backup_set))
    return 0
