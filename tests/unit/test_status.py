"""status: what a person or a monitoring check needs to know, and its exit code."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from torrust_maint import catalog, cli
from torrust_maint.config import CONFIG_ENV_VAR
from torrust_maint.lock import LOCK_NAME, run_lock
from torrust_maint.recovery import MARKER_NAME

UTC = dt.UTC


@pytest.fixture(autouse=True)
def _no_config_from_the_environment(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "backups"
    path.mkdir()
    return path


def make_set(directory: Path, days_ago: float, verification: str | None = None,
             attempt: str | None = None) -> str:
    moment = catalog.utc_now() - dt.timedelta(days=days_ago)
    set_id = moment.strftime("%Y%m%dT%H%M%SZ")
    staged = catalog.StagedSet(directory, set_id)
    manifest = {"format": 1, "tool": "torrust-maint", "id": set_id,
                "created_at": catalog.rfc3339(moment), "complete": True, "artifacts": []}
    if verification:
        manifest["verification"] = {"verified_at": catalog.rfc3339(moment),
                                    "outcome": verification, "problems": []}
    if attempt:
        manifest["verification_attempt"] = {"at": "2026-03-01T05:00:00Z",
                                            "outcome": "inconclusive", "error": attempt}
    staged.commit(manifest)
    return set_id


def write_marker(directory: Path, pid: int | None = None) -> None:
    """A window marker as a run writes it before stopping the tracker (the first format,
    which recovery still reads)."""
    (directory / MARKER_NAME).write_text(json.dumps({
        "container_ids": ["abc"], "container_names": ["compose-tracker-1"],
        "pid": os.getpid() if pid is None else pid, "opened_at": "2026-03-01T03:00:00.000000Z",
        "stop_timeout": 10}))


def status(tmp_path: Path, capsys, *extra: str) -> tuple[int, str]:
    config = tmp_path / "torrust-maint.toml"
    config.write_text(f'[deployment]\ncompose_dir = "{tmp_path}"\n\n'
                      f'[backup]\ndirectory = "{tmp_path / "backups"}"\n')
    code = cli.main(["--config", str(config), "status", *extra])
    return code, capsys.readouterr().out


def test_all_well(tmp_path, directory, capsys):
    make_set(directory, 3, "passed")
    verified = make_set(directory, 2, "passed")
    newest = make_set(directory, 0.25)

    code, out = status(tmp_path, capsys)

    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"config: {tmp_path / 'torrust-maint.toml'}"
    assert lines[1].startswith(f"backup directory: {directory} (")
    assert lines[1].endswith(" GB free)")
    assert "complete sets: 3" in lines
    assert f"newest set: {newest} (6 h 0 min old), verification unverified" in lines
    assert f"newest verified set: {verified} (2 d 0 h old)" in lines
    assert "window: none open" in lines and "lock: free" in lines
    assert not any("FAILED" in line for line in lines)


def test_failed_newest_sets_warn_and_exit_1(tmp_path, directory, capsys):
    verified = make_set(directory, 3, "passed")
    failed = [make_set(directory, days, "failed") for days in (2, 1)]

    code, out = status(tmp_path, capsys)

    assert code == 1
    assert f"WARNING: 2 newest sets FAILED verification: {', '.join(failed)}" in out.splitlines()
    assert f"newest verified set: {verified} (3 d 0 h old)" in out.splitlines()


def test_an_older_failed_set_is_not_an_alarm(tmp_path, directory, capsys):
    make_set(directory, 2, "failed")
    make_set(directory, 1, "passed")

    code, out = status(tmp_path, capsys)

    assert code == 0
    assert "FAILED" not in out


def test_an_inconclusive_attempt_is_shown_but_not_an_alarm(tmp_path, directory, capsys):
    newest = make_set(directory, 1, "passed", attempt="docker run failed: no such image")

    code, out = status(tmp_path, capsys)

    assert code == 0
    [line] = [line for line in out.splitlines() if line.startswith("newest set:")]
    assert line.startswith(f"newest set: {newest} (1 d 0 h old), verification passed at ")
    assert line.endswith("; last attempt inconclusive at 2026-03-01T05:00:00Z: "
                         "docker run failed: no such image")


def test_an_open_window_exits_1_and_names_the_containers(tmp_path, directory, capsys):
    make_set(directory, 1, "passed")
    write_marker(directory)

    code, out = status(tmp_path, capsys)

    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("WINDOW OPEN since ")]
    assert f"stopped compose-tracker-1; pid {os.getpid()} is running" in line


def test_a_window_left_by_a_dead_run_says_how_to_recover(tmp_path, directory, capsys):
    child = subprocess.Popen(["true"])
    child.wait()
    write_marker(directory, pid=child.pid)

    code, out = status(tmp_path, capsys)

    assert code == 1
    assert (f"WINDOW OPEN since 2026-03-01T03:00:00.000000Z, stopped compose-tracker-1; "
            f"pid {child.pid} is gone: `torrust-maint recover` starts the tracker"
            in out.splitlines())


def test_the_lock_holder_and_unfinished_sets(tmp_path, directory, capsys):
    (directory / f"{catalog.STAGING_PREFIX}20260301T030000Z").mkdir()
    with run_lock(directory):
        code, out = status(tmp_path, capsys)
    assert code == 0
    assert f"lock: held by pid {os.getpid()}" in out.splitlines()
    assert f"unfinished: {directory / (catalog.STAGING_PREFIX + '20260301T030000Z')}" in out

    code, out = status(tmp_path, capsys)
    assert "lock: free" in out.splitlines()


def test_json_has_the_same_facts(tmp_path, directory, capsys):
    make_set(directory, 2, "passed")
    failed = make_set(directory, 1, "failed")
    write_marker(directory)

    code, out = status(tmp_path, capsys, "--json")

    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    assert data["complete_sets"] == 2
    assert data["newest"]["id"] == failed and data["newest"]["verification"] == "failed"
    assert 86300 < data["newest"]["age_seconds"] < 86500
    assert (data["newest_failed_count"], data["newest_failed"]) == (1, [failed])
    assert data["window"]["container_names"] == ["compose-tracker-1"]
    assert data["window"]["pid"] == os.getpid()
    assert data["lock"] == {"held": False, "pid": None}
    assert data["free_bytes"] > 0


def test_status_changes_nothing_and_needs_no_directory(tmp_path, capsys):
    code, out = status(tmp_path, capsys)
    assert code == 0
    assert f"backup directory: {tmp_path / 'backups'} (does not exist)" in out.splitlines()
    assert "newest set: none" in out.splitlines()
    assert not (tmp_path / "backups").exists()


def test_status_creates_no_lock_file(tmp_path, directory, capsys):
    make_set(directory, 1, "passed")
    before = sorted(p.name for p in directory.iterdir())
    status(tmp_path, capsys)
    assert sorted(p.name for p in directory.iterdir()) == before


def test_a_symlinked_lock_file_is_not_followed(tmp_path, directory, capsys):
    target = tmp_path / "elsewhere"
    target.write_text("1\n")
    (directory / LOCK_NAME).symlink_to(target)

    code, out = status(tmp_path, capsys)

    assert code == 0
    assert f"lock: cannot open {directory / LOCK_NAME}: " in out


def test_an_unreadable_window_marker_is_no_window(tmp_path, directory, capsys):
    (directory / MARKER_NAME).write_text("{not json")
    code, out = status(tmp_path, capsys)
    assert code == 0
    assert "window: none open" in out.splitlines()
