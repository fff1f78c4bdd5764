"""The pages of a WAL-mode SQLite snapshot, read straight from the database file and its WAL.

While a read transaction is open, SQLite keeps its snapshot's pages where they are: the WAL
frames up to the snapshot's last frame are not overwritten, and a checkpoint writes into the
database file only pages that have one of those frames. The snapshot is thus the database
file overlaid with the newest of those frames per page. Streamed into the compressor, it is
read once and written nowhere else: the backup API first wrote a whole uncompressed copy,
which cost the serving tracker's commits their latency and doubled the export's I/O.

The layout read here is SQLite's documented file format (https://sqlite.org/fileformat2.html
and https://sqlite.org/walformat.html); what does not match it is Unreadable, and the caller
falls back to the backup API.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from torrust_maint.errors import MaintError

SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every database file
WAL_HEADER_SIZE = 32
FRAME_HEADER_SIZE = 24
WAL_MAGICS = (0x377F0682, 0x377F0683)
WAL_FORMAT_VERSION = 3007000
# The wal-index header (WalIndexHdr, native byte order), twice at the start of the -shm file:
# iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame, nPage, aFrameCksum[2],
# aSalt[2] (the WAL header's salt bytes, copied as they are), aCksum[2].
INDEX_HEADER = struct.Struct("=3I2BH2I2I8s2I")
INDEX_HEADER_COPY = 48
BACKFILL_OFFSET = 96  # WalCkptInfo.nBackfill: frames already copied into the database file
SHM_HEADER_BYTES = 136
RUN_BYTES = 1 << 20  # consecutive pages of the database file read in one pread


class Unreadable(Exception):
    """The files do not have the layout this reader knows."""


@dataclass
class PageMap:
    """A snapshot's size and, per page that has one, where its newest frame's data is."""

    page_size: int
    page_count: int
    frames: int = 0  # the snapshot's last WAL frame (mxFrame)
    backfilled: int = 0  # frames already in the database file (nBackfill)
    salt: bytes = b""
    wal_pages: dict[int, int] = field(default_factory=dict)  # page number -> WAL offset

    @property
    def size(self) -> int:
        return self.page_count * self.page_size

    @property
    def needs_wal(self) -> bool:
        """Whether some of the snapshot's pages are only in the WAL."""
        return self.frames > self.backfilled


def read_snapshot_index(shm_fd: int, database_fd: int) -> PageMap:
    """The size and last frame of the snapshot a read transaction opened while no writer
    could commit: the caller holds the write lock meanwhile, so the wal-index header is the
    snapshot's. Its WAL frames are mapped afterwards (map_wal_frames), without the lock."""
    shm = os.pread(shm_fd, SHM_HEADER_BYTES, 0)
    if len(shm) < SHM_HEADER_BYTES or shm[:INDEX_HEADER_COPY] != \
            shm[INDEX_HEADER_COPY:2 * INDEX_HEADER_COPY]:
        raise Unreadable("the wal-index header is incomplete or its two copies differ")
    (version, _unused, _change, is_init, _big_end, size_field, max_frame, page_count,
     _ck1, _ck2, salt, _ck3, _ck4) = INDEX_HEADER.unpack_from(shm)
    if version != WAL_FORMAT_VERSION or is_init != 1:
        raise Unreadable(f"wal-index version {version}, initialised {is_init}")
    page_size = database_page_size(database_fd)
    if max_frame and page_size != (65536 if size_field == 1 else size_field):
        raise Unreadable(f"page size {size_field} in the wal-index, {page_size} in the file")
    backfilled = struct.unpack_from("=I", shm, BACKFILL_OFFSET)[0]
    if not page_count:
        page_count = os.fstat(database_fd).st_size // page_size
    return PageMap(page_size, page_count, frames=max_frame, backfilled=backfilled, salt=salt)


def database_page_size(database_fd: int) -> int:
    """The page size in the database file's header (an empty WAL's index has none)."""
    header = os.pread(database_fd, 100, 0)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise Unreadable("the database file has no SQLite header")
    size_field = struct.unpack_from(">H", header, 16)[0]
    page_size = 65536 if size_field == 1 else size_field
    if page_size < 512 or page_size & (page_size - 1):
        raise Unreadable(f"page size {page_size}")
    return page_size


def map_wal_frames(pages: PageMap, wal_fd: int) -> None:
    """Fill in which pages come from the WAL: the newest of frames 1..frames per page.

    Safe while the read transaction stays open: with frames not all backfilled, SQLite gave it
    a read mark that keeps those frames from being overwritten. Every frame must carry the
    WAL header's salt, which must be the wal-index's (else this is not the indexed WAL)."""
    if not pages.needs_wal:
        return
    header = os.pread(wal_fd, WAL_HEADER_SIZE, 0)
    if len(header) < WAL_HEADER_SIZE:
        raise Unreadable("the WAL header is incomplete")
    magic, version, wal_page_size = struct.unpack_from(">3I", header)
    if magic not in WAL_MAGICS or version != WAL_FORMAT_VERSION or \
            wal_page_size != pages.page_size:
        raise Unreadable(f"WAL magic {magic:#x}, version {version}, page size {wal_page_size}")
    if header[16:24] != pages.salt:
        raise Unreadable("the WAL header's salt is not the wal-index's")
    frame_size = FRAME_HEADER_SIZE + pages.page_size
    for frame in range(pages.frames):
        offset = WAL_HEADER_SIZE + frame * frame_size
        frame_header = os.pread(wal_fd, FRAME_HEADER_SIZE, offset)
        if len(frame_header) < FRAME_HEADER_SIZE or frame_header[8:16] != pages.salt:
            raise Unreadable(f"WAL frame {frame + 1} of {pages.frames} is missing or stale")
        page = struct.unpack_from(">I", frame_header)[0]
        pages.wal_pages[page] = offset + FRAME_HEADER_SIZE


def read_pages(database_fd: int, wal_fd: int, pages: PageMap) -> Iterator[bytes]:
    """The snapshot's bytes, page 1 to the last: runs of database-file pages read together,
    a page with a frame read from the WAL. MaintError if a file is shorter than it must be."""
    page = 1
    run_pages = max(1, RUN_BYTES // pages.page_size)
    while page <= pages.page_count:
        if page in pages.wal_pages:
            yield _read_exactly(wal_fd, pages.page_size, pages.wal_pages[page], "WAL", page)
            page += 1
            continue
        end = page
        while end < min(page + run_pages, pages.page_count + 1) and end not in pages.wal_pages:
            end += 1
        yield _read_exactly(database_fd, (end - page) * pages.page_size,
                            (page - 1) * pages.page_size, "database file", page)
        page = end


def _read_exactly(fd: int, size: int, offset: int, where: str, page: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise MaintError(f"the SQLite {where} ended early while reading the snapshot at page "
                         f"{page}: no set was written from it")
    return data


def copy_pages(database_fd: int, wal_fd: int, pages: PageMap, stream,
               progress: Callable[[int], None] | None = None) -> int:
    """Write the snapshot's bytes into `stream`; the number written."""
    total = 0
    for chunk in read_pages(database_fd, wal_fd, pages):
        stream.write(chunk)
        total += len(chunk)
        if progress:
            progress(total)
    return total
