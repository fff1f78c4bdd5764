"""disk_speed: the read-speed sample `check` times to estimate an SQLite window's copy.

Only the structure is asserted (what is read, where, how), never a speed: the disk's speed
is not the test's to know.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from torrust_maint import disk_speed, safefs
from torrust_maint.disk_speed import ALIGN, FADVISE, O_DIRECT, ReadSpeed

MIB = 1 << 20


def write_file(path: Path, size: int) -> Path:
    """A file of `size` random bytes, flushed to disk."""
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    return path


def takes_o_direct(path: Path) -> bool:
    """Whether the file system opens `path` with O_DIRECT (ext4 does; tmpfs before 6.6 not)."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
        return False
    return True


def refuse_o_direct_at_open(monkeypatch) -> None:
    """Open as tmpfs on an older kernel does: O_DIRECT is EINVAL."""
    real = safefs.open_nofollow

    def open_nofollow(path, flags=os.O_RDONLY, *args, **kwargs):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(disk_speed.safefs, "open_nofollow", open_nofollow)


def record_fadvise(monkeypatch) -> list[tuple[int, int, int]]:
    """The (offset, length, advice) of every posix_fadvise call, which still runs."""
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def fadvise(fd, offset, length, advice):
        calls.append((offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    return calls


# -- the plan of reads ------------------------------------------------------------------------

def test_a_file_no_larger_than_the_sample_is_read_whole_in_order():
    assert disk_speed.plan(10 * MIB + 5, sample=256 * MIB, chunk=4 * MIB) == [
        0, 4 * MIB, 8 * MIB]
    assert disk_speed.plan(4 * MIB, sample=4 * MIB, chunk=4 * MIB) == [0]


def test_a_larger_file_is_sampled_evenly_from_its_start_to_its_end():
    size = 17 * 10**9 + 123  # the production database's order of size
    offsets = disk_speed.plan(size, sample=256 * MIB, chunk=8 * MIB)
    assert len(offsets) == 32
    assert offsets[0] == 0
    assert offsets[-1] == disk_speed.align_down(size - 8 * MIB)  # the last read ends in the file
    assert all(offset % ALIGN == 0 for offset in offsets)
    gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    assert min(gaps) > 0 and max(gaps) - min(gaps) <= ALIGN  # even, to the alignment


def test_an_empty_file_plans_no_read():
    assert disk_speed.plan(0) == []


# -- measuring a real file ------------------------------------------------------------------

def test_a_small_file_is_read_whole_with_o_direct(tmp_path):
    path = write_file(tmp_path / "db", 3 * MIB + 100)  # not a multiple of the alignment

    speed = disk_speed.measure(path, chunk=MIB)

    assert (speed.file_size, speed.bytes_read, speed.reads) == (3 * MIB + 100, 3 * MIB + 100, 4)
    assert speed.method == (O_DIRECT if takes_o_direct(path) else FADVISE)
    assert speed.seconds >= 0 and speed.bytes_per_second > 0
    assert "the whole file in 4 reads" in speed.describe()


def test_a_large_file_is_sampled_not_read_whole(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as handle:
        handle.truncate(64 * MIB)  # sparse: reads as zeros, costs no disk

    speed = disk_speed.measure(path, sample=4 * MIB, chunk=MIB)

    assert (speed.file_size, speed.bytes_read, speed.reads) == (64 * MIB, 4 * MIB, 4)
    assert "4.0 MiB spread over the file" in speed.describe()


def test_reading_stops_once_the_time_budget_is_spent(tmp_path):
    path = write_file(tmp_path / "db", 4 * MIB)

    speed = disk_speed.measure(path, chunk=MIB, budget=0)

    assert (speed.bytes_read, speed.reads) == (MIB, 1)


def test_o_direct_refused_at_open_falls_back_to_fadvise_before_each_read(tmp_path, monkeypatch):
    path = write_file(tmp_path / "db", 2 * MIB + 10)
    refuse_o_direct_at_open(monkeypatch)
    advised = record_fadvise(monkeypatch)

    speed = disk_speed.measure(path, chunk=MIB)

    assert speed.method == FADVISE
    assert (speed.bytes_read, speed.reads) == (2 * MIB + 10, 3)
    assert advised == [(offset, MIB, os.POSIX_FADV_DONTNEED) for offset in (0, MIB, 2 * MIB)]
    assert "posix_fadvise(POSIX_FADV_DONTNEED)" in speed.describe()


def test_o_direct_refused_at_the_read_falls_back_too(tmp_path, monkeypatch):
    path = write_file(tmp_path / "db", MIB)
    real = os.preadv

    def preadv(fd, buffers, offset):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)

    speed = disk_speed.measure(path, chunk=MIB)

    assert speed.method == FADVISE and speed.bytes_read == MIB


def test_a_symlink_is_refused_not_followed(tmp_path):
    target = write_file(tmp_path / "target", MIB)
    link = tmp_path / "db"
    link.symlink_to(target)

    with pytest.raises(safefs.UnsafePath, match="symbolic link"):
        disk_speed.measure(link)


def test_other_errors_are_not_taken_for_a_refused_o_direct(tmp_path):
    with pytest.raises(FileNotFoundError):
        disk_speed.measure(tmp_path / "missing")


def test_describe_says_what_was_read_and_how():
    speed = ReadSpeed(file_size=10**9, bytes_read=256 * MIB, reads=32, seconds=0.5,
                      method=O_DIRECT)
    assert speed.describe() == ("536.9 MB/s (read 256.0 MiB spread over the file in 32 reads, "
                                "0.50 s, page cache bypassed with O_DIRECT)")
    instant = ReadSpeed(file_size=4096, bytes_read=4096, reads=1, seconds=0.0, method=FADVISE)
    assert instant.bytes_per_second == 4096 / 1e-6
    assert "the whole file in 1 read," in instant.describe()
