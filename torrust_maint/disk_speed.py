"""How fast the disk under a file reads it: a sample spread over the file, page cache bypassed.

Read with O_DIRECT into a page-aligned mmap buffer (offsets and lengths aligned to 4 KiB), so
that what the page cache holds does not flatter the figure. A filesystem that refuses O_DIRECT
(tmpfs says EINVAL) is read the ordinary way after ``posix_fadvise(POSIX_FADV_DONTNEED)`` of
each range (clean cached pages are dropped; on tmpfs the pages are the file, so the figure is
the memory's). The file is opened as root without following a symlink (safefs).

The sample is at most ``SAMPLE_BYTES`` in ``CHUNK_BYTES`` reads spread evenly from the start to
the end of the file, and reading stops once ``BUDGET_SECONDS`` have passed: a measurement takes
well under 2 s whatever the disk.
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torrust_maint import safefs

ALIGN = 4096  # O_DIRECT needs offsets and lengths aligned to the logical block size (<= 4 KiB)
CHUNK_BYTES = 8 << 20
SAMPLE_BYTES = 256 << 20
BUDGET_SECONDS = 1.5
O_DIRECT = "O_DIRECT"
FADVISE = "posix_fadvise(POSIX_FADV_DONTNEED)"


@dataclass(frozen=True)
class ReadSpeed:
    """One measurement: bytes read from a file of `file_size` bytes in `seconds`, and how."""

    file_size: int
    bytes_read: int
    reads: int
    seconds: float
    method: str

    @property
    def bytes_per_second(self) -> float:
        """The measured speed (bytes per second); a read too fast to time counts as 1 µs."""
        return self.bytes_read / max(self.seconds, 1e-6)

    def describe(self) -> str:
        """The measurement in words, for `check`."""
        where = ("the whole file" if self.bytes_read >= self.file_size
                 else f"{self.bytes_read / (1 << 20):.1f} MiB spread over the file")
        reads = f"{self.reads} read" + ("" if self.reads == 1 else "s")
        return (f"{self.bytes_per_second / 1e6:.1f} MB/s (read {where} in {reads}, "
                f"{self.seconds:.2f} s, page cache bypassed with {self.method})")


def align_down(value: int) -> int:
    """`value` rounded down to a multiple of ALIGN."""
    return value - value % ALIGN


def align_up(value: int) -> int:
    """`value` rounded up to a multiple of ALIGN."""
    return align_down(value + ALIGN - 1)


def plan(file_size: int, sample: int = SAMPLE_BYTES, chunk: int = CHUNK_BYTES) -> list[int]:
    """Aligned offsets of the reads: the whole file when it is no larger than `sample`, else
    `sample // chunk` reads spread evenly from its start to its end."""
    if file_size <= 0:
        return []
    if file_size <= sample:
        return list(range(0, file_size, chunk))
    count = max(sample // chunk, 1)
    last = align_down(file_size - chunk)
    if count == 1:
        return [0]
    return [align_down(last * index // (count - 1)) for index in range(count)]


def measure(path: Path, *, sample: int = SAMPLE_BYTES, chunk: int = CHUNK_BYTES,
            budget: float = BUDGET_SECONDS,
            clock: Callable[[], float] = time.monotonic) -> ReadSpeed:
    """Measure the read speed of the disk under `path` (see the module's docstring); OSError
    when the file cannot be read, safefs.UnsafePath when it is not a regular file."""
    chunk = max(align_up(chunk), ALIGN)
    try:
        return _measure(path, os.O_DIRECT, sample, chunk, budget, clock)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
    return _measure(path, 0, sample, chunk, budget, clock)


def _measure(path: Path, direct: int, sample: int, chunk: int, budget: float,
             clock: Callable[[], float]) -> ReadSpeed:
    """Time the planned reads with O_DIRECT (`direct`), else with posix_fadvise before each."""
    fd = safefs.open_nofollow(path, os.O_RDONLY | direct)
    buffer = mmap.mmap(-1, chunk)  # anonymous maps are page-aligned, as O_DIRECT needs
    try:
        size = os.fstat(fd).st_size
        done = reads = 0
        started = clock()
        for offset in plan(size, sample, chunk):
            if not direct:
                os.posix_fadvise(fd, offset, chunk, os.POSIX_FADV_DONTNEED)
            done += os.preadv(fd, [buffer], offset)
            reads += 1
            if clock() - started >= budget:
                break
        seconds = clock() - started
    finally:
        buffer.close()
        os.close(fd)
    return ReadSpeed(size, done, reads, seconds, O_DIRECT if direct else FADVISE)
