"""Issue 11's drill, under real systemd: host A (Debian 12) backs up and uploads off-site
through torrust-offsite.service (started by the backup's success) to a real REST server
(`rclone serve restic`, in a container); the weekly verify also checks the off-site copy.
Then A and its disk are destroyed. A fresh host B (Debian 13) gets the .deb, the same
[offsite] settings, and runs `restore --from-offsite latest --with-config --yes`: the
tracker on B must start on exactly the set's transactions 1..N.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import backup_state, decompress
from tests.offsite_servers import RestServer
from tests.system.conftest import REPO, ROOT, Host, compose_project, run, start_host, timing
from tests.testbed import stack as testbed

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import expected_state  # noqa: E402

PASSWORD = "drill-offsite-pass-7Qe"
REST_PASSWORD = "drill-rest-pass-K3v"
PROJECT = "tm-st-drill"
DEPLOYMENT_ROOT = ROOT / "drill"
COMPOSE_DIR = DEPLOYMENT_ROOT / "opt/torrust"
BACKUP_SERVICE = "torrust-backup.service"
OFFSITE_SERVICE = "torrust-offsite.service"
CHECK_SERVICE = "torrust-offsite-check.service"
VERIFY_SERVICE = "torrust-verify.service"


def config_text(repository: str) -> str:
    """A's and B's configuration: the same repository and host name (tracker-a)."""
    backup_dir = COMPOSE_DIR / "storage/backup"
    return (f'[deployment]\ncompose_dir = "{COMPOSE_DIR}"\n\n'
            f'[backup]\ndirectory = "{backup_dir}"\n\n'
            f'[offsite]\nrepository = "{repository}"\nhost = "tracker-a"\n')


def boot(name: str, distro: str, deb: Path) -> Host:
    """A fresh systemd host container with the package, restic and compose installed."""
    start_host(name, distro, DEPLOYMENT_ROOT)
    host = Host(distro, name, testbed.TrackerStack(COMPOSE_DIR, f"{PROJECT}-tracker"), deb)
    host.wait_for("systemctl is-system-running", lambda: host.run(
        "systemctl", "is-system-running", check=False).stdout.strip() in ("running", "degraded"),
        timeout=60)
    host.run("apt-get", "update", "-qq", timeout=300)
    host.run("apt-get", "install", "--yes", "--quiet", "--no-install-recommends",
             f"/mnt/dist/{deb.name}", "restic", "docker-compose", timeout=900)
    return host


def configure(host: Host, repository: str) -> None:
    """The operator's steps: the password in a 0600 file, the config (0600: it holds the
    REST server's password in the repository URL)."""
    host.run("install", "-m", "600", "/dev/null", "/etc/torrust-maint/offsite-password")
    host.write("/etc/torrust-maint/offsite-password", PASSWORD + "\n")
    host.write("/etc/torrust-maint/torrust-maint.toml", config_text(repository))
    host.run("chmod", "600", "/etc/torrust-maint/torrust-maint.toml")


def wait_finished(host: Host, unit: str, timeout: float = 300) -> str:
    """The Result= of a oneshot unit once it ran and is inactive again."""
    def finished():
        if host.show(unit, "ExecMainExitTimestampMonotonic") in ("", "0"):
            return None
        return host.show(unit, "Result") if host.show(unit, "ActiveState") in (
            "inactive", "failed") else None
    return host.wait_for(f"{unit} finished", finished, timeout=timeout, every=0.5)


def no_secret(text: str) -> None:
    assert PASSWORD not in text and REST_PASSWORD not in text


@pytest.fixture(scope="module")
def rest_server():
    server = RestServer("st-drill", password=REST_PASSWORD)
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def deployment(engine):
    shutil.rmtree(DEPLOYMENT_ROOT, ignore_errors=True)
    tracker = testbed.TrackerStack(COMPOSE_DIR, f"{PROJECT}-tracker")
    with compose_project(PROJECT):
        tracker.down()
        tracker.create()
        # The project name travels with .env (A's config files go off-site with each set).
        with open(COMPOSE_DIR / ".env", "a") as env:
            env.write(f"COMPOSE_PROJECT_NAME={PROJECT}\n")
        tracker.up()
    yield tracker
    run(["docker", "rm", "--force", "tm-st-drill-a", "tm-st-drill-b"], check=False)
    with compose_project(PROJECT):
        tracker.down()
    run(["docker", "rm", "--force", tracker.container_name], check=False)
    shutil.rmtree(DEPLOYMENT_ROOT, ignore_errors=True)


def test_drill_a_lost_host_is_rebuilt_from_offsite(deployment, rest_server, deb, tmp_path):
    tracker = deployment
    repository = rest_server.url("drill")
    tracker.wait_for_writes(50)

    # -- host A: backs up under systemd; the backup's success uploads the set -------------
    a = boot("tm-st-drill-a", "bookworm", deb)
    configure(a, repository)
    backup_dir = COMPOSE_DIR / "storage/backup"
    database_dir = COMPOSE_DIR / "storage/tracker/lib"
    a.write(f"/etc/systemd/system/{BACKUP_SERVICE}.d/backup-directory.conf",
            f"[Service]\nReadWritePaths={backup_dir} {database_dir}\n")
    for unit in (VERIFY_SERVICE, "torrust-recover.service"):
        a.write(f"/etc/systemd/system/{unit}.d/backup-directory.conf",
                f"[Service]\nReadWritePaths={backup_dir}\n")
    a.run("systemctl", "daemon-reload")
    no_secret(a.run("torrust-maint", "offsite", "init").stdout)
    check = a.run("torrust-maint", "check")
    assert "reachable, opens with the password" in check.stdout, check.stdout
    no_secret(check.stdout + check.stderr)

    a.run("systemctl", "start", BACKUP_SERVICE, timeout=300)
    started = time.monotonic()
    assert wait_finished(a, OFFSITE_SERVICE) == "success", a.run(
        "journalctl", "--no-pager", "-u", OFFSITE_SERVICE).stdout
    timing("bookworm", "torrust-offsite.service after the backup (s)",
           time.monotonic() - started)
    [uploaded] = a.journal("TORRUST_EVENT=offsite_uploaded", unit=OFFSITE_SERVICE)
    [set_path] = [p for p in backup_dir.iterdir() if p.name[:1].isdigit()]
    assert uploaded["BACKUP_ID"] == set_path.name
    shown = a.run("systemctl", "show", OFFSITE_SERVICE).stdout
    journal = a.run("journalctl", "--no-pager", "-o", "verbose").stdout
    no_secret(shown + journal)
    listed = a.run("torrust-maint", "list").stdout
    assert f"off-site ({uploaded['SNAPSHOT_ID'][:8]})" in listed, listed

    # The weekly verify pulls in the off-site check and restores the fetched copy too.
    a.run("systemctl", "start", VERIFY_SERVICE, timeout=600)
    assert a.show(CHECK_SERVICE, "Result") == "success", a.run(
        "journalctl", "--no-pager", "-u", CHECK_SERVICE).stdout
    verify_log = a.run("journalctl", "--no-pager", "-u", VERIFY_SERVICE).stdout
    assert f"{set_path.name} (off-site copy): verified" in verify_log, verify_log

    manifest = json.loads((set_path / "manifest.json").read_text())
    database = next(a for a in manifest["artifacts"] if a["name"] == "database")
    n_set, contents = backup_state(decompress(dict(database, path=str(set_path /
                                                                      database["path"])),
                                              tmp_path / "set.sqlite3"))
    assert n_set > 0 and contents == expected_state(n_set)

    # -- A is lost: the host, its tracker, its disk (deployment, database, backups) --------
    run(["docker", "rm", "--force", a.name])
    with compose_project(PROJECT):
        tracker.down()
    shutil.rmtree(DEPLOYMENT_ROOT)
    DEPLOYMENT_ROOT.mkdir(parents=True)

    # -- host B: fresh, from the .deb; the same [offsite] settings ------------------------
    drill_started = time.monotonic()
    b = boot("tm-st-drill-b", "trixie", deb)
    configure(b, repository)
    offsite = b.run("torrust-maint", "list", "--offsite").stdout
    assert set_path.name in offsite and "tracker-a" in offsite, offsite
    restore_started = time.monotonic()
    restored = b.run("torrust-maint", "restore", "--from-offsite", "latest", "--with-config",
                     "--yes", timeout=900)
    restore_seconds = time.monotonic() - restore_started
    drill_seconds = time.monotonic() - drill_started
    timing("trixie", "restore --from-offsite latest --with-config (s)", restore_seconds)
    timing("trixie", "drill: fresh host B booted, installed, restored (s)", drill_seconds)
    assert "config files put back (they were absent): .env, docker-compose.yml" in \
        restored.stdout, restored.stdout
    no_secret(restored.stdout + restored.stderr)
    tracker.wait_healthy(timeout=60)
    assert tracker.startup_seqs()[-1] == n_set  # B serves exactly the set: 1..N
    listed = json.loads(b.run("torrust-maint", "list", "--json").stdout)
    assert listed[0]["id"] == set_path.name and listed[0]["offsite"]["host"] == "tracker-a"
    assert listed[1]["kind"] == "safety"  # the fresh database B's stack created, kept
    print(f"drill: restore --from-offsite {restore_seconds:.1f} s; fresh host B booted, "
          f"installed and restored in {drill_seconds:.1f} s")
    subprocess.run(["docker", "rm", "--force", b.name], check=False, capture_output=True)
