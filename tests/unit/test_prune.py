"""prune.decision: retention over the sets not failed, never over a missing verdict."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from torrust_maint import catalog
from torrust_maint.actions import prune
from torrust_maint.config import (
    BackupConfig,
    Config,
    DeploymentConfig,
    RetentionConfig,
    VerifyConfig,
)

UTC = dt.UTC


def config_for(directory: Path, **retention) -> Config:
    return Config(path=directory / "torrust-maint.toml",
                  deployment=DeploymentConfig(compose_dir=directory),
                  backup=BackupConfig(directory=directory / "backups"),
                  retention=RetentionConfig(**retention),
                  verify=VerifyConfig(after_backup=True))


def make_set(directory: Path, moment: dt.datetime, verification: str | None = None,
             attempt: bool = False) -> str:
    """A complete set created at `moment`; verification is a verdict or None (no verdict)."""
    directory.mkdir(exist_ok=True)
    set_id = moment.strftime("%Y%m%dT%H%M%SZ")
    staged = catalog.StagedSet(directory, set_id)
    (staged.path / "database.sqlite3.zst").write_bytes(b"x")
    manifest = {"format": 1, "tool": "torrust-maint", "id": set_id,
                "created_at": catalog.rfc3339(moment), "complete": True,
                "artifacts": [{"name": "database", "path": "database.sqlite3.zst", "size": 1}]}
    if verification:
        manifest["verification"] = {"outcome": verification, "problems": []}
    if attempt:
        manifest["verification_attempt"] = {"at": catalog.rfc3339(moment),
                                            "outcome": "inconclusive",
                                            "error": "docker run failed"}
    staged.commit(manifest)
    return set_id


def day(month: int, number: int) -> dt.datetime:
    return dt.datetime(2026, month, number, 3, 0, tzinfo=UTC)


def remaining(config: Config) -> list[str]:
    return [s.id for s in catalog.list_sets(config.backup.directory)]


def test_turning_verification_on_keeps_the_unverified_history_retention_keeps(tmp_path):
    # Issue 8: 13 sets written before verification was turned on, then the first verified
    # one. The defaults (7 last, 7 daily, 4 weekly, 6 monthly) keep 12 of the 13 old sets.
    config = config_for(tmp_path)
    directory = config.backup.directory
    monthly = [make_set(directory, day(month, 1)) for month in range(1, 7)]
    daily = [make_set(directory, day(6, number)) for number in range(10, 17)]
    verified = make_set(directory, day(6, 17), "passed")

    chosen, _ = prune.decision(config)
    deleted = prune.apply(config, lambda line: None)

    # 10 June: not among the 7 newest days, not the newest of its ISO week (14 June is).
    assert chosen.delete == ["20260610T030000Z"]
    assert deleted == 1
    kept = [*monthly, *daily[1:], verified]
    assert remaining(config) == kept
    assert "keep_monthly" in chosen.keep["20260101T030000Z"]


def test_retention_counts_unverified_sets_like_any_set(tmp_path):
    config = config_for(tmp_path, keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)
    directory = config.backup.directory
    oldest = make_set(directory, day(3, 1), "passed")
    make_set(directory, day(3, 2))
    make_set(directory, day(3, 3))

    chosen, _ = prune.decision(config)

    # keep_last counts the two unverified sets; the newest passed set is kept besides them.
    assert chosen.delete == []
    assert chosen.keep[oldest] == ["newest verified set"]
    assert chosen.keep["20260303T030000Z"] == ["newest", "keep_last"]


def test_an_inconclusive_attempt_counts_like_its_verdict(tmp_path):
    config = config_for(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=3)
    directory = config.backup.directory
    early_january = make_set(directory, day(1, 10), attempt=True)
    january = make_set(directory, day(1, 20), attempt=True)
    february = make_set(directory, day(2, 1), "passed", attempt=True)
    march = make_set(directory, day(3, 1), "passed")

    chosen, _ = prune.decision(config)

    assert set(chosen.keep) == {january, february, march}
    assert chosen.keep[january] == ["keep_monthly"]
    assert chosen.keep[february] == ["keep_monthly"]
    assert chosen.delete == [early_january]  # by retention, as any set


def test_a_failed_set_is_deleted_only_once_a_newer_set_passed(tmp_path):
    config = config_for(tmp_path, keep_last=5, keep_daily=5, keep_weekly=5, keep_monthly=5)
    directory = config.backup.directory
    old_failed = make_set(directory, day(3, 1), "failed")
    passed = make_set(directory, day(3, 2), "passed")
    new_failed = make_set(directory, day(3, 3), "failed")
    unverified = make_set(directory, day(3, 4))

    chosen, _ = prune.decision(config)

    assert chosen.delete == [old_failed]  # a failed set is never a keeper
    assert chosen.keep[new_failed] == ["failed verification, no newer verified set"]
    assert set(chosen.keep) == {passed, new_failed, unverified}


def test_failed_sets_stay_while_no_set_passed(tmp_path):
    config = config_for(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    directory = config.backup.directory
    failed = [make_set(directory, day(3, number), "failed") for number in (1, 2)]
    newest = make_set(directory, day(3, 3))

    chosen, _ = prune.decision(config)

    assert chosen.delete == []
    assert set(chosen.keep) == {*failed, newest}


@pytest.mark.parametrize("after_backup", [True, False])
def test_the_newest_passed_set_is_kept_beyond_the_retention_policy(tmp_path, after_backup):
    config = config_for(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    config = Config(config.path, config.deployment, config.backup, config.retention,
                    VerifyConfig(after_backup=after_backup))
    directory = config.backup.directory
    older_passed = make_set(directory, day(3, 1), "passed")
    newest_passed = make_set(directory, day(3, 2), "passed")
    make_set(directory, day(3, 3))
    make_set(directory, day(3, 4))

    chosen, _ = prune.decision(config)

    assert chosen.keep[newest_passed] == ["newest verified set"]
    assert chosen.delete == [older_passed, "20260303T030000Z"]


def test_dry_run_gives_the_reasons(tmp_path):
    config = config_for(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    directory = config.backup.directory
    failed = make_set(directory, day(3, 1), "failed")
    newest = make_set(directory, day(3, 2))
    lines: list[str] = []

    prune.run(config, dry_run=True, echo=lines.append)

    assert f"would keep {failed} (failed verification, no newer verified set)" in lines
    assert f"would keep {newest} (newest, keep_last)" in lines
    assert remaining(config) == [failed, newest]


def test_sigterm_during_a_deletion_finishes_that_set_and_stops(tmp_path, monkeypatch):
    """A signal never leaves a set half deleted (manifest gone, artifacts left)."""
    import os
    import signal

    from torrust_maint.errors import Interrupted
    from torrust_maint.window import signals_raise

    config = config_for(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    oldest, older, newest = (make_set(config.backup.directory, day(3, n), "passed")
                             for n in (1, 2, 3))
    real_delete = catalog.delete_set

    def delete_then_signalled(backup_set):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the deletion
        return real_delete(backup_set)

    monkeypatch.setattr(catalog, "delete_set", delete_then_signalled)
    with pytest.raises(Interrupted):
        with signals_raise():
            prune.apply(config, lambda _line: None)
    assert remaining(config) == [older, newest]  # the first deletion completed, then stopped
    assert not (config.backup.directory / oldest).exists()


# -- the state from before a restore (safety and raw sets) ----------------------------------

def make_pre_restore_set(directory: Path, moment: dt.datetime, kind: str,
                         verification: str | None = None) -> str:
    """A set a restore made of the state it replaced: a safety set, or the raw files of a
    database that could not be exported."""
    set_id = make_set(directory, moment, verification)
    backup_set = next(s for s in catalog.list_sets(directory) if s.id == set_id)
    manifest = dict(backup_set.manifest,
                    pre_restore={"restore_of": "20260101T030000Z", "kind": kind},
                    reason="safety backup before restoring 20260101T030000Z")
    catalog.rewrite_manifest(backup_set, manifest)
    return set_id


@pytest.mark.parametrize("verification", [None, "passed", "failed"])
def test_a_raw_set_is_never_pruned(tmp_path, verification):
    config = config_for(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    directory = config.backup.directory
    raw = make_pre_restore_set(directory, day(3, 1), catalog.RAW, verification)
    newer = [make_set(directory, day(3, number), "passed") for number in range(2, 8)]

    chosen, _ = prune.decision(config)
    prune.apply(config, lambda _line: None)

    assert raw not in chosen.delete
    assert chosen.keep[raw] == ["raw files of a database from before a restore: never pruned "
                                "(remove by hand)"]
    assert remaining(config) == [raw, newer[-1]]


@pytest.mark.parametrize("verification", [None, "failed"])
def test_a_safety_set_not_verified_is_kept(tmp_path, verification):
    config = config_for(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    directory = config.backup.directory
    safety = make_pre_restore_set(directory, day(3, 1), catalog.SAFETY, verification)
    newer = [make_set(directory, day(3, number), "passed") for number in range(2, 6)]

    chosen, _ = prune.decision(config)
    prune.apply(config, lambda _line: None)

    assert chosen.keep[safety] == ["state from before a restore, not verified yet"]
    assert remaining(config) == [safety, newer[-1]]


def test_a_passed_safety_set_takes_part_in_retention(tmp_path):
    config = config_for(tmp_path, keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)
    directory = config.backup.directory
    old_safety = make_pre_restore_set(directory, day(3, 1), catalog.SAFETY, "passed")
    middle = make_set(directory, day(3, 2), "passed")
    new_safety = make_pre_restore_set(directory, day(3, 3), catalog.SAFETY, "passed")
    newest = make_set(directory, day(3, 4), "passed")

    chosen, _ = prune.decision(config)
    prune.apply(config, lambda _line: None)

    assert chosen.delete == [old_safety, middle]
    assert chosen.keep[new_safety] == ["keep_last"]
    assert chosen.keep[newest] == ["newest", "keep_last", "newest verified set"]
    assert remaining(config) == [new_safety, newest]


def test_protected_sets_take_no_place_of_the_sets_retention_keeps(tmp_path):
    config = config_for(tmp_path, keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)
    directory = config.backup.directory
    older = make_set(directory, day(3, 1), "passed")
    kept = [make_set(directory, day(3, number), "passed") for number in (2, 3)]
    raw = make_pre_restore_set(directory, day(3, 4), catalog.RAW)
    safety = make_pre_restore_set(directory, day(3, 5), catalog.SAFETY)

    chosen, _ = prune.decision(config)

    assert chosen.delete == [older]  # the two newest ordinary sets stay as keep_last says
    assert set(chosen.keep) == {*kept, raw, safety}
