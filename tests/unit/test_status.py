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
             attempt: str | None = None, **fields) -> str:
    moment = catalog.utc_now() - dt.timedelta(days=days_ago)
    set_id = moment.strftime("%Y%m%dT%H%M%SZ")
    staged = catalog.StagedSet(directory, set_id)
    manifest = {"format": 1, "tool": "torrust-maint", "id": set_id,
                "created_at": catalog.rfc3339(moment), "complete": True, "artifacts": [],
                **fields}
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
                      f'[state]\ndirectory = "{tmp_path / "state"}"\n\n'
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
    assert "complete sets: 3 (0.0 MB)" in lines
    assert f"newest set: {newest} (6 h 0 min old, in a stop window), verification unverified" \
        in lines
    assert f"newest verified set: {verified} (2 d 0 h old)" in lines
    assert "window: none open" in lines and "lock: free" in lines
    assert not any("FAILED" in line for line in lines)


def test_an_online_set_says_the_tracker_ran_throughout_in_status_and_list(
        tmp_path, directory, capsys):
    stopped = make_set(directory, 2, downtime_seconds=0.512)
    newest = make_set(directory, 1, window_mode="online", downtime_seconds=0.0)

    code, out = status(tmp_path, capsys)
    assert code == 0
    assert f"newest set: {newest} (1 d 0 h old, online: the tracker ran throughout), " \
        "verification unverified" in out.splitlines()
    code, out = status(tmp_path, capsys, "--json")
    assert json.loads(out)["newest"]["window_mode"] == "online"

    config = tmp_path / "torrust-maint.toml"
    assert cli.main(["--config", str(config), "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows[stopped].split()[5] == "0.512s"
    assert rows[newest].split()[5] == "online"
    assert cli.main(["--config", str(config), "list", "--json"]) == 0
    listed = {s["id"]: s["window_mode"] for s in json.loads(capsys.readouterr().out)}
    assert listed == {stopped: "stop", newest: "online"}  # none recorded: a stop window


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
    assert line.startswith(f"newest set: {newest} (1 d 0 h old, in a stop window), "
                           "verification passed at ")
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
    make_set(directory, 0.5, "passed")
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
    assert code == 1  # no backup has ever succeeded: a monitoring check must say so
    assert "UNHEALTHY: no successful backup yet" in out.splitlines()
    assert not (tmp_path / "state").exists()
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
    make_set(directory, 0.5, "passed")

    code, out = status(tmp_path, capsys)

    assert code == 0
    assert f"lock: cannot open {directory / LOCK_NAME}: " in out


def test_an_unreadable_window_marker_is_no_window(tmp_path, directory, capsys):
    (directory / MARKER_NAME).write_text("{not json")
    make_set(directory, 0.5, "passed")
    code, out = status(tmp_path, capsys)
    assert code == 0
    assert "window: none open" in out.splitlines()


# -- an interrupted restore and raw sets ----------------------------------------------------

RESTORED = "20260101T030000Z"


def make_pre_restore_set(directory: Path, days_ago: float, kind: str,
                         verification: str | None = None) -> str:
    """A set a restore made of the state it replaced (kind: safety or raw)."""
    set_id = make_set(directory, days_ago, verification)
    backup_set = next(s for s in catalog.list_sets(directory) if s.id == set_id)
    catalog.rewrite_manifest(backup_set, dict(backup_set.manifest, pre_restore={
        "restore_of": RESTORED, "kind": kind}))
    return set_id


def write_restore_record(directory: Path, phase: str = "swapped", **extra) -> dict:
    from torrust_maint import restore_record

    record = {"id": "20260301T030000Z", "restore_of": RESTORED, "driver": "mysql",
              "started_at": "2026-03-01T03:00:00.000000Z", "phase": phase, "files": [],
              "mysql": {"old_tables": ["torrust_maint_old_torrents"]}, "safety_set": None,
              **extra}
    restore_record.write(directory, record)
    return record


def run_cli(tmp_path: Path, capsys, *args: str) -> tuple[int, str]:
    config = tmp_path / "torrust-maint.toml"
    config.write_text(f'[deployment]\ncompose_dir = "{tmp_path}"\n\n'
                      f'[state]\ndirectory = "{tmp_path / "state"}"\n\n'
                      f'[backup]\ndirectory = "{tmp_path / "backups"}"\n')
    code = cli.main(["--config", str(config), *args])
    return code, capsys.readouterr().out


def test_json_names_an_interrupted_restore_and_raw_sets_and_exits_1(tmp_path, directory,
                                                                     capsys):
    from torrust_maint import restore_record

    passed = make_set(directory, 2, "passed")
    raw = make_pre_restore_set(directory, 1, "raw")
    record = write_restore_record(directory, safety_set="20260301T030001Z")

    code, out = status(tmp_path, capsys, "--json")

    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    assert data["pending_restore"] == {
        "restore_of": RESTORED, "phase": "swapped", "started_at": record["started_at"],
        "safety_set": "20260301T030001Z",
        "text": restore_record.describe(restore_record.read(directory))}
    assert "table torrust_maint_old_torrents" in data["pending_restore"]["text"]
    assert data["raw_sets"] == [raw]
    assert data["newest"]["id"] == passed  # a raw set is never the newest backup
    assert data["newest_failed_count"] == 0 and data["window"] is None


def test_text_names_an_interrupted_restore_and_raw_sets(tmp_path, directory, capsys):
    make_set(directory, 2, "passed")
    raw = make_pre_restore_set(directory, 1, "raw")
    write_restore_record(directory, phase="prepared")

    code, out = status(tmp_path, capsys)

    assert code == 1
    lines = out.splitlines()
    assert (f"INTERRUPTED RESTORE: restore of set {RESTORED} (started "
            "2026-03-01T03:00:00.000000Z) was interrupted before its swap: nothing live "
            "changed; `torrust-maint restore --finish` cleans up") in lines
    assert (f"raw set {raw}: raw files of a database from before a restore that could not be "
            "exported; never pruned (remove it by hand once you no longer need it)") in lines


def test_a_raw_set_alone_is_no_alarm(tmp_path, directory, capsys):
    make_set(directory, 0.5, "passed")
    raw = make_pre_restore_set(directory, 1, "raw")
    code, out = status(tmp_path, capsys, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["raw_sets"] == [raw] and data["pending_restore"] is None


def test_an_unreadable_restore_record_is_an_alarm(tmp_path, directory, capsys):
    from torrust_maint import restore_record

    make_set(directory, 1, "passed")
    (directory / restore_record.RECORD_NAME).write_text("{not json")
    code, out = status(tmp_path, capsys)
    assert code == 1
    assert (f"INTERRUPTED RESTORE: restore record unreadable "
            f"({directory / restore_record.RECORD_NAME}: ") in out


def test_a_symlinked_restore_record_is_reported_unreadable(tmp_path, directory, capsys):
    """Regression (was a bug: restore_record.read lets safefs.UnsafePath escape): status fails outright instead
    of reporting the record and exiting 1."""
    from torrust_maint import restore_record

    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    make_set(directory, 1, "passed")
    (directory / restore_record.RECORD_NAME).symlink_to(target)
    code, out = status(tmp_path, capsys)
    assert code == 1
    assert "INTERRUPTED RESTORE: restore record unreadable" in out
    assert target.read_text() == "{}"


def test_list_shows_raw_and_safety_sets_and_an_interrupted_restore(tmp_path, directory,
                                                                    capsys):
    backup = make_set(directory, 3, "passed")
    safety = make_pre_restore_set(directory, 2, "safety", "passed")
    raw = make_pre_restore_set(directory, 1, "raw")
    write_restore_record(directory)

    code, out = run_cli(tmp_path, capsys, "list")

    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert rows[backup].endswith("  complete, passed")
    assert rows[safety].endswith(f"  complete, passed, state before restoring {RESTORED}")
    assert rows[raw].endswith(f"  RAW files of the database before restoring {RESTORED} (it "
                              "could not be exported); never pruned")
    last = out.splitlines()[-1]
    assert last.startswith(f"INTERRUPTED RESTORE: restore of set {RESTORED} (started ")
    assert last.endswith("`torrust-maint restore --finish` secures it")

    code, out = run_cli(tmp_path, capsys, "list", "--json")
    kinds = {item["id"]: (item["kind"], item["pre_restore"]) for item in json.loads(out)}
    assert kinds == {backup: ("backup", None),
                     safety: ("safety", {"restore_of": RESTORED, "kind": "safety"}),
                     raw: ("raw", {"restore_of": RESTORED, "kind": "raw"})}


def offsite_status(tmp_path: Path, capsys, state: dict | None = None) -> tuple[int, str]:
    """status with [offsite] set and the given state file (nothing is asked of restic)."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(exist_ok=True)
    if state is not None:
        (state_dir / "state.json").write_text(json.dumps({"format": 1, **state}))
    config = tmp_path / "torrust-maint.toml"
    config.write_text(f'[deployment]\ncompose_dir = "{tmp_path}"\n\n'
                      f'[state]\ndirectory = "{state_dir}"\n\n'
                      f'[backup]\ndirectory = "{tmp_path / "backups"}"\n\n'
                      '[offsite]\nrepository = "rest:https://u:secret-pw@h:8000/r"\n'
                      'host = "tracker-a"\n')
    code = cli.main(["--config", str(config), "status"])
    return code, capsys.readouterr().out


def recorded(*set_ids: str) -> dict:
    return {"offsite_sets": {"sets": {i: {"snapshot": "ab" * 32, "short_id": "abababab",
                                          "time": "2026-11-01T03:00:00Z", "host": "tracker-a"}
                                      for i in set_ids}},
            "backup": {"last_success": {"finished_at": catalog.rfc3339(catalog.utc_now())}}}


def test_offsite_all_well_is_shown_without_the_repository_password(tmp_path, directory,
                                                                   capsys):
    newest = make_set(directory, 0.1, "passed")
    code, out = offsite_status(tmp_path, capsys, recorded(newest))
    assert code == 0, out
    assert "off-site: rest:https://u:***@h:8000/r (host tracker-a): 1 set(s) recorded" in out
    assert f"newest verified set {newest}: off-site" in out
    assert "secret-pw" not in out


def test_a_failed_upload_is_unhealthy(tmp_path, directory, capsys):
    newest = make_set(directory, 0.1, "passed")
    state = recorded(newest)
    state["upload"] = {"consecutive_failures": 2, "last_run": {
        "outcome": "failure", "error": "the repository cannot be reached", "exit_code": 1}}
    code, out = offsite_status(tmp_path, capsys, state)
    assert code == 1
    assert ("UNHEALTHY: the last off-site upload failed (2 in a row): the repository cannot "
            "be reached") in out


def test_a_verified_set_not_offsite_after_max_age_is_unhealthy(tmp_path, directory, capsys):
    old = make_set(directory, 2, "passed")  # the upload unit never ran for it
    code, out = offsite_status(tmp_path, capsys, recorded())
    assert code == 1
    assert f"UNHEALTHY: the newest verified set {old} is not off-site 2 d 0 h after" in out


def test_a_fresh_set_waiting_for_its_upload_is_no_alarm(tmp_path, directory, capsys):
    newest = make_set(directory, 0.01, "passed")
    code, out = offsite_status(tmp_path, capsys, recorded())
    assert code == 0, out
    assert f"newest verified set {newest}: NOT off-site yet" in out


def test_an_offsite_copy_that_failed_its_restore_check_is_unhealthy(tmp_path, directory,
                                                                    capsys):
    newest = make_set(directory, 0.1, "passed")
    state = recorded(newest)
    state["offsite_verified"] = {"set_id": newest, "outcome": "failed", "at": "x"}
    code, out = offsite_status(tmp_path, capsys, state)
    assert code == 1
    assert f"UNHEALTHY: the off-site copy of {newest} FAILED its restore check" in out
