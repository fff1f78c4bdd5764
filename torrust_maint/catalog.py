"""Backup sets on disk: staging, atomic commit, listing.

A set is a directory named by its UTC creation time (``20261126T030000Z``) holding the
artifacts and ``manifest.json``. It is written under ``.tmp-torrust-maint-<id>``, fsynced and
renamed into place, so a crash never leaves anything that looks like a complete set.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torrust_maint.errors import MaintError

log = logging.getLogger(__name__)

TOOL = "torrust-maint"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
STAGING_PREFIX = ".tmp-torrust-maint-"
SET_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
# What a set holds: a backup, a restore's safety set (the state before it), or the raw files
# of a database from before a restore that could not be exported (never pruned).
BACKUP, SAFETY, RAW = "backup", "safety", "raw"
MAX_MANIFEST_BYTES = 16 << 20  # ours are a few kilobytes; never read a huge foreign file whole
# The types a manifest's fields must have where present (bool is no number here).
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "created_at": (str,),
    "complete": (bool,),
    "tool_version": (str,),
    "database": (dict,),
    "artifacts": (list,),
    "downtime_seconds": (int, float, type(None)),
    "phases": (dict,),
    "warnings": (list,),
}


def printable(text: str) -> str:
    """A file name for output: control characters and undecodable bytes escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def typed_field(manifest: dict, key: str, default: Any) -> Any:
    """A manifest field if it has its type (FIELD_TYPES), else `default`."""
    value = manifest.get(key, default)
    if isinstance(value, bool) and bool not in FIELD_TYPES[key]:
        return default
    return value if isinstance(value, FIELD_TYPES[key]) else default


def plain_name(name: object) -> bool:
    """Whether `name` can be a file of a set: one plain name in its directory, not the manifest."""
    return (isinstance(name, str) and name not in ("", ".", "..", MANIFEST) and "/" not in name
            and name.isprintable() and len(name.encode()) <= 255)


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


def write_json_durably(directory: Path, name: str, data: Any, indent: int | None = None) -> None:
    """Replace directory/name with `data` as JSON: a new file (`name.tmp`, never opened
    through a symlink), fsynced, renamed over the old one, the directory fsynced. A crash
    leaves the old file or the new one; a failed write removes its temporary file."""
    from torrust_maint import safefs

    temporary = directory / f"{name}.tmp"
    temporary.unlink(missing_ok=True)  # a leftover of a killed writer; unlink follows nothing
    try:
        with open(safefs.create_exclusive(temporary, 0o600), "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=indent)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, directory / name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(directory)


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
    def kind(self) -> str:
        """backup, safety (the state before a restore) or raw (see SAFETY, RAW)."""
        pre_restore = (self.manifest or {}).get("pre_restore")
        if isinstance(pre_restore, dict) and pre_restore.get("kind") in (SAFETY, RAW):
            return str(pre_restore["kind"])
        return BACKUP

    @property
    def verification(self) -> str:
        """passed or failed (the last verdict on the data), or unverified (none yet)."""
        result = (self.manifest or {}).get("verification")
        outcome = result.get("outcome") if isinstance(result, dict) else None
        return outcome if outcome in ("passed", "failed") else "unverified"

    @property
    def verification_attempt(self) -> dict | None:
        """The last verification since the verdict that reached none (Docker, disk), if any."""
        attempt = (self.manifest or {}).get("verification_attempt")
        return attempt if isinstance(attempt, dict) else None

    def to_json(self) -> dict:
        """The set for `list --json`; a field of the wrong type reads as absent."""
        manifest = self.manifest if isinstance(self.manifest, dict) else {}
        return {
            "id": self.id,
            "path": str(self.path),
            "created_at": typed_field(manifest, "created_at", None),
            "complete": self.complete,
            "problem": self.problem or None,
            "tool_version": typed_field(manifest, "tool_version", None),
            "database": typed_field(manifest, "database", {}),
            "artifacts": [dict(a, path=str(self.path / a["path"]))
                          for a in typed_field(manifest, "artifacts", [])
                          if isinstance(a, dict) and plain_name(a.get("path"))],
            "downtime_seconds": typed_field(manifest, "downtime_seconds", None),
            "window_mode": window_mode(manifest),
            "phases": typed_field(manifest, "phases", {}),
            "warnings": typed_field(manifest, "warnings", []),
            "verification": manifest.get("verification"),
            "verification_attempt": self.verification_attempt,
            "kind": self.kind,
            "pre_restore": manifest.get("pre_restore") if self.kind != BACKUP else None,
        }


def window_mode(manifest: dict) -> str | None:
    """How the set's snapshot was taken: "stop" (a window; also sets from before [window]
    mode existed, which recorded none) or "online"; None for another value."""
    mode = manifest.get("window_mode", "stop") if manifest.get("tool") else None
    return mode if mode in ("stop", "online") else None


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


def _brief(value: object) -> str:
    """A value from a manifest for a message: escaped and short."""
    text = printable(repr(value))
    return text if len(text) <= 60 else text[:60] + "..."


def _json_kind(value: object) -> str:
    """What a JSON value is, in words."""
    kinds = {str: "a string", bool: "a boolean", dict: "an object", list: "an array",
             int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _not_json(name: str) -> float:
    """json.loads accepts NaN and Infinity; JSON (and `list --json`'s readers) does not."""
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number that fits a float (1e999 would read as infinity)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large a number")
    return value


def _manifest_bytes(path: Path) -> bytes:
    """manifest.json's bytes, refusing a symlink, a FIFO or device node, or a huge file."""
    info = os.lstat(path / MANIFEST)
    if stat.S_ISLNK(info.st_mode):
        raise ValueError("it is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("it is not a regular file")
    fd = os.open(path / MANIFEST, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lstat
            raise ValueError("it is not a regular file")
        raw = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
    return raw


def artifact_problem(artifact: object) -> str:
    """Why one entry of a manifest's artifacts is no artifact of a set ("" when it is one)."""
    if not isinstance(artifact, dict):
        return f"an artifact entry is {_json_kind(artifact)}, not an object"
    path = artifact.get("path")
    if not plain_name(path):
        return f"artifact path {_brief(path)} is not a file name inside the set"
    if not isinstance(artifact.get("name"), str):
        return f"artifact {_brief(path)} has no name"
    for key, value in (("size", artifact.get("size")),
                       ("uncompressed_size", artifact.get("uncompressed_size", 0))):
        if type(value) is not int or value < 0:
            return f"artifact {_brief(path)}: {key} {_brief(value)} is not a byte count"
    for key in ("sha256", "compression"):
        if key in artifact and not isinstance(artifact[key], str):
            return f"artifact {_brief(path)}: {key} is {_json_kind(artifact[key])}, not a string"
    return ""


def manifest_problem(data: dict) -> str:
    """Why the fields of a manifest of ours cannot be trusted ("" when they can)."""
    wrong = object()
    for key, kinds in FIELD_TYPES.items():
        if key in data and typed_field(data, key, wrong) is wrong:
            expected = " or ".join(sorted({_json_kind(kind()) for kind in kinds}))
            return f"manifest field {key!r} is {_json_kind(data[key])}, not {expected}"
    if data.get("complete") is True and "artifacts" not in data:
        return "manifest of a complete set lists no artifacts"
    names = []
    for artifact in data.get("artifacts", []):
        problem = artifact_problem(artifact)
        if problem:
            return problem
        names.append(artifact["path"])
    if len(set(names)) != len(names):
        return "manifest lists an artifact twice"
    return ""


def artifact_file_problem(path: Path, data: dict) -> str:
    """An artifact that is there but is no plain file (a symlink, a directory): not ours."""
    for artifact in data.get("artifacts", []):
        try:
            mode = os.lstat(path / artifact["path"]).st_mode
        except FileNotFoundError:
            continue  # missing: verification says so
        except OSError as error:
            return f"artifact {_brief(artifact['path'])}: {error.strerror or error}"
        if stat.S_ISLNK(mode):
            return f"artifact {_brief(artifact['path'])} is a symbolic link"
        if not stat.S_ISREG(mode):
            return f"artifact {_brief(artifact['path'])} is not a regular file"
    return ""


def read_manifest(path: Path) -> tuple[dict | None, str]:
    """A set's manifest, or None and why it cannot be used (unreadable, foreign, garbled)."""
    try:
        data = json.loads(_manifest_bytes(path).decode("utf-8"), parse_constant=_not_json,
                          parse_float=_finite)
    except FileNotFoundError:
        return None, "no manifest.json"
    except RecursionError:
        return None, "unreadable manifest.json: nested too deeply"
    except OSError as error:
        return None, f"unreadable manifest.json: {error.strerror or error}"
    except ValueError as error:
        return None, f"unreadable manifest.json: {error}"
    if not isinstance(data, dict) or data.get("tool") != TOOL:
        return None, "manifest.json was not written by torrust-maint"
    if data.get("format") != MANIFEST_FORMAT or type(data.get("format")) is not int:
        return None, f"manifest format {_brief(data.get('format'))} is not {MANIFEST_FORMAT}"
    problem = manifest_problem(data) or artifact_file_problem(path, data)
    if problem:
        return None, problem
    return data, ""


def list_sets(directory: Path) -> list[BackupSet]:
    """Sets in the backup directory, oldest first; staging leftovers appear as incomplete.

    Only real directories count: a symlink, file or anything else is never a set."""
    try:
        with os.scandir(directory) as found:
            entries = sorted(found, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as error:
        raise MaintError(f"[backup] directory: cannot read {directory}: "
                         f"{error.strerror or error}") from None
    sets = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        path = directory / entry.name
        if entry.name.startswith(STAGING_PREFIX):
            sets.append(BackupSet(printable(entry.name[len(STAGING_PREFIX):]), path, None,
                                  "unfinished: a run was interrupted while writing it"))
        elif SET_NAME.match(entry.name):
            manifest, problem = read_manifest(path)
            if manifest is not None and manifest.get("id") != entry.name:
                problem = f"manifest id {_brief(manifest.get('id'))} does not match"
                manifest = None
            sets.append(BackupSet(entry.name, path, manifest, problem))
    return sorted(sets, key=lambda s: (s.created_at is None, s.created_at or utc_now(), s.id))


def _regular_file(name: str, directory_fd: int) -> bool:
    """Whether `name` in the directory is a plain file (a symlink is not followed)."""
    try:
        return stat.S_ISREG(os.lstat(name, dir_fd=directory_fd).st_mode)
    except FileNotFoundError:
        return False


def delete_set(backup_set: BackupSet) -> list[str]:
    """Delete a complete set of ours: manifest first (a crash leaves it incomplete), then the
    artifacts it lists; anything else found in its directory is left there and reported.

    Only plain files named by the manifest are unlinked, through a descriptor of the set's
    directory opened without following symlinks: nothing outside the set is ever touched.
    Returns what is left, escaped for display."""
    if not backup_set.complete or backup_set.manifest is None:
        raise MaintError(f"refusing to delete {backup_set.path}: not a complete torrust-maint set")
    ours = [a["path"] for a in backup_set.manifest.get("artifacts", [])
            if isinstance(a, dict) and plain_name(a.get("path"))]
    try:
        fd = os.open(backup_set.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        raise MaintError(f"refusing to delete {backup_set.path}: "
                         f"{error.strerror or error}") from None
    try:
        if not _regular_file(MANIFEST, fd):
            raise MaintError(f"refusing to delete {backup_set.path}: its manifest.json is "
                             "no longer a plain file")
        os.unlink(MANIFEST, dir_fd=fd)
        os.fsync(fd)
        for name in ours:
            if _regular_file(name, fd):
                os.unlink(name, dir_fd=fd)
        strangers = sorted(printable(name) for name in os.listdir(fd))
    finally:
        os.close(fd)
    if not strangers:
        backup_set.path.rmdir()
    return strangers
