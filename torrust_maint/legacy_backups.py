"""Backups the cron-based setup wrote, adopted into the catalog so `list`, `prune`, `verify`
and `restore` cover them (a host keeps its history when it moves to torrust-maint).

The old backup container wrote ``sqlite/sqlite_YYYYMMDD_HHMMSS.db.gz``,
``mysql/mysql_YYYYMMDD_HHMMSS.sql.gz`` and ``config/config_YYYYMMDD_HHMMSS.tar.gz`` under the
backup directory, the database first and the config archive a few seconds later. A legacy set
is one database file with the config archive of the same run. Its time comes from the file
name, read as UTC (the old container's clock: Docker gives a container UTC unless told
otherwise), never from the mtime, which a ``touch`` changes.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from torrust_maint import catalog
from torrust_maint.errors import MaintError

ID_PREFIX = "legacy-"
KIND = "legacy"
# subdirectory -> (file name pattern, driver of its database; None for the config archive)
KINDS: dict[str, tuple[re.Pattern[str], str | None]] = {
    "sqlite": (re.compile(r"^sqlite_(\d{8}_\d{6})\.db\.gz$"), "sqlite3"),
    "mysql": (re.compile(r"^mysql_(\d{8}_\d{6})\.sql\.gz$"), "mysql"),
    "config": (re.compile(r"^config_(\d{8}_\d{6})\.tar\.gz$"), None),
}
SAME_RUN = dt.timedelta(hours=1)  # a config archive this soon after a database is its run's
CONFIG_MEMBER_PREFIX = "data/"  # the old container archived /data/<path> (tar -C /)
VERDICTS = "legacy-verification.json"  # in the state directory: the sets are not ours to write


def config_member_path(name: str, prefix: str = CONFIG_MEMBER_PREFIX) -> str | None:
    """A legacy config archive member's path relative to the compose dir: "" for the prefix
    directory itself, None when it is not beneath the prefix or climbs out with "..".
    The one place the old container's data/ prefix is taken off (check and restore)."""
    normal = os.path.normpath(name)
    if normal.startswith("/") or ".." in normal.split("/"):
        return None
    if normal + "/" == prefix:
        return ""
    if not normal.startswith(prefix):
        return None
    return normal[len(prefix):]


@dataclass(frozen=True)
class LegacyFile:
    """One file the cron-based backup wrote."""

    path: Path
    relative: str  # beneath the backup directory, e.g. sqlite/sqlite_20261126_030001.db.gz
    created_at: dt.datetime
    size: int


@dataclass
class LegacySet:
    """A run of the cron-based backup: its database file, its config archive, or both."""

    id: str
    created_at: dt.datetime
    driver: str | None
    database: LegacyFile | None
    config: LegacyFile | None
    verdict: dict | None = field(default=None)

    complete = True
    kind = KIND

    @property
    def files(self) -> list[LegacyFile]:
        return [f for f in (self.database, self.config) if f is not None]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def verification(self) -> str:
        """passed or failed by `verify` (while its files are unchanged), else unverified."""
        verdict = self.verdict or {}
        if verdict.get("sizes") != {f.relative: f.size for f in self.files}:
            return "unverified"
        outcome = verdict.get("outcome")
        return outcome if outcome in ("passed", "failed") else "unverified"

    def to_json(self) -> dict:
        """The set for `list --json`: kind "legacy", with what an own set's entry has."""
        return {
            "id": self.id,
            "path": str(self.files[0].path.parent.parent),
            "created_at": catalog.rfc3339(self.created_at),
            "complete": True,
            "problem": None,
            "tool_version": None,
            "database": {"driver": self.driver} if self.driver else {},
            "artifacts": [{"name": "database" if f is self.database else "config",
                           "path": str(f.path), "size": f.size, "compression": "gzip"}
                          for f in self.files],
            "downtime_seconds": None,
            "phases": {},
            "warnings": [],
            "verification": self.verdict if self.verification != "unverified" else None,
            "verification_attempt": None,
            "kind": KIND,
            "pre_restore": None,
        }


def is_legacy_id(set_id: str | None) -> bool:
    return isinstance(set_id, str) and set_id.startswith(ID_PREFIX)


def parse_stamp(stamp: str) -> dt.datetime | None:
    """A file name's YYYYMMDD_HHMMSS as a UTC time; None for an impossible date."""
    try:
        return dt.datetime.strptime(stamp, "%Y%m%d_%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def find_files(directory: Path) -> dict[str, list[LegacyFile]]:
    """The legacy backup files by subdirectory, oldest first: plain files only (a symlink or
    anything else is never taken), in real subdirectories of the backup directory."""
    found: dict[str, list[LegacyFile]] = {}
    for subdirectory, (pattern, _) in KINDS.items():
        where = directory / subdirectory
        try:
            if not stat.S_ISDIR(os.lstat(where).st_mode):
                continue
            entries = list(os.scandir(where))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            raise MaintError(f"[backup] directory: cannot read {where}: "
                             f"{error.strerror or error}") from None
        files = []
        for entry in entries:
            match = pattern.match(entry.name)
            created_at = parse_stamp(match.group(1)) if match else None
            if created_at is None or not entry.is_file(follow_symlinks=False):
                continue
            files.append(LegacyFile(Path(entry.path), f"{subdirectory}/{entry.name}",
                                    created_at, entry.stat(follow_symlinks=False).st_size))
        found[subdirectory] = sorted(files, key=lambda f: (f.created_at, f.relative))
    return found


def group(found: dict[str, list[LegacyFile]]) -> list[LegacySet]:
    """Legacy sets, oldest first: each database file with the first config archive written
    within SAME_RUN after it (and before the next database file); other archives alone."""
    databases = sorted(((f, KINDS[kind][1]) for kind in ("sqlite", "mysql")
                        for f in found.get(kind, [])), key=lambda pair: pair[0].created_at)
    configs = list(found.get("config", []))
    sets = []
    for index, (database, driver) in enumerate(databases):
        following = databases[index + 1][0].created_at if index + 1 < len(databases) else None
        config = next((c for c in configs if database.created_at <= c.created_at
                       <= database.created_at + SAME_RUN
                       and (following is None or c.created_at < following)), None)
        if config is not None:
            configs.remove(config)
        sets.append(LegacySet("", database.created_at, driver, database, config))
    sets += [LegacySet("", c.created_at, None, None, c) for c in configs]
    sets.sort(key=lambda s: (s.created_at, s.driver or ""))
    taken: set[str] = set()
    for legacy in sets:
        base = ID_PREFIX + legacy.created_at.strftime("%Y%m%dT%H%M%SZ")
        legacy.id, number = base, 0
        while legacy.id in taken:
            number += 1
            legacy.id = f"{base}-{number}"
        taken.add(legacy.id)
    return sets


def list_sets(directory: Path, state_directory: Path | None = None) -> list[LegacySet]:
    """The legacy sets in the backup directory, oldest first, with `verify`'s verdicts."""
    sets = group(find_files(directory))
    verdicts = read_verdicts(state_directory) if state_directory is not None else {}
    for legacy in sets:
        verdict = verdicts.get(legacy.id)
        legacy.verdict = verdict if isinstance(verdict, dict) else None
    return sets


def find(directory: Path, state_directory: Path | None, set_id: str) -> LegacySet | None:
    return next((s for s in list_sets(directory, state_directory) if s.id == set_id), None)


def read_verdicts(state_directory: Path) -> dict:
    """`verify`'s verdicts on legacy sets, by id ({} when none or unreadable)."""
    import json

    try:
        fd = os.open(state_directory / VERDICTS, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            data = json.loads(handle.read(1 << 20).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_verdict(state_directory: Path, legacy: LegacySet, outcome: str,
                   problems: list[str]) -> None:
    """Keep a verdict (passed or failed) on a legacy set, tied to its files' sizes."""
    verdicts = read_verdicts(state_directory)
    verdicts = {set_id: v for set_id, v in verdicts.items() if isinstance(v, dict)}
    verdicts[legacy.id] = {"outcome": outcome, "verified_at": catalog.rfc3339(catalog.utc_now()),
                           "problems": problems,
                           "sizes": {f.relative: f.size for f in legacy.files}}
    state_directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    catalog.write_json_durably(state_directory, VERDICTS, verdicts, indent=2)


def delete_set(legacy: LegacySet) -> None:
    """Delete a legacy set's files: each unlinked through a descriptor of its directory opened
    without following symlinks, and only while it is still a plain file."""
    for legacy_file in legacy.files:
        directory = legacy_file.path.parent
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as error:
            raise MaintError(f"refusing to delete {legacy_file.path}: "
                             f"{error.strerror or error}") from None
        try:
            info = os.lstat(legacy_file.path.name, dir_fd=fd)
            if stat.S_ISREG(info.st_mode):
                os.unlink(legacy_file.path.name, dir_fd=fd)
                os.fsync(fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
