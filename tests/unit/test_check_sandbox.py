"""check: under systemd, the scheduled units must be allowed to write what a run writes
(issue 8, defect 8: a database under /var/lib/docker/volumes passed `check`, then every
nightly run failed on ProtectSystem=strict)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from torrust_maint import config as config_module
from torrust_maint.actions import check
from torrust_maint.errors import ConfigError

STOCK = "-/opt/torrust/storage/backup -/opt/torrust/storage/tracker/lib"


def show_text(read_write_paths: str, load_state: str = "loaded",
              protect_system: str = "strict") -> str:
    """What `systemctl show --property=LoadState,ProtectSystem,ReadWritePaths` prints."""
    return (f"LoadState={load_state}\nProtectSystem={protect_system}\n"
            f"ReadWritePaths={read_write_paths}\n")


@pytest.fixture
def systemd(tmp_path, monkeypatch) -> dict[str, str]:
    """systemd "running", each unit answering `systemctl show` from the returned dict."""
    running = tmp_path / "run-systemd-system"
    running.mkdir()
    monkeypatch.setattr(check, "SYSTEMD_RUNNING", running)
    answers: dict[str, str] = {}

    def show(unit: str) -> str:
        return answers[unit]

    monkeypatch.setattr(check, "systemctl_show", show)
    return answers


def make_config(tmp_path: Path, compose_dir: Path, backups: Path):
    return config_module.parse({"deployment": {"compose_dir": str(compose_dir)},
                                "backup": {"directory": str(backups)}},
                               tmp_path / "torrust-maint.toml")


def test_read_write_paths_drop_the_prefixes():
    assert check.read_write_paths(STOCK + " +/srv/x /var/log") == [
        "/opt/torrust/storage/backup", "/opt/torrust/storage/tracker/lib", "/srv/x", "/var/log"]
    assert check.read_write_paths("") == []


def test_is_beneath_resolves_symlinks_and_respects_component_boundaries(tmp_path):
    (tmp_path / "real/lib").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert check.is_beneath(tmp_path / "link/lib", [str(tmp_path / "real")])
    assert check.is_beneath(tmp_path / "real/lib", [str(tmp_path / "link/")])
    assert check.is_beneath(tmp_path / "real", [str(tmp_path / "real")])
    assert not check.is_beneath(tmp_path / "realx", [str(tmp_path / "real")])
    assert not check.is_beneath(tmp_path / "real", [])


def test_database_outside_the_read_write_paths_is_a_problem(tmp_path, capsys, stack, systemd):
    """The stack's database directory is not under the stock ReadWritePaths=."""
    stack.add_tracker()
    systemd.update({check.BACKUP_UNIT: show_text(STOCK + f" {tmp_path}/backups"),
                    check.VERIFY_UNIT: show_text(f"{tmp_path}/backups"),
                    check.RECOVER_UNIT: show_text(f"{tmp_path}/backups")})
    lines: list[str] = []
    with pytest.raises(ConfigError) as caught:
        check.run(make_config(tmp_path, stack.compose_dir, tmp_path / "backups"), stack.docker,
                  echo=lines.append)
    directory = stack.db_path.parent
    assert caught.value.problems == [
        f"{directory} (the SQLite database's directory: a WAL snapshot creates -wal/-shm "
        "there, and restore replaces the file) is outside the ReadWritePaths= of "
        f"torrust-backup.service (/opt/torrust/storage/backup /opt/torrust/storage/tracker/lib "
        f"{tmp_path}/backups): ProtectSystem=strict keeps it read-only, so every run of "
        "torrust-backup.service would fail; add it with a drop-in: `systemctl edit "
        f"torrust-backup.service`, then [Service] ReadWritePaths={directory}"]
    assert f"systemd: torrust-verify.service may write {tmp_path}/backups: ok" in lines


def test_backup_directory_outside_both_units_is_named_for_each(tmp_path, stack, systemd):
    stack.add_tracker()
    systemd.update({check.BACKUP_UNIT: show_text(STOCK + f" {stack.lib}"),
                    check.VERIFY_UNIT: show_text("-/opt/torrust/storage/backup"),
                    check.RECOVER_UNIT: show_text("-/opt/torrust/storage/backup")})
    with pytest.raises(ConfigError) as caught:
        check.run(make_config(tmp_path, stack.compose_dir, tmp_path / "backups"), stack.docker,
                  echo=lambda line: None)
    assert [p.split(" is outside")[0] for p in caught.value.problems] == [
        f"{tmp_path}/backups ([backup] directory)"] * 3
    assert "`systemctl edit torrust-verify.service`, then [Service] ReadWritePaths=" \
        f"{tmp_path}/backups" in caught.value.problems[1]


def test_everything_writable_is_ok(tmp_path, stack, systemd):
    stack.add_tracker()
    systemd.update({check.BACKUP_UNIT: show_text(f"-{tmp_path}/backups {stack.lib}"),
                    check.VERIFY_UNIT: show_text(f"{tmp_path}/backups"),
                    check.RECOVER_UNIT: show_text(f"{tmp_path}/backups")})
    lines: list[str] = []
    assert check.run(make_config(tmp_path, stack.compose_dir, tmp_path / "backups"),
                     stack.docker, echo=lines.append) == 0
    assert (f"systemd: torrust-backup.service may write {tmp_path}/backups, "
            f"{stack.db_path.parent}: ok") in lines
    assert lines[-1] == "check: ok"


@pytest.mark.parametrize("show, said", [
    (show_text("", load_state="not-found"), "is not installed (not-found): its ReadWritePaths= "
                                            "were not checked"),
    (show_text("", protect_system="no"), "has ProtectSystem=no: its ReadWritePaths= do not "
                                         "limit it"),
])
def test_units_not_installed_or_not_strict_are_said_so(tmp_path, stack, systemd, show, said):
    stack.add_tracker()
    systemd.update({check.BACKUP_UNIT: show, check.VERIFY_UNIT: show, check.RECOVER_UNIT: show})
    lines: list[str] = []
    assert check.run(make_config(tmp_path, stack.compose_dir, tmp_path / "backups"),
                     stack.docker, echo=lines.append) == 0
    assert f"systemd: torrust-backup.service {said}" in lines


def test_without_systemd_it_says_nothing_was_checked(tmp_path, stack, monkeypatch):
    monkeypatch.setattr(check, "SYSTEMD_RUNNING", tmp_path / "no-such-dir")

    def never(unit):
        raise AssertionError("systemctl called without systemd")

    monkeypatch.setattr(check, "systemctl_show", never)
    stack.add_tracker()
    lines: list[str] = []
    assert check.run(make_config(tmp_path, stack.compose_dir, tmp_path / "backups"),
                     stack.docker, echo=lines.append) == 0
    assert "systemd: not running here: the units' ReadWritePaths= were not checked" in lines


def test_systemctl_show_runs_systemctl_with_an_argv(tmp_path, monkeypatch):
    """A stand-in systemctl on PATH records its arguments and answers like the real one."""
    record = tmp_path / "argv"
    fake = tmp_path / "bin/systemctl"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nprintf "LoadState=loaded\\n"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert check.parse_show(check.systemctl_show("torrust-backup.service")) == {
        "LoadState": "loaded"}
    assert record.read_text().splitlines() == [
        "show", "--property=LoadState,ProtectSystem,ReadWritePaths", "torrust-backup.service"]


def test_a_failing_systemctl_is_a_problem(tmp_path, stack, monkeypatch):
    running = tmp_path / "run-systemd-system"
    running.mkdir()
    monkeypatch.setattr(check, "SYSTEMD_RUNNING", running)
    fake = tmp_path / "bin/systemctl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    stack.add_tracker()
    with pytest.raises(ConfigError) as caught:
        check.run(make_config(tmp_path, stack.compose_dir, tmp_path / "backups"), stack.docker,
                  echo=lambda line: None)
    assert caught.value.problems == [
        "cannot read the sandbox of torrust-backup.service: systemctl show "
        "torrust-backup.service failed: Failed to connect to bus",
        "cannot read the sandbox of torrust-verify.service: systemctl show "
        "torrust-verify.service failed: Failed to connect to bus",
        "cannot read the sandbox of torrust-recover.service: systemctl show "
        "torrust-recover.service failed: Failed to connect to bus"]
