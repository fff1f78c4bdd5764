"""verify and restore against real containers, for both drivers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    REPO,
    backup_state,
    decompress,
    list_sets,
    run_cli,
    write_config,
)

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import expected_state, read_state  # noqa: E402


def throwaway_containers(tracker) -> list[str]:
    """Throwaway containers made for this deployment's backup directory."""
    directory = tracker.compose_dir / "storage/backup"
    out = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter",
                          "label=org.torrust-maint.throwaway", "--filter",
                          f"label=org.torrust-maint.backup-directory={directory}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def backup(config: Path) -> dict:
    done = run_cli(config, "backup")
    assert done.returncode == 0, done.stderr
    return list_sets(config)[-1]


def live_state(tracker) -> tuple[int, dict]:
    """(N, tables) of the live database, read in one consistent transaction."""
    if tracker.driver == "mysql":
        connection = tracker.mysql_connect()
        connection.begin()
        try:
            return read_state(connection)
        finally:
            connection.close()
    connection = sqlite3.connect(f"file:{tracker.db_host_path}?mode=ro", uri=True, timeout=10)
    try:
        connection.execute("BEGIN")
        return read_state(connection)
    finally:
        connection.close()


@pytest.mark.parametrize("driver", ["sqlite3", "mysql"])
def test_every_backup_is_verified_and_verify_records_the_outcome(make_stack, driver):
    tracker = make_stack(driver=driver)
    tracker.wait_for_writes(100)
    config = write_config(tracker)
    made = backup(config)
    assert made["verification"]["outcome"] == "passed"  # verified right after the backup
    assert throwaway_containers(tracker) == []

    done = run_cli(config, "verify", "latest")

    assert done.returncode == 0, done.stderr
    assert f"{made['id']}: verified" in done.stdout
    [again] = list_sets(config)
    assert again["verification"]["outcome"] == "passed"
    assert again["verification"]["verified_at"] > made["verification"]["verified_at"]
    assert throwaway_containers(tracker) == []


def corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def corrupt_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, message", [
    ("flip", "does not match the manifest"),
    ("truncate", "(truncated or changed)"),
    ("manifest_checksum", "does not match the manifest"),
])
def test_verify_fails_on_damage_with_a_clear_message(make_stack, damage, message):
    tracker = make_stack()
    config = write_config(tracker)
    made = backup(config)
    database = next(a for a in made["artifacts"] if a["name"] == "database")
    path = Path(database["path"])
    if damage == "flip":
        corrupt_flip(path)
    elif damage == "truncate":
        corrupt_truncate(path)
    else:
        manifest_path = Path(made["path"]) / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["artifacts"][0]["sha256"] = "0" * 64
        manifest_path.write_text(json.dumps(manifest))

    done = run_cli(config, "verify", made["id"])

    assert done.returncode == 1
    assert f"{made['id']}: FAILED: {path}" in done.stdout
    assert message in done.stdout
    assert "Traceback" not in done.stderr
    assert list_sets(config)[0]["verification"]["outcome"] == "failed"
    listing = run_cli(config, "list").stdout
    assert "complete, failed" in listing


def test_verify_restores_and_compares_row_counts(make_stack):
    # Intact files, but the manifest disagrees with what the database holds: only a real
    # restore can tell.
    tracker = make_stack()
    tracker.wait_for_writes(100)
    config = write_config(tracker)
    made = backup(config)
    manifest_path = Path(made["path"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["database"]["tables"]["torrents"] += 1
    manifest_path.write_text(json.dumps(manifest))

    done = run_cli(config, "verify")

    assert done.returncode == 1
    assert "row counts differ: table torrents:" in done.stdout


def test_mysql_verify_catches_a_checksum_mismatch_and_removes_its_container(make_stack):
    tracker = make_stack(driver="mysql")
    tracker.wait_for_writes(100)
    config = write_config(tracker)
    made = backup(config)
    manifest_path = Path(made["path"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["database"]["table_checksums"]["whitelist"] ^= 1
    manifest_path.write_text(json.dumps(manifest))

    seen: set[str] = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(throwaway_containers(tracker))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        done = run_cli(config, "verify", made["id"])
    finally:
        stop.set()
        watcher.join()

    assert done.returncode == 1
    assert "checksums differ for table(s) whitelist" in done.stdout
    assert seen, "the verification must have run in a throwaway container"
    assert throwaway_containers(tracker) == []  # removed, also on failure


def test_retention_keeps_the_last_verified_set_when_newer_ones_fail(make_stack):
    tracker = make_stack()
    config = tracker.compose_dir.parent / "keep-one.toml"
    config.write_text(tracker.config_toml(extra=(
        "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n")))
    good = backup(config)
    time.sleep(1.1)
    second = backup(config)  # prunes `good`: `second` is verified
    assert [s["id"] for s in list_sets(config)] == [second["id"]]
    corrupt_flip(Path(second["artifacts"][0]["path"]))
    assert run_cli(config, "verify").returncode == 1
    time.sleep(1.1)

    third = backup(config)

    ids = [s["id"] for s in list_sets(config)]
    assert third["id"] in ids and good["id"] not in ids
    assert second["id"] not in ids  # failed, older than the newest verified set: deleted


@pytest.mark.parametrize("driver", ["sqlite3", "mysql"])
def test_restore_puts_back_exactly_the_set_and_keeps_a_safety_set(make_stack, tmp_path,
                                                                  driver):
    tracker = make_stack(driver=driver)
    tracker.wait_for_writes(200)
    config = write_config(tracker)
    old = backup(config)
    n_old = old["database"]["tables"]["torrents"]
    tracker.wait_for_writes(n_old + 300)

    done = run_cli(config, "restore", old["id"], "--yes")

    assert done.returncode == 0, done.stderr
    assert f"restored set {old['id']}" in done.stdout
    startups = tracker.startup_seqs()
    assert startups[-1] == n_old, "the tracker must start on exactly the restored state"
    tracker.wait_healthy(timeout=10)
    # The stand-in carries on from the restored state: any gap or extra row would show here.
    n_live, state = live_state(tracker)
    assert n_live >= n_old and state == expected_state(n_live)

    sets = list_sets(config)
    assert len(sets) == 2
    safety = sets[-1]
    assert safety["verification"]["outcome"] == "passed"
    assert safety["id"] != old["id"]
    assert json.loads((Path(safety["path"]) / "manifest.json").read_text())["reason"] == \
        f"safety backup before restoring {old['id']}"
    n_safety = safety["database"]["tables"]["torrents"]
    assert n_safety >= n_old + 300  # what was live before the restore is kept
    if driver == "sqlite3":
        restored = decompress(safety["artifacts"][0], tmp_path / "safety.sqlite3")
        n, state = backup_state(restored)
        assert n == n_safety and state == expected_state(n)
    assert run_cli(config, "verify", safety["id"]).returncode == 0


def test_restore_with_config_puts_the_files_back(make_stack, tmp_path):
    tracker = make_stack()
    config = write_config(tracker)
    old = backup(config)
    toml = tracker.compose_dir / "storage/tracker/etc/tracker.toml"
    original = toml.read_text()
    toml.write_text(original + "# changed after the backup\n")

    done = run_cli(config, "restore", old["id"], "--yes", "--with-config")

    assert done.returncode == 0, done.stderr
    assert toml.read_text() == original
    safety = list_sets(config)[-1]
    archive = decompress(next(a for a in safety["artifacts"] if a["name"] == "config"),
                         tmp_path / "config.tar")
    with tarfile.open(archive) as tar:
        saved = tar.extractfile("storage/tracker/etc/tracker.toml").read().decode()
    assert saved.endswith("# changed after the backup\n")


def test_restore_without_yes_off_a_terminal_changes_nothing(make_stack):
    tracker = make_stack()
    config = write_config(tracker)
    old = backup(config)
    started = tracker.state()["StartedAt"]

    done = subprocess.run(
        ["/usr/bin/python3", "-m", "torrust_maint", "--config", str(config), "restore",
         old["id"]], cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/local/bin:/usr/bin:/bin"})

    assert done.returncode == 2
    assert "pass --yes" in done.stderr
    assert tracker.state()["StartedAt"] == started
    assert len(list_sets(config)) == 1
