"""`torrust-maint migrate` from the installed .deb, in the Debian 12 and 13 host containers with
real systemd and a real cron daemon: a deployer-style /etc/cron.d job and its backup.conf are
converted, the job is commented out, torrust-backup.timer is enabled at the cron job's time,
and `--undo` puts every byte back and the timer as it was.

The tests of this module run in order on one host container per release (see conftest.py).
"""

from __future__ import annotations

import re
import time

from tests.system.conftest import Host, timing

TIMER = "torrust-backup.timer"
CONFIG = "/etc/torrust-maint/torrust-maint.toml"
CRON_FILE = "/etc/cron.d/tracker-backup"
STUB = "/usr/local/bin/maintenance-backup.sh"
DROP_IN = f"/etc/systemd/system/{TIMER}.d/migrated-from-cron.conf"
PASSWORD = "n0t-printed-Secret"
UNITS = ("torrust-backup.service", "torrust-verify.service", "torrust-recover.service")
SANDBOX_DROP_INS = [f"/etc/systemd/system/{unit}.d/zz-test-migrate.conf" for unit in UNITS]


def cron_text(host: Host) -> str:
    return ("# Installed by the Torrust deployer: nightly maintenance window.\n"
            "SHELL=/bin/bash\n"
            "PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n"
            f"17 4 * * * root cd {host.stack.compose_dir} && {STUB} "
            ">> /var/log/tracker-backup.log 2>&1\n")


def fingerprint(host: Host, path: str) -> str:
    """Bytes, mode, owner and mtime of a file in the host container."""
    digest = host.run("sha256sum", path).stdout.split()[0]
    return digest + " " + host.run("stat", "--format", "%a %u %g %Y", path).stdout.strip()


def set_up_legacy_host(host: Host) -> None:
    """The legacy cron backup, its settings, and our configuration pointing at the test-bed
    deployment (the shipped conffile, edited as an operator would)."""
    compose = host.stack.compose_dir
    shipped = host.run("cat", CONFIG).stdout
    host.write(CONFIG, shipped.replace('"/opt/torrust', f'"{compose}'))
    database_dir = compose / "storage/tracker/lib"
    for unit, drop_in in zip(UNITS, SANDBOX_DROP_INS, strict=True):
        extra = f" {database_dir}" if unit == "torrust-backup.service" else ""
        host.write(drop_in, f"[Service]\nReadWritePaths={host.backup_dir}{extra}\n")
    host.run("systemctl", "daemon-reload")
    etc = compose / "storage/backup/etc"
    host.write(str(etc / "backup.conf"),
               "BACKUP_RETENTION_DAYS=7\nBACKUP_PATHS_FILE=/etc/backup/backup-paths.txt\n"
               "DB_TYPE=sqlite\nDB_PATH=/data/storage/tracker/lib/database/sqlite3.db\n"
               f"DB_PASSWORD='{PASSWORD}'\n")
    host.write(str(etc / "backup-paths.txt"),
               "# archived with each backup\n/data/storage/tracker/etc\n/data/.env\n")
    host.write(STUB, "#!/bin/sh\ntouch /var/tmp/legacy-backup-ran\n")
    host.run("chmod", "755", STUB)
    host.write(CRON_FILE, cron_text(host))
    host.run("chmod", "644", CRON_FILE)


def clean_up(host: Host) -> None:
    host.run("torrust-maint", "migrate", "--undo", check=False)
    host.run("rm", "-f", CRON_FILE, STUB, *SANDBOX_DROP_INS)
    host.run("systemctl", "disable", "--now", TIMER)
    host.run("systemctl", "daemon-reload")


def test_install_with_cron_running(host: Host):
    host.run("apt-get", "update", "-qq")
    host.run("apt-get", "install", "--yes", "--quiet", "--no-install-recommends",
             f"/mnt/dist/{host.deb.name}", timeout=600)
    assert host.run("systemctl", "is-active", "cron").stdout.strip() == "active"
    assert host.run("systemctl", "is-enabled", TIMER, check=False).stdout.strip() == "disabled"


def test_migrate_switches_to_the_timer_and_undo_puts_cron_back(host: Host):
    set_up_legacy_host(host)
    try:
        started = time.monotonic()
        cron_before, config_before = fingerprint(host, CRON_FILE), fingerprint(host, CONFIG)
        checked = host.run("torrust-maint", "check", check=False)
        assert f"warning: the legacy cron backup is still active ({CRON_FILE}:4" \
            in checked.stdout, checked.stdout + checked.stderr

        refused = host.run("torrust-maint", "migrate", check=False)
        assert refused.returncode == 2 and "--write-config" in refused.stderr, refused
        assert fingerprint(host, CRON_FILE) == cron_before
        assert fingerprint(host, CONFIG) == config_before

        migrated = host.run("torrust-maint", "migrate", "--write-config", check=False)
        output = migrated.stdout + migrated.stderr
        assert migrated.returncode == 0, output
        assert PASSWORD not in output
        assert "DB_PASSWORD: set (not shown)" in output
        assert "warning: backup.conf's DB_PATH" not in output  # the tracker's database
        assert host.run("cat", CRON_FILE).stdout == cron_text(host).replace(
            "17 4 * * *", "# disabled by torrust-maint migrate: 17 4 * * *")
        assert "OnCalendar=*-*-* 04:17:00\n" in host.run("cat", DROP_IN).stdout
        assert host.run("systemctl", "is-enabled", TIMER).stdout.strip() == "enabled"
        assert host.run("systemctl", "is-active", TIMER).stdout.strip() == "active"
        next_run = host.show(TIMER, "NextElapseUSecRealtime")
        assert re.search(r" 04:17:00 ", next_run), next_run
        assert "keep_daily = 8" in host.run("cat", CONFIG).stdout
        status = host.run("torrust-maint", "status", check=False).stdout
        assert "two maintenance windows" not in status and "legacy cron" not in status, status
        again = host.run("torrust-maint", "migrate", "--write-config")
        assert "the host is migrated already" in again.stdout

        undone = host.run("torrust-maint", "migrate", "--undo")
        assert "undone" in undone.stdout, undone.stdout
        assert fingerprint(host, CRON_FILE) == cron_before
        assert fingerprint(host, CONFIG) == config_before
        host.run("test", "!", "-e", DROP_IN)
        assert host.run("systemctl", "is-enabled", TIMER, check=False).stdout.strip() == \
            "disabled"
        assert host.run("systemctl", "is-active", TIMER, check=False).stdout.strip() == \
            "inactive"
        timing(host.distro, "migrate, second run and undo (s)", time.monotonic() - started)
    finally:
        clean_up(host)
