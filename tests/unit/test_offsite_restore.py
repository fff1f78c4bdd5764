"""restore --from-offsite --with-config: the set's config files go where they are absent;
a different file there is refused without --yes, and nothing is written then."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from torrust_maint import catalog
from torrust_maint.actions import offsite_restore
from torrust_maint.errors import ConfigError

FILES = {".env": b"TORRUST_TRACKER_CONFIG_TOML_PATH=/etc/torrust/tracker/tracker.toml\n",
         "docker-compose.yml": b"services:\n  tracker:\n    image: torrust/tracker\n",
         "storage/tracker/etc/tracker.toml": b"[core.database]\ndriver = \"sqlite3\"\n"}


def config_set(directory: Path) -> catalog.BackupSet:
    """A set whose config archive holds FILES (a tar, zstd-compressed, as backups write it)."""
    path = directory / "20261101T030000Z"
    path.mkdir(parents=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        directory_entry = tarfile.TarInfo("storage/tracker/etc")
        directory_entry.type, directory_entry.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory_entry)
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600 if name == ".env" else 0o644
            tar.addfile(info, io.BytesIO(data))
    (path / "config.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    manifest = {"id": path.name, "artifacts": [
        {"name": "config", "path": "config.tar.zst", "compression": "zstd", "size": 1}]}
    return catalog.BackupSet(path.name, path, manifest)


def test_absent_files_are_put_back_with_their_modes(tmp_path):
    backup_set = config_set(tmp_path / "backups")
    compose_dir = tmp_path / "opt/torrust"  # a fresh host: not even the directory
    written = offsite_restore.seed_config(backup_set, compose_dir, assume_yes=False)
    assert written == list(FILES)
    for name, data in FILES.items():
        assert (compose_dir / name).read_bytes() == data
    assert (compose_dir / ".env").stat().st_mode & 0o777 == 0o600


def test_identical_files_are_left_and_only_absent_ones_written(tmp_path):
    backup_set = config_set(tmp_path / "backups")
    compose_dir = tmp_path / "opt/torrust"
    compose_dir.mkdir(parents=True)
    (compose_dir / ".env").write_bytes(FILES[".env"])
    written = offsite_restore.seed_config(backup_set, compose_dir, assume_yes=False)
    assert written == ["docker-compose.yml", "storage/tracker/etc/tracker.toml"]


def test_a_different_file_is_refused_without_yes_and_nothing_is_written(tmp_path):
    backup_set = config_set(tmp_path / "backups")
    compose_dir = tmp_path / "opt/torrust"
    compose_dir.mkdir(parents=True)
    (compose_dir / "docker-compose.yml").write_bytes(b"services: {}\n")
    with pytest.raises(ConfigError, match=r"docker-compose.yml differ from set "
                                          r"20261101T030000Z's; pass --yes"):
        offsite_restore.seed_config(backup_set, compose_dir, assume_yes=False)
    assert sorted(p.name for p in compose_dir.iterdir()) == ["docker-compose.yml"]
    assert (compose_dir / "docker-compose.yml").read_bytes() == b"services: {}\n"


def test_with_yes_a_different_file_is_left_for_the_restore_to_swap(tmp_path):
    backup_set = config_set(tmp_path / "backups")
    compose_dir = tmp_path / "opt/torrust"
    compose_dir.mkdir(parents=True)
    (compose_dir / "docker-compose.yml").write_bytes(b"services: {}\n")
    written = offsite_restore.seed_config(backup_set, compose_dir, assume_yes=True)
    assert "docker-compose.yml" not in written  # the restore swaps it, keeping the old one
    assert (compose_dir / "docker-compose.yml").read_bytes() == b"services: {}\n"


def test_a_symlink_in_compose_dir_is_never_followed(tmp_path):
    backup_set = config_set(tmp_path / "backups")
    compose_dir = tmp_path / "opt/torrust"
    (compose_dir / "storage/tracker").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (compose_dir / "storage/tracker/etc").symlink_to(outside)
    with pytest.raises(Exception, match="symbolic link"):
        offsite_restore.seed_config(backup_set, compose_dir, assume_yes=True)
    assert list(outside.iterdir()) == []
