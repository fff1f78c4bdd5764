"""The maintenance window: stop the tracker, yield, start it again in every outcome."""

from __future__ import annotations

import contextlib
import logging
import signal
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


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM, SIGINT and SIGHUP into Interrupted so that `finally` blocks run."""

    def handler(signum, _frame):
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in TERMINATING_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back terminating signals (they are delivered afterwards) while the tracker starts."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def wait_until_ready(docker: Docker, ids: list[str], timeout: float, report: WindowReport,
                     sleep: Callable[[float], None] = time.sleep) -> list[Container]:
    """Start the containers until all run (and are healthy where they have a healthcheck)."""
    deadline = report.clock() + timeout
    last_error = ""
    while True:
        try:
            containers = docker.inspect(ids)
            stopped = [c.id for c in containers if not c.running]
            if stopped:
                docker.start(stopped)
                containers = docker.inspect(ids)
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
    report.mark("stop_requested")
    try:
        with signals_deferred():  # an interrupted `docker stop` would race with our start
            docker.stop(ids, stop_timeout)
        if not docker.dry_run:
            still_running = [c.name for c in docker.inspect(ids) if c.running]
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
        with signals_deferred():
            report.mark("start_requested")
            log.info("starting tracker (%s)", names)
            notify.status(f"maintenance window: starting tracker ({names})")
            if docker.dry_run:
                docker.start(ids)
            else:
                wait_until_ready(docker, ids, start_timeout, report, sleep)
                event("tracker_started", "tracker running again; downtime %.3f s",
                      report.downtime, TRACKER_CONTAINERS=names,
                      TRACKER_DOWNTIME_SEC=report.downtime,
                      TRACKER_HEALTHY_SEC=report.between("stop_requested", "ready"))
