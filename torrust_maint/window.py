"""The maintenance window: stop the tracker, yield, start it again in every outcome."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from torrust_maint import notify
from torrust_maint.docker import Container, Docker
from torrust_maint.errors import DockerError, Interrupted, TrackerDownError
from torrust_maint.journal import event

log = logging.getLogger(__name__)

TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_SECONDS = 0.05
_held: list[int] = []  # terminating signals recorded while held back (see signals_held)


def pending_signal() -> int | None:
    """The first terminating signal held back so far, if any: long waits inside the window
    poll this to give up early (the tracker is started, then the signal is acted on)."""
    return _held[0] if _held else None


@dataclass
class WindowReport:
    """Timings of one window, in seconds on a monotonic clock."""

    clock: Callable[[], float] = time.monotonic
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, event: str) -> None:
        self.marks[event] = self.clock()

    def between(self, start: str, end: str) -> float | None:
        if start in self.marks and end in self.marks:
            return round(self.marks[end] - self.marks[start], 6)
        return None

    @property
    def downtime(self) -> float | None:
        """Stop requested -> every tracker container running again."""
        return self.between("stop_requested", "running")

    def phases(self) -> dict[str, float]:
        spans = {
            "stop": ("stop_requested", "stopped"),
            "snapshot": ("stopped", "start_requested"),
            "start": ("start_requested", "running"),
            "wait_healthy": ("running", "ready"),
        }
        found = {name: self.between(*span) for name, span in spans.items()}
        return {name: value for name, value in found.items() if value is not None}


def _on_signal(signum: int, _frame) -> None:
    """Record a terminating signal while signals are held, else raise Interrupted."""
    if _hold_depth:
        _held.append(signum)
        return
    raise Interrupted(signum)


_hold_depth = 0


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM, SIGINT and SIGHUP into Interrupted so that `finally` blocks run."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in TERMINATING_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Record terminating signals instead of acting on them, and act on the first one after
    the block: the window's stop, snapshot and start are never cut short.

    Blocking signals (pthread_sigmask) is not enough: the kernel then delivers them to another
    thread (a MySQL stderr reader, zstd workers) and Python still runs the handler in the main
    thread. Here the handler itself only records.
    """
    global _hold_depth
    ours = all(signal.getsignal(sig) is _on_signal for sig in TERMINATING_SIGNALS)
    previous = {} if ours else {sig: signal.signal(sig, _on_signal)
                                for sig in TERMINATING_SIGNALS}
    _hold_depth += 1
    try:
        yield
    finally:
        _hold_depth -= 1
        signum = _held[0] if _hold_depth == 0 and _held else None
        if _hold_depth == 0:
            _held.clear()
        for sig, old in previous.items():
            signal.signal(sig, old)
        if signum is not None:
            _act_on_held(signum, bool(previous))


def _act_on_held(signum: int, redeliver: bool) -> None:
    """Act on a signal that was held back: raise Interrupted, unless an error is already on
    its way out (it ends the run anyway, and its exit code says more)."""
    name = signal.Signals(signum).name
    in_flight = sys.exc_info()[1]
    if in_flight is not None:
        log.warning("%s arrived during the window; the run ends with its error instead", name)
        return
    log.warning("%s arrived during the window; acting on it now that the tracker runs", name)
    if redeliver:
        signal.raise_signal(signum)
    else:
        raise Interrupted(signum)


def resolve_targets(docker: Docker, targets: list[Container]) -> tuple[list[Container],
                                                                       list[Container]]:
    """The containers that stand for `targets` now, and the targets nothing stands for.

    A container stands for itself while its id exists; once a recreate has replaced it, the
    containers of the same compose project and service stand for it.
    """
    found = {c.id: c for c in docker.inspect_existing([t.id for t in targets])}
    current = [found[t.id] for t in targets if t.id in found]
    gone = [t for t in targets if t.id not in found]
    missing: list[Container] = []
    for working_dir in sorted({t.working_dir for t in gone if t.working_dir and t.service}):
        project = docker.compose_containers(working_dir)
        for target in (t for t in gone if t.working_dir == working_dir):
            stand_ins = [c for c in project if c.service == target.service
                         and c.project == target.project and c not in current]
            current.extend(stand_ins)
            if not stand_ins:
                missing.append(target)
    missing.extend(t for t in gone if not (t.working_dir and t.service))
    return current, missing


def started_by_someone_else(docker: Docker, targets: list[Container], since: dt.datetime,
                            until: dt.datetime) -> list[Container]:
    """The containers standing for `targets` that started between `since` (before the stop)
    and `until` (the snapshot taken): someone else started (or recreated) the tracker while we
    held it stopped, so it may have written during the snapshot."""
    from torrust_maint.recovery import parse_docker_time

    current, _ = resolve_targets(docker, targets)
    found = []
    for container in current:
        try:
            started = parse_docker_time(container.started_at)
        except ValueError:
            continue
        if since <= started <= until:
            found.append(container)
    return found


def wait_until_ready(docker: Docker, targets: list[Container], timeout: float,
                     report: WindowReport,
                     sleep: Callable[[float], None] = time.sleep) -> list[Container]:
    """Start the targets (or their compose service's containers, where a recreate replaced
    them) until all run, and are healthy where they have a healthcheck."""
    deadline = report.clock() + timeout
    last_error = ""
    while True:
        try:
            containers, missing = resolve_targets(docker, targets)
            if missing:
                raise DockerError("no container of service(s) "
                                  + ", ".join(f"{t.service or '?'} ({t.name})" for t in missing))
            stopped = [c.id for c in containers if not c.running]
            if stopped:
                docker.start(stopped)
                containers = docker.inspect([c.id for c in containers])
            if all(c.running for c in containers) and "running" not in report.marks:
                report.mark("running")
            if all(c.ready for c in containers):
                report.mark("ready")
                return containers
            last_error = "; ".join(f"{c.name}: {c.status}" + (f", {c.health}" if c.health else "")
                                   for c in containers)
        except DockerError as error:
            last_error = str(error)
            log.warning("starting the tracker: %s (retrying)", error)
        if report.clock() >= deadline:
            raise TrackerDownError(
                f"the tracker is not running again {timeout:.0f} s after the window "
                f"([deployment] start_timeout): {last_error}"
            )
        sleep(POLL_SECONDS)


@contextlib.contextmanager
def maintenance_window(docker: Docker, trackers: list[Container], stop_timeout: int,
                       start_timeout: int, report: WindowReport,
                       sleep: Callable[[float], None] = time.sleep) -> Iterator[WindowReport]:
    """Stop the tracker containers, yield, then start them again whatever happened inside."""
    ids = [c.id for c in trackers]
    names = ", ".join(c.name for c in trackers)
    event("window_started", "stopping tracker (%s)", names, TRACKER_CONTAINERS=names)
    notify.status(f"maintenance window: stopping tracker ({names})")
    with signals_held():  # stop, snapshot and start are never cut short by a signal
        report.mark("stop_requested")
        try:
            docker.stop(ids, stop_timeout)
            if not docker.dry_run:
                still_running = [c.name for c in docker.inspect_existing(ids) if c.running]
                if still_running:
                    raise DockerError("tracker still running after docker stop: "
                                      + ", ".join(still_running))
            report.mark("stopped")
            stop_seconds = report.between("stop_requested", "stopped")
            event("tracker_stopped", "tracker stopped after %.3f s", stop_seconds,
                  TRACKER_CONTAINERS=names, TRACKER_STOP_SEC=stop_seconds)
            notify.status("maintenance window: snapshot")
            yield report
        finally:
            report.mark("start_requested")
            log.info("starting tracker (%s)", names)
            notify.status(f"maintenance window: starting tracker ({names})")
            if docker.dry_run:
                docker.start(ids)
            else:
                wait_until_ready(docker, trackers, start_timeout, report, sleep)
                event("tracker_started", "tracker running again; downtime %.3f s",
                      report.downtime, TRACKER_CONTAINERS=names,
                      TRACKER_DOWNTIME_SEC=report.downtime,
                      TRACKER_HEALTHY_SEC=report.between("stop_requested", "ready"))
