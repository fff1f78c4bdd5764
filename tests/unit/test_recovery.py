"""recovery: an interrupted window's marker starts what the window stopped, found by compose
service, and nothing an operator stopped or recreated on purpose."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from torrust_maint import catalog, recovery
from torrust_maint.lock import run_lock
from torrust_maint.window import WindowReport

START_TIMEOUT = 30


def stopped_tracker(fake_docker, docker, working_dir="/srv/tracker"):
    """A tracker container, stopped now (as the window stops it)."""
    cid = fake_docker.add("compose-tracker-1", working_dir=working_dir)
    fake_docker.set_running(cid, False)
    return cid, docker.inspect([cid])[0]


def marker_for(directory, containers, opened_at=None, stop_timeout=4):
    path = recovery.write_marker(directory, containers, stop_timeout)
    if opened_at is not None:
        data = json.loads(path.read_text())
        data["opened_at"] = catalog.rfc3339(opened_at)
        path.write_text(json.dumps(data))
    return path


def test_a_marker_records_each_container_by_compose_service(tmp_path, fake_docker, docker):
    _, container = stopped_tracker(fake_docker, docker)
    marker_for(tmp_path, [container])
    marker = recovery.WindowMarker.read(tmp_path)
    assert marker is not None
    assert marker.container_names == ("compose-tracker-1",)
    assert [(c.service, c.project, c.working_dir) for c in marker.containers] == [
        ("tracker", "compose", "/srv/tracker")]


def test_recover_starts_what_the_window_stopped(tmp_path, fake_docker, docker):
    cid, container = stopped_tracker(fake_docker, docker)
    # opened long enough ago that no `docker stop` of it can still land (no settling wait)
    settled = dt.timedelta(seconds=4 + recovery.STOP_GRACE + 0.5)
    marker_for(tmp_path, [container], opened_at=catalog.utc_now() - settled, stop_timeout=4)
    lines: list[str] = []
    outcome = recovery.recover(tmp_path, docker, START_TIMEOUT, lines.append, patience=1)
    assert outcome == recovery.RECOVERED
    assert fake_docker.running(cid)
    assert recovery.WindowMarker.read(tmp_path) is None
    assert lines == ["recovered: started compose-tracker-1 again"]


def test_stale_marker_after_a_recreate_clears_without_waiting(tmp_path, fake_docker, docker):
    """Defect: after `docker compose up --force-recreate` the marker named ids that no longer
    exist; every backup and recover waited start_timeout and exited 4 while the tracker ran."""
    cid, container = stopped_tracker(fake_docker, docker)
    marker_for(tmp_path, [container], opened_at=catalog.utc_now() - dt.timedelta(hours=5))
    new_id = fake_docker.recreate(cid, running=True)
    lines: list[str] = []
    started = time.monotonic()
    outcome = recovery.recover(tmp_path, docker, START_TIMEOUT, lines.append, patience=1)
    assert time.monotonic() - started < 5
    assert outcome == recovery.RECOVERED
    assert fake_docker.running(new_id)
    assert fake_docker.calls_to("start") == []
    assert recovery.WindowMarker.read(tmp_path) is None
    assert lines == ["recovered: nothing the window stopped is still stopped by it"]


def test_recreated_and_left_stopped_is_not_started(tmp_path, fake_docker, docker):
    cid, container = stopped_tracker(fake_docker, docker)
    marker_for(tmp_path, [container], opened_at=catalog.utc_now() - dt.timedelta(hours=5))
    new_id = fake_docker.recreate(cid, running=False)
    assert recovery.recover(tmp_path, docker, START_TIMEOUT, lambda _: None,
                            patience=1) == recovery.RECOVERED
    assert not fake_docker.running(new_id)
    assert fake_docker.calls_to("start") == []
    assert recovery.WindowMarker.read(tmp_path) is None


def test_a_container_stopped_after_the_window_is_left_stopped(tmp_path, fake_docker, docker):
    """Defect: a stale marker would later start containers an operator stopped on purpose."""
    cid, container = stopped_tracker(fake_docker, docker)
    an_hour_ago = catalog.utc_now() - dt.timedelta(hours=1)
    marker_for(tmp_path, [container], opened_at=an_hour_ago)
    assert recovery.recover(tmp_path, docker, START_TIMEOUT, lambda _: None,
                            patience=1) == recovery.RECOVERED
    assert not fake_docker.running(cid)
    assert fake_docker.calls_to("start") == []
    assert recovery.WindowMarker.read(tmp_path) is None


def test_a_removed_stack_clears_the_marker(tmp_path, fake_docker, docker):
    cid, container = stopped_tracker(fake_docker, docker)
    marker_for(tmp_path, [container], opened_at=catalog.utc_now() - dt.timedelta(hours=5))
    del fake_docker.containers[cid]
    assert recovery.recover(tmp_path, docker, START_TIMEOUT, lambda _: None,
                            patience=1) == recovery.RECOVERED
    assert recovery.WindowMarker.read(tmp_path) is None


def test_a_format_1_marker_still_recovers_by_id(tmp_path, fake_docker, docker):
    cid, _ = stopped_tracker(fake_docker, docker)
    settled = dt.timedelta(seconds=recovery.STOP_GRACE + 0.5)
    (tmp_path / recovery.MARKER_NAME).write_text(json.dumps({
        "container_ids": [cid], "container_names": ["compose-tracker-1"], "pid": 1,
        "opened_at": catalog.rfc3339(catalog.utc_now() - settled), "stop_timeout": 0}))
    assert recovery.recover(tmp_path, docker, START_TIMEOUT, lambda _: None,
                            patience=1) == recovery.RECOVERED
    assert fake_docker.running(cid)


def test_recover_while_another_run_holds_the_lock_says_only_that(tmp_path, fake_docker, docker):
    """Defect: recover printed "no interrupted window" when another run held the lock."""
    cid, container = stopped_tracker(fake_docker, docker)
    marker_for(tmp_path, [container])
    lines: list[str] = []
    with run_lock(tmp_path):
        outcome = recovery.recover(tmp_path, docker, START_TIMEOUT, lines.append, patience=0.2)
    assert outcome == recovery.LOCKED
    assert len(lines) == 1 and lines[0].startswith("a run is in progress")
    assert "no interrupted window" not in lines[0]
    assert not fake_docker.running(cid)  # that run starts it itself
    assert recovery.WindowMarker.read(tmp_path) is not None


def test_no_marker_is_nothing_to_do(tmp_path, docker):
    lines: list[str] = []
    assert recovery.recover(tmp_path, docker, START_TIMEOUT, lines.append) == recovery.NOTHING
    assert lines == ["no interrupted window: nothing to do"]


def test_a_marker_symlink_is_not_followed(tmp_path, fake_docker, docker):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / (recovery.MARKER_NAME + ".tmp")).symlink_to(victim)
    _, container = stopped_tracker(fake_docker, docker)
    marker_for(tmp_path, [container])
    assert victim.read_text() == "precious"
    assert recovery.WindowMarker.read(tmp_path) is not None


class FakeGuardian:
    def __init__(self):
        self.told: list[str] = []

    def release(self):
        self.told.append("done")

    def hand_over(self):
        self.told.append("recover")


@pytest.mark.parametrize(("marks", "kept", "told"), [
    ([], False, "done"),  # never stopped
    (["stop_requested", "stopped", "start_requested", "running"], False, "done"),
    (["stop_requested", "stopped", "start_requested"], True, "recover"),
])
def test_window_guard_keeps_the_marker_until_the_tracker_runs(tmp_path, fake_docker, docker,
                                                              monkeypatch, marks, kept, told):
    """Defect: the guard cleared the marker and told the guardian "done" when an interrupted
    restart left the tracker stopped."""
    monkeypatch.setattr(recovery, "Guardian", lambda _path: FakeGuardian())
    _, container = stopped_tracker(fake_docker, docker)
    report = WindowReport()
    guard = recovery.WindowGuard(tmp_path / "config.toml", tmp_path, [container], 4, report)
    for mark in marks:
        report.mark(mark)
    with pytest.raises(RuntimeError):
        with guard:
            raise RuntimeError("interrupted")
    assert (recovery.WindowMarker.read(tmp_path) is not None) is kept
    assert guard.guardian.told == [told]


def test_docker_times_with_nanoseconds_parse():
    moment = recovery.parse_docker_time("2026-11-26T03:00:01.123456789Z")
    assert moment == dt.datetime(2026, 11, 26, 3, 0, 1, 123456, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        recovery.parse_docker_time("0001-01-01T00:00:00Z")


def test_a_full_disk_at_the_marker_stops_nothing_and_starts_no_guardian(tmp_path, fake_docker,
                                                                         docker, monkeypatch):
    import errno

    from torrust_maint.errors import MaintError

    def no_space(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    started: list[object] = []
    monkeypatch.setattr(recovery, "write_marker", no_space)
    monkeypatch.setattr(recovery, "Guardian", lambda path: started.append(path))
    _, container = stopped_tracker(fake_docker, docker)
    with pytest.raises(MaintError, match=r"cannot write the window marker in .*: No space left "
                                         r"on device; the tracker was not stopped"):
        recovery.WindowGuard(tmp_path / "c.toml", tmp_path, [container], 4, WindowReport())
    assert started == []
    assert recovery.WindowMarker.read(tmp_path) is None
