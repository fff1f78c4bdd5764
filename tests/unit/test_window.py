"""window: the tracker is started again whatever happens inside the maintenance window."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from torrust_maint.docker import Docker
from torrust_maint.errors import (
    EXIT_TRACKER_DOWN,
    DockerError,
    Interrupted,
    TrackerDownError,
)
from torrust_maint.window import (
    POLL_SECONDS,
    WindowReport,
    maintenance_window,
    pending_signal,
    signals_raise,
    wait_until_ready,
)


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def report(clock) -> WindowReport:
    return WindowReport(clock=clock)


def tracker(fake_docker, docker, **options):
    cid = fake_docker.add("compose-tracker-1", working_dir="/srv/tracker", **options)
    return cid, docker.inspect([cid])


def window(docker, trackers, report, clock, stop_timeout=7, start_timeout=30):
    return maintenance_window(docker, trackers, stop_timeout, start_timeout, report,
                              sleep=clock.sleep)


# -- the normal window -----------------------------------------------------------------------

def test_window_stops_then_starts_the_tracker(fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    with window(docker, trackers, report, clock) as inside:
        assert inside is report
        assert not fake_docker.running(cid)
        assert fake_docker.calls_to("stop") == [["docker", "stop", "-t", "7", cid]]
        assert fake_docker.calls_to("start") == []
    assert fake_docker.running(cid)
    assert fake_docker.calls_to("start") == [["docker", "start", cid]]
    assert list(report.marks) == ["stop_requested", "stopped", "start_requested", "running",
                                  "ready"]


def test_stop_gets_the_configured_grace_time_plus_a_margin(fake_docker, docker, report, clock):
    _, trackers = tracker(fake_docker, docker)
    with window(docker, trackers, report, clock, stop_timeout=25):
        pass
    stop_index = fake_docker.calls.index(fake_docker.calls_to("stop")[0])
    assert fake_docker.calls[stop_index][3] == "25"
    assert fake_docker.timeouts[stop_index] > 25


def test_dry_run_prints_stop_and_start_and_runs_neither(fake_docker, report, clock):
    echoed: list[str] = []
    docker = Docker(runner=fake_docker, dry_run=True, echo=echoed.append)
    cid, trackers = tracker(fake_docker, docker)
    with window(docker, trackers, report, clock):
        assert fake_docker.running(cid)
    assert fake_docker.calls_to("stop") == fake_docker.calls_to("start") == []
    assert echoed == [f"would run: docker stop -t 7 {cid}", f"would run: docker start {cid}"]


# -- every way out starts the tracker again ------------------------------------------------

def test_exception_in_the_window_still_starts_the_tracker(fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    with pytest.raises(ValueError, match="snapshot failed"):
        with window(docker, trackers, report, clock):
            raise ValueError("snapshot failed")
    assert fake_docker.running(cid)
    assert fake_docker.calls_to("start") == [["docker", "start", cid]]


def test_sigterm_in_the_window_is_acted_on_once_the_tracker_runs(
        fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    before = signal.getsignal(signal.SIGTERM)
    reached_after_kill = False
    with pytest.raises(Interrupted) as caught:
        with signals_raise():
            with window(docker, trackers, report, clock):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # held back: the snapshot is not cut short
                assert pending_signal() == signal.SIGTERM
                reached_after_kill = True
    assert reached_after_kill
    assert caught.value.signum == signal.SIGTERM
    assert str(caught.value) == "interrupted by SIGTERM"
    assert fake_docker.calls_to("start") == [["docker", "start", cid]]
    assert fake_docker.running(cid)
    assert pending_signal() is None
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored


def test_sigterm_outside_the_window_raises_at_once(fake_docker, docker, report, clock):
    with pytest.raises(Interrupted):
        with signals_raise():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises long before this returns
    assert pending_signal() is None


@pytest.fixture
def worker_thread():
    """A thread alive through the window, as the MySQL stderr reader or zstd workers are: it
    does not block SIGTERM, so the kernel may deliver a process-directed signal to it."""
    done = threading.Event()
    thread = threading.Thread(target=done.wait, args=(10,))
    thread.start()
    yield thread
    done.set()
    thread.join()


@pytest.mark.parametrize("verb", ["inspect", "start"])
def test_sigterm_during_the_restart_with_a_worker_thread_still_starts_the_tracker(
        fake_docker, docker, report, clock, worker_thread, verb):
    """Defect: pthread_sigmask held SIGTERM back in the main thread only; delivered to another
    thread during the restart's first `docker inspect`, it escaped wait_until_ready and no
    `docker start` was sent."""
    cid, trackers = tracker(fake_docker, docker)
    real_runner = fake_docker.__call__
    sent: list[str] = []

    def runner(argv, timeout=None):
        if not sent and fake_docker._verb(argv[1:]) == verb and not fake_docker.running(cid) \
                and "start_requested" in report.marks:
            sent.append(verb)
            os.kill(os.getpid(), signal.SIGTERM)  # process-directed, like systemctl stop
            time.sleep(0.05)  # the Python handler runs at the next bytecode boundary
        return real_runner(argv, timeout)

    docker.runner = runner
    with pytest.raises(Interrupted):
        with signals_raise():
            with window(docker, trackers, report, clock):
                pass
    assert sent == [verb]
    assert fake_docker.running(cid)
    assert fake_docker.calls_to("start") == [["docker", "start", cid]]
    assert "running" in report.marks


def test_a_held_signal_does_not_hide_the_windows_own_error(fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    with pytest.raises(ValueError, match="snapshot failed"):
        with signals_raise():
            with window(docker, trackers, report, clock):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                raise ValueError("snapshot failed")
    assert fake_docker.running(cid)
    assert pending_signal() is None


def test_without_signals_raise_a_held_signal_is_redelivered_after_the_window(
        fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    seen: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, _frame: seen.append(signum))
    try:
        with window(docker, trackers, report, clock):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
            assert seen == []
        assert seen == [signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert fake_docker.running(cid)


# -- recreated containers ----------------------------------------------------------------------

def test_tracker_recreated_between_stop_and_start_is_found_by_service(
        fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    with window(docker, trackers, report, clock):
        new_id = fake_docker.recreate(cid, running=False)
    assert fake_docker.running(new_id)
    assert fake_docker.calls_to("start") == [["docker", "start", new_id]]
    assert "ready" in report.marks


def test_tracker_recreated_and_running_needs_no_start(fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    with window(docker, trackers, report, clock):
        new_id = fake_docker.recreate(cid, running=True)
    assert fake_docker.running(new_id)
    assert fake_docker.calls_to("start") == []
    assert clock.sleeps == []  # no wait for a container that no longer exists


def test_sigterm_during_docker_stop_is_held_back_until_stop_returns(
        fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    real_runner = fake_docker.__call__

    def runner(argv, timeout=None):
        result = real_runner(argv, timeout)
        if argv[1] == "stop":
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while `docker stop` "runs"
            order.append("stop returned")
        return result

    order: list[str] = []
    docker.runner = runner
    body_ran = False
    with pytest.raises(Interrupted):
        with signals_raise():
            with window(docker, trackers, report, clock):
                body_ran = True
    assert order == ["stop returned"]
    assert body_ran  # the body sees pending_signal() and may give up early
    assert fake_docker.running(cid)
    assert fake_docker.calls_to("start") == [["docker", "start", cid]]


def test_failing_docker_stop_still_starts_the_tracker(fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    # `docker stop` gives up with an error, but the container did go down.
    fake_docker.fail("stop", stderr="context deadline exceeded", apply=True)
    body_ran = False
    with pytest.raises(DockerError, match="docker stop failed: .*context deadline exceeded"):
        with window(docker, trackers, report, clock):
            body_ran = True
    assert not body_ran
    assert fake_docker.running(cid)
    assert fake_docker.calls_to("start") == [["docker", "start", cid]]
    assert "stopped" not in report.marks


def test_failing_docker_stop_leaves_a_running_tracker_running(fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    fake_docker.fail("stop", stderr="permission denied")
    with pytest.raises(DockerError, match="permission denied"):
        with window(docker, trackers, report, clock):
            pytest.fail("the window must not open")
    assert fake_docker.running(cid)
    assert fake_docker.calls_to("start") == []


def test_tracker_still_running_after_stop_closes_the_window(fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    fake_docker.deaf.add(cid)
    with pytest.raises(DockerError, match="tracker still running after docker stop: "
                                          "compose-tracker-1"):
        with window(docker, trackers, report, clock):
            pytest.fail("the window must not open")
    assert fake_docker.running(cid)


def test_tracker_that_never_comes_back_raises_tracker_down_after_the_body_error(
        fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker)
    fake_docker.broken.add(cid)
    with pytest.raises(TrackerDownError) as caught:
        with window(docker, trackers, report, clock, start_timeout=3):
            raise ValueError("snapshot failed")
    assert isinstance(caught.value.__context__, ValueError)
    assert caught.value.exit_code == EXIT_TRACKER_DOWN == 4


# -- waiting for the tracker -----------------------------------------------------------------

def stop_now(fake_docker, cid):
    fake_docker.set_running(cid, False)


def test_wait_until_ready_retries_a_failing_start(fake_docker, docker, report, clock):
    cid, _ = tracker(fake_docker, docker)
    stop_now(fake_docker, cid)
    fake_docker.fail("start", times=2, stderr="driver failed programming external connectivity")
    containers = wait_until_ready(docker, docker.inspect([cid]), 30, report, sleep=clock.sleep)
    assert [c.id for c in containers] == [cid] and containers[0].running
    assert len(fake_docker.calls_to("start")) == 3
    assert clock.sleeps == [POLL_SECONDS, POLL_SECONDS]


def test_wait_until_ready_gives_up_after_the_timeout(fake_docker, docker, report, clock):
    cid, _ = tracker(fake_docker, docker)
    stop_now(fake_docker, cid)
    fake_docker.broken.add(cid)
    started = clock.now
    wall = time.monotonic()
    with pytest.raises(TrackerDownError) as caught:
        wait_until_ready(docker, docker.inspect([cid]), 5, report, sleep=clock.sleep)
    assert time.monotonic() - wall < 5  # the fake clock made it fast
    assert caught.value.exit_code == EXIT_TRACKER_DOWN
    message = str(caught.value)
    assert message.startswith("the tracker is not running again 5 s after the window "
                              "([deployment] start_timeout): ")
    assert message.endswith("compose-tracker-1: exited")
    assert clock.now - started >= 5
    assert clock.now - started < 5 + 2 * POLL_SECONDS
    assert len(fake_docker.calls_to("start")) > 10  # it kept trying
    assert "running" not in report.marks and "ready" not in report.marks


def test_wait_until_ready_reports_the_last_docker_error(fake_docker, docker, report, clock):
    cid, _ = tracker(fake_docker, docker)
    stop_now(fake_docker, cid)
    fake_docker.fail("start", times=10_000, stderr="no space left on device")
    with pytest.raises(TrackerDownError, match="docker start failed: .*no space left on device$"):
        wait_until_ready(docker, docker.inspect([cid]), 2, report, sleep=clock.sleep)


def test_healthcheck_waits_for_healthy(fake_docker, docker, report, clock):
    cid, trackers = tracker(fake_docker, docker, healthcheck=True, healthy_after=4)
    assert trackers[0].ready and trackers[0].health == "healthy"
    with window(docker, trackers, report, clock):
        pass
    assert fake_docker.containers[cid]["State"]["Health"]["Status"] == "healthy"
    assert report.marks["running"] < report.marks["ready"]
    assert report.phases()["wait_healthy"] == pytest.approx(len(clock.sleeps) * POLL_SECONDS)
    assert len(clock.sleeps) >= 1


def test_unhealthy_tracker_is_reported_as_down(fake_docker, docker, report, clock):
    cid, _ = tracker(fake_docker, docker, healthcheck=True, healthy_after=10_000)
    stop_now(fake_docker, cid)
    with pytest.raises(TrackerDownError, match="compose-tracker-1: running, starting$"):
        wait_until_ready(docker, docker.inspect([cid]), 1, report, sleep=clock.sleep)
    assert "running" in report.marks and "ready" not in report.marks


def test_only_stopped_containers_are_started(fake_docker, docker, report, clock):
    up = fake_docker.add("compose-tracker-1", working_dir="/srv")
    down = fake_docker.add("compose-tracker-2", working_dir="/srv")
    stop_now(fake_docker, down)
    wait_until_ready(docker, docker.inspect([up, down]), 10, report, sleep=clock.sleep)
    assert fake_docker.calls_to("start") == [["docker", "start", down]]


# -- timings ---------------------------------------------------------------------------------

def test_downtime_and_phases_come_from_the_marks():
    report = WindowReport(marks={"stop_requested": 10.0, "stopped": 12.5,
                                 "start_requested": 13.0, "running": 14.25, "ready": 20.0})
    assert report.downtime == 4.25
    assert report.phases() == {"stop": 2.5, "snapshot": 0.5, "start": 1.25,
                               "wait_healthy": 5.75}


def test_missing_marks_leave_phases_out():
    report = WindowReport(marks={"stop_requested": 10.0, "stopped": 11.0})
    assert report.downtime is None
    assert report.phases() == {"stop": 1.0}


def test_window_timings_follow_the_clock(fake_docker, docker, clock):
    ticks = iter(range(100))
    report = WindowReport(clock=lambda: float(next(ticks)) * 1.5)
    _, trackers = tracker(fake_docker, docker)
    with window(docker, trackers, report, clock):
        pass
    marks = report.marks
    assert report.downtime == marks["running"] - marks["stop_requested"] > 0
    phases = report.phases()
    assert sum(phases.values()) == pytest.approx(marks["ready"] - marks["stop_requested"])
    assert set(phases) == {"stop", "snapshot", "start", "wait_healthy"}
