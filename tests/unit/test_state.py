"""state: the run state file (consecutive failures, notices claimed once, atomic and locked)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from torrust_maint import state
from torrust_maint.state import NOTIFIED_KEPT, STATE_NAME, StateError


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "var" / "torrust-maint"


def failure(error: str = "boom") -> dict:
    return {"outcome": "failure", "error": error, "exit_code": 1}


def success() -> dict:
    return {"outcome": "success", "exit_code": 0}


# -- the run records -------------------------------------------------------------------------

def test_a_started_run_shows_as_running_with_its_invocation_id(directory):
    run = state.record_start(directory, "backup", "inv-1")
    last = state.job(state.read(directory), "backup")["last_run"]
    assert last == run
    assert (last["outcome"], last["invocation_id"], last["pid"]) == ("running", "inv-1",
                                                                     os.getpid())
    assert last["started_at"].endswith("Z")


def test_failures_count_up_and_a_success_resets_them_keeping_failures_before(directory):
    for expected in (1, 2, 3):
        part = state.record_end(directory, "backup", failure(f"fault {expected}"))
        assert part["consecutive_failures"] == expected
        assert part["last_failure"]["error"] == f"fault {expected}"
        assert part["last_run"]["consecutive_failures"] == expected

    part = state.record_end(directory, "backup", success())

    assert part["consecutive_failures"] == 0
    assert part["last_success"]["failures_before"] == 3
    assert part["last_run"] == part["last_success"]
    assert part["last_failure"]["error"] == "fault 3"  # the last failure is still on record
    assert "finished_at" in part["last_run"]
    # what record_end returned is what the file holds
    assert state.job(state.read(directory), "backup") == part

    again = state.record_end(directory, "backup", success())
    assert (again["consecutive_failures"], again["last_success"]["failures_before"]) == (0, 0)


def test_the_jobs_count_apart(directory):
    state.record_end(directory, "backup", failure())
    state.record_end(directory, "backup", failure())
    verify = state.record_end(directory, "verify", failure())
    assert verify["consecutive_failures"] == 1
    data = state.read(directory)
    assert state.job(data, "backup")["consecutive_failures"] == 2
    assert data["format"] == state.FORMAT


def test_record_end_keeps_a_given_finished_at(directory):
    part = state.record_end(directory, "backup",
                            {**failure(), "finished_at": "2026-03-01T03:00:00.000000Z"})
    assert part["last_run"]["finished_at"] == "2026-03-01T03:00:00.000000Z"


def test_no_state_yet_reads_as_empty(directory):
    assert state.read(directory) == {"format": state.FORMAT}
    assert state.job(state.read(directory), "backup") == {}
    assert not directory.exists()  # reading creates nothing


# -- notices claimed once --------------------------------------------------------------------

def test_a_notice_is_claimed_once_per_invocation_id(directory):
    assert state.claim_notice(directory, "backup", "inv-1") is True
    assert state.claim_notice(directory, "backup", "inv-1") is False
    assert state.claim_notice(directory, "backup", "inv-2") is True
    assert state.claim_notice(directory, "verify", "inv-1") is True  # another job's list
    assert state.claim_notice(directory, "backup", "inv-2") is False


def test_claims_keep_at_most_notified_kept_ids(directory):
    ids = [f"inv-{n}" for n in range(NOTIFIED_KEPT + 5)]
    for invocation in ids:
        assert state.claim_notice(directory, "backup", invocation)
    notified = state.job(state.read(directory), "backup")["notified"]
    assert notified == ids[-NOTIFIED_KEPT:]
    assert state.claim_notice(directory, "backup", ids[-1]) is False
    assert state.claim_notice(directory, "backup", ids[0]) is True  # forgotten long ago


def test_claims_do_not_disturb_the_run_records(directory):
    state.record_end(directory, "backup", failure())
    state.claim_notice(directory, "backup", "inv-1")
    part = state.job(state.read(directory), "backup")
    assert part["consecutive_failures"] == 1
    assert part["last_run"]["error"] == "boom"


# -- the file itself -------------------------------------------------------------------------

def test_the_directory_is_created_0700_and_the_file_0600_without_temporary_files(directory):
    state.record_end(directory, "backup", failure())
    state.record_end(directory, "backup", success())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    path = directory / STATE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == sorted([STATE_NAME, state.LOCK_NAME])
    assert json.loads(path.read_text())["backup"]["consecutive_failures"] == 0


def test_the_file_is_replaced_not_rewritten_in_place(directory):
    state.record_end(directory, "backup", failure())
    before = (directory / STATE_NAME).stat().st_ino
    state.record_end(directory, "backup", failure())
    assert (directory / STATE_NAME).stat().st_ino != before


def test_a_failed_write_leaves_the_old_state_and_no_temporary_file(directory, monkeypatch):
    state.record_end(directory, "backup", failure())
    old = (directory / STATE_NAME).read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        state.record_end(directory, "backup", failure())
    monkeypatch.undo()
    assert (directory / STATE_NAME).read_bytes() == old
    assert sorted(p.name for p in directory.iterdir()) == sorted([STATE_NAME, state.LOCK_NAME])


def test_a_leftover_temporary_file_of_a_crashed_writer_is_replaced(directory):
    directory.mkdir(parents=True)
    leftover = directory / f"{STATE_NAME}.tmp"
    leftover.write_text("half a state")
    state.record_end(directory, "backup", failure())
    assert not leftover.exists()
    assert state.job(state.read(directory), "backup")["consecutive_failures"] == 1


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2, 3]", b"\xff\xfe", b""])
def test_a_damaged_file_is_set_aside_and_a_new_state_begins(directory, content, caplog):
    directory.mkdir(parents=True, mode=0o700)
    (directory / STATE_NAME).write_bytes(content)

    with pytest.raises(StateError, match=r"^\[state\] directory: .* is not a torrust-maint"):
        state.read(directory)
    with caplog.at_level(logging.WARNING):
        part = state.record_end(directory, "backup", failure())

    assert part["consecutive_failures"] == 1
    assert (directory / f"{STATE_NAME}.damaged").read_bytes() == content
    assert state.job(state.read(directory), "backup")["consecutive_failures"] == 1
    assert any(f"{STATE_NAME}.damaged" in r.getMessage() for r in caplog.records)


def test_an_oversized_file_is_not_a_state(directory):
    directory.mkdir(parents=True, mode=0o700)
    padding = " " * state.MAX_STATE_BYTES
    (directory / STATE_NAME).write_text('{"format": 1}' + padding)
    with pytest.raises(StateError, match="is not a torrust-maint state file"):
        state.read(directory)


def test_a_symlinked_state_file_is_never_followed(directory, tmp_path):
    directory.mkdir(parents=True, mode=0o700)
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"format": 1, "backup": {"consecutive_failures": 7}}))
    (directory / STATE_NAME).symlink_to(target)

    with pytest.raises(StateError) as caught:
        state.read(directory)
    assert str(caught.value).startswith("[state] directory: ")

    state.record_end(directory, "backup", failure())  # set aside, never written through
    assert json.loads(target.read_text())["backup"]["consecutive_failures"] == 7
    assert not (directory / STATE_NAME).is_symlink()
    assert state.job(state.read(directory), "backup")["consecutive_failures"] == 1


def test_a_symlinked_state_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(StateError, match=r"^\[state\] directory: cannot use "):
        state.record_end(link, "backup", failure())
    assert list(real.iterdir()) == []


def test_a_directory_that_cannot_be_created_is_a_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match=r"^\[state\] directory: cannot use "):
        state.record_start(blocker / "state", "backup", None)


# -- several writers at once -----------------------------------------------------------------

ROUNDS = 25
WRITERS = 4


def _record_failures(directory: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait(10)
    for _ in range(ROUNDS):
        state.record_end(Path(directory), "backup", failure())


def test_concurrent_writers_lose_no_count(directory):
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_record_failures, args=(str(directory), start))
               for _ in range(WRITERS)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0] * WRITERS
    part = state.job(state.read(directory), "backup")
    assert part["consecutive_failures"] == WRITERS * ROUNDS
    assert sorted(p.name for p in directory.iterdir()) == sorted([STATE_NAME, state.LOCK_NAME])
