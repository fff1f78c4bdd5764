"""``torrust-maint list``: the backup sets, as a table or as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable

from torrust_maint import catalog
from torrust_maint.config import Config


def run(config: Config, *, as_json: bool = False, echo: Callable[[str], None] = print) -> int:
    sets = catalog.list_sets(config.backup.directory)
    if as_json:
        echo(json.dumps([s.to_json() for s in sets], indent=2))
        return 0
    if not sets:
        echo(f"no backup sets in {config.backup.directory}")
        return 0
    echo(f"{'ID':<20} {'CREATED (UTC)':<20} {'DRIVER':<8} {'SIZE':>12} {'DOWNTIME':>9}  STATE")
    for backup_set in sets:
        data = backup_set.to_json()
        created = (data["created_at"] or "-")[:19].replace("T", " ")
        size = sum(a.get("size", 0) for a in data["artifacts"])
        downtime = data["downtime_seconds"]
        state = (f"complete, {backup_set.verification}" if backup_set.complete
                 else f"incomplete: {backup_set.problem}")
        echo(f"{backup_set.id:<20} {created:<20} {data['database'].get('driver', '-'):<8} "
             f"{size:>12} {f'{downtime:.3f}s' if downtime is not None else '-':>9}  {state}")
    return 0
