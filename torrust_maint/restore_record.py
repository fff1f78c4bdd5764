"""The durable record of a restore in progress: where the state from before it is kept.

A restore writes this record (fsynced, in the backup directory) before it changes anything
live, and removes it only once a verified safety set holds the state from before. Its phase
says how far the swap got:

- ``prepared``: the new database waits beside the live one (SQLite) or in shadow tables
  (MySQL); nothing live has changed;
- ``swapping``: the window is swapping it in; an interruption is undone by ``roll_back``
  (file renames) before the tracker starts again; a MySQL ``RENAME TABLE`` is atomic;
- ``swapped``: the new state is live, the state from before is under the aside names (files)
  or tables until a verified safety set holds it.

``recover`` (the guardian, ``ExecStopPost=``, boot) rolls an unfinished file swap back before
it starts the tracker; the next run finishes the rest (``actions/restore.finish_pending``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from torrust_maint import catalog, safefs
from torrust_maint.swap import FileSwap

log = logging.getLogger(__name__)

RECORD_NAME = ".torrust-maint-restore.json"
RECORD_FORMAT = 1
PREPARED, SWAPPING, SWAPPED = "prepared", "swapping", "swapped"


def read(directory: Path) -> dict | None:
    """The record in a backup directory, None if there is none. An unreadable one is reported
    as such (never ignored: it may be all that says where the state from before is)."""
    path = directory / RECORD_NAME
    try:
        with open(safefs.open_nofollow(path), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, safefs.UnsafePath) as error:
        return {"phase": "unreadable", "error": f"{path}: {error}"}
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        return {"phase": "unreadable", "error": f"{path}: not a restore record of ours"}
    return data


def write(directory: Path, record: dict) -> None:
    """Replace the record atomically and durably (no symlink followed)."""
    record["format"] = RECORD_FORMAT
    catalog.write_json_durably(directory, RECORD_NAME, record, indent=2)


def clear(directory: Path) -> None:
    (directory / RECORD_NAME).unlink(missing_ok=True)
    catalog.fsync_directory(directory)


# Drivers whose restore swaps tables (or a schema) in the server, atomically.
TABLE_SWAP_DRIVERS = ("mysql", "postgresql")


def file_swaps(record: dict) -> list[FileSwap]:
    """The file swaps of a record: the SQLite database first, then config files."""
    return [FileSwap.from_json(item) for item in record.get("files", [])]


def roll_back(directory: Path, *, tables_not_swapped: bool = False) -> bool:
    """Undo an unfinished file swap (phase swapping): the state from before is live again.
    Caller holds the run lock, the tracker is stopped. Whether there was one to undo.

    A MySQL restore swaps its config files first, then the tables in one atomic RENAME: its
    files are rolled back only by the caller that saw the RENAME did not happen."""
    record = read(directory)
    if record is None or record.get("phase") != SWAPPING:
        return False
    if record.get("driver") in TABLE_SWAP_DRIVERS and not tables_not_swapped:
        return False
    for swap in reversed(file_swaps(record)):
        swap.undo()
    record["phase"] = PREPARED
    write(directory, record)
    log.warning("rolled back the swap of an interrupted restore of set %s: the state from "
                "before it is live again", record.get("restore_of"))
    return True


def describe(record: dict) -> str:
    """One line for list and status: what was interrupted and where the state from before is."""
    if record.get("phase") == "unreadable":
        return f"restore record unreadable ({record.get('error')}): inspect it by hand"
    where = [str(path) for swap in file_swaps(record) for path in swap.aside_paths()]
    driver = record.get("driver")
    tables = record.get(driver, {}).get("old_tables", []) if driver in TABLE_SWAP_DRIVERS else []
    if record.get("phase") == SWAPPED:
        held = ", ".join(where + [f"table {t}" for t in tables]) or "nowhere (lost?)"
        safety = record.get("safety_set")
        state = (f"safety set {safety} is not verified yet" if safety
                 else "no safety set holds it yet")
        return (f"restore of set {record.get('restore_of')} (started "
                f"{record.get('started_at')}): the state from before it is kept in {held}; "
                f"{state}; `torrust-maint restore --finish` secures it")
    if record.get("phase") == SWAPPING:
        held = ", ".join(where + [f"table {t}" for t in tables]) or "its tables"
        return (f"restore of set {record.get('restore_of')} (started "
                f"{record.get('started_at')}) was interrupted during its swap: the state from "
                f"before it is in {held} and is put back before the tracker starts "
                "(`torrust-maint recover`); `torrust-maint restore --finish` settles the rest")
    return (f"restore of set {record.get('restore_of')} (started {record.get('started_at')}) "
            "was interrupted before its swap: nothing live changed; "
            "`torrust-maint restore --finish` cleans up")
