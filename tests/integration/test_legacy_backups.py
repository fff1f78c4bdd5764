"""Legacy cron backups end to end: files written as the old backup container wrote them (the
tracker stopped, `sqlite3 .backup` or mysqldump, gzip, a tar of /data paths), then `list`,
`verify` and `restore` of them against the real stand-in tracker and database server."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.conftest import list_sets, run_cli, tree, write_config
from tests.integration.test_restore import (
    assert_carries_on_from,
    backup_directory,
    docker_stop,
    started_at,
)
from tests.integration.test_verify_restore import live_state

STAMP = "20261101_030001"
LEGACY_ID = "legacy-20261101T030001Z"


def gzip_into(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data))


def old_sqlite_backup(tracker, tmp_path: Path) -> int:
    """What maintenance-backup.sh did: stop the tracker, `.backup`, gzip, start it; N saved."""
    docker_stop(tracker)
    try:
        n, _ = live_state(tracker)
        copy = tmp_path / "legacy.db"
        source = sqlite3.connect(f"file:{tracker.db_host_path}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        source.backup(target)
        source.close()
        target.close()
        gzip_into(backup_directory(tracker) / f"sqlite/sqlite_{STAMP}.db.gz", copy.read_bytes())
    finally:
        tracker.up()
    return n


def old_mysql_backup(tracker) -> int:
    """mysqldump --single-transaction | gzip with the tracker stopped, as the old container."""
    docker_stop(tracker)
    try:
        n, _ = live_state(tracker)
        dump = subprocess.run(
            ["docker", "exec", tracker.mysql_container_name, "sh", "-c",
             'MYSQL_PWD="$MYSQL_PASSWORD" mysqldump -u"$MYSQL_USER" --single-transaction '
             '--quick --lock-tables=false "$MYSQL_DATABASE"'],
            capture_output=True, check=True, timeout=120).stdout
        gzip_into(backup_directory(tracker) / f"mysql/mysql_{STAMP}.sql.gz", dump)
    finally:
        tracker.up()
    return n


def old_config_archive(tracker, stamp: str = "20261101_030004") -> None:
    """tar -czf config_<stamp>.tar.gz -C / data/storage/tracker/etc (the compose dir at /data)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(tracker.compose_dir / "storage/tracker/etc", arcname="data/storage/tracker/etc")
    path = backup_directory(tracker) / f"config/config_{stamp}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def test_a_legacy_sqlite_set_is_listed_verified_and_restored_with_its_config(make_stack,
                                                                            tmp_path):
    tracker = make_stack()
    tracker.wait_for_writes(100)
    config = write_config(tracker)
    n_old = old_sqlite_backup(tracker, tmp_path)
    old_config_archive(tracker)
    database_file = backup_directory(tracker) / f"sqlite/sqlite_{STAMP}.db.gz"
    os.utime(database_file)  # `touch`ed: the name's time still counts
    toml = tracker.compose_dir / "storage/tracker/etc/tracker.toml"
    original = toml.read_text()
    toml.write_text(original + "# changed after the old backup\n")
    tracker.wait_for_writes(n_old + 200)

    [entry] = list_sets(config)
    assert (entry["id"], entry["kind"], entry["created_at"]) == (
        LEGACY_ID, "legacy", "2026-11-01T03:00:01.000000Z")
    assert entry["database"] == {"driver": "sqlite3"}

    verified = run_cli(config, "verify", LEGACY_ID)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{LEGACY_ID}: verified" in verified.stdout
    assert "torrents" in verified.stdout
    [row] = run_cli(config, "list").stdout.splitlines()[1:]
    assert row.split()[:4] == [LEGACY_ID, "2026-11-01", "03:00:01", "sqlite3"]
    assert row.endswith("), passed")

    restored = run_cli(config, "restore", LEGACY_ID, "--yes", "--with-config")

    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"restored set {LEGACY_ID}" in restored.stdout
    assert_carries_on_from(tracker, n_old)
    assert toml.read_text() == original
    assert database_file.exists(), "the legacy files are never touched by a restore"
    safety = list_sets(config)[-1]
    assert safety["kind"] == "safety" and safety["verification"]["outcome"] == "passed"
    assert safety["database"]["tables"]["torrents"] > 0


def test_a_legacy_mysql_set_is_verified_in_a_throwaway_server_and_restored(make_stack):
    tracker = make_stack(driver="mysql")
    tracker.wait_for_writes(100)
    config = write_config(tracker)
    n_old = old_mysql_backup(tracker)
    tracker.wait_for_writes(n_old + 200)

    verified = run_cli(config, "verify", LEGACY_ID)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{LEGACY_ID}: verified" in verified.stdout

    restored = run_cli(config, "restore", LEGACY_ID, "--yes")

    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert_carries_on_from(tracker, n_old)
    assert list_sets(config)[-1]["kind"] == "safety"


@pytest.mark.parametrize("damage, message", [
    ("truncated", "a file does not gunzip"),
    ("not_sqlite", "cannot be read"),
])
def test_a_damaged_legacy_set_fails_verify_and_is_never_restored(make_stack, tmp_path, damage,
                                                                 message):
    tracker = make_stack()
    config = write_config(tracker)
    old_sqlite_backup(tracker, tmp_path)
    path = backup_directory(tracker) / f"sqlite/sqlite_{STAMP}.db.gz"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(gzip.compress(b"not a database " * 1000))

    verified = run_cli(config, "verify", LEGACY_ID)

    assert verified.returncode == 1
    assert f"{LEGACY_ID}: FAILED:" in verified.stdout and message in verified.stdout
    assert "Traceback" not in verified.stderr
    assert "), failed" in run_cli(config, "list").stdout

    started, before = started_at(tracker), tree(backup_directory(tracker))
    restored = run_cli(config, "restore", LEGACY_ID, "--yes")
    assert restored.returncode != 0
    assert f"refusing to restore legacy set {LEGACY_ID}" in restored.stderr
    assert started_at(tracker) == started, "the tracker must not have been stopped"
    assert tree(backup_directory(tracker)) == before


def test_the_first_backup_keeps_the_legacy_sets_retention_keeps(make_stack, tmp_path):
    tracker = make_stack()
    config = write_config(tracker, extra="[retention]\nkeep_last = 1\nkeep_daily = 0\n"
                                         "keep_weekly = 0\nkeep_monthly = 0\n")
    old_sqlite_backup(tracker, tmp_path)
    older = backup_directory(tracker) / "sqlite/sqlite_20261020_030001.db.gz"
    shutil.copyfile(backup_directory(tracker) / f"sqlite/sqlite_{STAMP}.db.gz", older)

    done = run_cli(config, "backup")  # verified right after: the legacy sets may go now

    assert done.returncode == 0, done.stderr
    assert [s["kind"] for s in list_sets(config)] == ["backup"]
    assert os.listdir(backup_directory(tracker) / "sqlite") == []
