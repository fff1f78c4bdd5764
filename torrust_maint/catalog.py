"""Backup sets on disk: staging, atomic commit, listing.

A set is a directory named by its UTC creation time (``20261126T030000Z``) holding the
artifacts and ``manifest.json``. It is written under ``.tmp-torrust-maint-<id>``, fsynced and
renamed into place, so a crash never leaves anything that looks like a complete set.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from torrust_maint.errors import MaintError

log = logging.getLogger(__name__)

TOOL = "torrust-maint"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
STAGING_PREFIX = ".tmp-torrust-maint-"
SET_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def parse_rfc3339(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def set_id_for(moment: dt.datetime, directory: Path) -> str:
    """The set's directory name: its UTC time, with a suffix if that name is taken."""
    base = moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate, number = base, 0
    while (directory / candidate).exists() or (directory / (STAGING_PREFIX + candidate)).exists():
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def ensure_directory(directory: Path) -> None:
    """Create the backup directory (0700) if it does not exist yet."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise MaintError(
            f"[backup] directory: cannot create {directory}: {error.strerror}") from None


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedSet:
    """A set being written: a private temporary directory until commit()."""

    def __init__(self, directory: Path, set_id: str):
        self.directory = directory
        self.id = set_id
        self.path = directory / (STAGING_PREFIX + set_id)
        self.final_path = directory / set_id
        self.path.mkdir(mode=0o700)

    def commit(self, manifest: dict) -> Path:
        """Write the manifest, fsync everything and rename the set into place."""
        manifest_path = self.path / MANIFEST
        fd = os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        fsync_directory(self.path)
        os.rename(self.path, self.final_path)
        fsync_directory(self.directory)
        return self.final_path

    def discard(self) -> None:
        """Remove the staging directory of a run that failed (it never held a complete set)."""
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class BackupSet:
    """A set found on disk, with its manifest where it has a readable one."""

    id: str
    path: Path
    manifest: dict | None
    problem: str = ""

    @property
    def complete(self) -> bool:
        return self.manifest is not None and self.manifest.get("complete") is True

    @property
    def created_at(self) -> dt.datetime | None:
        if not self.manifest:
            return None
        try:
            return parse_rfc3339(self.manifest["created_at"])
        except (KeyError, TypeError, ValueError, AttributeError):  # missing, or not a string
            return None

    @property
    def verification(self) -> str:
        """passed, failed, or unverified: the outcome of the last verification."""
        result = (self.manifest or {}).get("verification") or {}
        return result.get("outcome", "unverified") if isinstance(result, dict) else "unverified"

    def to_json(self) -> dict:
        manifest = self.manifest or {}
        database = manifest.get("database") or {}
        return {
            "id": self.id,
            "path": str(self.path),
            "created_at": manifest.get("created_at"),
            "complete": self.complete,
            "problem": self.problem or None,
            "tool_version": manifest.get("tool_version"),
            "database": database,
            "artifacts": [dict(a, path=str(self.path / a["path"]))
                          for a in manifest.get("artifacts", []) if "path" in a],
            "downtime_seconds": manifest.get("downtime_seconds"),
            "phases": manifest.get("phases", {}),
            "warnings": manifest.get("warnings", []),
            "verification": manifest.get("verification"),
        }


def rewrite_manifest(backup_set: BackupSet, manifest: dict) -> None:
    """Replace a committed set's manifest atomically (write, fsync, rename)."""
    temporary = backup_set.path / (MANIFEST + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, backup_set.path / MANIFEST)
    fsync_directory(backup_set.path)
    backup_set.manifest = manifest


def read_manifest(path: Path) -> tuple[dict | None, str]:
    """A set's manifest, or None and why it cannot be used."""
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no manifest.json"
    except (OSError, ValueError) as error:
        return None, f"unreadable manifest.json: {error}"
    if not isinstance(data, dict) or data.get("tool") != TOOL:
        return None, "manifest.json was not written by torrust-maint"
    if data.get("format") != MANIFEST_FORMAT:
        return None, f"manifest format {data.get('format')!r} is not {MANIFEST_FORMAT}"
    return data, ""


def list_sets(directory: Path) -> list[BackupSet]:
    """Sets in the backup directory, oldest first; staging leftovers appear as incomplete."""
    if not directory.is_dir():
        return []
    sets = []
    for entry in sorted(directory.iterdir()):
        if not entry.is_dir() or entry.is_symlink():
            continue
        if entry.name.startswith(STAGING_PREFIX):
            sets.append(BackupSet(entry.name[len(STAGING_PREFIX):], entry, None,
                                  "unfinished: a run was interrupted while writing it"))
        elif SET_NAME.match(entry.name):
            manifest, problem = read_manifest(entry)
            if manifest is not None and manifest.get("id") != entry.name:
                problem = f"manifest id {manifest.get('id')!r} does not match"
                manifest = None
            sets.append(BackupSet(entry.name, entry, manifest, problem))
    return sorted(sets, key=lambda s: (s.created_at is None, s.created_at or utc_now(), s.id))


def delete_set(backup_set: BackupSet) -> list[str]:
    """Delete a complete set of ours: manifest first (a crash leaves it incomplete), then the
    artifacts it lists; anything else found in its directory is left there and reported."""
    if not backup_set.complete or backup_set.manifest is None:
        raise MaintError(f"refusing to delete {backup_set.path}: not a complete torrust-maint set")
    ours = [a["path"] for a in backup_set.manifest.get("artifacts", [])]
    (backup_set.path / MANIFEST).unlink()
    fsync_directory(backup_set.path)
    for name in ours:
        if "/" not in name and name not in ("", ".", ".."):
            (backup_set.path / name).unlink(missing_ok=True)
    strangers = sorted(p.name for p in backup_set.path.iterdir())
    if not strangers:
        backup_set.path.rmdir()
    return strangers
