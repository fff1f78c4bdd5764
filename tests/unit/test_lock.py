"""lock: one run per backup directory; a lock left by a dead run is taken over."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from torrust_maint.errors import EXIT_LOCKED, LockedError, MaintError
from torrust_maint.lock import LOCK_NAME, holder, run_lock

PYTHON = "/usr/bin/python3"
PROJECT = Path(__file__).resolve().parents[2]
HOLDER = """\
import sys
from pathlib import Path
from torrust_maint.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def start_holder(directory: Path) -> subprocess.Popen:
    """Another process holding the lock until its stdin closes."""
    holder = subprocess.Popen([PYTHON, "-c", HOLDER, str(directory)], cwd=PROJECT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def finish(holder: subprocess.Popen) -> int:
    """Let the holder go (or reap it) and return its exit status."""
    holder.stdin.close()
    holder.stdout.close()
    return holder.wait(timeout=30)


def dead_pid() -> int:
    done = subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_lock_records_our_pid_and_clears_it_afterwards(tmp_path):
    path = tmp_path / LOCK_NAME
    with run_lock(tmp_path):
        assert path.read_text() == f"{os.getpid()}\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == ""


def test_second_run_from_another_process_is_refused(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(LockedError) as caught:
            with run_lock(tmp_path):
                pytest.fail("got a lock that another process holds")
    finally:
        assert finish(holder) == 0
    assert caught.value.exit_code == EXIT_LOCKED == 5
    assert str(caught.value) == (f"another torrust-maint run (pid {holder.pid}) holds "
                                 f"{tmp_path / LOCK_NAME}")


def test_lock_is_free_again_once_the_holder_is_done(tmp_path):
    holder = start_holder(tmp_path)
    assert finish(holder) == 0
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    assert finish(holder) == -signal.SIGKILL
    assert (tmp_path / LOCK_NAME).read_text() == f"{holder.pid}\n"  # left behind
    with caplog.at_level(logging.WARNING, logger="torrust_maint.lock"):
        with run_lock(tmp_path):
            assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert f"taking over a stale lock left by pid {holder.pid} (gone)" in caplog.text


def test_stale_lock_file_with_a_dead_pid_is_taken_over(tmp_path, caplog):
    pid = dead_pid()
    (tmp_path / LOCK_NAME).write_text(f"{pid}\n")
    with caplog.at_level(logging.WARNING, logger="torrust_maint.lock"):
        with run_lock(tmp_path):
            assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert f"stale lock left by pid {pid} (gone)" in caplog.text


def test_lock_file_with_a_live_pid_but_no_flock_is_taken_over(tmp_path, caplog):
    sleeper = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{sleeper.pid}\n")
        with caplog.at_level(logging.WARNING, logger="torrust_maint.lock"):
            with run_lock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"pid {sleeper.pid} (still running, but not holding it)" in caplog.text


def test_lock_in_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(MaintError, match=f"^cannot open lock file {tmp_path}/missing/"):
        with run_lock(tmp_path / "missing"):
            pass



def test_a_zombie_does_not_count_as_alive():
    import os
    import time

    from torrust_maint.lock import pid_alive

    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while pid_alive(child) and time.monotonic() < deadline:  # exited, not reaped yet
            time.sleep(0.01)
        assert not pid_alive(child)
        assert pid_alive(os.getpid())
    finally:
        os.waitpid(child, 0)


def test_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root's file: must stay as it is\n")
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / LOCK_NAME).symlink_to(victim)
    with pytest.raises(MaintError, match=f"^{backups / LOCK_NAME} is a symbolic link, not a "
                                         "regular file: refusing to use it as root"):
        with run_lock(backups):
            pytest.fail("locked through a symlink")
    assert victim.read_text() == "root's file: must stay as it is\n"


def test_dangling_lock_file_symlink_creates_nothing(tmp_path):
    (tmp_path / LOCK_NAME).symlink_to(tmp_path / "created-by-root")
    with pytest.raises(MaintError, match="is a symbolic link"):
        with run_lock(tmp_path):
            pytest.fail("locked through a symlink")
    assert not (tmp_path / "created-by-root").exists()


def test_lock_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / LOCK_NAME)
    with pytest.raises(MaintError, match="is a FIFO, not a regular file"):
        with run_lock(tmp_path):
            pytest.fail("locked a FIFO")


def test_holder_reads_proc_locks_without_taking_the_lock(tmp_path):
    assert holder(tmp_path) is None  # no lock file yet
    with run_lock(tmp_path):
        assert holder(tmp_path) == os.getpid()
        with pytest.raises(LockedError):  # still ours: looking did not take it
            with run_lock(tmp_path):
                pass
    assert holder(tmp_path) is None


def test_a_full_disk_while_the_pid_is_written_is_the_lock_files_error(tmp_path, monkeypatch):
    """Defect: the refused pid line stayed buffered, was flushed again on close, and that raw
    OSError replaced the error naming the lock file."""
    import errno

    from torrust_maint import lock

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lock.os, "write", full)
    with pytest.raises(MaintError) as raised, run_lock(tmp_path):
        pass
    assert str(raised.value) == (f"[backup] directory: cannot write the lock file "
                                 f"{tmp_path / LOCK_NAME}: No space left on device; "
                                 "nothing was done")
