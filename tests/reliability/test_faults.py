"""Faults other than signals: the backup directory (read-only, full, filling up, removed), the
MySQL container (stopped, unhealthy, restarted, hung, wrong credentials), containers recreated
under the run, a tracker that ignores SIGTERM, a reboot mid-window, dockerd restarted
mid-window.

Each case ends like the issue asks: the tracker running, older sets byte-identical, no partial
set listed, the documented exit code with one clear error line, and a later backup working.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import list_sets, run_cli
from tests.reliability.scenario import (
    ENGINES,
    DumpChecker,
    Scenario,
    expected_state,
    mounted,
    set_state,
    started_after,
)
from tests.reliability.support import (
    AFTER_DISCOVERY,
    MARKER,
    PHASES,
    TrackerWatch,
    container_state,
    guardians,
    tracker_ready,
    wait_until,
)
from tests.testbed.stack import MYSQL_USER_PASSWORD, compose

slow = pytest.mark.slow


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # unbuffered: nothing left to flush at close
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    finally:
        os.close(fd)
    return filler


def says_disk_full(line: str) -> bool:
    return any(word in line.lower() for word in ("no space left", "full", "free"))


def tmpfs(directory: Path, size: str = "16m"):
    return mounted(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(directory)], directory)


def finish(scenario: Scenario, run, code: int, expected: tuple[int, ...], *,
           allow_unfinished: bool = False, new_sets: int = 0) -> None:
    """The checks every case ends with, before the next backup."""
    run.finish_reading(timeout=30)
    scenario.outcome(run, code)
    scenario.assert_one_clear_line(run, code, expected)
    scenario.assert_older_sets_intact()
    listing = scenario.assert_no_partial_set(allow_unfinished)
    scenario.assert_new_sets(listing, allowed=new_sets)


# -- a tracker that ignores SIGTERM -------------------------------------------------------------

@slow
@pytest.mark.parametrize("engine", list(ENGINES))
def test_tracker_that_ignores_sigterm(engine, make_stack, tmp_path, record):
    scenario = Scenario(make_stack, engine, record, ignore_sigterm=True, stop_timeout=2)
    record.update(fault="tracker ignores SIGTERM (docker stop kills it)", phase="stop")
    scenario.prepare()
    startups = len(scenario.tracker.startup_seqs())

    run = scenario.run(None, tmp_path / "run")
    code = run.wait(timeout=180)

    finish(scenario, run, code, (0,), new_sets=1)
    newest = list_sets(scenario.config)[-1]
    record["tracker_back_s"] = newest["downtime_seconds"]  # the window's own downtime
    assert 2 <= newest["downtime_seconds"] < 2 + 5, newest["phases"]
    seqs = scenario.tracker.startup_seqs()
    assert len(seqs) == startups + 1
    checker = DumpChecker(f"tm-rel-check-{os.getpid()}") if engine == "mysql" else None
    try:
        n, state = set_state(newest, tmp_path, checker)
    finally:
        if checker:
            checker.remove()
    assert n == seqs[-1], "the set holds exactly what the killed tracker had committed"
    assert state == expected_state(n)
    scenario.assert_later_backup_works(tmp_path)


# -- the backup directory ---------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["sqlite-wal", pytest.param("mysql", marks=slow)])
def test_read_only_backup_directory(engine, make_stack, tmp_path, record):
    scenario = Scenario(make_stack, engine, record)
    record.update(fault="backup directory read-only (bind mount)", phase="preflight")
    scenario.prepare()
    started = scenario.started_at()
    directory = str(scenario.directory)
    with mounted(["mount", "--bind", directory, directory], scenario.directory):
        subprocess.run(["mount", "-o", "remount,bind,ro", directory], check=True)
        run = scenario.run(None, tmp_path / "run")
        code = run.wait(timeout=180)
        finish(scenario, run, code, (1,))  # listing and fingerprints read the r/o directory
    assert "read-only" in run.error_lines()[0].lower(), "the line should say why"
    assert scenario.started_at() == started, "the tracker was stopped for nothing"
    record["tracker_back_s"] = 0.0
    scenario.assert_later_backup_works(tmp_path)


@slow
@pytest.mark.parametrize("engine", ["sqlite-wal", "mysql"])
def test_full_backup_directory(engine, make_stack, tmp_path, record):
    scenario = Scenario(make_stack, engine, record)
    record.update(fault="backup directory full before the run (tmpfs)", phase="preflight")
    with tmpfs(scenario.tracker.compose_dir / "storage/backup"):
        scenario.prepare()
        filler = fill(scenario.directory)
        started = scenario.started_at()
        with TrackerWatch(scenario.name) as watch:
            moment = time.time()
            run = scenario.run(None, tmp_path / "run")
            code = run.wait(timeout=180)
            record["tracker_running_at_exit"] = scenario.tracker.running()
            scenario.settle()
            scenario.measure(watch, moment)
        record["tracker_stopped"] = scenario.started_at() != started
        finish(scenario, run, code, (1,))
        assert says_disk_full(run.error_lines()[0]), "the line should say the disk is full"
        assert record["tracker_running_at_exit"]
        filler.unlink()
        scenario.assert_later_backup_works(tmp_path)


@slow
@pytest.mark.parametrize("engine", list(ENGINES))
def test_backup_directory_fills_up_during_the_window(engine, make_stack, tmp_path, record):
    scenario = Scenario(make_stack, engine, record)
    record.update(fault="backup directory fills up in the window (tmpfs)", phase="snapshot")
    with tmpfs(scenario.tracker.compose_dir / "storage/backup"):
        scenario.prepare()
        with TrackerWatch(scenario.name) as watch:
            run = scenario.run(PHASES["snapshot"], tmp_path / "run")
            run.wait_for_pause()
            moment = time.time()
            filler = fill(scenario.directory)
            run.release()
            code = run.wait(timeout=180)
            record["tracker_running_at_exit"] = scenario.tracker.running()
            scenario.settle()
            scenario.measure(watch, moment)
        finish(scenario, run, code, (1,))
        assert says_disk_full(run.error_lines()[0]), "the line should say the disk is full"
        assert record["tracker_running_at_exit"]
        filler.unlink()
        scenario.assert_later_backup_works(tmp_path)


@slow
@pytest.mark.parametrize("engine", list(ENGINES))
def test_backup_directory_removed_during_the_window(engine, make_stack, tmp_path, record):
    scenario = Scenario(make_stack, engine, record)
    record.update(fault="backup directory removed in the window", phase="snapshot")
    scenario.prepare()
    with TrackerWatch(scenario.name) as watch:
        run = scenario.run(PHASES["snapshot"], tmp_path / "run")
        run.wait_for_pause()
        moment = time.time()
        shutil.rmtree(scenario.directory)
        scenario.older = {}  # the operator removed them
        run.release()
        code = run.wait(timeout=180)
        record["tracker_running_at_exit"] = scenario.tracker.running()
        scenario.settle()
        scenario.measure(watch, moment)
    finish(scenario, run, code, (1,))
    line = run.error_lines()[0]
    assert str(scenario.directory) in line or "backup directory" in line.lower() \
        or "[backup] directory" in line, f"the line should name the backup directory: {line}"
    assert record["tracker_running_at_exit"]
    scenario.assert_later_backup_works(tmp_path)


# -- containers recreated under the run -----------------------------------------------------

def recreated_case(scenario: Scenario, tmp_path: Path, record: dict, pause: str) -> None:
    scenario.prepare()
    with TrackerWatch(scenario.name) as watch:
        run = scenario.run(pause, tmp_path / "run")
        run.wait_for_pause()
        moment = time.time()
        scenario.recreate()
        released = time.monotonic()
        run.release()
        code = run.wait(timeout=180)
        record["seconds_after_release"] = round(time.monotonic() - released, 3)
        record["tracker_running_at_exit"] = scenario.tracker.running()
        scenario.settle()
        scenario.measure(watch, moment)
    finish(scenario, run, code, (0, 1), new_sets=1)
    assert record["tracker_running_at_exit"], "the recreated tracker must run"
    assert record["seconds_after_release"] < scenario.start_timeout / 2, \
        "the run waited for start_timeout although the (recreated) tracker was running"
    if code == 0:  # then the set must be sound (it may hold later commits: not exact)
        newest = list_sets(scenario.config)[-1]
        assert newest["verification"]["outcome"] == "passed"
        if scenario.tracker.driver == "sqlite3":
            n, state = set_state(newest, tmp_path)
            assert state == expected_state(n)
    scenario.assert_later_backup_works(tmp_path)


@slow
@pytest.mark.parametrize("engine", ["sqlite-wal", "mysql"])
def test_containers_recreated_between_discovery_and_the_window(engine, make_stack, tmp_path,
                                                               record):
    scenario = Scenario(make_stack, engine, record)
    record.update(fault="docker compose up -d --force-recreate after discovery",
                  phase="before the window")
    recreated_case(scenario, tmp_path, record, AFTER_DISCOVERY)


@pytest.mark.parametrize("engine", ["sqlite-wal", pytest.param("sqlite-rollback", marks=slow),
                                    pytest.param("mysql", marks=slow)])
def test_containers_recreated_between_stop_and_start(engine, make_stack, tmp_path, record):
    scenario = Scenario(make_stack, engine, record)
    record.update(fault="docker compose up -d --force-recreate in the window",
                  phase="snapshot")
    recreated_case(scenario, tmp_path, record, PHASES["snapshot"])


# -- other compose projects on the same engine ------------------------------------------------

VANISHING_DOCKER = """#!/bin/bash
# Test double on PATH: before the first `docker container inspect` of several containers,
# removes $VANISH (another compose project's container), as a concurrent `docker compose
# down` of that project would between discovery's `docker ps` and its `docker inspect`.
if [[ "$1 $2" == "container inspect" && $# -gt 3 && ! -e "$VANISH_DONE" ]]; then
    touch "$VANISH_DONE"
    "$REAL_DOCKER" rm --force "$VANISH" >/dev/null 2>&1
fi
exec "$REAL_DOCKER" "$@"
"""


@slow
def test_unrelated_compose_container_removed_during_discovery(make_stack, tmp_path, record):
    """Another project's container going away while we look for ours is none of our
    business: the backup goes on."""
    scenario = Scenario(make_stack, "sqlite-wal", record)
    record.update(fault="another compose project's container removed during discovery",
                  phase="discovery")
    scenario.prepare()
    other = f"tm-rel-other-{os.getpid()}"
    subprocess.run(["docker", "rm", "--force", other], capture_output=True)
    subprocess.run(["docker", "run", "--detach", "--name", other,
                    "--label", "com.docker.compose.project=tm-rel-other",
                    "--label", "com.docker.compose.service=web",
                    "--label", "com.docker.compose.project.working_dir=/srv/other",
                    "--entrypoint", "sleep", "torrust-maint-test/tracker:latest", "600"],
                   check=True, capture_output=True)
    wrapper = tmp_path / "bin/docker"
    wrapper.parent.mkdir()
    wrapper.write_text(VANISHING_DOCKER)
    wrapper.chmod(0o755)
    done = tmp_path / "vanished"
    try:
        run = scenario.run(None, tmp_path / "run", extra_env={
            "PATH": f"{wrapper.parent}:{os.environ['PATH']}",
            "REAL_DOCKER": shutil.which("docker"), "VANISH": other,
            "VANISH_DONE": str(done)})
        code = run.wait(timeout=180)
    finally:
        subprocess.run(["docker", "rm", "--force", other], capture_output=True)
    assert done.exists(), "the wrapper never saw discovery's inspect: the test proves nothing"
    finish(scenario, run, code, (0,), new_sets=1)
    record["tracker_back_s"] = list_sets(scenario.config)[-1]["downtime_seconds"]
    scenario.assert_later_backup_works(tmp_path)


# -- the MySQL container ----------------------------------------------------------------------

def mysql_case(scenario: Scenario, tmp_path: Path, record: dict, pause: str | None, fault,
               bound: float = 240):
    """Apply `fault` (before the run, or at the paused phase); (moment, run, exit code)."""
    if pause is None:
        moment = time.time()
        fault()
        run = scenario.run(None, tmp_path / "run")
    else:
        run = scenario.run(pause, tmp_path / "run")
        run.wait_for_pause()
        moment = time.time()
        fault()
        run.release()
    started = time.monotonic()
    code = run.wait(timeout=bound)
    record["seconds_to_exit"] = round(time.monotonic() - started, 3)
    record["tracker_running_at_exit"] = scenario.tracker.running()
    scenario.outcome(run, code)
    return moment, run, code


@slow
def test_mysql_container_stopped(make_stack, tmp_path, record):
    scenario = Scenario(make_stack, "mysql", record)
    record.update(fault="MySQL container stopped", phase="preflight")
    scenario.prepare()
    database = scenario.tracker.mysql_container_name

    def stop_mysql():
        stopped = time.time()
        subprocess.run(["docker", "stop", database], check=True, capture_output=True)
        # The stand-in loses its connection, exits, is restarted by its restart policy and
        # waits for the database (60 s): running, as a real tracker would keep running.
        wait_until(lambda: (container_state(scenario.name) or {}).get("Running")
                   and started_after(container_state(scenario.name)["StartedAt"], stopped),
                   60, what="the tracker restarted, waiting for its database")
        record["tracker_started_at"] = scenario.started_at()

    with TrackerWatch(scenario.name) as watch:
        moment, run, code = mysql_case(scenario, tmp_path, record, None, stop_mysql)
        untouched = scenario.started_at() == record["tracker_started_at"]
        subprocess.run(["docker", "start", database], check=True, capture_output=True)
        scenario.settle()
        scenario.measure(watch, moment)
    assert untouched, "the window stopped the tracker although the database was down"
    finish(scenario, run, code, (1,))
    scenario.assert_later_backup_works(tmp_path)


@slow
def test_mysql_container_unhealthy(make_stack, tmp_path, record):
    scenario = Scenario(make_stack, "mysql", record)
    record.update(fault="MySQL container unhealthy (its healthcheck fails)", phase="preflight")
    tracker = scenario.tracker
    compose_file = tracker.compose_dir / "docker-compose.yml"
    compose_file.write_text(compose_file.read_text().replace("retries: 60", "retries: 2"))
    compose(tracker.compose_dir, "up", "--detach", "--wait", project=tracker.project)
    scenario.prepare()
    database = tracker.mysql_container_name
    admin = "/usr/bin/mysqladmin"

    def break_healthcheck():
        subprocess.run(["docker", "exec", database, "mv", admin, admin + ".off"], check=True)
        wait_until(lambda: (container_state(database) or {}).get("Health", {}).get("Status")
                   == "unhealthy", 60, what=f"{database} unhealthy")

    with TrackerWatch(scenario.name) as watch:
        try:
            moment, run, code = mysql_case(scenario, tmp_path, record, None, break_healthcheck)
        finally:
            subprocess.run(["docker", "exec", database, "mv", admin + ".off", admin])
        scenario.settle()
        scenario.measure(watch, moment)
    # Either refused before the window, or backed up a server that does answer.
    finish(scenario, run, code, (0, 1), new_sets=1)
    assert record["tracker_running_at_exit"]
    wait_until(lambda: (container_state(database) or {}).get("Health", {}).get("Status")
               == "healthy", 60, what=f"{database} healthy again")
    scenario.assert_later_backup_works(tmp_path)


@slow
def test_mysql_container_restarted_during_the_window(make_stack, tmp_path, record):
    scenario = Scenario(make_stack, "mysql", record)
    record.update(fault="MySQL container restarted in the window", phase="snapshot")
    scenario.prepare()
    database = scenario.tracker.mysql_container_name

    def restart():
        subprocess.run(["docker", "restart", "-t", "2", database], check=True,
                       capture_output=True)

    with TrackerWatch(scenario.name) as watch:
        moment, run, code = mysql_case(scenario, tmp_path, record, PHASES["snapshot"], restart)
        scenario.settle()
        scenario.measure(watch, moment)
    finish(scenario, run, code, (1,))
    assert record["tracker_running_at_exit"]
    scenario.assert_later_backup_works(tmp_path)


@slow
def test_mysql_container_hung(make_stack, tmp_path, record):
    """A paused (frozen) database: the run must give up in bounded time, tracker untouched."""
    scenario = Scenario(make_stack, "mysql", record)
    record.update(fault="MySQL container hung (docker pause)", phase="preflight")
    scenario.prepare()
    database = scenario.tracker.mysql_container_name
    started = scenario.started_at()
    with TrackerWatch(scenario.name) as watch:
        try:
            moment, run, code = mysql_case(
                scenario, tmp_path, record, None,
                lambda: subprocess.run(["docker", "pause", database], check=True), bound=120)
        finally:
            subprocess.run(["docker", "unpause", database], capture_output=True)
        scenario.settle()
        scenario.measure(watch, moment)
    finish(scenario, run, code, (1,))
    assert record["seconds_to_exit"] < 120
    assert scenario.started_at() == started, "the tracker was stopped for nothing"
    scenario.assert_later_backup_works(tmp_path)


@slow
def test_mysql_wrong_credentials(make_stack, tmp_path, record):
    scenario = Scenario(make_stack, "mysql", record)
    record.update(fault="MySQL rejects the credentials", phase="preflight")
    scenario.prepare()
    started = scenario.started_at()

    def set_password(password: str) -> None:
        root = scenario.tracker.mysql_connect()
        with root.cursor() as cursor:
            cursor.execute("ALTER USER 'db_user'@'%%' IDENTIFIED BY %s", (password,))
        root.close()

    with TrackerWatch(scenario.name) as watch:
        try:
            moment, run, code = mysql_case(scenario, tmp_path, record, None,
                                           lambda: set_password("changed-elsewhere"))
        finally:
            set_password(MYSQL_USER_PASSWORD)
        scenario.settle()
        scenario.measure(watch, moment)
    finish(scenario, run, code, (1,))
    assert "'db_user'" in run.error_lines()[0] and MYSQL_USER_PASSWORD not in run.stderr
    assert scenario.started_at() == started, "the tracker was stopped for nothing"
    scenario.assert_later_backup_works(tmp_path)


# -- a reboot mid-window ----------------------------------------------------------------------

@slow
@pytest.mark.parametrize("recreated", [False, True], ids=["recover", "recreated-then-recover"])
@pytest.mark.parametrize("engine", ["sqlite-wal", "mysql"])
def test_reboot_mid_window(engine, recreated, make_stack, tmp_path, record):
    """The backup process and its guardian die while the tracker is stopped (a power loss);
    at boot `torrust-maint recover` starts the tracker. If the operator recreated the
    containers first, recover sees the tracker healthy and clears the marker at once."""
    scenario = Scenario(make_stack, engine, record)
    record.update(fault="reboot mid-window" + (", containers recreated before recover"
                                               if recreated else ""), phase="snapshot",
                  recovered_by="torrust-maint recover")
    scenario.prepare()
    with TrackerWatch(scenario.name) as watch:
        run = scenario.run(PHASES["snapshot"], tmp_path / "run")
        try:
            run.wait_for_pause()
            [guardian] = wait_until(lambda: guardians(scenario.config), 10, what="guardian")
            os.kill(guardian, signal.SIGKILL)
            moment = run.send(signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            run.kill_if_running()
        wait_until(lambda: not guardians(scenario.config), 10, what="the guardian gone")
        time.sleep(2)
        assert (scenario.directory / MARKER).exists()
        assert not scenario.tracker.running(), "nobody should have started the tracker"
        if recreated:
            scenario.recreate()
            assert tracker_ready(scenario.name)
        began = time.monotonic()
        done = run_cli(scenario.config, "recover", timeout=300)
        record["recover_seconds"] = round(time.monotonic() - began, 3)
        record.update(exit_code=done.returncode,
                      error_line=next((line for line in done.stderr.splitlines()
                                       if "error" in line), None))
        record["tracker_running_at_exit"] = scenario.tracker.running()
        scenario.settle()
        scenario.measure(watch, moment)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not (scenario.directory / MARKER).exists()
    assert tracker_ready(scenario.name)
    if recreated:
        assert record["recover_seconds"] < scenario.start_timeout / 2, \
            f"recover waited {record['recover_seconds']} s for containers that were replaced"
    else:
        assert "recovered" in done.stdout, done.stdout + done.stderr
    run.finish_reading(timeout=10)
    scenario.assert_older_sets_intact()
    scenario.assert_no_partial_set(allow_unfinished=True)
    scenario.assert_later_backup_works(tmp_path)


# -- dockerd restarted mid-window ---------------------------------------------------------------

def dockerd_pids() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "dockerd":
                    found.append(int(entry))
            except OSError:
                pass
    return found


def restart_dockerd() -> None:
    """Stop dockerd and start it as tests/testbed/provision.sh does (without systemd:
    `setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &`; the log is appended to here).
    Every container on this engine is stopped and, by its restart policy, started again."""
    [pid] = dockerd_pids()
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 120, what="dockerd to exit")
    subprocess.run(["bash", "-c", "setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &"],
                   check=True)
    wait_until(lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0,
               90, interval=0.5, what="dockerd to answer again")


@slow
@pytest.mark.parametrize("engine", ["sqlite-wal", "mysql"])
def test_dockerd_restarted_mid_window(engine, make_stack, tmp_path, record):
    scenario = Scenario(make_stack, engine, record)
    record.update(fault="dockerd restarted in the window", phase="snapshot")
    scenario.prepare()
    with TrackerWatch(scenario.name) as watch:
        run = scenario.run(PHASES["snapshot"], tmp_path / "run")
        run.wait_for_pause()
        moment = time.time()
        restart_dockerd()
        record["dockerd_restart_s"] = round(time.time() - moment, 3)
        run.release()
        code = run.wait(timeout=300)
        record["tracker_running_at_exit"] = scenario.tracker.running()
        scenario.settle(timeout=120)
        scenario.measure(watch, moment)
    finish(scenario, run, code, (0, 1), new_sets=1)
    assert record["tracker_running_at_exit"]
    if engine == "mysql":
        wait_until(lambda: (container_state(scenario.tracker.mysql_container_name) or {})
                   .get("Health", {}).get("Status") == "healthy", 120, what="MySQL healthy")
    scenario.assert_later_backup_works(tmp_path)
