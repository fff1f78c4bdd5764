"""retry: transient faults before the window are tried again; nothing else ever is."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import pytest

from torrust_maint import retry
from torrust_maint.actions import backup
from torrust_maint.catalog import list_sets
from torrust_maint.config import BackupConfig, Config, RetryConfig, StateConfig
from torrust_maint.errors import (
    EXIT_FAILED,
    EXIT_LOCKED,
    DatabaseNotReady,
    DockerError,
    DockerUnavailable,
    LockedError,
    MaintError,
    TrackerDownError,
)
from torrust_maint.lock import run_lock


class Attempts:
    """An attempt that raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.mark.parametrize(("settings", "expected"), [
    (RetryConfig(attempts=5, delay=10, max_delay=300), [10, 20, 40, 80]),
    (RetryConfig(attempts=6, delay=10, max_delay=50), [10, 20, 40, 50, 50]),
    (RetryConfig(attempts=3, delay=0, max_delay=0), [0, 0]),
    (RetryConfig(attempts=2, delay=7, max_delay=7), [7]),
    (RetryConfig(attempts=1, delay=10, max_delay=300), []),
])
def test_delays_double_up_to_max_delay(settings, expected):
    assert retry.delays(settings) == expected


@pytest.mark.parametrize("transient", [
    DockerUnavailable("docker ps failed: Cannot connect to the Docker daemon"),
    DatabaseNotReady("the database container is restarting"),
    LockedError("another torrust-maint run (pid 4242) holds /x/.torrust-maint.lock"),
])
def test_a_transient_fault_is_tried_again_after_the_delays(transient, caplog):
    settings = RetryConfig(attempts=4, delay=3, max_delay=5)
    slept: list[float] = []
    attempt = Attempts(transient, type(transient)(str(transient)))
    with caplog.at_level(logging.WARNING):
        assert retry.call(settings, "backup preflight", attempt, sleep=slept.append) == "done"
    assert attempt.calls == 3
    assert slept == [3, 5]
    failed = [r for r in caplog.records if getattr(r, "TORRUST_EVENT", None) == "attempt_failed"]
    assert [(r.ATTEMPT, r.ATTEMPTS, r.RETRY_IN_SEC) for r in failed] == [(1, 4, 3), (2, 4, 5)]


def test_the_last_error_says_how_many_attempts_and_keeps_its_type_and_exit_code():
    settings = RetryConfig(attempts=3, delay=1, max_delay=2)
    slept: list[float] = []
    errors = [LockedError(f"another torrust-maint run (pid {n}) holds the lock")
              for n in (1, 2, 3)]
    errors[-1].holder_pid = 3
    attempt = Attempts(*errors)
    with pytest.raises(LockedError) as caught:
        retry.call(settings, "backup preflight", attempt, sleep=slept.append)
    assert caught.value is errors[-1]
    assert str(caught.value) == ("another torrust-maint run (pid 3) holds the lock "
                                 "(after 3 attempts)")
    assert caught.value.exit_code == EXIT_LOCKED
    assert caught.value.holder_pid == 3
    assert attempt.calls == 3
    assert slept == [1, 2]  # attempts - 1 waits, none after the last


def test_a_fault_that_is_not_transient_is_not_tried_again():
    slept: list[float] = []
    for error in (DockerError("docker stop failed: no such container"),
                  MaintError("the tracker is not running"), ValueError("a bug")):
        attempt = Attempts(error)
        with pytest.raises(type(error)) as caught:
            retry.call(RetryConfig(attempts=5, delay=1, max_delay=1), "backup preflight",
                       attempt, sleep=slept.append)
        assert attempt.calls == 1
        assert "attempts" not in str(caught.value)
    assert slept == []


def test_a_permanent_fault_after_a_transient_one_ends_the_tries():
    slept: list[float] = []
    attempt = Attempts(DatabaseNotReady("restarting"), DockerError("no such container"),
                       DatabaseNotReady("restarting"))
    with pytest.raises(DockerError, match="^no such container$"):
        retry.call(RetryConfig(attempts=5, delay=2, max_delay=60), "x", attempt,
                   sleep=slept.append)
    assert (attempt.calls, slept) == (2, [2])


def test_one_attempt_means_no_retry_and_the_message_unchanged():
    slept: list[float] = []
    attempt = Attempts(DockerUnavailable("docker ps failed: Cannot connect"))
    with pytest.raises(DockerUnavailable) as caught:
        retry.call(RetryConfig(attempts=1, delay=10, max_delay=10), "x", attempt,
                   sleep=slept.append)
    assert str(caught.value) == "docker ps failed: Cannot connect"
    assert caught.value.exit_code == EXIT_FAILED
    assert (attempt.calls, slept) == (1, [])


def test_a_first_success_sleeps_not_at_all():
    slept: list[float] = []
    assert retry.call(RetryConfig(), "x", Attempts(), sleep=slept.append) == "done"
    assert slept == []


# -- through backup.run, with the fake docker ----------------------------------------------

def config_for(stack, tmp_path: Path, **deployment) -> Config:
    return Config(path=tmp_path / "torrust-maint.toml", deployment=stack.settings(**deployment),
                  backup=BackupConfig(directory=tmp_path / "backups", compression="gzip"),
                  retry=RetryConfig(attempts=3, delay=0, max_delay=0),
                  state=StateConfig(directory=tmp_path / "state"))


def _hold_the_lock(directory: str, held, release) -> None:
    with run_lock(Path(directory)):
        held.set()
        release.wait(30)


class OtherRun:
    """Another process holding the run lock until released."""

    def __init__(self, directory: Path) -> None:
        context = multiprocessing.get_context("fork")
        self.held, self.release = context.Event(), context.Event()
        self.process = context.Process(target=_hold_the_lock,
                                       args=(str(directory), self.held, self.release))
        self.process.start()
        assert self.held.wait(10), "the other run did not take the lock"

    def end(self) -> None:
        self.release.set()
        self.process.join(10)


@pytest.fixture
def recorded_sleeps(monkeypatch):
    """retry.call's waits, recorded; each runs the test's `on_sleep` hooks instead of sleeping."""
    slept: list[float] = []
    hooks: list = []
    real_call = retry.call

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        while hooks:
            hooks.pop(0)()

    def call(settings, what, attempt, **_default_sleep):
        return real_call(settings, what, attempt, sleep=sleep)

    monkeypatch.setattr(retry, "call", call)
    return slept, hooks


def test_a_lock_held_by_another_run_for_the_first_attempt_is_retried(
        tmp_path, stack, fake_docker, recorded_sleeps, capsys):
    slept, hooks = recorded_sleeps
    cid = stack.add_tracker()
    config = config_for(stack, tmp_path)
    config.backup.directory.mkdir()
    other = OtherRun(config.backup.directory)
    hooks.append(other.end)
    try:
        code = backup.run(config, stack.docker)
    finally:
        other.end()
    assert code == 0
    assert slept == [0]  # one wait: the second attempt found the lock free
    assert other.process.exitcode == 0
    (backup_set,) = list_sets(config.backup.directory)
    assert backup_set.complete
    assert len(fake_docker.calls_to("stop")) == 1
    assert fake_docker.running(cid)
    assert f"backup {backup_set.id} committed" in capsys.readouterr().out


def test_a_lock_held_throughout_ends_with_exit_5_after_every_attempt(
        tmp_path, stack, fake_docker, recorded_sleeps):
    slept, _ = recorded_sleeps
    stack.add_tracker()
    config = config_for(stack, tmp_path)
    config.backup.directory.mkdir()
    other = OtherRun(config.backup.directory)
    try:
        with pytest.raises(LockedError) as caught:
            backup.run(config, stack.docker)
    finally:
        other.end()
    assert caught.value.exit_code == EXIT_LOCKED
    assert str(caught.value).endswith("(after 3 attempts)")
    assert slept == [0, 0]
    assert fake_docker.calls_to("stop") == []
    assert list_sets(config.backup.directory) == []


def test_docker_unavailable_in_the_preflight_is_retried(tmp_path, stack, fake_docker,
                                                         recorded_sleeps):
    slept, _ = recorded_sleeps
    stack.add_tracker()
    fake_docker.fail("ps", stderr="Cannot connect to the Docker daemon at "
                                  "unix:///var/run/docker.sock. Is the docker daemon running?")
    config = config_for(stack, tmp_path)
    assert backup.run(config, stack.docker, echo=lambda text: None) == 0
    assert slept == [0]
    assert len(fake_docker.calls_to("stop")) == 1
    assert len(list_sets(config.backup.directory)) == 1


DAEMON_GONE = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
               "Is the docker daemon running?")


def test_docker_unavailable_at_the_windows_stop_is_not_retried(tmp_path, stack, fake_docker,
                                                                recorded_sleeps):
    slept, _ = recorded_sleeps
    cid = stack.add_tracker()
    fake_docker.fail("stop", stderr=DAEMON_GONE)
    config = config_for(stack, tmp_path)
    with pytest.raises(DockerUnavailable) as caught:
        backup.run(config, stack.docker, echo=lambda text: None)
    assert "attempts" not in str(caught.value)
    assert len(fake_docker.calls_to("stop")) == 1
    assert slept == []
    assert fake_docker.running(cid)
    assert list_sets(config.backup.directory) == []


def test_docker_unavailable_at_the_windows_start_is_not_retried(tmp_path, stack, fake_docker,
                                                                 recorded_sleeps):
    slept, _ = recorded_sleeps
    stack.add_tracker()
    fake_docker.fail("start", stderr=DAEMON_GONE, times=10_000)
    config = config_for(stack, tmp_path, start_timeout=1)
    with pytest.raises(TrackerDownError) as caught:
        backup.run(config, stack.docker, echo=lambda text: None)
    assert "Cannot connect to the Docker daemon" in str(caught.value)
    assert "attempts" not in str(caught.value)
    assert len(fake_docker.calls_to("stop")) == 1
    assert slept == []
    assert list_sets(config.backup.directory) == []
