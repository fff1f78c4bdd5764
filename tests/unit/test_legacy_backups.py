"""Legacy cron backups in the catalog: found by name, timed by name, grouped by run, listed,
kept and pruned by retention (the newest until a set of ours has passed verification)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import pytest

from tests.unit.test_prune import config_for, make_set
from torrust_maint import legacy_backups, systemd_units
from torrust_maint.actions import listing, prune, restore, status
from torrust_maint.config import StateConfig
from torrust_maint.errors import ConfigError

UTC = dt.UTC


def legacy_file(directory: Path, kind: str, stamp: str, data: bytes = b"x" * 10) -> Path:
    """A file as the old backup container named it: <kind>/<kind>_<stamp>.<ext>.gz."""
    extension = {"sqlite": "db", "mysql": "sql", "config": "tar"}[kind]
    path = directory / kind / f"{kind}_{stamp}.{extension}.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data))
    return path


def config_with_state(tmp_path: Path, **retention):
    config = config_for(tmp_path, **retention)
    return config.__class__(**{**config.__dict__, "state": StateConfig(tmp_path / "state")})


def test_sets_are_timed_by_their_names_and_grouped_by_run(tmp_path):
    directory = tmp_path / "backups"
    database = legacy_file(directory, "sqlite", "20261101_030001")
    legacy_file(directory, "config", "20261101_030003")  # the same run, two seconds later
    legacy_file(directory, "sqlite", "20261102_030001")
    legacy_file(directory, "config", "20261102_050001")  # two hours later: a run of its own
    os.utime(database, (0, 0))  # a `touch`: the time in the name wins

    sets = legacy_backups.list_sets(directory)

    assert [(s.id, s.driver, [f.relative for f in s.files]) for s in sets] == [
        ("legacy-20261101T030001Z", "sqlite3",
         ["sqlite/sqlite_20261101_030001.db.gz", "config/config_20261101_030003.tar.gz"]),
        ("legacy-20261102T030001Z", "sqlite3", ["sqlite/sqlite_20261102_030001.db.gz"]),
        ("legacy-20261102T050001Z", None, ["config/config_20261102_050001.tar.gz"]),
    ]
    assert sets[0].created_at == dt.datetime(2026, 11, 1, 3, 0, 1, tzinfo=UTC)


def test_a_config_archive_never_joins_a_later_run(tmp_path):
    directory = tmp_path / "backups"
    legacy_file(directory, "mysql", "20261101_030000")
    legacy_file(directory, "mysql", "20261101_031000")  # the next run, ten minutes later
    legacy_file(directory, "config", "20261101_031005")

    sets = legacy_backups.list_sets(directory)

    assert [s.config.relative if s.config else None for s in sets] == [
        None, "config/config_20261101_031005.tar.gz"]
    assert [s.driver for s in sets] == ["mysql", "mysql"]


def test_only_plain_files_with_the_old_names_are_taken(tmp_path):
    directory = tmp_path / "backups"
    legacy_file(directory, "sqlite", "20261101_030001")
    (directory / "sqlite" / "sqlite_20261301_030001.db.gz").write_bytes(b"")  # month 13
    (directory / "sqlite" / "sqlite_20261102_030001.db").write_bytes(b"")  # not gzipped
    (directory / "sqlite" / "notes.txt").write_text("x")
    (directory / "sqlite" / "sqlite_20261103_030001.db.gz").symlink_to("/etc/passwd")
    (directory / "sqlite" / "sqlite_20261104_030001.db.gz").mkdir()
    (directory / "mysql").symlink_to(directory / "sqlite")  # a symlinked directory

    assert [s.id for s in legacy_backups.list_sets(directory)] == ["legacy-20261101T030001Z"]


def test_two_runs_in_the_same_second_get_distinct_ids(tmp_path):
    directory = tmp_path / "backups"
    legacy_file(directory, "sqlite", "20261101_030001")
    legacy_file(directory, "mysql", "20261101_030001")

    assert [s.id for s in legacy_backups.list_sets(directory)] == [
        "legacy-20261101T030001Z", "legacy-20261101T030001Z-1"]


def test_a_verdict_holds_only_while_the_files_are_unchanged(tmp_path):
    directory, state = tmp_path / "backups", tmp_path / "state"
    path = legacy_file(directory, "sqlite", "20261101_030001")
    [legacy] = legacy_backups.list_sets(directory, state)
    assert legacy.verification == "unverified"

    legacy_backups.record_verdict(state, legacy, "passed", [])
    [legacy] = legacy_backups.list_sets(directory, state)
    assert legacy.verification == "passed"

    path.write_bytes(path.read_bytes() + b"more")  # replaced since: the verdict is not its
    [legacy] = legacy_backups.list_sets(directory, state)
    assert legacy.verification == "unverified"


def test_list_shows_legacy_sets_among_ours_by_time(tmp_path):
    config = config_with_state(tmp_path)
    directory = config.backup.directory
    legacy_file(directory, "sqlite", "20261101_030001", b"y" * 1000)
    legacy_file(directory, "config", "20261101_030002")
    ours = make_set(directory, dt.datetime(2026, 11, 20, 3, 0, tzinfo=UTC), "passed")
    legacy_file(directory, "sqlite", "20261025_030001")
    lines: list[str] = []

    assert listing.run(config, echo=lines.append) == 0

    assert [line.split()[0] for line in lines] == [
        "ID", "legacy-20261025T030001Z", "legacy-20261101T030001Z", ours]
    assert lines[2].split()[1:4] == ["2026-11-01", "03:00:01", "sqlite3"]
    assert "legacy cron backup (sqlite/sqlite_20261101_030001.db.gz + " \
        "config/config_20261101_030002.tar.gz), unverified" in lines[2]

    printed: list[str] = []
    listing.run(config, as_json=True, echo=printed.append)
    entries = json.loads(printed[0])
    assert [(e["id"], e["kind"]) for e in entries] == [
        ("legacy-20261025T030001Z", "legacy"), ("legacy-20261101T030001Z", "legacy"),
        (ours, "backup")]
    assert entries[1]["created_at"] == "2026-11-01T03:00:01.000000Z"
    assert [a["name"] for a in entries[1]["artifacts"]] == ["database", "config"]
    assert entries[1]["artifacts"][0]["path"] == str(
        directory / "sqlite/sqlite_20261101_030001.db.gz")


def test_the_newest_legacy_set_is_kept_until_a_set_of_ours_passed(tmp_path):
    config = config_with_state(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0,
                               keep_monthly=0)
    directory = config.backup.directory
    for number in range(1, 6):
        legacy_file(directory, "sqlite", f"202611{number:02}_030001")
    unverified = make_set(directory, dt.datetime(2026, 11, 20, 3, 0, tzinfo=UTC))

    chosen, _ = prune.decision(config)

    assert chosen.keep["legacy-20261105T030001Z"] == [
        "newest legacy cron backup, no verified torrust-maint set yet"]
    assert unverified in chosen.keep
    assert chosen.delete == [f"legacy-202611{n:02}T030001Z" for n in range(1, 5)]

    assert prune.apply(config, echo=lambda _: None) == 4
    assert sorted(os.listdir(directory / "sqlite")) == ["sqlite_20261105_030001.db.gz"]

    make_set(directory, dt.datetime(2026, 11, 21, 3, 0, tzinfo=UTC), "passed")
    chosen, _ = prune.decision(config)
    assert "legacy-20261105T030001Z" in chosen.delete


def test_retention_counts_legacy_days_by_name_not_mtime(tmp_path):
    # BACKUP_RETENTION_DAYS=7 migrated: keep_daily = 8. An old backup `touch`ed to now is
    # still old.
    config = config_with_state(tmp_path, keep_last=0, keep_daily=8, keep_weekly=0,
                               keep_monthly=0)
    directory = config.backup.directory
    for number in range(1, 21):
        path = legacy_file(directory, "sqlite", f"202611{number:02}_030001")
        legacy_file(directory, "config", f"202611{number:02}_030004")
        if number == 2:
            path.touch()
    make_set(directory, dt.datetime(2026, 11, 21, 3, 0, tzinfo=UTC), "passed")

    prune.apply(config, echo=lambda _: None)

    assert sorted(os.listdir(directory / "sqlite")) == [
        f"sqlite_202611{n:02}_030001.db.gz" for n in range(14, 21)]
    assert sorted(os.listdir(directory / "config")) == [
        f"config_202611{n:02}_030004.tar.gz" for n in range(14, 21)]


def test_prune_deletes_only_the_files_of_the_set(tmp_path):
    config = config_with_state(tmp_path, keep_last=1, keep_daily=0, keep_weekly=0,
                               keep_monthly=0)
    directory = config.backup.directory
    legacy_file(directory, "mysql", "20261101_030001")
    (directory / "mysql" / "mysql_20261101_030001.sql.gz.notes").write_text("operator's")
    make_set(directory, dt.datetime(2026, 11, 21, 3, 0, tzinfo=UTC), "passed")

    assert prune.apply(config, echo=lambda _: None) == 1

    assert os.listdir(directory / "mysql") == ["mysql_20261101_030001.sql.gz.notes"]


def test_status_counts_the_legacy_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(systemd_units, "units", lambda: None)
    config = config_with_state(tmp_path)
    legacy_file(config.backup.directory, "sqlite", "20261101_030001", b"z" * 5000)
    legacy_file(config.backup.directory, "sqlite", "20261102_030001", b"z" * 5000)
    lines: list[str] = []

    status.run(config, echo=lines.append)

    [line] = [line for line in lines if line.startswith("legacy cron backups:")]
    assert line.startswith("legacy cron backups: 2 (0.0 MB), newest legacy-20261102T030001Z")
    printed: list[str] = []
    status.run(config, as_json=True, echo=printed.append)
    assert json.loads(printed[0])["legacy_sets"]["count"] == 2


def test_restore_latest_names_the_legacy_set_when_there_is_no_other(tmp_path):
    config = config_with_state(tmp_path)
    legacy_file(config.backup.directory, "mysql", "20261101_030001")

    with pytest.raises(ConfigError, match="a legacy cron backup is restored by its id: "
                                          "`torrust-maint restore legacy-20261101T030001Z`"):
        restore.choose(config, "latest")


@pytest.mark.parametrize(("member", "expected"), [
    ("data/storage/tracker/etc/tracker.toml", "storage/tracker/etc/tracker.toml"),
    ("./data/storage/tracker/etc", "storage/tracker/etc"),
    ("data/", ""),
    ("data", ""),
    ("etc/passwd", None),
    ("/data/storage/tracker/etc/tracker.toml", None),
    ("data/../etc/passwd", None),
    ("data/storage/../../etc/passwd", None),
    ("database/x", None),
])
def test_the_old_containers_data_prefix_is_taken_off_in_one_place(member, expected):
    """check and restore both read a legacy config archive's members through
    config_member_path: beneath data/ only, never climbing out of it."""
    assert legacy_backups.config_member_path(member) == expected
