"""restore end to end: real Docker, the stand-in tracker, a real database server.

What the rewritten restore promises beyond the happy path (test_verify_restore.py): a live
database that cannot be exported is kept raw and never pruned; a restore that cannot succeed
(no room, a dump that does not import, a set of the other driver) is refused before the
tracker is touched; --dry-run and --no-start do what they say; a restore killed after its swap
is shown by `status` and `list`, keeps the state from before, and `restore --finish` secures it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import (
    REPO,
    copy_with_dump,
    decompress,
    list_sets,
    run_cli,
    tree,
    write_config,
)
from tests.integration.test_verify_restore import backup, live_state
from tests.reliability.support import FaultRun

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import expected_state, read_state  # noqa: E402

RECORD = ".torrust-maint-restore.json"
LOCK = ".torrust-maint.lock"
STAGING_PREFIX = ".tmp-torrust-maint-"
INCOMING_SUFFIX = ".torrust-maint-restore"
ASIDE_INFIX = ".torrust-maint-pre-restore-"
LIVE_TABLES = ["keys", "torrent_aggregate_metrics", "torrents", "whitelist"]
PG_LIVE_TABLES = ["_sqlx_migrations", *LIVE_TABLES]  # the v4 schema on PostgreSQL
KEEP_ONE = "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n"
PAGE = 4096  # SQLite's default page size (the stand-in keeps it)


# -- helpers ----------------------------------------------------------------------------------

def backup_directory(tracker) -> Path:
    return tracker.compose_dir / "storage/backup"


def started_at(tracker) -> str:
    return tracker.state()["StartedAt"]


def docker_stop(tracker) -> None:
    subprocess.run(["docker", "stop", "--time", "10", tracker.container_name], check=True,
                   capture_output=True)
    assert not tracker.running()


def stopped_seqs(tracker) -> list[int]:
    """The last seq each clean stop of the stand-in committed, in order."""
    return [int(n) for n in re.findall(r"standin: stopped seq=(\d+)", tracker.logs())]


def file_state(path: Path) -> tuple[int, dict]:
    """(N, tables) of an SQLite file, read without writing anything beside it."""
    connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return read_state(connection)
    finally:
        connection.close()


def database_siblings(tracker) -> list[str]:
    """Names beside the live SQLite database, other than the database and its -journal
    (the running stand-in makes one per transaction in rollback mode)."""
    database = tracker.db_host_path
    return sorted(p.name for p in database.parent.iterdir()
                  if p.name not in (database.name, database.name + "-journal"))


def assert_carries_on_from(tracker, n: int) -> None:
    """The tracker started on exactly transaction n and carries on from it: any gap or extra
    row would show in the live tables."""
    assert tracker.startup_seqs()[-1] == n, "the tracker must start on exactly the set"
    tracker.wait_healthy(timeout=30)
    n_live, state = live_state(tracker)
    assert n_live >= n and state == expected_state(n_live)


def without_lock(fingerprint: dict) -> dict:
    """A tree() minus the lock file, whose pid a locked run rewrites."""
    return {name: info for name, info in fingerprint.items() if name != LOCK}


def mysql_tables(tracker) -> list[str]:
    """Every table of the tracker's database, from information_schema."""
    connection = tracker.mysql_connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema = 'torrust_tracker'")
            return sorted(row[0] for row in cursor.fetchall())
    finally:
        connection.close()


def mysql_scalar(tracker, sql: str) -> int:
    connection = tracker.mysql_connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def pg_rows(tracker, sql: str) -> list[tuple]:
    connection = tracker.postgres_connect()
    try:
        return list(connection.execute(sql).fetchall())
    finally:
        connection.close()


def pg_schemas(tracker) -> list[str]:
    """The schemas holding tables (no system ones)."""
    return sorted(row[0] for row in pg_rows(
        tracker, "SELECT DISTINCT table_schema FROM information_schema.tables WHERE "
                 "table_schema NOT IN ('pg_catalog', 'information_schema')"))


def pg_tables(tracker, schema: str = "public") -> list[str]:
    return sorted(row[0] for row in pg_rows(
        tracker, f"SELECT table_name FROM information_schema.tables WHERE table_schema = "
                 f"'{schema}'"))


def server_tables(tracker, driver: str) -> list[str]:
    """Every table of the tracker's database server (PostgreSQL: schema-qualified outside
    public)."""
    if driver == "mysql":
        return mysql_tables(tracker)
    return sorted(table if schema == "public" else f"{schema}.{table}"
                  for schema in pg_schemas(tracker) for table in pg_tables(tracker, schema))


def live_tables(driver: str) -> list[str]:
    return PG_LIVE_TABLES if driver == "postgresql" else LIVE_TABLES


def artifact(entry: dict, name: str) -> dict:
    return next(a for a in entry["artifacts"] if a["name"] == name)


def torrents(entry: dict) -> int:
    return entry["database"]["tables"]["torrents"]


def damage_pages(path: Path) -> None:
    """Overwrite the middle third of the database's pages with garbage (page 1, the header
    and schema, stays: SQLite opens the file and finds it malformed)."""
    size = path.stat().st_size
    pages = size // PAGE
    assert pages >= 6, f"{path} is too small to damage in the middle: {size} bytes"
    first, last = pages // 3, 2 * pages // 3
    with open(path, "r+b") as handle:
        handle.seek(first * PAGE)
        handle.write(os.urandom((last - first + 1) * PAGE))
        handle.flush()
        os.fsync(handle.fileno())
    assert path.stat().st_size == size


def unreadable_by_sqlite(path: Path) -> bool:
    """Whether quick_check fails on the file (or SQLite cannot read it at all)."""
    try:
        connection = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return connection.execute("PRAGMA quick_check").fetchall() != [("ok",)]
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return True


@contextlib.contextmanager
def tmpfs(directory: Path, size: str):
    """A tmpfs over directory for the block (as tests/reliability does; we run as root)."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(directory)], check=True, capture_output=True)
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def shrink_tmpfs(directory: Path, free: int) -> None:
    """Remount the tmpfs over directory so that about `free` bytes stay free."""
    info = os.statvfs(directory)
    used = (info.f_blocks - info.f_bfree) * info.f_frsize
    size_k = -(-(used + free) // 1024)
    subprocess.run(["mount", "-o", f"remount,size={size_k}k", str(directory)], check=True,
                   capture_output=True)


def craft_failing_dump_set(source: dict, directory: Path) -> str:
    """A copy of a MySQL set whose dump breaks in the middle (after the tables keys,
    torrent_aggregate_metrics and torrents, before whitelist): only the import can tell."""
    marker = b"\n--\n-- Table structure for table `whitelist`\n"

    def break_it(dump: bytes) -> bytes:
        assert dump.count(marker) == 1, "the dump's layout changed: no place to break it"
        return dump.replace(marker, b"\nINSERT INTO `torrents` VALUES (garbage;\n" + marker)

    return copy_with_dump(source, directory, break_it)


# -- a live database that cannot be exported is kept raw ------------------------------------

def test_corrupt_live_sqlite_database_is_restored_over_and_kept_raw(make_stack, tmp_path):
    tracker = make_stack()
    config = write_config(tracker)
    keep_one = tracker.compose_dir.parent / "keep-one.toml"
    keep_one.write_text(tracker.config_toml(extra=KEEP_ONE))
    tracker.wait_for_writes(300)
    old = backup(config)
    n_old = torrents(old)
    tracker.wait_for_writes(n_old + 300)
    docker_stop(tracker)
    database = tracker.db_host_path
    assert database_siblings(tracker) == [] and not Path(f"{database}-journal").exists()
    damage_pages(database)
    assert unreadable_by_sqlite(database), "the damage must make the database unexportable"
    damaged = database.read_bytes()

    done = run_cli(config, "restore", old["id"], "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"restored set {old['id']}" in done.stdout
    assert_carries_on_from(tracker, n_old)

    sets = list_sets(config)
    assert [s["id"] for s in sets][0] == old["id"] and len(sets) == 2
    raw = sets[1]
    assert raw["complete"] and raw["kind"] == "raw"
    assert raw["pre_restore"] == {"restore_of": old["id"], "kind": "raw"}
    assert "could not be exported" in done.stdout and f"kept in set {raw['id']}" in done.stdout
    assert sorted(a["name"] for a in raw["artifacts"]) == ["config", "raw-database"]
    kept = decompress(artifact(raw, "raw-database"), tmp_path / "raw.sqlite3")
    assert kept.read_bytes() == damaged, "the raw set must hold the damaged file byte for byte"
    assert database_siblings(tracker) == [], "nothing set aside may stay beside the database"
    assert not (backup_directory(tracker) / RECORD).exists()
    assert not any(p.name.startswith(STAGING_PREFIX)
                   for p in backup_directory(tracker).iterdir())

    listing = run_cli(config, "list")
    assert listing.returncode == 0, listing.stderr
    [line] = [line for line in listing.stdout.splitlines() if line.startswith(raw["id"])]
    assert f"RAW files of the database before restoring {old['id']}" in line
    assert "never pruned" in line
    status = run_cli(config, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"raw set {raw['id']}: raw files of a database from before a restore" in status.stdout

    # A newer set makes the raw set neither the newest nor the only one: keep_last = 1
    # deletes the set it restored, and would delete it too if retention did not protect it.
    newer = backup(config)  # default retention: keeps all three
    assert [s["id"] for s in list_sets(config)] == [old["id"], raw["id"], newer["id"]]
    pruned = run_cli(keep_one, "prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"pruned {old['id']}" in pruned.stdout
    assert [s["id"] for s in list_sets(config)] == [raw["id"], newer["id"]]
    assert decompress(artifact(raw, "raw-database"), tmp_path / "again.sqlite3").read_bytes() \
        == damaged


# -- refused before the window -----------------------------------------------------------------

def test_full_backup_directory_is_refused_before_the_window(make_stack):
    tracker = make_stack()
    directory = backup_directory(tracker)
    with tmpfs(directory, "16m"):
        config = write_config(tracker)
        tracker.wait_for_writes(1000)
        old = backup(config)
        shrink_tmpfs(directory, 16 * 1024)
        free = shutil.disk_usage(directory).free
        assert 0 < free <= 24 * 1024
        assert tracker.db_host_path.stat().st_size > 8 * free, "the database must clearly " \
            "not fit: the safety set needs about its size"
        started = started_at(tracker)
        startups = len(tracker.startup_seqs())
        before = tree(directory)

        done = run_cli(config, "restore", old["id"], "--yes")

        assert done.returncode == 1, done.stdout + done.stderr
        assert "not enough room" in done.stderr and "nothing was changed" in done.stderr
        assert str(directory) in done.stderr
        assert "Traceback" not in done.stderr
        assert started_at(tracker) == started, "the tracker must not have been stopped"
        assert len(tracker.startup_seqs()) == startups
        assert tracker.running()
        assert without_lock(tree(directory)) == without_lock(before)
        assert not (directory / RECORD).exists()
        assert not any(p.name.startswith(STAGING_PREFIX) for p in directory.iterdir())
        assert not Path(f"{tracker.db_host_path}{INCOMING_SUFFIX}").exists()
        assert database_siblings(tracker) == []


def test_mysql_dump_that_fails_to_import_leaves_the_live_tables(make_stack):
    tracker = make_stack(driver="mysql")
    config = write_config(tracker)
    tracker.wait_for_writes(300)
    old = backup(config)
    directory = backup_directory(tracker)
    crafted = craft_failing_dump_set(old, directory)
    n_before, _ = live_state(tracker)
    assert n_before > torrents(old)
    started = started_at(tracker)
    startups = len(tracker.startup_seqs())
    before = tree(directory)

    done = run_cli(config, "restore", crafted, "--yes")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "importing the dump failed" in done.stderr, "refused by the import, not before"
    assert "garbage" in done.stderr  # the server's own message
    assert "Traceback" not in done.stderr
    assert started_at(tracker) == started, "the tracker must not have been stopped"
    assert len(tracker.startup_seqs()) == startups
    assert mysql_tables(tracker) == LIVE_TABLES, "no shadow or aside table may stay"
    # The live tables still hold the tracker's own history, every transaction from before
    # included, carried on from there (the set held only torrents(old) of them).
    n_after, state = live_state(tracker)
    assert n_after >= n_before and state == expected_state(n_after)
    assert without_lock(tree(directory)) == without_lock(before)
    assert not (directory / RECORD).exists()


def test_set_of_the_other_driver_is_refused(make_stack):
    sqlite_tracker = make_stack()
    mysql_tracker = make_stack(driver="mysql")
    sqlite_config, mysql_config = write_config(sqlite_tracker), write_config(mysql_tracker)
    sqlite_set, mysql_set = backup(sqlite_config), backup(mysql_config)
    assert sqlite_set["id"] != mysql_set["id"]
    shutil.copytree(sqlite_set["path"], backup_directory(mysql_tracker) / sqlite_set["id"])
    shutil.copytree(mysql_set["path"], backup_directory(sqlite_tracker) / mysql_set["id"])

    for tracker, config, foreign, theirs, ours in (
            (mysql_tracker, mysql_config, sqlite_set, "sqlite3", "mysql"),
            (sqlite_tracker, sqlite_config, mysql_set, "mysql", "sqlite3")):
        started = started_at(tracker)
        before = tree(backup_directory(tracker))

        done = run_cli(config, "restore", foreign["id"], "--yes")

        assert done.returncode == 2, done.stdout + done.stderr
        assert f"set {foreign['id']} holds a {theirs} database, the deployment uses {ours}" \
            in done.stderr
        assert started_at(tracker) == started, "the tracker must not have been stopped"
        assert tree(backup_directory(tracker)) == before
        if ours == "mysql":
            assert mysql_tables(tracker) == LIVE_TABLES
        else:
            assert database_siblings(tracker) == []


# -- --dry-run and --no-start ------------------------------------------------------------------

@pytest.mark.parametrize("driver", ["sqlite3", "mysql"])
def test_dry_run_prints_the_steps_and_changes_nothing(make_stack, driver):
    tracker = make_stack(driver=driver)
    config = write_config(tracker)
    old = backup(config)
    started = started_at(tracker)
    before = tree(backup_directory(tracker))

    done = run_cli(config, "restore", old["id"], "--dry-run")

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("dry run: nothing will be changed\n")
    assert f"set {old['id']}: checksums match; {driver} database" in done.stdout
    assert f"window: would stop {tracker.container_name}" in done.stdout
    if driver == "mysql":
        assert "would RENAME TABLE every live table to torrust_maint_old_<table>" in done.stdout
        assert "would import the set's dump into shadow tables torrust_maint_new_" \
            in done.stdout
        assert mysql_tables(tracker) == LIVE_TABLES
    else:
        assert f"would rename {tracker.db_host_path} (and any -wal, -journal)" in done.stdout
        assert f"would decompress the set's database to {tracker.db_host_path}" \
            f"{INCOMING_SUFFIX}" in done.stdout
        assert database_siblings(tracker) == []
    assert "would export the state set aside into a safety set" in done.stdout
    assert tree(backup_directory(tracker)) == before
    assert started_at(tracker) == started


def test_no_start_leaves_a_stopped_tracker_stopped_and_without_it_starts_it(make_stack):
    tracker = make_stack()
    config = write_config(tracker)
    tracker.wait_for_writes(300)
    old = backup(config)
    n_old = torrents(old)
    tracker.wait_for_writes(n_old + 300)
    docker_stop(tracker)
    n_stopped = stopped_seqs(tracker)[-1]
    assert n_stopped >= n_old + 300
    stopped_since = tracker.state()["FinishedAt"]

    done = run_cli(config, "restore", old["id"], "--yes", "--no-start")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "left stopped (--no-start)" in done.stdout
    assert not tracker.running() and tracker.state()["FinishedAt"] == stopped_since
    assert file_state(tracker.db_host_path) == (n_old, expected_state(n_old))
    assert database_siblings(tracker) == []
    safety = list_sets(config)[-1]
    assert safety["kind"] == "safety" and safety["verification"]["outcome"] == "passed"
    assert safety["pre_restore"] == {"restore_of": old["id"], "kind": "safety"}
    assert torrents(safety) == n_stopped, "the safety set holds the state at the stop"

    # Without --no-start a stopped tracker is started, here on the safety set's state.
    done = run_cli(config, "restore", safety["id"], "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    assert tracker.running()
    assert tracker.startup_seqs()[-1] == n_stopped
    tracker.wait_healthy(timeout=30)
    n_live, state = live_state(tracker)
    assert n_live >= n_stopped and state == expected_state(n_live)


# -- an interrupted restore --------------------------------------------------------------------

BEFORE_EXPORT = "exporting the state from before"  # after the swap and the restart
BEFORE_VERIFY = "restore: safety set"  # the safety set committed, not verified yet


@pytest.mark.parametrize("driver, pause", [
    pytest.param("sqlite3", BEFORE_EXPORT, id="sqlite3-before-export"),
    pytest.param("mysql", BEFORE_EXPORT, id="mysql-before-export", marks=pytest.mark.slow),
    pytest.param("postgresql", BEFORE_EXPORT, id="postgresql-before-export",
                 marks=pytest.mark.slow),
    pytest.param("sqlite3", BEFORE_VERIFY, id="sqlite3-before-verify"),
])
def test_interrupted_restore_is_shown_kept_and_finished(make_stack, tmp_path, driver, pause):
    tracker = make_stack(driver=driver)
    config = write_config(tracker, extra=KEEP_ONE)
    tracker.wait_for_writes(300)
    old = backup(config)
    n_old = torrents(old)
    tracker.wait_for_writes(n_old + 300)
    directory = backup_directory(tracker)

    run = FaultRun(config, tmp_path / "run", pause, args=("restore", old["id"], "--yes"))
    try:
        run.wait_for_pause()
        run.send(signal.SIGKILL)
        assert run.wait(timeout=30) == -signal.SIGKILL
    finally:
        run.kill_if_running()

    # Killed after the swap: the tracker runs on the set, the state from before is set aside.
    assert tracker.running()
    assert tracker.startup_seqs()[-1] == n_old
    n_stop = stopped_seqs(tracker)[-1]
    assert n_stop >= n_old + 300
    record = json.loads((directory / RECORD).read_text())
    assert record["phase"] == "swapped" and record["restore_of"] == old["id"]
    committed = record["safety_set"]
    if pause == BEFORE_EXPORT:
        assert committed is None
    else:
        [entry] = [s for s in list_sets(config) if s["id"] == committed]
        assert entry["kind"] == "safety" and entry["verification"] is None
    if driver == "sqlite3":
        aside = [n for n in database_siblings(tracker) if ASIDE_INFIX in n]
        assert aside == [f"{tracker.db_host_path.name}{ASIDE_INFIX}{record['id']}"]
        assert database_siblings(tracker) == aside
        aside_path = tracker.db_host_path.parent / aside[0]
        assert file_state(aside_path) == (n_stop, expected_state(n_stop))
    elif driver == "mysql":
        old_tables = [f"torrust_maint_old_{t}" for t in LIVE_TABLES]
        assert mysql_tables(tracker) == sorted(LIVE_TABLES + old_tables)
        assert mysql_scalar(tracker, "SELECT COUNT(*) FROM torrust_maint_old_torrents") == n_stop
    else:
        old_tables = [f"torrust_maint_old.{t}" for t in PG_LIVE_TABLES]
        assert server_tables(tracker, driver) == sorted(PG_LIVE_TABLES + old_tables)
        assert pg_rows(tracker, "SELECT COUNT(*) FROM torrust_maint_old.torrents") == [(n_stop,)]

    def aside_state():
        if driver == "sqlite3":
            return database_siblings(tracker), aside_path.read_bytes()
        if driver == "postgresql":
            return server_tables(tracker, driver), pg_rows(
                tracker, "SELECT value FROM torrust_maint_old.torrent_aggregate_metrics")
        return mysql_tables(tracker), mysql_scalar(
            tracker, "SELECT value FROM torrust_maint_old_torrent_aggregate_metrics")

    kept = aside_state()
    status = run_cli(config, "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"INTERRUPTED RESTORE: restore of set {old['id']}" in status.stdout
    assert "restore --finish" in status.stdout
    listing = run_cli(config, "list")
    assert listing.returncode == 0, listing.stderr
    assert f"INTERRUPTED RESTORE: restore of set {old['id']}" in listing.stdout
    checked = run_cli(config, "check")
    assert checked.returncode == 2 and f"restore of set {old['id']}" in checked.stderr
    assert "restore --finish" in checked.stderr
    pruned = run_cli(config, "prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert aside_state() == kept, "prune must leave the state from before alone"
    if committed:
        assert committed in [s["id"] for s in list_sets(config)]
    assert (directory / RECORD).exists()

    done = run_cli(config, "restore", "--finish")

    assert done.returncode == 0, done.stdout + done.stderr
    if committed:
        assert f"the state from before the interrupted restore of set {old['id']} is in the " \
            f"verified set {committed}; removed what was set aside" in done.stdout
    else:
        assert f"securing the state from before the interrupted restore of set {old['id']}" \
            in done.stdout
    sets = list_sets(config)
    assert all(s["complete"] for s in sets), sets
    [safety] = [s for s in sets if s["kind"] == "safety"]  # one, never a second copy
    if committed:
        assert safety["id"] == committed
    assert safety["verification"]["outcome"] == "passed"
    assert safety["pre_restore"] == {"restore_of": old["id"], "kind": "safety"}
    assert torrents(safety) == n_stop, "the safety set holds the state at the stop"
    if driver == "sqlite3":
        restored = decompress(artifact(safety, "database"), tmp_path / "safety.sqlite3")
        assert file_state(restored) == (n_stop, expected_state(n_stop))
        assert database_siblings(tracker) == []
    else:
        assert server_tables(tracker, driver) == live_tables(driver)
    assert not (directory / RECORD).exists()
    status = run_cli(config, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "INTERRUPTED RESTORE" not in status.stdout
    assert tracker.startup_seqs()[-1] == n_old, "finishing must not restart the tracker"
    assert tracker.running()


@pytest.mark.parametrize("driver, pause", [
    ("sqlite3", "restore: database staged beside the live one"),
    ("mysql", "restore: shadow tables imported"),
    pytest.param("postgresql", "restore: schema torrust_maint_new loaded",
                 marks=pytest.mark.slow),
])
def test_a_restore_killed_while_staging_leaves_nothing_for_later_backups(make_stack, tmp_path,
                                                                          driver, pause):
    """SIGKILL while the set is staged (the tracker serving): its record is already written,
    so the next run removes the staged file or shadow tables before its own backup, which
    never copies them."""
    tracker = make_stack(driver=driver)
    tracker.wait_for_writes(100)
    config = write_config(tracker)
    old = backup(config)
    started = started_at(tracker)
    run = FaultRun(config, tmp_path / "run", pause, args=("restore", old["id"], "--yes"))
    try:
        run.wait_for_pause()
        run.send(signal.SIGKILL)
        assert run.wait(timeout=30) == -signal.SIGKILL
    finally:
        run.kill_if_running()
    assert started_at(tracker) == started  # killed before any window
    directory = backup_directory(tracker)
    assert (directory / RECORD).exists()
    if driver == "mysql":
        assert [t for t in mysql_tables(tracker) if t.startswith("torrust_maint_new_")]
    elif driver == "postgresql":
        assert pg_tables(tracker, "torrust_maint_new") == PG_LIVE_TABLES
    else:
        assert any(name.endswith(INCOMING_SUFFIX) for name in database_siblings(tracker))
    status = run_cli(config, "status")
    assert status.returncode == 1 and "INTERRUPTED RESTORE" in status.stdout

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    assert "cleaned up after the restore of set" in done.stdout
    newest = list_sets(config)[-1]
    assert sorted(newest["database"]["tables"]) == live_tables(driver)
    if driver != "sqlite3":
        assert server_tables(tracker, driver) == live_tables(driver)
    else:
        assert not any("torrust-maint" in name for name in database_siblings(tracker))
    assert not (directory / RECORD).exists()
    assert run_cli(config, "status").returncode == 0
