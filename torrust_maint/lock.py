"""One run at a time per backup directory: an flock that dies with its holder."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from torrust_maint import safefs
from torrust_maint.errors import LockedError, MaintError

log = logging.getLogger(__name__)

LOCK_NAME = ".torrust-maint.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@contextlib.contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold the lock of a backup directory, or raise LockedError naming the holder.

    The lock file is never opened through a symlink, nor when it is not a regular file.
    """
    path = directory / LOCK_NAME
    try:
        fd = safefs.open_nofollow(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise MaintError(f"cannot open lock file {path}: {error.strerror}") from None
    with open(fd, "r+", encoding="ascii") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "unknown"
            locked = LockedError(f"another torrust-maint run (pid {holder}) holds {path}")
            locked.holder_pid = int(holder) if holder.isdigit() else None
            raise locked from None
        previous = handle.read().strip()
        if previous.isdigit() and int(previous) != os.getpid():
            state = "still running, but not holding it" if pid_alive(int(previous)) else "gone"
            log.warning("taking over a stale lock left by pid %s (%s)", previous, state)
        try:
            handle.seek(0)
            handle.truncate()
            # Unbuffered: a buffered line that a full disk refused would be flushed again
            # when the file is closed, and that OSError would replace the error below.
            os.write(handle.fileno(), f"{os.getpid()}\n".encode("ascii"))
        except OSError as error:  # a full disk: nothing was done yet
            raise MaintError(f"[backup] directory: cannot write the lock file {path}: "
                             f"{error.strerror or error}; nothing was done") from None
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()


def holder(directory: Path, locks_table: Path = Path("/proc/locks")) -> int | None:
    """The pid recorded by the run holding the lock (0 when it recorded none), or None when
    no run holds it. Read from /proc/locks, without taking the lock even briefly: a run
    starting at that instant must not find it taken by an onlooker."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with open(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        try:
            table = locks_table.read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        held = any(len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted
                   for fields in (line.split() for line in table.splitlines()))
        if not held:
            return None
        text = handle.read(32).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else 0
