"""compress: artifacts readable by the stock zstd and gzip tools, with a true checksum."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess

import pytest

from torrust_maint.compress import (
    CHUNK,
    SUFFIXES,
    compressed_writer,
    copy_stream,
    open_decompressed,
    sha256_of,
)

CLI = {"zstd": ["zstd", "-dc"], "gzip": ["gzip", "-dc"]}


def sample_data() -> bytes:
    """A few MiB, part compressible and part not, spanning several copy chunks."""
    text = b"".join(b"announce %08d info_hash=%040x\n" % (n, n * 7919) for n in range(60_000))
    return text + os.urandom(CHUNK + 12345) + text[:1000]


@pytest.fixture(scope="module")
def data() -> bytes:
    return sample_data()


def write_artifact(directory, data, compression, level=None):
    progress: list[int] = []
    with compressed_writer(directory, "database", "database.sqlite3", compression,
                           level) as (stream, artifact):
        copied = copy_stream(io.BytesIO(data), stream, progress.append)
    return artifact, copied, progress


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_round_trip_and_manifest_fields(tmp_path, data, compression):
    artifact, copied, progress = write_artifact(tmp_path, data, compression)
    path = tmp_path / ("database.sqlite3" + SUFFIXES[compression])

    assert artifact.path == path.name
    assert artifact.name == "database" and artifact.compression == compression
    assert copied == len(data) == artifact.uncompressed_size
    assert progress[-1] == len(data) and len(progress) == -(-len(data) // CHUNK)
    raw = path.read_bytes()
    assert artifact.size == len(raw) == path.stat().st_size
    assert artifact.sha256 == hashlib.sha256(raw).hexdigest() == sha256_of(path)
    assert len(raw) < len(data)  # it did compress
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    with open_decompressed(path, compression) as stream:
        assert stream.read() == data

    cli = subprocess.run([*CLI[compression], str(path)], capture_output=True, check=True)
    assert cli.stdout == data

    assert artifact.to_manifest() == {
        "name": "database", "path": path.name, "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(), "compression": compression,
        "uncompressed_size": len(data),
    }


def test_zstd_frame_carries_a_checksum(tmp_path, data):
    write_artifact(tmp_path, data, "zstd")
    path = tmp_path / "database.sqlite3.zst"
    assert subprocess.run(["zstd", "-t", "-q", str(path)], capture_output=True).returncode == 0
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 0xFF  # the last bytes are the content checksum
    path.write_bytes(bytes(damaged))
    assert subprocess.run(["zstd", "-t", "-q", str(path)], capture_output=True).returncode != 0


def test_gzip_output_is_reproducible(tmp_path, data):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _, _ = write_artifact(tmp_path / "a", data, "gzip")
    second, _, _ = write_artifact(tmp_path / "b", data, "gzip")
    assert first.sha256 == second.sha256  # mtime=0, no file name in the header


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_level_changes_the_output(tmp_path, compression):
    words = [b"%x" % (n * 2654435761 % 4096) for n in range(3000)]  # word-like text
    data = b" ".join(words[(n * n + 7 * n) % 3000] for n in range(300_000))
    (tmp_path / "fast").mkdir()
    (tmp_path / "best").mkdir()
    fast, _, _ = write_artifact(tmp_path / "fast", data, compression, level=1)
    best, _, _ = write_artifact(tmp_path / "best", data, compression, level=9)
    assert best.size < fast.size


def test_empty_input(tmp_path):
    artifact, copied, progress = write_artifact(tmp_path, b"", "zstd")
    assert copied == artifact.uncompressed_size == 0 and progress == []
    assert subprocess.run(["zstd", "-dc", str(tmp_path / "database.sqlite3.zst")],
                          capture_output=True, check=True).stdout == b""


def test_an_existing_artifact_is_never_overwritten(tmp_path):
    (tmp_path / "database.sqlite3.zst").write_bytes(b"earlier")
    with pytest.raises(FileExistsError):
        write_artifact(tmp_path, b"new", "zstd")
    assert (tmp_path / "database.sqlite3.zst").read_bytes() == b"earlier"
