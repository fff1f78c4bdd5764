"""restore --with-config: the config archive goes back into the compose dir, never through a
symlink that a compromised tracker planted in the directories it can write (issue 8, defect 7)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from torrust_maint.actions.restore import restore_config
from torrust_maint.errors import MaintError

TOML = b'[core.database]\ndriver = "sqlite3"\n'
VICTIM_TEXT = b"root's file: must stay as it is\n"


def config_set(tmp_path: Path, files: dict[str, tuple[bytes, int]],
               directories: tuple[str, ...] = ()) -> SimpleNamespace:
    """A backup set (as restore_config reads one) whose config archive holds `files`."""
    path = tmp_path / "set"
    path.mkdir()
    with tarfile.open(path / "config.tar", "w") as tar:
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    artifact = {"name": "config", "path": "config.tar", "compression": "none"}
    return SimpleNamespace(path=path, manifest={"artifacts": [artifact]})


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    path = tmp_path / "compose"
    (path / "storage/tracker").mkdir(parents=True)
    return path


def test_files_and_directories_are_restored_with_their_modes(tmp_path, compose_dir):
    (compose_dir / "storage/tracker/etc").mkdir()
    (compose_dir / "storage/tracker/etc/tracker.toml").write_bytes(b"old")
    backup_set = config_set(tmp_path, {
        "storage/tracker/etc/tracker.toml": (TOML, 0o644),
        ".env": (b"A=1\n", 0o600),
        "storage/prometheus/etc/prometheus.yml": (b"scrape_configs: []\n", 0o640),
    }, directories=("storage/grafana",))
    restored = restore_config(backup_set, compose_dir)
    assert sorted(restored) == [".env", "storage/prometheus/etc/prometheus.yml",
                                "storage/tracker/etc/tracker.toml"]
    assert (compose_dir / "storage/tracker/etc/tracker.toml").read_bytes() == TOML
    modes = {name: stat.S_IMODE((compose_dir / name).stat().st_mode) for name in restored}
    assert modes == {".env": 0o600, "storage/prometheus/etc/prometheus.yml": 0o640,
                     "storage/tracker/etc/tracker.toml": 0o644}
    assert (compose_dir / "storage/grafana").is_dir()
    assert not list(compose_dir.rglob("*.torrust-maint-restore"))


def test_symlinked_directory_component_is_refused(tmp_path, compose_dir):
    outside = tmp_path / "outside"
    outside.mkdir()
    (compose_dir / "storage/tracker/etc").symlink_to(outside)
    backup_set = config_set(tmp_path, {"storage/tracker/etc/tracker.toml": (TOML, 0o644)})
    with pytest.raises(MaintError, match=f"^{compose_dir}/storage/tracker/etc is a symbolic "
                                         "link, not a directory: refusing"):
        restore_config(backup_set, compose_dir)
    assert list(outside.iterdir()) == []


def test_symlinked_directory_member_is_refused(tmp_path, compose_dir):
    outside = tmp_path / "outside"
    outside.mkdir()
    (compose_dir / "storage/tracker/lib").symlink_to(outside)
    backup_set = config_set(tmp_path, {"storage/tracker/lib/x/y.toml": (TOML, 0o644)},
                            directories=("storage/tracker/lib/x",))
    with pytest.raises(MaintError, match="storage/tracker/lib is a symbolic link"):
        restore_config(backup_set, compose_dir)
    assert list(outside.iterdir()) == []


def test_planted_temporary_file_symlink_is_not_followed(tmp_path, compose_dir):
    etc = compose_dir / "storage/tracker/etc"
    etc.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_TEXT)
    planted = etc / "tracker.toml.torrust-maint-restore"
    planted.symlink_to(victim)
    backup_set = config_set(tmp_path, {"storage/tracker/etc/tracker.toml": (TOML, 0o644)})
    with pytest.raises(MaintError, match=f"^{planted} is a symbolic link, not a regular file"):
        restore_config(backup_set, compose_dir)
    assert victim.read_bytes() == VICTIM_TEXT
    assert not (etc / "tracker.toml").exists()


def test_symlink_at_the_target_name_is_replaced_not_followed(tmp_path, compose_dir):
    etc = compose_dir / "storage/tracker/etc"
    etc.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_TEXT)
    (etc / "tracker.toml").symlink_to(victim)
    backup_set = config_set(tmp_path, {"storage/tracker/etc/tracker.toml": (TOML, 0o644)})
    restore_config(backup_set, compose_dir)
    assert victim.read_bytes() == VICTIM_TEXT
    assert not (etc / "tracker.toml").is_symlink()
    assert (etc / "tracker.toml").read_bytes() == TOML


def test_a_regular_leftover_of_a_killed_restore_is_replaced(tmp_path, compose_dir):
    etc = compose_dir / "storage/tracker/etc"
    etc.mkdir()
    (etc / "tracker.toml.torrust-maint-restore").write_bytes(b"half written")
    backup_set = config_set(tmp_path, {"storage/tracker/etc/tracker.toml": (TOML, 0o644)})
    assert restore_config(backup_set, compose_dir) == ["storage/tracker/etc/tracker.toml"]
    assert sorted(os.listdir(etc)) == ["tracker.toml"]


@pytest.mark.parametrize("name", ["../escape.toml", "/etc/passwd", "a/../../escape"])
def test_members_outside_the_compose_dir_are_refused(tmp_path, compose_dir, name):
    backup_set = config_set(tmp_path, {name: (TOML, 0o644)})
    with pytest.raises(MaintError, match="is not a plain relative file or directory"):
        restore_config(backup_set, compose_dir)
