"""The .deb under real systemd, on Debian 12 and 13, driving a real (stand-in) tracker.

The tests of this module run in order on one host container per release (see conftest.py):
install, configure, a window via the unit, the timer, SIGKILL mid-window, purge.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.system.conftest import REPO, Host, compose_project, run, timing
from tests.testbed import stack as testbed
from torrust_maint.journal import MESSAGE_IDS
from torrust_maint.recovery import MARKER_NAME

SERVICE = "torrust-backup.service"
TIMER = "torrust-backup.timer"
VERIFY_SERVICE = "torrust-verify.service"
VERIFY_TIMER = "torrust-verify.timer"
RECOVER_SERVICE = "torrust-recover.service"
LOG_FILE = "/var/log/torrust-maint/torrust-maint.log"
STOP_TIMEOUT = 4  # the stand-in ignores SIGTERM: every docker stop takes this long
MAX_EXPOSURE = 2.5


# A JSON receiver for Apprise's json:// notices, run in the host container by systemd-run:
# it appends each POSTed body as one line to NOTICES.
RECEIVER_PORT = 8765
NOTICES = "/root/notices.jsonl"
RECEIVER = """\
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(sys.argv[2], "ab") as out:
            out.write(body.replace(b"\\n", b" ") + b"\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def notices(host: Host) -> list[dict]:
    """The notices the receiver in the host container got, oldest first."""
    done = host.run("cat", NOTICES, check=False)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def status_json(host: Host) -> tuple[int, dict]:
    done = host.run("torrust-maint", "status", "--json", check=False)
    return done.returncode, json.loads(done.stdout)


def exposure(text: str) -> float:
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text)
    assert found, text
    return float(found.group(1))


def sets(host: Host) -> list[Path]:
    return sorted(p for p in host.backup_dir.iterdir()
                  if p.is_dir() and (p / "manifest.json").exists())


def events(host: Host, kind: str, **options) -> list[dict]:
    return host.journal(f"MESSAGE_ID={MESSAGE_IDS[kind]}", **options)


def test_install_starts_and_enables_nothing(host: Host):
    started = time.monotonic()
    host.run("apt-get", "update", "-qq")
    host.run("apt-get", "install", "--yes", "--quiet", "--no-install-recommends",
             f"/mnt/dist/{host.deb.name}", timeout=600)
    timing(host.distro, "apt-get update + apt install ./torrust-maint_*.deb (s)",
           time.monotonic() - started)
    status = host.run("dpkg-query", "-W", "-f=${Status} ${Version}", "torrust-maint").stdout
    assert status.startswith("install ok installed"), status
    # The Docker CLI dependency (docker-cli | docker.io | docker-ce-cli): Debian 13 gets the
    # CLI alone; Debian 12 has it only in docker.io (its daemon units are masked here).
    docker_packages = host.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}${Package}\n",
                               "docker-cli", "docker.io", check=False).stdout
    installed = {line[3:] for line in docker_packages.splitlines() if line.startswith("ii")}
    assert installed == ({"docker-cli"} if host.distro == "trixie" else {"docker.io"})
    assert host.run("docker", "version", "--format", "{{.Server.Version}}").stdout.strip()
    assert host.run("systemctl", "is-enabled", TIMER, check=False).stdout.strip() == "disabled"
    assert host.run("systemctl", "is-active", TIMER, check=False).stdout.strip() == "inactive"
    assert host.run("systemctl", "is-active", SERVICE, check=False).stdout.strip() == "inactive"
    assert sets(host) == []
    assert not events(host, "window_started", unit=None)
    conffiles = host.run("dpkg-query", "-W", "-f=${Conffiles}", "torrust-maint").stdout
    assert "/etc/torrust-maint/torrust-maint.toml" in conffiles
    assert "/etc/logrotate.d/torrust-maint" in conffiles
    host.run("test", "-f", "/usr/share/man/man8/torrust-maint.8.gz")


def test_autopkgtest_smoke_and_units(host: Host):
    smoke = (REPO / "debian/tests/smoke").read_text()
    host.write("/tmp/smoke", smoke)
    done = host.run("sh", "/tmp/smoke")
    assert "smoke: ok" in done.stdout
    verify = host.run("systemd-analyze", "verify", "--man=no",
                      f"/lib/systemd/system/{SERVICE}", f"/lib/systemd/system/{TIMER}",
                      "/lib/systemd/system/torrust-notify@.service",
                      f"/lib/systemd/system/{VERIFY_SERVICE}",
                      f"/lib/systemd/system/{VERIFY_TIMER}")
    assert verify.stdout.strip() == "" and verify.stderr.strip() == "", verify
    score = exposure(host.run("systemd-analyze", "security", SERVICE).stdout)
    timing(host.distro, "systemd-analyze security torrust-backup.service", score)
    assert score <= MAX_EXPOSURE


def test_configure_and_check(host: Host):
    config = host.stack.config_toml(deployment_extra=f"stop_timeout = {STOP_TIMEOUT}\n")
    # The run state where systemd's StateDirectory= puts it, as on a real host.
    config = config.replace(f'[state]\ndirectory = "{host.stack.compose_dir.parent / "state"}"\n',
                            "")
    config += f'\n[logging]\nfile = "{LOG_FILE}"\n'
    # The URL in a root-only file, as the README advises: the notify unit must read it.
    config += '\n[notify]\nurls_file = "/etc/torrust-maint/notify-urls"\n'
    host.run("install", "-m", "600", "/dev/null", "/etc/torrust-maint/notify-urls")
    host.write("/etc/torrust-maint/notify-urls",
               f"# test receiver\njson://127.0.0.1:{RECEIVER_PORT}/torrust-notices\n")
    host.write("/root/receiver.py", RECEIVER)
    host.run("systemd-run", "--unit=notice-receiver", "/usr/bin/python3", "/root/receiver.py",
             str(RECEIVER_PORT), NOTICES)
    host.write("/etc/torrust-maint/torrust-maint.toml", config)
    # `check` names each unit that could not write what it must (defect: a database outside
    # the unit's ReadWritePaths= passed check and failed every nightly run).
    refused = host.run("torrust-maint", "check", check=False)
    assert refused.returncode == 2, refused.stdout
    for unit in (SERVICE, VERIFY_SERVICE, RECOVER_SERVICE):
        assert f"outside the ReadWritePaths= of {unit}" in refused.stderr, refused.stderr
    # The README's drop-ins for a deployment other than /opt/torrust.
    database_dir = host.stack.compose_dir / "storage/tracker/lib"
    host.write(f"/etc/systemd/system/{SERVICE}.d/backup-directory.conf",
               f"[Service]\nReadWritePaths={host.backup_dir} {database_dir}\n")
    for unit in (VERIFY_SERVICE, RECOVER_SERVICE):
        host.write(f"/etc/systemd/system/{unit}.d/backup-directory.conf",
                   f"[Service]\nReadWritePaths={host.backup_dir}\n")
    host.run("systemctl", "daemon-reload")
    check = host.run("torrust-maint", "check")
    assert "notify: 1 URL(s) (json), on failure, recovery: ok" in check.stdout, check.stdout
    assert "127.0.0.1" not in check.stdout + check.stderr
    assert "problem" not in check.stdout.lower(), check.stdout
    assert check.stdout.splitlines()[-1] == "check: ok", check.stdout


def test_service_runs_a_real_window(host: Host):
    started = time.monotonic()
    host.run("systemctl", "start", SERVICE, timeout=300)
    timing(host.distro, "systemctl start torrust-backup.service (s)", time.monotonic() - started)
    assert host.show(SERVICE, "Result") == "success"
    assert host.show(SERVICE, "ExecMainStatus") == "0"
    [backup_set] = sets(host)
    manifest = json.loads((backup_set / "manifest.json").read_text())
    assert manifest["complete"] and manifest["database"]["driver"] == "sqlite3"
    assert manifest["downtime_seconds"] >= STOP_TIMEOUT
    host.stack.wait_healthy(timeout=30)

    [committed] = events(host, "backup_committed")
    assert committed["_SYSTEMD_UNIT"] == SERVICE
    assert committed["SYSLOG_IDENTIFIER"] == "torrust-maint"
    assert committed["TORRUST_EVENT"] == "backup_committed"
    assert committed["BACKUP_ID"] == manifest["id"] == backup_set.name
    assert committed["DB_DRIVER"] == "sqlite3"
    assert int(committed["BACKUP_BYTES"]) == sum(a["size"] for a in manifest["artifacts"])
    assert float(committed["TRACKER_DOWNTIME_SEC"]) == manifest["downtime_seconds"]
    assert committed["PRIORITY"] == "6"
    [stopped] = events(host, "tracker_stopped")
    assert float(stopped["TRACKER_STOP_SEC"]) >= STOP_TIMEOUT
    [started_again] = events(host, "tracker_started")
    assert float(started_again["TRACKER_DOWNTIME_SEC"]) == manifest["downtime_seconds"]
    assert events(host, "window_started")
    assert not events(host, "unit_failed")
    timing(host.distro, "tracker downtime under systemd (s)", manifest["downtime_seconds"])

    log = host.run("cat", LOG_FILE).stdout
    assert f"[backup_committed BACKUP_BYTES={committed['BACKUP_BYTES']}" in log, log
    assert f"BACKUP_ID={manifest['id']}" in log
    modes = host.run("stat", "-c", "%a", "/var/log/torrust-maint", LOG_FILE).stdout.split()
    assert modes == ["750", "640"]  # LogsDirectoryMode=; the file as logrotate creates it


def test_timer_is_listed_once_enabled(host: Host):
    host.run("systemctl", "enable", "--now", TIMER)
    listing = host.run("systemctl", "list-timers", "--all", "--no-pager").stdout
    assert TIMER in listing and SERVICE in listing, listing
    assert host.run("systemctl", "is-enabled", TIMER).stdout.strip() == "enabled"
    assert host.show(TIMER, "NextElapseUSecRealtime")
    calendar = host.show(TIMER, "TimersCalendar")
    assert "OnCalendar=*-*-* 03:00:00" in calendar, calendar
    host.run("systemctl", "disable", "--now", TIMER)


def test_sigkill_mid_window_leaves_the_tracker_running(host: Host):
    before = len(sets(host))
    host.run("systemctl", "start", "--no-block", SERVICE)
    # STATUS= from sd_notify shows the phase; the stand-in ignores SIGTERM, so the
    # `docker stop` of the window lasts STOP_TIMEOUT seconds: kill the service inside it.
    status = host.wait_for("STATUS= of the window",
                           lambda: "stopping tracker" in host.show(SERVICE, "StatusText")
                           and host.show(SERVICE, "StatusText"), timeout=60, every=0.05)
    assert host.stack.container_name in status
    assert (host.backup_dir / MARKER_NAME).exists()
    status_text = host.run("systemctl", "status", "--no-pager", SERVICE, check=False).stdout
    assert "Status: \"maintenance window" in status_text, status_text
    main_pid = host.show(SERVICE, "MainPID")
    assert main_pid not in ("", "0")
    host.run("sh", "-c", 'kill -KILL "$1"', "kill", main_pid)  # minbase has no /bin/kill
    killed = time.monotonic()

    def settled():
        if host.show(SERVICE, "ActiveState") not in ("failed", "inactive"):
            return False
        state = host.stack.state()
        return state.get("Running") and state.get("Health", {}).get("Status") == "healthy"

    host.wait_for("service settled and tracker healthy", settled, timeout=90, every=0.2)
    recovered = time.monotonic() - killed
    timing(host.distro, "SIGKILL -> unit done and tracker healthy again (s)", recovered)
    assert recovered < STOP_TIMEOUT + 5 + 20, recovered  # stop_timeout + STOP_GRACE + slack
    assert host.show(SERVICE, "Result") == "signal"
    assert host.stack.running()
    assert not (host.backup_dir / MARKER_NAME).exists()
    assert len(sets(host)) == before  # nothing half-written looks like a set
    [recovered_event] = events(host, "window_recovered")
    assert host.stack.container_name in recovered_event["TRACKER_CONTAINERS"]
    failure = host.wait_for("OnFailure= record",
                            lambda: events(host, "unit_failed"), timeout=30, every=0.5)
    assert failure[-1]["SERVICE_RESULT"] == "signal"
    assert failure[-1]["EXIT_STATUS"] in ("KILL", "9")
    assert failure[-1]["FAILED_UNIT"] == SERVICE
    assert failure[-1]["_SYSTEMD_UNIT"] == f"torrust-notify@{SERVICE}.service"

    # The killed run could not record or report itself: torrust-notify@.service (OnFailure=)
    # did, once, with what systemd says of the run.
    notify_unit = f"torrust-notify@{SERVICE}.service"
    host.wait_for("the notify unit done",
                  lambda: host.show(notify_unit, "ActiveState") in ("inactive", "failed"),
                  timeout=60, every=0.2)
    assert host.show(notify_unit, "Result") == "success"
    [killed_notice] = host.wait_for("the failure notice", lambda: notices(host), timeout=30)
    timing(host.distro, "SIGKILL -> failure notice received (s)", time.monotonic() - killed)
    assert killed_notice["title"].startswith("torrust-maint: backup FAILED on ")
    assert killed_notice["type"] == "failure"
    assert f"{SERVICE} was killed by a signal (KILL)" in killed_notice["message"]
    assert "first failure (the run before it did not fail)" in killed_notice["message"]
    assert f"deployment: {host.stack.compose_dir}" in killed_notice["message"]
    code, data = status_json(host)
    assert code == 1 and data["ok"] is False
    assert data["last_run"]["outcome"] == "failure"
    assert data["last_run"]["service_result"] == "signal"
    assert data["consecutive_failures"] == 1
    # Started again by hand (a second OnFailure= of the same run): still one notice.
    host.run("systemctl", "start", notify_unit)
    assert len(notices(host)) == 1

    # Nothing is wedged: the next run takes the lock and commits a set, and its success
    # after the failure is a recovery notice, which names the timer's next run.
    host.run("systemctl", "enable", "--now", TIMER)
    host.run("systemctl", "start", SERVICE, timeout=300)
    assert host.show(SERVICE, "Result") == "success"
    assert len(sets(host)) == before + 1
    killed_notice, recovered_notice = host.wait_for(
        "the recovery notice", lambda: len(notices(host)) == 2 and notices(host), timeout=60)
    assert "backup recovered" in recovered_notice["title"]
    assert recovered_notice["type"] == "success"
    assert "after 1 failed run in a row" in recovered_notice["message"]
    assert f"backup: {sets(host)[-1].name}" in recovered_notice["message"]
    # 03:00 plus up to 5 min (RandomizedDelaySec=; systemd draws it again at each start)
    assert re.search(r"^next scheduled run: \d{4}-\d\d-\d\dT03:0[0-5]:\d\d",
                     recovered_notice["message"], re.M), recovered_notice["message"]
    host.run("systemctl", "disable", "--now", TIMER)
    code, data = status_json(host)
    assert code == 0 and data["ok"] is True, data["problems"]
    assert data["consecutive_failures"] == 0
    assert data["last_success"]["backup_id"] == sets(host)[-1].name
    state_mode = host.run("stat", "-c", "%a %U", "/var/lib/torrust-maint",
                          "/var/lib/torrust-maint/state.json").stdout.split("\n")
    assert state_mode[:2] == ["700 root", "600 root"], state_mode


def test_power_loss_mid_window_is_recovered_at_boot(host: Host):
    """A reboot mid-window: the guardian and ExecStopPost= die with the host, the marker
    survives on disk, and torrust-recover.service (enabled on installation) starts the
    tracker at boot, not at the next 03:00 run."""
    assert host.run("systemctl", "is-enabled", RECOVER_SERVICE).stdout.strip() == "enabled"
    host.run("systemctl", "start", "--no-block", SERVICE)
    host.wait_for("the window's docker stop",
                  lambda: "stopping tracker" in host.show(SERVICE, "StatusText"),
                  timeout=60, every=0.05)
    assert (host.backup_dir / MARKER_NAME).exists()
    run(["docker", "kill", host.name])  # power loss: systemd and every process go at once
    lost = time.monotonic()
    host.wait_for("the tracker stopped by the window's docker stop",
                  lambda: not host.stack.running(), timeout=STOP_TIMEOUT + 30, every=0.2)
    run(["docker", "start", host.name])
    host.wait_for("systemctl is-system-running after the reboot",
                  lambda: host.run("systemctl", "is-system-running", check=False)
                  .stdout.strip() in ("running", "degraded"), timeout=90, every=0.5)

    def healthy():
        state = host.stack.state()
        return state.get("Running") and state.get("Health", {}).get("Status") == "healthy"

    host.wait_for("tracker healthy after the boot", healthy, timeout=90, every=0.2)
    timing(host.distro, "power loss mid-window -> tracker healthy after boot (s)",
           time.monotonic() - lost)
    assert not (host.backup_dir / MARKER_NAME).exists()
    assert host.show(RECOVER_SERVICE, "Result") == "success"
    recovered = events(host, "window_recovered", unit=RECOVER_SERVICE)
    assert recovered and host.stack.container_name in recovered[-1]["TRACKER_CONTAINERS"]
    # Nothing is wedged: the next run takes the lock and commits a set.
    before = len(sets(host))
    host.run("systemctl", "start", SERVICE, timeout=300)
    assert host.show(SERVICE, "Result") == "success"
    assert len(sets(host)) == before + 1


SERVER_PASSWORDS = {"mysql": (testbed.MYSQL_USER_PASSWORD, "root-secret-pw"),
                    "postgresql": (testbed.POSTGRES_USER_PASSWORD,)}


@pytest.mark.parametrize("driver", ["mysql", "postgresql"])
def test_server_deployment_under_systemd(host: Host, driver: str):
    """The same unit and journal records for a MySQL deployment (the deployer's compose file,
    mysql:8.4 = Debian's MariaDB here) and a PostgreSQL one (postgres:17 = Debian 13's): the
    dump runs in the database container, the connection goes to its address on the compose
    network; the set is verified in a throwaway server; the password is never logged."""
    root = host.stack.compose_dir.parents[1] / driver
    tracker = testbed.TrackerStack(root / "opt/torrust", f"tm-st-{host.distro}-{driver}-tracker",
                                   driver=driver)
    project = f"tm-st-{host.distro}-{driver}"
    drop_in = f"/etc/systemd/system/{SERVICE}.d/backup-directory-{driver}.conf"
    sqlite_config = host.run("cat", "/etc/torrust-maint/torrust-maint.toml").stdout
    try:
        with compose_project(project):
            tracker.down()
            tracker.remove_files()
            tracker.create()
            tracker.up(timeout=120)
        backup_dir = tracker.compose_dir / "storage/backup"
        host.write("/etc/torrust-maint/torrust-maint.toml", tracker.config_toml())
        host.write(drop_in, f"[Service]\nReadWritePaths={backup_dir}\n")
        host.run("systemctl", "daemon-reload")
        cursor = host.run("journalctl", "--show-cursor", "--lines", "0", "--quiet").stdout
        after = cursor.strip().rsplit("cursor: ", 1)[-1]
        started = time.monotonic()
        host.run("systemctl", "start", SERVICE, timeout=300)
        timing(host.distro, f"systemctl start torrust-backup.service, {driver} (s)",
               time.monotonic() - started)
        assert host.show(SERVICE, "Result") == "success"
        [backup_set] = [p for p in backup_dir.iterdir() if (p / "manifest.json").exists()]
        manifest = json.loads((backup_set / "manifest.json").read_text())
        assert manifest["database"]["driver"] == driver
        assert manifest["verification"]["outcome"] == "passed"
        committed = [e for e in events(host, "backup_committed")
                     if e["BACKUP_ID"] == backup_set.name]
        assert len(committed) == 1
        assert committed[0]["DB_DRIVER"] == driver
        assert int(committed[0]["BACKUP_BYTES"]) == sum(a["size"] for a in manifest["artifacts"])
        assert float(committed[0]["TRACKER_DOWNTIME_SEC"]) == manifest["downtime_seconds"]
        timing(host.distro, f"tracker downtime under systemd, {driver} (s)",
               manifest["downtime_seconds"])
        everything = host.run("journalctl", "--no-pager", "--output", "json",
                              f"--after-cursor={after}").stdout
        for password in SERVER_PASSWORDS[driver]:
            assert password not in everything
    finally:
        host.write("/etc/torrust-maint/torrust-maint.toml", sqlite_config)
        # A ReadWritePaths= entry that no longer exists would stop the unit from starting.
        host.run("rm", "-f", drop_in)
        host.run("systemctl", "daemon-reload")
        with compose_project(project):
            tracker.down()
        tracker.remove_files()


def test_verify_service_and_its_weekly_timer(host: Host):
    latest = sets(host)[-1]
    started = time.monotonic()
    host.run("systemctl", "start", VERIFY_SERVICE, timeout=300)
    timing(host.distro, "systemctl start torrust-verify.service (s)", time.monotonic() - started)
    assert host.show(VERIFY_SERVICE, "Result") == "success"
    verified = events(host, "set_verified", unit=VERIFY_SERVICE)
    assert latest.name in {record["BACKUP_ID"] for record in verified}
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["verification"]["outcome"] == "passed"

    host.run("systemctl", "enable", "--now", VERIFY_TIMER)
    listing = host.run("systemctl", "list-timers", "--all", "--no-pager").stdout
    assert VERIFY_TIMER in listing and VERIFY_SERVICE in listing, listing
    assert "OnCalendar=Sun *-*-* 05:00:00" in host.show(VERIFY_TIMER, "TimersCalendar")
    host.run("systemctl", "disable", "--now", VERIFY_TIMER)


def test_wal_snapshot_under_the_hardened_unit(host: Host):
    """A WAL-mode database (like the Torrust demo tracker's) on a filesystem without reflinks
    is snapshotted by a read transaction on the live file: the unit must be able to open it,
    and the -wal/-shm it may create must stay the tracker's (uid 1000 here)."""
    root = host.stack.compose_dir.parents[1] / "wal"
    tracker = testbed.TrackerStack(root / "opt/torrust", f"tm-st-{host.distro}-wal-tracker",
                                   journal_mode="wal", user="1000:1000")
    sqlite_config = host.run("cat", "/etc/torrust-maint/torrust-maint.toml").stdout
    try:
        tracker.down()
        tracker.remove_files()
        tracker.create()
        tracker.up(timeout=120)
        tracker.wait_for_writes(200)
        backup_dir = tracker.compose_dir / "storage/backup"
        database_dir = tracker.compose_dir / "storage/tracker/lib"
        host.write("/etc/torrust-maint/torrust-maint.toml", tracker.config_toml())
        # The README's drop-in for a deployment outside /opt/torrust.
        host.write(f"/etc/systemd/system/{SERVICE}.d/deployment-wal.conf",
                   f"[Service]\nReadWritePaths={backup_dir} {database_dir}\n")
        host.run("systemctl", "daemon-reload")
        host.run("systemctl", "start", SERVICE, timeout=300)
        assert host.show(SERVICE, "Result") == "success"
        [backup_set] = [p for p in backup_dir.iterdir() if (p / "manifest.json").exists()]
        manifest = json.loads((backup_set / "manifest.json").read_text())
        assert manifest["database"]["snapshot_method"] == "wal-read"
        assert manifest["database"]["snapshot_reader"] == "pages"  # under the hardened unit
        assert manifest["verification"]["outcome"] == "passed"
        timing(host.distro, "tracker downtime under systemd, SQLite WAL (s)",
               manifest["downtime_seconds"])
        rows = manifest["database"]["tables"]["torrents"]
        tracker.wait_for_writes(rows + 200)  # the tracker writes on after the window
        for suffix in ("", "-wal", "-shm"):
            info = Path(f"{tracker.db_host_path}{suffix}").stat()
            assert (info.st_uid, info.st_gid) == (1000, 1000), suffix

        # The installed restore: staged beside the live file, swapped in by renames, the state
        # from before kept in a verified safety set; the tracker's uid keeps its database.
        done = host.run("torrust-maint", "restore", backup_set.name, "--yes", timeout=300)
        assert f"restored set {backup_set.name}" in done.stdout, done.stdout
        assert tracker.startup_seqs()[-1] == rows  # started on exactly the restored state
        tracker.wait_healthy(timeout=30)
        [safety] = [p for p in backup_dir.iterdir() if (p / "manifest.json").exists()
                    and p.name != backup_set.name]
        safety_manifest = json.loads((safety / "manifest.json").read_text())
        assert safety_manifest["pre_restore"] == {"restore_of": backup_set.name,
                                                  "kind": "safety"}
        assert safety_manifest["verification"]["outcome"] == "passed"
        assert safety_manifest["database"]["tables"]["torrents"] >= rows + 200
        assert sorted(p.name for p in database_dir.iterdir()
                      if "torrust-maint" in p.name) == []  # nothing set aside is left
        info = tracker.db_host_path.stat()
        assert (info.st_uid, info.st_gid) == (1000, 1000)
        assert f"the state before the restore is in safety set {safety.name}" in done.stdout
        timing(host.distro, "restore downtime, SQLite WAL (s)",
               safety_manifest["downtime_seconds"])
    finally:
        host.write("/etc/torrust-maint/torrust-maint.toml", sqlite_config)
        host.run("rm", "-f", f"/etc/systemd/system/{SERVICE}.d/deployment-wal.conf")
        host.run("systemctl", "daemon-reload")
        tracker.down()
        tracker.remove_files()


def test_purge_removes_config_never_backups(host: Host):
    kept = sets(host)
    assert kept
    host.run("systemctl", "enable", "--now", TIMER)
    host.run("apt-get", "remove", "--yes", "--quiet", "torrust-maint")
    assert host.run("systemctl", "is-active", TIMER, check=False).stdout.strip() != "active"
    host.run("test", "-f", "/etc/torrust-maint/torrust-maint.toml")  # remove keeps the config
    host.run("apt-get", "purge", "--yes", "--quiet", "torrust-maint")
    assert host.run("test", "-e", "/etc/torrust-maint", check=False).returncode == 1
    assert host.run("test", "-e", "/var/log/torrust-maint", check=False).returncode == 1
    assert sets(host) == kept
    assert host.stack.running()
