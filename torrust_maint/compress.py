"""Compressed, checksummed artifact files readable by the stock zstd and gzip tools."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import zstandard

SUFFIXES = {"zstd": ".zst", "gzip": ".gz"}
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6}
CHUNK = 1 << 20
# zstd's worker threads each buffer a job's input and output: its default job (4x the window,
# 8 MiB at level 3) cost 55 MiB of RSS with 2 workers, 4 MiB jobs about 30 MiB less at the
# same speed and ratio (measured on a 0.1-0.8 GB dump, bench/scale.py: peak RSS < 100 MiB).
ZSTD_JOB_SIZE = 4 << 20


@dataclass
class Artifact:
    """One file of a backup set, as the manifest records it."""

    name: str
    path: str
    compression: str
    size: int = 0
    sha256: str = ""
    uncompressed_size: int = 0

    def to_manifest(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "compression": self.compression,
            "uncompressed_size": self.uncompressed_size,
        }


class _HashingFile:
    """A write-only file that hashes and counts the (compressed) bytes passing through."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True


class _CountingWriter:
    """Counts the uncompressed bytes written to a compressor."""

    def __init__(self, inner):
        self.inner = inner
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


@contextlib.contextmanager
def compressed_writer(directory: Path, name: str, stem: str, compression: str,
                      level: int | None = None) -> Iterator[tuple[_CountingWriter, Artifact]]:
    """Yield a stream whose bytes land compressed in directory/stem+suffix; fill the Artifact."""
    filename = stem + SUFFIXES[compression]
    artifact = Artifact(name=name, path=filename, compression=compression)
    level = level or DEFAULT_LEVELS[compression]
    fd = os.open(directory / filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as raw:
        hashing = _HashingFile(raw)
        inner: Any
        if compression == "zstd":
            compressor = zstandard.ZstdCompressor(compression_params=zstd_parameters(level))
            inner = compressor.stream_writer(cast(BinaryIO, hashing), closefd=False)
        else:
            inner = gzip.GzipFile(filename="", mode="wb", fileobj=hashing, compresslevel=level,
                                  mtime=0)
        counting = _CountingWriter(inner)
        yield counting, artifact
        inner.close()
        raw.flush()
        os.fsync(raw.fileno())
    artifact.size = hashing.size
    artifact.sha256 = hashing.digest.hexdigest()
    artifact.uncompressed_size = counting.size


def zstd_parameters(level: int) -> zstandard.ZstdCompressionParameters:
    """A level with one worker thread per CPU, ZSTD_JOB_SIZE jobs and a content checksum."""
    return zstandard.ZstdCompressionParameters.from_level(
        level, threads=-1, job_size=ZSTD_JOB_SIZE, write_checksum=True)


def read_chunks(source) -> Iterator[bytes]:
    """A stream's bytes, CHUNK at a time, to its end."""
    while chunk := source.read(CHUNK):
        yield chunk


def copy_stream(source: BinaryIO, target, progress=None) -> int:
    """Copy a binary stream in 1 MiB chunks; return the bytes copied."""
    total = 0
    for chunk in read_chunks(source):
        target.write(chunk)
        total += len(chunk)
        if progress:
            progress(total)
    return total


def open_decompressed(path: Path, compression: str) -> BinaryIO:
    """A readable stream of an artifact's original bytes."""
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    if compression == "gzip":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


def sha256_of(path: Path, progress=None) -> str:
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done)
    return digest.hexdigest()
