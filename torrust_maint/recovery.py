"""Starting the tracker again when the process that stopped it died without doing so.

Before the tracker is stopped, a marker naming its containers (id, name, compose project and
service) is written (fsynced) to the backup directory and a guardian process is started; the
marker is removed once the tracker runs again. If we are killed (SIGKILL, OOM) the guardian
sees its pipe close and runs ``recover``. Under systemd, ``ExecStopPost=`` runs ``recover``
too, for the case where the guardian was killed with the whole cgroup, and
``torrust-recover.service`` runs it at boot, for a power loss mid-window.

Recovery starts only what the window stopped: containers are found by compose service (a
recreate changes their ids), and a container that stopped after the window, or was recreated
and left stopped, was stopped by someone else on purpose and is left alone.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from torrust_maint import catalog, restore_record
from torrust_maint.docker import Container, Docker
from torrust_maint.errors import LockedError, MaintError
from torrust_maint.journal import event

log = logging.getLogger(__name__)

MARKER_NAME = ".torrust-maint-window.json"
MARKER_FORMAT = 2
GUARDIAN_DONE = b"done\n"
GUARDIAN_RECOVER = b"recover\n"
STOP_GRACE = 5  # seconds past stop_timeout that a docker stop may take
CLOCK_SLACK = 2  # seconds: docker's and our timestamps of the same moment may differ
HANDOVER_PATIENCE = 120  # seconds the guardian waits for its parent to release the lock

NOTHING = "nothing"
RECOVERED = "recovered"
LOCKED = "locked"


@dataclass(frozen=True)
class WindowMarker:
    """The containers an open window stopped, and when."""

    path: Path
    containers: tuple[Container, ...]
    pid: int
    opened_at: str
    stop_timeout: int = 10
    boot_id: str = ""

    @property
    def container_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.containers)

    @property
    def container_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.containers)

    @classmethod
    def read(cls, directory: Path) -> WindowMarker | None:
        """The marker in a backup directory, None if there is none (or it is unusable)."""
        path = directory / MARKER_NAME
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with open(fd, encoding="utf-8") as handle:
                data = json.load(handle)
            return cls(path, marked_containers(data), int(data["pid"]), str(data["opened_at"]),
                       int(data.get("stop_timeout", 10)), str(data.get("boot_id", "")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("ignoring unreadable window marker %s: %s", path, error)
            return None

    def stopped_by_window(self, container: Container) -> bool:
        """Whether the container's last stop falls within this window (so we stopped it)."""
        try:
            opened = catalog.parse_rfc3339(self.opened_at)
            finished = parse_docker_time(container.finished_at)
        except ValueError:
            return True  # no usable stop time: the marker is our only evidence
        earliest = opened - dt.timedelta(seconds=CLOCK_SLACK)
        latest = opened + dt.timedelta(seconds=self.stop_timeout + STOP_GRACE + CLOCK_SLACK)
        return earliest <= finished <= latest


def container_records(containers: list[Container]) -> list[dict]:
    """What a marker (or a restore record) keeps of containers to find them again later."""
    return [{"id": c.id, "name": c.name, "service": c.service, "project": c.project,
             "working_dir": c.working_dir} for c in containers]


def marked_containers(data: dict) -> tuple[Container, ...]:
    """Containers of a marker: format 2 lists them; format 1 had ids and names only."""
    if "containers" in data:
        return tuple(Container(id=str(c["id"]), name=str(c["name"]), service=str(c["service"]),
                               project=str(c["project"]), working_dir=str(c["working_dir"]),
                               running=False, status="marked", health=None)
                     for c in data["containers"])
    return tuple(Container(id=str(i), name=str(n), service="", project="", working_dir="",
                           running=False, status="marked", health=None)
                 for i, n in zip(data["container_ids"], data["container_names"], strict=True))


def parse_docker_time(text: str) -> dt.datetime:
    """Docker's RFC 3339 timestamps carry nanoseconds; Python takes microseconds."""
    head, dot, rest = text.rstrip("Z").partition(".")
    fraction = rest[:6] if dot else ""
    moment = dt.datetime.fromisoformat(head + (f".{fraction}" if fraction else ""))
    if moment.year < 2000:  # "0001-01-01T00:00:00Z": never stopped
        raise ValueError("no stop recorded")
    return moment.replace(tzinfo=dt.UTC)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def write_marker(directory: Path, containers: list[Container], stop_timeout: int) -> Path:
    """Record, durably, that we are about to stop these containers (no symlink followed)."""
    data = {"format": MARKER_FORMAT, "pid": os.getpid(), "boot_id": boot_id(),
            "opened_at": catalog.rfc3339(catalog.utc_now()), "stop_timeout": stop_timeout,
            "containers": container_records(containers)}
    catalog.write_json_durably(directory, MARKER_NAME, data)
    return directory / MARKER_NAME


def clear_marker(directory: Path) -> None:
    (directory / MARKER_NAME).unlink(missing_ok=True)


def recover(directory: Path, docker: Docker, start_timeout: int,
            echo: Callable[[str], None] = print, lock_held: bool = False,
            patience: float = 30) -> str:
    """Start what an interrupted window stopped; NOTHING, RECOVERED or LOCKED."""
    if WindowMarker.read(directory) is None:
        echo("no interrupted window: nothing to do")
        return NOTHING
    try:
        with contextlib.nullcontext() if lock_held else _lock_of_the_dead(directory, patience):
            marker = WindowMarker.read(directory)  # the holder may have finished meanwhile
            if marker is None:
                echo("no interrupted window: nothing to do")
                return NOTHING
            _recover_marker(marker, directory, docker, start_timeout, echo)
            return RECOVERED
    except LockedError as error:
        log.warning("not recovering: %s; that run starts the tracker itself", error)
        echo(f"a run is in progress ({error}); it starts the tracker itself")
        return LOCKED


def _recover_marker(marker: WindowMarker, directory: Path, docker: Docker,
                    start_timeout: int, echo: Callable[[str], None]) -> None:
    """Start the marker's containers that the window stopped, then remove the marker.

    A `docker stop` sent by the dead process may still be under way in the daemon (a tracker
    that ignores SIGTERM is killed only after stop_timeout): until it must have finished,
    keep watching, and start again what it stops.
    """
    from torrust_maint.window import WindowReport, wait_until_ready

    log.warning("window opened at %s by pid %d was interrupted: %s", marker.opened_at,
                marker.pid, ", ".join(marker.container_names))
    # A restore killed mid-swap: its state from before goes back first. Should that fail, the
    # tracker is not started on a half-swapped database: the error (and the marker) stay.
    restore_record.roll_back(directory)
    opened = catalog.parse_rfc3339(marker.opened_at)
    settle_until = opened + dt.timedelta(seconds=marker.stop_timeout + STOP_GRACE)
    started: dict[str, None] = {}
    while True:
        targets = containers_to_start(docker, marker)
        if targets:
            wait_until_ready(docker, targets, start_timeout, WindowReport())
            started.update((c.name, None) for c in targets)
        if catalog.utc_now() >= settle_until:
            break
        time.sleep(0.2)
    names = ", ".join(started)
    echo(f"recovered: started {names} again" if started
         else "recovered: nothing the window stopped is still stopped by it")
    clear_marker(directory)
    event("window_recovered", "interrupted window recovered: %s", names or "nothing to start",
          level=logging.WARNING, TRACKER_CONTAINERS=names)


def containers_to_start(docker: Docker, marker: WindowMarker) -> list[Container]:
    """The marker's containers, found by id or else by compose service, that are stopped
    because of the window; anything stopped or recreated since is someone else's doing."""
    from torrust_maint.window import resolve_targets

    current, missing = resolve_targets(docker, list(marker.containers))
    for target in missing:
        log.warning("%s is gone and its service has no container: nothing to start for it",
                    target.name)
    marked = set(marker.container_ids)
    chosen = []
    for container in current:
        if container.running:
            continue
        if container.id not in marked:
            log.warning("%s was recreated after the window and is stopped: left as it is",
                        container.name)
        elif not marker.stopped_by_window(container):
            log.warning("%s stopped at %s, after the window: left stopped (stopped on purpose?)",
                        container.name, container.finished_at)
        else:
            chosen.append(container)
    return chosen


@contextlib.contextmanager
def _lock_of_the_dead(directory: Path, patience: float = 30,
                      successor_of: int | None = None) -> Iterator[None]:
    """The run lock. While its holder is dead (the kernel frees a dying process's files
    asynchronously), or is the process this one succeeds, wait for it instead of giving up."""
    from torrust_maint.lock import pid_alive, run_lock

    deadline = time.monotonic() + patience
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(run_lock(directory))
                break
            except LockedError as error:
                holder = error.holder_pid
                waiting_for_it = holder is not None and (
                    holder == successor_of or not pid_alive(holder))
                if not waiting_for_it or time.monotonic() > deadline:
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
        """The tracker runs again: tell the guardian to exit."""
        self._tell(GUARDIAN_DONE)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired as error:
            log.warning("guardian process did not exit cleanly: %s", error)

    def hand_over(self) -> None:
        """The tracker is not running again: the guardian recovers once we let go of the lock."""
        self._tell(GUARDIAN_RECOVER)

    def _tell(self, message: bytes) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(message)
            self.process.stdin.close()
        except OSError as error:
            log.warning("cannot reach the guardian process: %s", error)


class WindowGuard:
    """Marker and guardian around a window: the marker goes only once the window's report
    says the tracker runs again (or the tracker was never stopped)."""

    def __init__(self, config_path: Path, directory: Path, containers: list[Container],
                 stop_timeout: int, report):
        self.directory = directory
        self.report = report
        try:
            write_marker(directory, containers, stop_timeout)
        except OSError as error:  # a full disk: the tracker has not been stopped
            clear_marker(directory)
            raise MaintError(f"[backup] directory: cannot write the window marker in "
                             f"{directory}: {error.strerror or error}; the tracker was not "
                             "stopped") from None
        try:
            self.guardian = Guardian(config_path)
        except BaseException:
            clear_marker(directory)
            raise

    def __enter__(self) -> WindowGuard:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        marks = self.report.marks
        if "stop_requested" not in marks or "running" in marks:
            clear_marker(self.directory)
            self.guardian.release()
        else:
            log.error("the tracker is not running again; the window marker stays for recovery")
            self.guardian.hand_over()


def guard(directory: Path, docker: Docker, start_timeout: int) -> int:
    """Guardian side: wait for the parent's word; unless it is "done", recover."""
    parent = os.getppid()
    message = sys.stdin.buffer.read()
    if message == GUARDIAN_DONE:
        return 0
    if message == GUARDIAN_RECOVER:
        log.warning("guardian: the tracker did not run again after the window; recovering")
    else:
        log.warning("guardian: the backup process died inside the window; recovering")
    marker = WindowMarker.read(directory)
    successor_of = marker.pid if marker else parent
    try:
        with _lock_of_the_dead(directory, HANDOVER_PATIENCE, successor_of=successor_of):
            marker = WindowMarker.read(directory)
            if marker is not None:
                _recover_marker(marker, directory, docker, start_timeout, log.info)
    except LockedError as error:
        log.warning("guardian: not recovering: %s; that run recovers first", error)
    return 0
