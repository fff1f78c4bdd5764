"""Starting the tracker again when the process that stopped it died without doing so.

Before the tracker is stopped, a marker naming its containers is written (fsynced) to the
backup directory and a guardian process is started; the marker is removed once the tracker
runs again. If we are killed (SIGKILL, OOM) the guardian sees its pipe close and runs
``recover``, which starts the marked containers. Under systemd, ``ExecStopPost=`` runs
``recover`` too, for the case where the guardian was killed with the whole cgroup. The marker
is on disk, not in /run, so a reboot mid-window is recovered by the next run as well.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from torrust_maint import catalog
from torrust_maint.docker import Docker
from torrust_maint.errors import LockedError
from torrust_maint.journal import event

log = logging.getLogger(__name__)

MARKER_NAME = ".torrust-maint-window.json"
GUARDIAN_DONE = b"done\n"
STOP_GRACE = 5  # seconds past stop_timeout that a docker stop may take


@dataclass(frozen=True)
class WindowMarker:
    """The containers an open window stopped."""

    path: Path
    container_ids: tuple[str, ...]
    container_names: tuple[str, ...]
    pid: int
    opened_at: str
    stop_timeout: int = 10

    @classmethod
    def read(cls, directory: Path) -> WindowMarker | None:
        path = directory / MARKER_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(path, tuple(data["container_ids"]), tuple(data["container_names"]),
                       int(data["pid"]), str(data["opened_at"]),
                       int(data.get("stop_timeout", 10)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("ignoring unreadable window marker %s: %s", path, error)
            return None


def write_marker(directory: Path, ids: list[str], names: list[str], stop_timeout: int) -> Path:
    """Record, durably, that we are about to stop these containers."""
    path = directory / MARKER_NAME
    temporary = directory / (MARKER_NAME + ".tmp")
    data = {"container_ids": ids, "container_names": names, "pid": os.getpid(),
            "opened_at": catalog.rfc3339(catalog.utc_now()), "stop_timeout": stop_timeout}
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    catalog.fsync_directory(directory)
    return path


def clear_marker(directory: Path) -> None:
    (directory / MARKER_NAME).unlink(missing_ok=True)


def recover(directory: Path, docker: Docker, start_timeout: int, echo=print) -> bool:
    """Start the containers of an interrupted window; True if there was one to recover."""
    from torrust_maint.window import WindowReport, wait_until_ready

    marker = WindowMarker.read(directory)
    if marker is None:
        return False
    try:
        with _lock_of_the_dead(directory):
            marker = WindowMarker.read(directory)  # the holder may have finished meanwhile
            if marker is None:
                return False
            log.warning("window opened at %s by pid %d was interrupted: starting %s",
                        marker.opened_at, marker.pid, ", ".join(marker.container_names))
            ids = list(marker.container_ids)
            wait_until_ready(docker, ids, start_timeout, WindowReport())
            # A `docker stop` sent by the dead process may still be under way in the daemon:
            # keep the tracker running until it must have finished.
            opened = catalog.parse_rfc3339(marker.opened_at)
            settle_until = opened + dt.timedelta(seconds=marker.stop_timeout + STOP_GRACE)
            while catalog.utc_now() < settle_until:
                time.sleep(0.2)
                if not all(c.running for c in docker.inspect(ids)):
                    log.warning("the tracker stopped again (an earlier docker stop finished)")
                    wait_until_ready(docker, ids, start_timeout, WindowReport())
            clear_marker(directory)
            event("window_recovered", "interrupted window recovered: %s running again",
                  ", ".join(marker.container_names), level=logging.WARNING,
                  TRACKER_CONTAINERS=", ".join(marker.container_names))
            echo(f"recovered: started {', '.join(marker.container_names)} again")
            return True
    except LockedError as error:
        log.warning("not recovering: %s; that run will start the tracker itself", error)
        echo("a run is in progress and holds the lock; it will start the tracker itself")
        return False


@contextlib.contextmanager
def _lock_of_the_dead(directory: Path, patience: float = 30) -> Iterator[None]:
    """The run lock; while its recorded holder is dead (its lock not released yet: the kernel
    frees a dying process's files asynchronously), wait for it instead of giving up."""
    from torrust_maint.lock import pid_alive, run_lock

    deadline = time.monotonic() + patience
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(run_lock(directory))
                break
            except LockedError as error:
                holder = error.holder_pid
                if holder is None or pid_alive(holder) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield


class Guardian:
    """A detached process that runs ``recover`` if this process dies inside the window."""

    def __init__(self, config_path: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "torrust_maint", "--config", str(config_path),
             "recover", "--guardian"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )

    def release(self) -> None:
        """The window closed normally: tell the guardian to exit."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(GUARDIAN_DONE)
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired) as error:
            log.warning("guardian process did not exit cleanly: %s", error)


class WindowGuard:
    """Marker and guardian around a window: the marker goes only once the tracker runs again."""

    def __init__(self, config_path: Path, directory: Path, ids: list[str], names: list[str],
                 stop_timeout: int):
        self.directory = directory
        self.guardian = Guardian(config_path)
        write_marker(directory, ids, names, stop_timeout)

    def __enter__(self) -> WindowGuard:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        from torrust_maint.errors import TrackerDownError

        if not (exc_type and issubclass(exc_type, TrackerDownError)):
            clear_marker(self.directory)
        self.guardian.release()


def guard(directory: Path, docker: Docker, start_timeout: int) -> int:
    """Guardian side: wait for the parent's word; if the pipe closes without it, recover."""
    message = sys.stdin.buffer.read()
    if message == GUARDIAN_DONE:
        return 0
    log.warning("guardian: the backup process died inside the window; recovering")
    recover(directory, docker, start_timeout)
    return 0
