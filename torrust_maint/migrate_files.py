"""The files ``torrust-maint migrate`` changes: replaced atomically (a temporary file in the same
directory, fsynced, renamed), copied exactly first, and put back exactly by ``--undo``.

Each change is an entry of the migrate record: the path, the sha256 of its bytes before
(None: absent) and after (None: removed), and the exact copy of the file before. Undo acts
on what is there now, so it also undoes a migrate that was interrupted half-way.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from torrust_maint import catalog, safefs
from torrust_maint.errors import MaintError

RECORD = "record.json"
DISABLED = b"# disabled by torrust-maint migrate: "
READ_LIMIT = 1 << 20


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def read_bytes(path: Path) -> bytes | None:
    """A regular file's bytes (never through a symlink); None where nothing is there."""
    try:
        fd = safefs.open_nofollow(path)
    except FileNotFoundError:
        return None
    with open(fd, "rb") as handle:
        data = handle.read(READ_LIMIT + 1)
    if len(data) > READ_LIMIT:
        raise MaintError(f"{path}: larger than {READ_LIMIT} bytes; not a file migrate changes")
    return data


def replace_atomically(path: Path, data: bytes, like: os.stat_result | None = None, *,
                       exact: bool = False, newer_than: os.stat_result | None = None) -> None:
    """Replace `path` by `data` with the mode and owner of `like` (else 0644, ours). `exact`:
    like's mtime too; `newer_than`: an mtime a later second than that file's (cron rereads a
    file only when its mtime, in seconds, changed)."""
    temporary = path.parent / f".{path.name}.torrust-maint-migrate"
    temporary.unlink(missing_ok=True)
    try:
        with open(safefs.create_exclusive(temporary, 0o600), "wb") as handle:
            handle.write(data)
            handle.flush()
            _set_metadata(handle.fileno(), like, exact, newer_than)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    catalog.fsync_directory(path.parent)


def _set_metadata(fd: int, like: os.stat_result | None, exact: bool,
                  newer_than: os.stat_result | None) -> None:
    """Owner and mode of `like` (chown first: it clears set-id bits), then the mtime."""
    if like is None:
        os.fchmod(fd, 0o644)
    else:
        os.fchown(fd, like.st_uid, like.st_gid)
        os.fchmod(fd, stat.S_IMODE(like.st_mode))
    if exact and like is not None:
        os.utime(fd, ns=(like.st_atime_ns, like.st_mtime_ns))
    elif newer_than is not None and int(os.fstat(fd).st_mtime) <= int(newer_than.st_mtime):
        later = (int(newer_than.st_mtime) + 1) * 1_000_000_000
        os.utime(fd, ns=(later, later))


def copy_exactly(source: Path, target: Path) -> None:
    """Copy bytes, mode, owner and mtime (never through a symlink)."""
    data = read_bytes(source)
    if data is None:
        raise MaintError(f"{source}: disappeared while migrate was copying it")
    replace_atomically(target, data, os.stat(source, follow_symlinks=False), exact=True)


def comment_out(data: bytes, line_numbers: set[int]) -> bytes:
    """The cron file with those lines (1-based) commented out, every other byte kept."""
    lines = data.splitlines(keepends=True)
    return b"".join(DISABLED + line if number in line_numbers else line
                    for number, line in enumerate(lines, start=1))


def entry(kind: str, path: Path, before: bytes | None, after: bytes | None,
          copy: Path | None) -> dict[str, Any]:
    """A record entry: what migrate changes in one file, and where its copy is."""
    return {"kind": kind, "path": str(path), "copy": None if copy is None else str(copy),
            "sha256_before": sha256(before), "sha256_after": sha256(after)}


def conflict(item: dict[str, Any]) -> str | None:
    """Why undo must leave the entry's file alone: changed since migrate, or its copy lost."""
    current = sha256(read_bytes(Path(item["path"])))
    if current == item["sha256_before"]:
        return None
    if current != item["sha256_after"]:
        return (f"{item['path']} changed since migrate (it is neither as migrate found it "
                "nor as migrate left it); undo leaves everything alone: put it back by hand")
    if item["sha256_before"] is not None and sha256(read_bytes(Path(item["copy"]))) != \
            item["sha256_before"]:
        return f"{item['copy']}: the copy of {item['path']} from before migrate is missing " \
               "or changed"
    return None


def undo(item: dict[str, Any]) -> str | None:
    """Put the entry's file back as it was before migrate; what was done, if anything."""
    path = Path(item["path"])
    if sha256(read_bytes(path)) == item["sha256_before"]:
        return None
    if item["sha256_before"] is None:
        path.unlink()
        catalog.fsync_directory(path.parent)
        return f"removed {path}"
    copy_exactly(Path(item["copy"]), path)
    return f"put back {path}"


def write_record(directory: Path, record: dict[str, Any]) -> None:
    catalog.write_json_durably(directory, RECORD, record, indent=2)


def read_record(directory: Path) -> dict[str, Any] | None:
    """The migrate record, or None where there is none; an unreadable one is an error."""
    data = read_bytes(directory / RECORD)
    if data is None:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        raise MaintError(f"{directory / RECORD}: not a migrate record (invalid JSON)") from None
    if not isinstance(record, dict) or not isinstance(record.get("files"), list) or \
            not isinstance(record.get("timer_before"), dict):
        raise MaintError(f"{directory / RECORD}: not a migrate record")
    return record


def remove_record(directory: Path, record: dict[str, Any]) -> None:
    """Remove the record last, after the copies it names."""
    for item in record["files"]:
        if item.get("copy"):
            Path(item["copy"]).unlink(missing_ok=True)
    (directory / RECORD).unlink()
    catalog.fsync_directory(directory)
    remove_if_empty(directory)


def remove_if_empty(directory: Path) -> None:
    """Remove a directory migrate made, unless something else is in it now."""
    try:
        directory.rmdir()
    except OSError:
        pass
