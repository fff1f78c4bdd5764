"""progress: a bar on a terminal (unless -q), throttled log lines otherwise, STATUS= always."""

from __future__ import annotations

import io
import logging
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from torrust_maint import progress as progress_module
from torrust_maint.actions import backup as backup_action
from torrust_maint.compress import sha256_of
from torrust_maint.engines import sqlite as sqlite_engine
from torrust_maint.progress import Progress

MB = 1_000_000
# Between two draws of the bar: tqdm redraws at most every 0.1 s (its mininterval).
REDRAW = 0.12
RATE = re.compile(r"\d+(\.\d+)?[kMG]?B/s")
ETA = re.compile(r"\[\d\d:\d\d<\d\d:\d\d, ")


class FakeTty(io.StringIO):
    """A terminal as far as Progress can tell."""

    def isatty(self) -> bool:
        return True


class Clock:
    """An injected time.monotonic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def plain_env(monkeypatch):
    """No service manager and no fault hook unless a test sets them."""
    for name in ("NOTIFY_SOCKET", "TORRUST_MAINT_FAULT_PAUSE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def info(caplog):
    """Logging as a command run without -q configures it: INFO and up."""
    caplog.set_level(logging.INFO, logger="torrust_maint")
    return caplog


@pytest.fixture
def notify_socket(monkeypatch):
    """A datagram socket standing in for the service manager's NOTIFY_SOCKET."""
    pytest.importorskip("systemd.daemon")
    directory = tempfile.mkdtemp(prefix="tm-notify-")  # short: AF_UNIX paths are < 108 bytes
    path = Path(directory) / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))

    def received() -> list[str]:
        messages = []
        while True:
            try:
                messages.append(receiver.recv(4096).decode())
            except BlockingIOError:
                return messages

    yield received
    receiver.close()
    path.unlink()
    Path(directory).rmdir()


def drive(progress: Progress, steps: list[int]) -> None:
    for done in steps:
        progress(done)
        time.sleep(REDRAW)


def last_segment(output: str) -> str:
    """What the terminal line shows now: the text after the last carriage return."""
    return output.rsplit("\r", 1)[-1]


# -- on a terminal ---------------------------------------------------------------------------

def test_a_terminal_gets_a_bar_with_bytes_and_rate(info):
    tty = FakeTty()
    progress = Progress("exporting database (zstd)", stream=tty)

    drive(progress, [1 * MB, 3 * MB, 6 * MB])

    output = tty.getvalue()
    assert "exporting database (zstd)" in output
    assert re.search(r"\d+(\.\d+)?MB", output), output
    assert RATE.search(output), output
    assert not ETA.search(output)  # no total: no time left
    progress.close()


def test_a_known_total_gives_a_share_and_the_time_left(info):
    tty = FakeTty()
    with Progress("verify: decompressing the database (zstd)", 10 * MB, stream=tty) as progress:
        drive(progress, [1 * MB, 2 * MB, 4 * MB])
        output = tty.getvalue()
    assert re.search(r"\d+%\|", output), output
    assert "/10.0M" in output, output
    assert ETA.search(output), output
    assert RATE.search(output), output


def test_closing_leaves_the_terminal_line_clean(info):
    tty = FakeTty()
    with Progress("exporting database (zstd)", 10 * MB, stream=tty) as progress:
        drive(progress, [2 * MB, 5 * MB])
        assert "exporting database" in last_segment(tty.getvalue())
    output = tty.getvalue()
    assert "\n" not in output  # nothing scrolled: the bar was redrawn in place
    assert last_segment(output).strip() == ""  # and wiped: the next line starts clean


def test_an_error_in_the_phase_clears_the_bar_too(info):
    tty = FakeTty()
    with pytest.raises(OSError), Progress("exporting database (zstd)", stream=tty) as progress:
        drive(progress, [2 * MB, 4 * MB])
        raise OSError("disk full")
    assert last_segment(tty.getvalue()).strip() == ""


def test_a_bar_is_drawn_from_the_first_bytes_only(info):
    tty = FakeTty()
    with Progress("verify: importing the dump (zstd)", stream=tty):
        pass  # a phase that ended (or failed) before any byte: nothing was ever drawn
    assert tty.getvalue() == ""


def test_with_the_bar_there_are_no_log_lines(info):
    tty = FakeTty()
    clock = Clock()
    with Progress("exporting database (zstd)", stream=tty, clock=clock) as progress:
        for step in range(1, 6):
            clock.now += 3
            progress(step * MB)
    assert tty.getvalue()
    assert [r for r in info.records if r.name == "torrust_maint.progress"] == []


def test_a_total_that_was_only_a_bound_is_raised(info):
    tty = FakeTty()
    with Progress("exporting database (zstd)", 2 * MB, stream=tty) as progress:
        drive(progress, [1 * MB, 3 * MB])
        assert progress.bar.total == 3 * MB
        assert progress.status_text(3 * MB) == "exporting database (zstd): 3 MB so far " \
                                               "(100% of 2 MB)"


def test_quiet_logging_gets_no_bar(caplog):
    caplog.set_level(logging.WARNING, logger="torrust_maint")  # -q
    tty = FakeTty()
    clock = Clock()
    with Progress("exporting database (zstd)", 10 * MB, stream=tty, clock=clock) as progress:
        for step in range(1, 4):
            clock.now += 3
            progress(step * MB)
    assert tty.getvalue() == ""
    assert caplog.records == []


def test_without_tqdm_a_terminal_gets_log_lines(info, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    tty = FakeTty()
    clock = Clock()
    with Progress("exporting database (zstd)", stream=tty, clock=clock) as progress:
        progress(1 * MB)
        clock.now += 2
        progress(2 * MB)
    assert tty.getvalue() == ""
    assert [r.getMessage() for r in info.records] == ["exporting database (zstd): 2 MB so far"]


# -- without a terminal ----------------------------------------------------------------------

def test_without_a_terminal_log_lines_are_throttled(info):
    stream = io.StringIO()
    clock = Clock()
    progress = Progress("exporting database (gzip)", stream=stream, clock=clock)
    for advance, done in ((0.5, 1), (1.5, 2), (0.5, 3), (1.4, 4), (0.2, 5), (5.0, 9)):
        clock.now += advance
        progress(done * MB)
    progress.close()

    assert stream.getvalue() == ""
    assert [r.getMessage() for r in info.records] == [
        "exporting database (gzip): 2 MB so far",  # 2.0 s after the start
        "exporting database (gzip): 5 MB so far",  # 2.1 s after that
        "exporting database (gzip): 9 MB so far",
    ]
    assert {r.name for r in info.records} == {"torrust_maint.progress"}


def test_the_log_lines_follow_every(info):
    clock = Clock()
    progress = Progress("checksumming x", 4 * MB, every=0.5, stream=io.StringIO(), clock=clock)
    for done in range(1, 5):
        clock.now += 0.5
        progress(done * MB)
    assert [r.getMessage() for r in info.records] == [
        f"checksumming x: {n} MB so far ({n * 25}% of 4 MB)" for n in range(1, 5)]


def test_status_and_more_time_go_to_the_service_manager(info, notify_socket):
    clock = Clock()
    progress = Progress("exporting database (zstd)", stream=io.StringIO(), clock=clock)
    progress(1 * MB)
    assert notify_socket() == []  # throttled: not before `every`
    clock.now += 2
    progress(42 * MB)
    assert notify_socket() == ["STATUS=exporting database (zstd): 42 MB so far",
                               "EXTEND_TIMEOUT_USEC=600000000"]


def test_the_service_manager_hears_of_it_with_a_bar_too(info, notify_socket):
    clock = Clock()
    with Progress("restore: staging the database (zstd)", 8 * MB, stream=FakeTty(),
                  clock=clock) as progress:
        clock.now += 2.5
        progress(2 * MB)
    assert notify_socket() == ["STATUS=restore: staging the database (zstd): 2 MB so far "
                               "(25% of 8 MB)", "EXTEND_TIMEOUT_USEC=600000000"]


# -- the object ------------------------------------------------------------------------------

def test_defaults_to_stderr(info, monkeypatch):
    tty = FakeTty()
    monkeypatch.setattr(sys, "stderr", tty)
    with Progress("exporting database (zstd)") as progress:
        progress(1 * MB)
        assert "exporting database" in tty.getvalue()


@pytest.mark.parametrize("total", [None, 0, -5, True, "12", 1.5])
def test_a_total_that_is_no_byte_count_is_unknown(total):
    assert Progress("x", total, stream=io.StringIO()).total is None


def test_close_is_idempotent_and_ends_the_progress(info):
    tty = FakeTty()
    clock = Clock()
    progress = Progress("exporting database (zstd)", stream=tty, clock=clock)
    progress(1 * MB)
    progress.close()
    progress.close()
    drawn = tty.getvalue()
    clock.now += 10
    progress(5 * MB)  # a late call draws and logs nothing
    assert tty.getvalue() == drawn
    assert info.records == []


def test_a_broken_stream_is_no_terminal(info):
    stream = io.StringIO()
    stream.close()  # isatty() raises ValueError now
    assert not progress_module.wants_bar(stream)
    assert not progress_module.wants_bar(object())


# -- call sites ------------------------------------------------------------------------------

def test_sha256_of_reports_its_bytes(tmp_path):
    path = tmp_path / "artifact"
    path.write_bytes(b"x" * (3 * 1024 * 1024 + 7))
    seen: list[int] = []
    sha256_of(path, seen.append)
    assert seen == [1 << 20, 2 << 20, 3 << 20, (3 << 20) + 7]


def test_an_sqlite_export_is_bounded_by_its_file_and_wal(tmp_path):
    database = tmp_path / "snapshot.sqlite3"
    database.write_bytes(b"d" * 5000)
    Path(f"{database}-wal").write_bytes(b"w" * 300)
    Path(f"{database}-shm").write_bytes(b"s" * 32768)  # not exported: not counted
    snapshot = sqlite_engine.SqliteSnapshot(path=database, method="copy", copied_bytes=5300)
    assert backup_action.export_size(snapshot) == 5300
    database.unlink()
    Path(f"{database}-wal").unlink()
    assert backup_action.export_size(snapshot) is None  # gone: unknown, no error
    assert backup_action.export_size(object()) is None  # a MySQL dump: unknown
