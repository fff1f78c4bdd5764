"""Swap a checked file into place by renames, and undo that swap after any interruption.

A restore writes the incoming file beside the one it replaces (same directory, so the same
filesystem) while the tracker serves. Inside the window it renames the current file (and its
companions, e.g. SQLite's ``-wal`` and ``-journal``) aside, and the incoming file in: a few
renames whatever the size. The aside names keep the state from before until a verified safety
set holds it. ``undo`` puts the state from before back from any point of ``apply``: it is
idempotent, tells the incoming file by its inode, and never overwrites a name (so a second
undo, or one after a completed apply that was already undone, changes nothing).

The directory may be writable by the tracker's container: every name is handled relative to a
descriptor of the directory walked without symlinks, renames move names (never follow them),
and a name is never renamed over an existing one.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torrust_maint import notify, safefs
from torrust_maint.errors import MaintError


@dataclass
class FileSwap:
    """One file to be replaced: its name, the incoming file's, and the aside name."""

    directory: str
    name: str
    incoming: str
    aside: str
    incoming_ino: int = 0
    companions: tuple[str, ...] = ()  # suffixes moved aside with the file, before it
    stale: tuple[str, ...] = ()  # suffixes removed once the file is aside (rebuilt by readers)
    existed: bool = field(default=True)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FileSwap:
        return cls(directory=str(data["directory"]), name=str(data["name"]),
                   incoming=str(data["incoming"]), aside=str(data["aside"]),
                   incoming_ino=int(data["incoming_ino"]),
                   companions=tuple(str(s) for s in data.get("companions", ())),
                   stale=tuple(str(s) for s in data.get("stale", ())),
                   existed=bool(data.get("existed", True)))

    @property
    def aside_path(self) -> Path:
        return Path(self.directory) / self.aside

    @property
    def live_path(self) -> Path:
        return Path(self.directory) / self.name

    def aside_paths(self) -> list[Path]:
        """The files that hold the state from before, once applied (those that exist)."""
        with self._dir() as fd:
            return [Path(self.directory) / (self.aside + suffix)
                    for suffix in ("", *self.companions)
                    if _lstat(self.aside + suffix, fd) is not None]

    def check_ready(self) -> None:
        """Before the window: the incoming file is ours (its inode), no aside name is taken."""
        with self._dir() as fd:
            info = _lstat(self.incoming, fd)
            if info is None or not stat.S_ISREG(info.st_mode) or info.st_ino != self.incoming_ino:
                raise MaintError(f"{Path(self.directory) / self.incoming} is not the file this "
                                 "restore wrote: refusing to swap it in")
            for suffix in ("", *self.companions):
                if _lstat(self.aside + suffix, fd) is not None:
                    raise MaintError(f"{Path(self.directory) / (self.aside + suffix)} exists: "
                                     "an earlier restore's state from before is still there")

    def apply(self) -> None:
        """Companions aside, the file aside, stale files removed, the incoming file in."""
        with self._dir() as fd:
            for suffix in self.companions:
                if _move(fd, self.name + suffix, self.aside + suffix, self.directory):
                    notify.status(f"restore: moved {self.name}{suffix} aside")
            _move(fd, self.name, self.aside, self.directory)
            notify.status(f"restore: moved {self.name} aside")
            for suffix in self.stale:
                _unlink_if_present(fd, self.name + suffix)
            if not _move(fd, self.incoming, self.name, self.directory):
                raise MaintError(f"{Path(self.directory) / self.incoming} disappeared before "
                                 "it was swapped in")
            os.fsync(fd)

    def applied(self) -> bool:
        """Whether the incoming file is in place (the swap's last step happened)."""
        with self._dir() as fd:
            info = _lstat(self.name, fd)
            return info is not None and info.st_ino == self.incoming_ino

    def undo(self) -> None:
        """Put the state from before back, from any point of apply (idempotent)."""
        with self._dir() as fd:
            info = _lstat(self.name, fd)
            if info is not None and info.st_ino == self.incoming_ino:
                _move(fd, self.name, self.incoming, self.directory)
            _move(fd, self.aside, self.name, self.directory)
            for suffix in self.companions:
                _move(fd, self.aside + suffix, self.name + suffix, self.directory)
            os.fsync(fd)

    def remove_incoming(self) -> None:
        """Remove the incoming file if it is still ours and not in place."""
        with self._dir() as fd:
            info = _lstat(self.incoming, fd)
            if info is not None and info.st_ino == self.incoming_ino:
                os.unlink(self.incoming, dir_fd=fd)

    def remove_aside(self) -> None:
        """Once a verified copy holds it: remove the state from before (plain files only)."""
        with self._dir() as fd:
            for suffix in (*self.companions, ""):
                info = _lstat(self.aside + suffix, fd)
                if info is not None and (stat.S_ISREG(info.st_mode) or
                                         stat.S_ISLNK(info.st_mode)):
                    os.unlink(self.aside + suffix, dir_fd=fd)  # never follows a symlink
            os.fsync(fd)

    def _dir(self) -> _DirFd:
        return _DirFd(self.directory)


class _DirFd:
    """The directory's descriptor, walked from / without following symlinks."""

    def __init__(self, directory: str):
        self.directory = directory
        self.fd = -1

    def __enter__(self) -> int:
        self.fd = safefs.open_dir_beneath("/", self.directory)
        return self.fd

    def __exit__(self, *_exc) -> None:
        os.close(self.fd)


def _lstat(name: str, fd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return None


def _move(fd: int, source: str, target: str, directory: str) -> bool:
    """Rename source to target if source exists; never over an existing target."""
    if _lstat(source, fd) is None:
        return False
    if _lstat(target, fd) is not None:
        raise MaintError(f"cannot move {Path(directory) / source} to "
                         f"{Path(directory) / target}: that name is taken")
    os.rename(source, target, src_dir_fd=fd, dst_dir_fd=fd)
    return True


def _unlink_if_present(fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=fd)  # unlink never follows a symlink
    except FileNotFoundError:
        pass
