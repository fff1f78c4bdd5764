"""Root touching directories that the tracker can write: never follow a symbolic link there.

A compromised tracker can plant a symlink (or a FIFO) wherever its own user writes: its
database directory, the compose dir's storage/tracker/etc. Opening, creating, chowning or
renaming through such a name as root would reach any file on the host. The helpers here
refuse instead, with UnsafePath (a MaintError naming the path):

- ``check_regular(path)``: lstat; None when nothing is there, else the stat of a regular file;
- ``open_nofollow(path, flags)``: an fd of a regular file, never through a symlink;
- ``create_exclusive(path, mode)``: a new file, never an existing name (not even a symlink);
- ``open_dir_beneath(root, relative)``: an fd of root/relative, no component a symlink;
- ``open_path_nofollow(path)``: an O_PATH fd of a regular file, to fstat it and to chown or
  chmod it through ``fd_path(fd)``. Unlike any other fd, closing it releases none of the
  process's POSIX locks on the file: use it for a file that SQLite holds locked (-shm).

All but open_dir_beneath take ``dir_fd`` like os.open, so that a directory walked once is
not looked up again (``shown`` is then the path to name in an error). A missing file is
FileNotFoundError as usual. The caller closes the fds it gets (os.close, or ``open(fd)``).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from torrust_maint.errors import MaintError

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(MaintError):
    """A path that root was about to use is a symlink, or not the kind of file it should be."""


def _kind(mode: int) -> str:
    """A file type in words, for error messages."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket or device"


def _refuse(path: os.PathLike | str, kind: str, expected: str = "a regular file") -> UnsafePath:
    """The error for a name that is not what root expects there."""
    return UnsafePath(f"{path} is {kind}, not {expected}: refusing to use it as root (one "
                      "planted by another user would redirect root's reads and writes)")


def check_regular(path: os.PathLike | str, *, dir_fd: int | None = None,
                  shown: os.PathLike | str | None = None) -> os.stat_result | None:
    """lstat `path`: None if nothing is there, its stat if it is a regular file, else UnsafePath."""
    try:
        info = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(shown or path, _kind(info.st_mode))
    return info


def open_nofollow(path: os.PathLike | str, flags: int = os.O_RDONLY, mode: int = 0o600, *,
                  dir_fd: int | None = None, shown: os.PathLike | str | None = None) -> int:
    """os.open a regular file without following a symlink (last component); its fd.

    With O_CREAT in flags a missing file is created. FileNotFoundError propagates; a symlink,
    FIFO, device or directory is UnsafePath (a FIFO is opened non-blocking, so never hangs).
    """
    try:
        fd = os.open(path, flags | NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise
        info = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        raise _refuse(shown or path, _kind(info.st_mode)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(shown or path, _kind(info.st_mode))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_path_nofollow(path: os.PathLike | str, *, dir_fd: int | None = None,
                       shown: os.PathLike | str | None = None) -> int:
    """An O_PATH fd of a regular file, never of what a symlink points to; UnsafePath else.

    Closing an ordinary fd drops every POSIX (fcntl) lock the process holds on the file, such
    as SQLite's WAL read lock on -shm; closing an O_PATH fd does not.
    """
    fd = os.open(path, os.O_PATH | NOFOLLOW, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(shown or path, _kind(info.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd


def fd_path(fd: int) -> str:
    """A path to exactly the file an fd (O_PATH too) refers to, for os.chown and os.chmod."""
    return f"/proc/self/fd/{fd}"


def create_exclusive(path: os.PathLike | str, mode: int = 0o600, *,
                     dir_fd: int | None = None) -> int:
    """Create a new file for writing and return its fd; FileExistsError if the name is taken.

    O_EXCL never follows a symlink, not even a dangling one. The mode is fchmod-ed after the
    creation, so the umask does not narrow it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir_beneath(root: os.PathLike | str, relative: os.PathLike | str = "", *,
                     create: bool = False, mode: int = 0o755) -> int:
    """An fd of the directory root/relative, walked one component at a time without symlinks.

    `root` itself is trusted (symlinks in it are followed); every component of `relative` must
    be a real directory, else UnsafePath names it. With create, missing components are made
    with `mode`. `relative` may be absolute (then root is usually "/"); ".." is refused.
    """
    parts = [part for part in Path(relative).parts if part not in ("/", ".")]
    if ".." in parts:
        raise UnsafePath(f"{relative}: '..' in a path that must stay beneath {root}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = Path(root)
    try:
        for part in parts:
            walked = walked / part
            child = _open_child_dir(fd, part, walked, create, mode)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child_dir(parent_fd: int, name: str, shown: Path, create: bool, mode: int) -> int:
    """Open one directory entry as a directory, never through a symlink (see open_dir_beneath)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        raise _refuse(shown, _kind(info.st_mode), "a directory") from None
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:  # made meanwhile: opened (and checked) below
        pass
    return _open_child_dir(parent_fd, name, shown, False, mode)


class PrivateFileError(MaintError):
    """A file holding secrets is missing, unreadable, or readable by others (named)."""


def read_private_file(path: Path, setting: str, max_bytes: int) -> bytes:
    """The bytes of a secrets file named by `setting`: a regular file (never through a
    symlink) that no one but its owner can read or write (0600 or 0400), at most max_bytes."""
    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        raise PrivateFileError(f"{setting}: {path} does not exist") from None
    except UnsafePath as error:
        raise PrivateFileError(f"{setting}: {error}") from None
    except OSError as error:
        raise PrivateFileError(f"{setting}: cannot read {path}: "
                               f"{error.strerror or error}") from None
    with open(fd, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise PrivateFileError(f"{setting}: {path} has mode {mode:04o}; it holds secrets, "
                                   f"so others must not read it: chmod 600 {path}")
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PrivateFileError(f"{setting}: {path} is larger than {max_bytes} bytes")
    return raw
