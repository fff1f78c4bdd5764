"""SIGKILL and SIGTERM (and SIGINT, SIGHUP) at every phase of a backup, for each engine.

The run is paused at the phase by the fault hook in notify.status; the signal goes to the
backup process (`python3 -m torrust_maint ... backup`), as systemd or an operator would send
it. Expected (issue 8): SIGTERM/SIGINT/SIGHUP exit 1 ("interrupted by SIGTERM") with the
tracker running when the process exits; after SIGKILL the guardian starts the tracker within
stop_timeout + a few seconds; older sets byte-identical; no partial set listed (a killed run's
staging directory only as "unfinished", gone after the next run); the next backup works.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.reliability.scenario import ENGINES, GUARDIAN_GRACE, SIGNALS, Scenario
from tests.reliability.support import (
    PHASES,
    TrackerWatch,
    container_id,
    processes_with,
    throwaway_containers,
    wait_until,
)

IN_WINDOW = ("stop", "snapshot", "restart")
FAST = {("sqlite-wal", "snapshot"), ("mysql", "snapshot"), ("postgresql", "snapshot")}


def matrix():
    for engine in ENGINES:
        for phase in PHASES:
            for signum in (signal.SIGKILL, signal.SIGTERM):
                slow = () if (engine, phase) in FAST else (pytest.mark.slow,)
                yield pytest.param(engine, phase, signum, marks=slow,
                                   id=f"{engine}-{phase}-{SIGNALS[signum]}")
    # The other terminating signals, once in the window (SQLite) and once with the MySQL
    # stderr reader thread alive (the restart).
    for engine, phase in (("sqlite-wal", "snapshot"), ("mysql", "restart")):
        for signum in (signal.SIGINT, signal.SIGHUP):
            yield pytest.param(engine, phase, signum, marks=pytest.mark.slow,
                               id=f"{engine}-{phase}-{SIGNALS[signum]}")


@pytest.mark.parametrize("engine, phase, signum", list(matrix()))
def test_signal_at_phase(engine, phase, signum, make_stack, tmp_path, record):
    name = SIGNALS[signum]
    # "stop": the signal arrives while `docker stop` waits for a tracker that ignores SIGTERM.
    stopping = phase == "stop"
    scenario = Scenario(make_stack, engine, record, ignore_sigterm=stopping,
                        stop_timeout=3 if stopping else 4)
    record.update(fault=f"{name} during {phase}", phase=phase, signal=name)
    scenario.prepare()

    with TrackerWatch(scenario.name) as watch:
        run = scenario.run(PHASES[phase], tmp_path / "run", released=stopping)
        try:
            run.wait_for_pause()
            if stopping:  # `docker stop -t 3 <id>` is under way, its tracker ignoring SIGTERM
                tracker_id = container_id(scenario.name)
                wait_until(lambda: processes_with("stop", tracker_id), 30, interval=0.02,
                           what="the run's docker stop")
                time.sleep(0.5)
            moment = run.send(signum)
            run.release()
            code = run.wait(timeout=180)
            running_at_exit = scenario.tracker.running()
            scenario.settle()
            scenario.measure(watch, moment)
        finally:
            run.kill_if_running()
    run.finish_reading(timeout=30)
    scenario.outcome(run, code)
    record["tracker_running_at_exit"] = running_at_exit

    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
        if phase in IN_WINDOW:
            record["recovered_by"] = "guardian"
            bound = scenario.stop_timeout + GUARDIAN_GRACE
            back = record["tracker_back_s"]
            assert back is not None and back <= bound, \
                f"the guardian should start the tracker within {bound} s; it took {back}"
            assert "recovered" in run.stderr, f"the guardian said nothing\n{run.output()}"
    else:
        scenario.assert_one_clear_line(run, code, (1,))
        assert run.error_lines() == [f"torrust-maint: error: interrupted by {name}"]
        assert running_at_exit, "the tracker must run again before the process exits"
        record["recovered_by"] = "the run itself"
    if phase in IN_WINDOW:
        assert len(scenario.tracker.startup_seqs()) >= 3, "the window did stop the tracker"

    scenario.assert_older_sets_intact()
    listing = scenario.assert_no_partial_set(allow_unfinished=signum == signal.SIGKILL)
    # From "verify" on, the set was committed before the signal: it stays, never "failed".
    scenario.assert_new_sets(listing, allowed=1 if phase in ("verify", "prune") else 0)
    if signum != signal.SIGKILL:
        assert throwaway_containers(scenario.directory) == []
    scenario.assert_later_backup_works(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_signal_while_the_mysql_verify_container_runs(signum, make_stack, tmp_path, record):
    """The throwaway container of the verification is removed on SIGTERM; after a SIGKILL,
    no later than by the next run."""
    name = SIGNALS[signum]
    scenario = Scenario(make_stack, "mysql", record)
    record.update(fault=f"{name} while the verify container runs", phase="verify (import)",
                  signal=name)
    scenario.prepare()
    run = scenario.run(PHASES["verify"], tmp_path / "run", released=True)
    try:
        run.wait_for_pause()
        wait_until(lambda: throwaway_containers(scenario.directory), 60, interval=0.1,
                   what="the verification's throwaway container")
        time.sleep(0.5)
        moment = run.send(signum)
        code = run.wait(timeout=120)
        record["tracker_running_at_exit"] = scenario.tracker.running()
    finally:
        run.kill_if_running()
    run.finish_reading(timeout=30)
    scenario.outcome(run, code)
    record["tracker_back_s"] = 0.0 if record["tracker_running_at_exit"] else None
    record["seconds_to_exit"] = round(time.time() - moment, 3)

    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        scenario.assert_one_clear_line(run, code, (1,))
        assert run.error_lines() == [f"torrust-maint: error: interrupted by {name}"]
        assert throwaway_containers(scenario.directory) == [], "left its throwaway container"
    assert record["tracker_running_at_exit"]
    scenario.assert_older_sets_intact()
    listing = scenario.assert_no_partial_set(allow_unfinished=signum == signal.SIGKILL)
    scenario.assert_new_sets(listing, allowed=1)
    scenario.assert_later_backup_works(tmp_path)  # also: no throwaway container any more


ONLINE_PHASES = {"snapshot": "online: no window, the tracker keeps running: opening the snapshot",
                 "export": PHASES["export"]}
FAST_ONLINE = {("sqlite-wal", "export", signal.SIGKILL), ("mysql", "snapshot", signal.SIGTERM)}


def online_matrix():
    for engine in ("sqlite-wal", "mysql"):
        for phase in ONLINE_PHASES:
            for signum in (signal.SIGKILL, signal.SIGTERM):
                slow = () if (engine, phase, signum) in FAST_ONLINE else (pytest.mark.slow,)
                yield pytest.param(engine, phase, signum, marks=slow,
                                   id=f"online-{engine}-{phase}-{SIGNALS[signum]}")


@pytest.mark.parametrize("engine, phase, signum", list(online_matrix()))
def test_signal_in_online_mode_leaves_the_tracker_untouched(engine, phase, signum, make_stack,
                                                            tmp_path, record):
    """[window] mode "online": a signal while the snapshot opens or exports never stops the
    tracker (same start, same process), leaves no partial set and no held lock: the MySQL
    writes held for the snapshot are released with the connections, the SQLite read
    transaction with the process."""
    name = SIGNALS[signum]
    scenario = Scenario(make_stack, engine, record, window_mode="online")
    record.update(fault=f"{name} during online {phase}", phase=f"online {phase}", signal=name)
    scenario.prepare()
    started_at, starts = scenario.started_at(), len(scenario.tracker.startup_seqs())

    run = scenario.run(ONLINE_PHASES[phase], tmp_path / "run")
    try:
        run.wait_for_pause()
        moment = run.send(signum)
        run.release()
        code = run.wait(timeout=120)
    finally:
        run.kill_if_running()
    run.finish_reading(timeout=30)
    scenario.outcome(run, code)
    record["seconds_to_exit"] = round(time.time() - moment, 3)
    record["tracker_back_s"] = 0.0

    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        scenario.assert_one_clear_line(run, code, (1,))
        assert run.error_lines() == [f"torrust-maint: error: interrupted by {name}"]
    assert scenario.started_at() == started_at, "the tracker was restarted"
    assert len(scenario.tracker.startup_seqs()) == starts
    assert "maintenance window" not in run.output()
    scenario.assert_older_sets_intact()
    listing = scenario.assert_no_partial_set(allow_unfinished=signum == signal.SIGKILL)
    scenario.assert_new_sets(listing, allowed=0)
    later = scenario.assert_later_backup_works(tmp_path)  # no lock or read mark left behind
    assert later["window_mode"] == "online"
