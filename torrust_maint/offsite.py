"""What is off-site: our restic snapshots, one per uploaded set, and their record.

Each uploaded set is one snapshot, tagged ``torrust-maint`` and ``set:<id>``, carrying the
configured host name and the set's own creation time (so restic's keep_daily... count the
sets' days, in UTC). The repository is the truth; the state file keeps a copy of its answer
(``offsite_sets``) so that ``list`` can say which sets are off-site without the network.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torrust_maint import catalog, safefs, state
from torrust_maint.errors import LockedError, MaintError
from torrust_maint.restic import SET_TAG_PREFIX, TAG

LOCK_NAME = "offsite.lock"
RECORD_KEY = "offsite_sets"
FETCH_DIRECTORY = "offsite-fetched"  # beneath the state directory: copies for verify


@dataclass(frozen=True)
class Snapshot:
    """One of our snapshots in the repository."""

    id: str
    short_id: str
    time: dt.datetime
    host: str
    set_id: str

    def to_json(self) -> dict[str, Any]:
        return {"snapshot": self.id, "short_id": self.short_id, "host": self.host,
                "time": catalog.rfc3339(self.time), "set_id": self.set_id}


def parse_time(text: str) -> dt.datetime:
    """restic's snapshot time (RFC 3339, nanoseconds) as an aware UTC datetime."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.astimezone(dt.UTC)


def parse_snapshots(raw: list[dict[str, Any]]) -> list[Snapshot]:
    """Our snapshots (the ones carrying a set tag), oldest first; anything else is ignored."""
    found = []
    for item in raw:
        tags = item.get("tags") or []
        set_ids = [t[len(SET_TAG_PREFIX):] for t in tags
                   if isinstance(t, str) and t.startswith(SET_TAG_PREFIX)]
        if TAG not in tags or len(set_ids) != 1 or not catalog.SET_NAME.match(set_ids[0]):
            continue
        try:
            moment = parse_time(str(item["time"]))
            snapshot_id = str(item["id"])
        except (KeyError, ValueError):
            continue
        found.append(Snapshot(snapshot_id, str(item.get("short_id") or snapshot_id[:8]),
                              moment, str(item.get("hostname") or ""), set_ids[0]))
    return sorted(found, key=lambda s: (s.time, s.set_id))


def by_set(snapshots: list[Snapshot]) -> dict[str, Snapshot]:
    """The newest snapshot of each set id."""
    return {s.set_id: s for s in snapshots}


def uploadable(sets: list[catalog.BackupSet]) -> list[catalog.BackupSet]:
    """Local sets that go off-site: complete backups that passed verification."""
    return [s for s in sets if s.complete and s.kind == catalog.BACKUP
            and s.verification == "passed"]


def restic_time(moment: dt.datetime) -> str:
    """A time for `restic backup --time` (restic runs with TZ=UTC)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def keep_rules(settings: Any) -> dict[str, int]:
    return {rule: getattr(settings, rule)
            for rule in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")}


# -- the record in the state file ---------------------------------------------------------

def write_record(directory: Path, shown_repository: str, host: str,
                 snapshots: list[Snapshot], uploads: dict[str, dict[str, Any]]) -> None:
    """Replace the record of what is off-site with the repository's answer; the figures of
    this run's uploads (bytes added, seconds) are added to their sets."""

    def change(data: dict[str, Any]) -> None:
        old_sets = recorded_sets(data)
        sets = {}
        for snapshot in snapshots:
            entry = snapshot.to_json()
            previous = old_sets.get(snapshot.set_id)
            if isinstance(previous, dict) and previous.get("snapshot") == snapshot.id:
                entry.update({k: v for k, v in previous.items() if k not in entry})
            entry.update(uploads.get(snapshot.set_id, {}))
            sets[snapshot.set_id] = entry
        data[RECORD_KEY] = {"repository": shown_repository, "host": host,
                            "checked_at": catalog.rfc3339(catalog.utc_now()), "sets": sets}

    state.update(directory, change)


def add_to_record(directory: Path, snapshot: Snapshot) -> None:
    """Record one set as off-site (a set fetched from the repository), keeping the rest."""

    def change(data: dict[str, Any]) -> None:
        record = data.get(RECORD_KEY)
        data[RECORD_KEY] = dict(record if isinstance(record, dict) else {},
                                sets={**recorded_sets(data), snapshot.set_id: snapshot.to_json()})

    state.update(directory, change)


def read_record(directory: Path) -> dict[str, Any]:
    """The recorded off-site sets by id ({} when none, or the state cannot be read)."""
    try:
        data = state.read(directory)
    except OSError:
        return {}
    return recorded_sets(data)


def recorded_sets(data: dict[str, Any]) -> dict[str, Any]:
    """The off-site sets of a state (by id); {} where there is no usable record."""
    record = data.get(RECORD_KEY)
    sets = record.get("sets") if isinstance(record, dict) else None
    return sets if isinstance(sets, dict) else {}


@contextlib.contextmanager
def upload_lock(directory: Path) -> Iterator[None]:
    """One off-site run at a time on this host (restic's own locks guard the repository)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    try:
        fd = safefs.open_nofollow(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise MaintError(f"[state] directory: cannot open {path}: "
                         f"{getattr(error, 'strerror', None) or error}") from None
    with open(fd, "r+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another off-site run holds {path}") from None
        yield
