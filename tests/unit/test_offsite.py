"""offsite.py and the upload action against a fake restic: which sets go, in which order,
what is recorded, and that a locked repository is unlocked only of stale locks."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from tests.unit.test_prune import day, make_set
from torrust_maint import catalog, offsite
from torrust_maint.actions import offsite as offsite_action
from torrust_maint.config import (
    BackupConfig,
    Config,
    DeploymentConfig,
    OffsiteConfig,
    StateConfig,
)
from torrust_maint.restic import ResticError


def snapshot_json(set_id: str, host: str = "tracker-1", time: str = "2026-11-01T03:00:00Z",
                  tags: list[str] | None = None, ident: str | None = None) -> dict:
    ident = ident or f"{abs(hash((set_id, host))):064x}"[:64]
    return {"id": ident, "short_id": ident[:8], "time": time, "hostname": host,
            "tags": tags if tags is not None else ["torrust-maint", f"set:{set_id}"],
            "paths": [f"/srv/backup/{set_id}"]}


class FakeClient:
    """A Restic stand-in: a repository of snapshot dicts; records the calls made."""

    shown = "rest:http://u:***@h/r"

    def __init__(self, snapshots: list[dict] | None = None):
        self.repository = list(snapshots or [])
        self.calls: list[tuple] = []
        self.locked = 0  # how many calls fail with "locked" before one succeeds
        self.fail_backup: ResticError | None = None

    def _maybe_locked(self):
        if self.locked:
            self.locked -= 1
            raise ResticError("locked", "repository is already locked")

    def snapshots(self, host):
        self.calls.append(("snapshots", host))
        self._maybe_locked()
        return [s for s in self.repository if host is None or s["hostname"] == host]

    def backup(self, directory, name, *, host, tags, time):
        self.calls.append(("backup", name, host, tuple(tags), time))
        self._maybe_locked()
        if self.fail_backup is not None:
            raise self.fail_backup
        moment = dt.datetime.strptime(time, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
        self.repository.append(snapshot_json(name, host, catalog.rfc3339(moment), list(tags)))
        return {"data_added": 100, "snapshot_id": "deadbeef", "total_bytes_processed": 1}

    def forget(self, host, keep):
        self.calls.append(("forget", host, tuple(sorted(keep.items()))))
        return []

    def unlock(self):
        self.calls.append(("unlock",))


def config_for(tmp_path: Path, **offsite_settings) -> Config:
    return Config(path=tmp_path / "torrust-maint.toml",
                  deployment=DeploymentConfig(compose_dir=tmp_path),
                  backup=BackupConfig(directory=tmp_path / "backups"),
                  state=StateConfig(directory=tmp_path / "state"),
                  offsite=OffsiteConfig(repository="rest:http://u:p@h/r",
                                        password_file=tmp_path / "pw", host="tracker-1",
                                        **offsite_settings))


@pytest.fixture
def client(monkeypatch) -> FakeClient:
    fake = FakeClient()
    monkeypatch.setattr(offsite_action, "restic_for", lambda config: fake)
    return fake


def test_parse_snapshots_keeps_only_ours_oldest_first():
    raw = [snapshot_json("20261102T030000Z", time="2026-11-02T03:00:00.123456789Z"),
           snapshot_json("20261101T030000Z", time="2026-11-01T03:00:00+01:00"),
           snapshot_json("x", tags=["other-tool"]),
           snapshot_json("20261103T030000Z", tags=["set:20261103T030000Z"]),  # not ours
           snapshot_json("../etc", tags=["torrust-maint", "set:../etc"]),
           {"id": "broken", "tags": ["torrust-maint", "set:20261104T030000Z"]}]
    found = offsite.parse_snapshots(raw)
    assert [s.set_id for s in found] == ["20261101T030000Z", "20261102T030000Z"]
    assert found[0].time == dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)


def test_upload_sends_verified_sets_not_yet_offsite_oldest_first(tmp_path, client):
    config = config_for(tmp_path)
    backups = config.backup.directory
    old = make_set(backups, day(11, 1), "passed")
    unverified = make_set(backups, day(11, 2), None)
    failed = make_set(backups, day(11, 3), "failed")
    newer = make_set(backups, day(11, 4), "passed")
    newest = make_set(backups, day(11, 5), "passed")
    client.repository.append(snapshot_json(newer, time="2026-11-04T03:00:00Z"))
    details: dict = {}
    assert offsite_action.upload(config, details, echo=lambda line: None) == 0
    uploaded = [call[1] for call in client.calls if call[0] == "backup"]
    assert uploaded == [old, newest]  # catch-up, oldest first; never unverified or failed
    assert unverified not in uploaded and failed not in uploaded
    backup_call = next(call for call in client.calls if call[0] == "backup")
    assert backup_call[3] == ("torrust-maint", f"set:{old}")
    assert backup_call[4] == "2026-11-01 03:00:00"  # the set's own time, UTC
    assert details == {"backup_id": newest, "uploaded": 2, "bytes_added": 200}
    record = offsite.read_record(config.state.directory)
    assert sorted(record) == sorted([old, newer, newest])
    assert record[old]["data_added"] == 100


def test_upload_forgets_by_the_offsite_rules_after_uploading(tmp_path, client):
    config = config_for(tmp_path, keep_last=2, keep_daily=0)
    make_set(config.backup.directory, day(11, 1), "passed")
    offsite_action.upload(config, echo=lambda line: None)
    kinds = [call[0] for call in client.calls]
    assert kinds.index("forget") > kinds.index("backup")
    forget = next(call for call in client.calls if call[0] == "forget")
    assert forget[1] == "tracker-1"
    assert dict(forget[2]) == {"keep_last": 2, "keep_daily": 0, "keep_weekly": 8,
                               "keep_monthly": 12}


def test_nothing_to_upload_still_applies_retention(tmp_path, client):
    config = config_for(tmp_path)
    set_id = make_set(config.backup.directory, day(11, 1), "passed")
    client.repository.append(snapshot_json(set_id))
    offsite_action.upload(config, echo=lambda line: None)
    assert [call[0] for call in client.calls] == ["snapshots", "forget", "snapshots"]


def test_a_stale_lock_is_removed_with_restic_unlock_and_the_call_repeated(tmp_path, client):
    config = config_for(tmp_path)
    client.locked = 1
    offsite_action.upload(config, echo=lambda line: None)
    assert [call[0] for call in client.calls][:3] == ["snapshots", "unlock", "snapshots"]


def test_a_live_lock_is_left_alone_and_fails_clearly(tmp_path, client):
    config = config_for(tmp_path)
    client.locked = 2
    with pytest.raises(ResticError, match="a live lock: .* nothing was removed"):
        offsite_action.upload(config, echo=lambda line: None)
    assert [call[0] for call in client.calls] == ["snapshots", "unlock", "snapshots"]


def test_a_failed_upload_records_nothing_new_and_leaves_the_sets(tmp_path, client):
    config = config_for(tmp_path)
    set_id = make_set(config.backup.directory, day(11, 1), "passed")
    before = sorted(p.name for p in (config.backup.directory / set_id).iterdir())
    client.fail_backup = ResticError("unreachable", "off-site upload: connection refused")
    with pytest.raises(ResticError, match="connection refused"):
        offsite_action.upload(config, echo=lambda line: None)
    assert offsite.read_record(config.state.directory) == {}
    assert sorted(p.name for p in (config.backup.directory / set_id).iterdir()) == before
    assert "forget" not in [call[0] for call in client.calls]  # nothing forgotten on failure


def test_one_upload_at_a_time(tmp_path, client):
    config = config_for(tmp_path)
    with offsite.upload_lock(config.state.directory):
        with pytest.raises(Exception, match="another off-site run holds"):
            offsite_action.upload(config, echo=lambda line: None)
    assert client.calls == []


def test_choose_snapshot_names_other_hosts_when_this_one_has_none(tmp_path, client):
    config = config_for(tmp_path)
    client.repository.append(snapshot_json("20261101T030000Z", host="lost-host"))
    with pytest.raises(Exception, match=r"\[offsite\] host: .* lost-host: set \[offsite\] host"):
        offsite_action.choose_snapshot(client, config, "latest")
    config = dataclasses.replace(config, offsite=dataclasses.replace(config.offsite,
                                                                      host="lost-host"))
    chosen = offsite_action.choose_snapshot(client, config, "latest")
    assert chosen.set_id == "20261101T030000Z"
    with pytest.raises(Exception, match="no set '20991231T000000Z'"):
        offsite_action.choose_snapshot(client, config, "20991231T000000Z")


def test_configured_exits_1_only_when_offsite_is_off(tmp_path):
    path = tmp_path / "torrust-maint.toml"
    base = f'[deployment]\ncompose_dir = "{tmp_path}"\n[backup]\ndirectory = "{tmp_path}/b"\n'
    path.write_text(base)
    assert offsite_action.configured(path) == 1
    path.write_text(base + '[offsite]\nrepository = "/srv/restic"\n')
    assert offsite_action.configured(path) == 0
    path.write_text(base + '[offsite]\nrepository = 5\n')  # broken: the unit runs and says why
    assert offsite_action.configured(path) == 0


def test_retention_blocked_by_a_live_lock_fails_saying_the_uploads_are_done(tmp_path, client):
    config = config_for(tmp_path)
    set_id = make_set(config.backup.directory, day(11, 1), "passed")

    def locked_forget(host, keep):
        client.calls.append(("forget", host))
        raise ResticError("locked", "repository is already locked exclusively")

    client.forget = locked_forget
    with pytest.raises(ResticError, match=r"1 set\(s\) uploaded, but the off-site retention "
                                          "was not applied"):
        offsite_action.upload(config, echo=lambda line: None)
    assert list(offsite.read_record(config.state.directory)) == [set_id]
    assert ("unlock",) in client.calls  # stale locks only, then it gave up
