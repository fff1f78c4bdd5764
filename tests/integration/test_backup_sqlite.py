"""A real maintenance window on a real Docker engine against the stand-in tracker (SQLite)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    PYTHON,
    REPO,
    backup_state,
    decompress,
    list_sets,
    run_cli,
    tree,
    write_config,
)

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import expected_state  # noqa: E402


def assert_backup_is_exactly_the_committed_state(tracker, backup: dict, tmp_path: Path) -> int:
    """The set holds transactions 1..N, nothing torn, N = what the restarted tracker found."""
    database = next(a for a in backup["artifacts"] if a["name"] == "database")
    restored = decompress(database, tmp_path / "restored.sqlite3")
    n, state = backup_state(restored)
    startups = tracker.startup_seqs()
    assert len(startups) == 2, tracker.logs()
    assert n > 0
    assert n == startups[-1], "the backup must hold exactly what was committed before the stop"
    assert state == expected_state(n)
    assert backup["database"]["tables"]["torrents"] == len(state["torrents"])
    return n


def test_clean_stop_backup_holds_exactly_the_committed_transactions(make_stack, tmp_path):
    tracker = make_stack()
    tracker.wait_for_writes(300)
    config = write_config(tracker)

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    assert "tracker downtime:" in done.stdout
    [backup] = list_sets(config)
    assert backup["complete"] is True
    assert backup["database"]["driver"] == "sqlite3"
    assert backup["downtime_seconds"] > 0
    assert assert_backup_is_exactly_the_committed_state(tracker, backup, tmp_path) > 300
    assert "standin: stopped seq=" in tracker.logs()  # SIGTERM honoured: a clean stop
    tracker.wait_healthy(timeout=10)
    tracker.wait_for_writes(backup["database"]["tables"]["torrents"] + 50)


def test_set_layout_checksums_permissions_and_config_archive(make_stack, tmp_path):
    tracker = make_stack()
    config = write_config(tracker)

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    [backup] = list_sets(config)
    set_dir = Path(backup["path"])
    assert set_dir.parent == tracker.compose_dir / "storage/backup"
    assert oct(set_dir.stat().st_mode & 0o777) == "0o700"
    manifest = json.loads((set_dir / "manifest.json").read_text())
    assert manifest["id"] == backup["id"] == set_dir.name
    assert {a["name"] for a in backup["artifacts"]} == {"database", "config"}
    for artifact in backup["artifacts"]:
        path = Path(artifact["path"])
        assert path.is_absolute() and path.parent == set_dir
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert path.stat().st_size == artifact["size"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact["sha256"]
        assert artifact["compression"] == "zstd"
    assert oct((set_dir / "manifest.json").stat().st_mode & 0o777) == "0o600"
    config_tar = decompress(next(a for a in backup["artifacts"] if a["name"] == "config"),
                            tmp_path / "config.tar")
    with tarfile.open(config_tar) as tar:
        names = set(tar.getnames())
        env = tar.extractfile(".env").read().decode()
    assert {".env", "docker-compose.yml", "storage/tracker/etc/tracker.toml",
            "storage/prometheus/etc/prometheus.yml"} <= names
    assert env == (tracker.compose_dir / ".env").read_text()
    assert set(manifest["phases"]) >= {"preflight", "stop", "snapshot", "start", "export",
                                       "config", "total"}
    leftovers = [p.name for p in set_dir.parent.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_wal_mode_backup_holds_exactly_the_committed_transactions(make_stack, tmp_path):
    tracker = make_stack(journal_mode="wal")
    tracker.wait_for_writes(300)
    config = write_config(tracker)

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    [backup] = list_sets(config)
    assert backup["database"]["journal_mode"] == "wal"
    assert backup["database"]["snapshot_method"] == "wal-read"
    assert backup["database"]["snapshot_reader"] == "pages"
    assert backup["phases"]["snapshot"] < 0.5
    assert_backup_is_exactly_the_committed_state(tracker, backup, tmp_path)


def test_wal_read_handle_leaves_the_side_files_usable_by_a_non_root_tracker(make_stack,
                                                                           tmp_path):
    # The real tracker image runs as an unprivileged user; we run as root and open the live
    # database inside the window: the -wal and -shm must stay the tracker's.
    tracker = make_stack(journal_mode="wal", user="1000:1000")
    tracker.wait_for_writes(200)
    config = write_config(tracker)

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    [backup] = list_sets(config)
    assert backup["database"]["snapshot_method"] == "wal-read"
    assert backup["database"]["snapshot_reader"] == "pages"
    n = assert_backup_is_exactly_the_committed_state(tracker, backup, tmp_path)
    tracker.wait_for_writes(n + 300)  # the tracker writes on after the window
    for suffix in ("", "-wal", "-shm"):
        info = Path(f"{tracker.db_host_path}{suffix}").stat()
        assert (info.st_uid, info.st_gid) == (1000, 1000), suffix
    assert "Traceback" not in tracker.logs()


def test_killed_tracker_with_commits_only_in_the_wal(make_stack, tmp_path):
    # The tracker ignores SIGTERM and never checkpoints: `docker stop` kills it after 1 s
    # and every committed transaction lives only in the -wal file.
    tracker = make_stack(journal_mode="wal", wal_autocheckpoint=0, ignore_sigterm=True)
    tracker.wait_for_writes(300)
    main_file_alone = tmp_path / "main-file-alone.sqlite3"
    main_file_alone.write_bytes(tracker.db_host_path.read_bytes())
    wal = Path(f"{tracker.db_host_path}-wal")
    assert wal.stat().st_size > 0
    config = write_config(tracker, deployment_extra="stop_timeout = 1\n")

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    assert "standin: stopped" not in tracker.logs()  # it was killed, not stopped
    [backup] = list_sets(config)
    assert backup["database"]["snapshot_method"] == "wal-read"  # ext4: no reflinks
    assert backup["database"]["snapshot_reader"] == "pages"
    n = assert_backup_is_exactly_the_committed_state(tracker, backup, tmp_path)
    with sqlite3.connect(f"file:{main_file_alone}?immutable=1", uri=True) as alone:
        tables = alone.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'torrents'")
        rows_in_main_file = (alone.execute("SELECT count(*) FROM torrents").fetchone()[0]
                             if tables.fetchone()[0] else 0)
    assert rows_in_main_file < n  # a plain copy of the main file would have lost them


def test_stopped_tracker_exits_3_and_changes_nothing(make_stack):
    tracker = make_stack()
    config = write_config(tracker)
    subprocess.run(["docker", "stop", tracker.container_name], check=True, capture_output=True)
    before = tree(tracker.compose_dir)

    done = run_cli(config, "backup")

    assert done.returncode == 3, done.stderr
    assert "not running" in done.stderr
    assert "Traceback" not in done.stderr
    # the run lock (taken first, so that a run during another's window exits 5) is the one
    # file written; no set, no marker
    after = tree(tracker.compose_dir)
    assert before.keys() <= after.keys()
    changed = {path for path, fingerprint in after.items() if before.get(path) != fingerprint}
    assert changed <= {"storage/backup", "storage/backup/.torrust-maint.lock"}, changed
    assert not tracker.running()


def test_force_backs_up_a_stopped_tracker_and_leaves_it_stopped(make_stack, tmp_path):
    tracker = make_stack()
    tracker.wait_for_writes(100)
    config = write_config(tracker)
    subprocess.run(["docker", "stop", tracker.container_name], check=True, capture_output=True)

    done = run_cli(config, "backup", "--force")

    assert done.returncode == 0, done.stderr
    assert not tracker.running()
    [backup] = list_sets(config)
    assert backup["downtime_seconds"] is None
    restored = decompress(backup["artifacts"][0], tmp_path / "restored.sqlite3")
    n, state = backup_state(restored)
    assert state == expected_state(n) and n >= 100


def test_gzip_sets_are_readable_by_stock_gzip(make_stack, tmp_path):
    tracker = make_stack()
    tracker.wait_for_writes(100)
    config = tracker.compose_dir.parent / "gzip.toml"
    config.write_text(tracker.config_toml(extra='compression = "gzip"\n'))

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    [backup] = list_sets(config)
    database = backup["artifacts"][0]
    assert database["compression"] == "gzip" and database["path"].endswith(".sqlite3.gz")
    assert_backup_is_exactly_the_committed_state(tracker, backup, tmp_path)


def test_dry_run_prints_the_docker_commands_and_touches_nothing(make_stack):
    tracker = make_stack()
    config = write_config(tracker)
    started_at = tracker.state()["StartedAt"]
    before = tree(tracker.compose_dir / "storage/backup")

    done = run_cli(config, "backup", "--dry-run")

    assert done.returncode == 0, done.stderr
    assert "would run: docker stop -t 10 " in done.stdout
    assert "would run: docker start " in done.stdout
    assert tracker.state()["StartedAt"] == started_at
    assert tracker.startup_seqs() == [0]
    assert tree(tracker.compose_dir / "storage/backup") == before


def test_sigterm_during_the_window_still_restarts_the_tracker(make_stack):
    # A tracker that ignores SIGTERM keeps `docker stop` busy for 3 s: time to signal us.
    tracker = make_stack(ignore_sigterm=True)
    config = write_config(tracker, deployment_extra="stop_timeout = 3\n")
    process = subprocess.Popen([PYTHON, "-m", "torrust_maint", "--config", str(config), "backup"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in process.stderr:
        if "stopping tracker" in line:
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 1, stderr
    assert "interrupted by SIGTERM" in stderr
    tracker.wait_healthy(timeout=10)
    assert len(tracker.startup_seqs()) == 2
    assert [s for s in list_sets(config)] == []  # no set, and no staging leftovers


def test_lock_held_by_another_run_exits_5_and_touches_nothing(make_stack):
    tracker = make_stack()
    config = write_config(tracker, extra="\n[retry]\ndelay = 1\n")  # waits 1 + 2 s, not 10 + 20
    lock_file = tracker.compose_dir / "storage/backup/.torrust-maint.lock"
    holder = subprocess.Popen(
        [PYTHON, "-c", "import fcntl,os,sys,time; f=open(sys.argv[1],'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write(str(os.getpid())); f.flush(); "
         "print('held', flush=True); time.sleep(60)", str(lock_file)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_cli(config, "backup")
    finally:
        holder.kill()
        holder.wait()

    assert done.returncode == 5, done.stderr
    assert f"pid {holder.pid}" in done.stderr
    assert "(after 3 attempts)" in done.stderr
    assert tracker.startup_seqs() == [0]


def test_retention_prunes_by_recorded_time_and_keeps_foreign_files(make_stack):
    tracker = make_stack()
    config = tracker.compose_dir.parent / "retention.toml"
    config.write_text(tracker.config_toml(extra=(
        "[retention]\nkeep_last = 2\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n")))
    # Not a legacy cron backup's name (those are sets: tests/integration/test_legacy_backups.py)
    foreign = tracker.compose_dir / "storage/backup/sqlite/operator-copy-20250101.db.gz"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"an operator's file")

    ids = []
    for _ in range(3):
        done = run_cli(config, "backup")
        assert done.returncode == 0, done.stderr
        ids.append(json.loads(run_cli(config, "list", "--json").stdout)[-1]["id"])
        time.sleep(1.1)  # distinct ids

    remaining = [s["id"] for s in list_sets(config)]
    assert remaining == ids[1:]
    assert foreign.read_bytes() == b"an operator's file"
    # Touching files changes nothing: retention reads the manifest's created_at.
    os.utime(Path(list_sets(config)[0]["path"]) / "manifest.json", (0, 0))
    done = run_cli(config, "prune", "--dry-run")
    assert done.returncode == 0
    assert "would delete" not in done.stdout


@pytest.mark.parametrize("fs", ["xfs"])
def test_snapshot_uses_reflinks_where_the_filesystem_has_them(make_stack, tmp_path, fs):
    image = tmp_path / f"{fs}.img"
    mountpoint = Path(f"/tmp/torrust-maint-it/{fs}-mount")
    subprocess.run(["truncate", "-s", "512M", str(image)], check=True)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
    try:
        os.environ["TORRUST_MAINT_IT_ROOT"] = str(mountpoint)
        from tests.testbed import stack as testbed

        tracker = testbed.TrackerStack(mountpoint / "opt/torrust", "tm-it-reflink")
        tracker.create()
        tracker.up()
        try:
            tracker.wait_for_writes(200)
            config = write_config(tracker)
            done = run_cli(config, "backup")
            assert done.returncode == 0, done.stderr
            [backup] = list_sets(config)
            assert backup["database"]["snapshot_method"] == "reflink"
            assert_backup_is_exactly_the_committed_state(tracker, backup, tmp_path)
        finally:
            tracker.down()
    finally:
        os.environ.pop("TORRUST_MAINT_IT_ROOT", None)
        subprocess.run(["umount", str(mountpoint)], check=False)


def test_sigkill_inside_the_window_the_guardian_restarts_the_tracker(make_stack):
    # SIGKILL leaves no `finally`: the guardian process sees its pipe close and recovers,
    # also when our `docker stop` is still under way in the daemon (the tracker ignores
    # SIGTERM, so the stop ends with a SIGKILL 2 s later).
    tracker = make_stack(ignore_sigterm=True)
    config = write_config(tracker, deployment_extra="stop_timeout = 2\n")
    marker = tracker.compose_dir / "storage/backup/.torrust-maint-window.json"
    process = subprocess.Popen([PYTHON, "-m", "torrust_maint", "--config", str(config), "backup"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in process.stderr:
        if "stopping tracker" in line:
            break
    assert marker.exists()
    time.sleep(0.3)
    process.kill()
    process.wait()
    guardian_output: list[str] = []  # the guardian inherited our stderr pipe
    threading.Thread(target=lambda: guardian_output.extend(process.stderr), daemon=True).start()

    deadline = time.monotonic() + 60
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    processes = subprocess.run(["ps", "-eo", "pid,ppid,stat,args"], capture_output=True,
                               text=True).stdout
    assert not marker.exists(), ("the guardian did not recover: " + "".join(guardian_output)
                                 + "\n" + "\n".join(line for line in processes.splitlines()
                                                     if "torrust_maint" in line))
    tracker.wait_healthy(timeout=10)
    assert len(tracker.startup_seqs()) == 2  # stopped (killed by docker stop), started again
    [leftover] = list_sets(config)  # the killed run's staging directory, shown as incomplete
    assert leftover["complete"] is False

    done = run_cli(config, "backup")  # the next run works and clears the leftover
    assert done.returncode == 0, done.stderr
    after = list_sets(config)
    assert [s["complete"] for s in after] == [True], json.dumps(after, indent=1)


def test_a_single_file_bind_mount_of_the_database_is_refused(make_stack):
    """Issue 8, defect 6: with the file itself bind-mounted, SQLite keeps the -wal/-shm in the
    container's layer, where no snapshot sees them; check and backup refuse, naming the mount."""
    tracker = make_stack(journal_mode="wal")
    compose_file = tracker.compose_dir / "docker-compose.yml"
    directory_mount = "      - ./storage/tracker/lib:/var/lib/torrust/tracker:Z\n"
    assert directory_mount in compose_file.read_text()
    compose_file.write_text(compose_file.read_text().replace(
        directory_mount,
        "      - ./storage/tracker/lib/database/sqlite3.db:"
        "/var/lib/torrust/tracker/database/sqlite3.db:Z\n"))
    tracker.up()  # recreated with the single-file mount
    tracker.wait_for_writes(20)
    config = write_config(tracker)
    expected = (f"the SQLite database /var/lib/torrust/tracker/database/sqlite3.db is "
                f"bind-mounted as a single file (mount {tracker.db_host_path} -> "
                "/var/lib/torrust/tracker/database/sqlite3.db of tracker container "
                f"{tracker.container_name})")

    for command in ("check", "backup"):
        done = run_cli(config, command)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr
        assert "Traceback" not in done.stderr
    assert tracker.running()
    assert len(tracker.startup_seqs()) == 1  # never stopped
    assert list_sets(config) == []
