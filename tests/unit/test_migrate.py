"""`torrust-maint migrate` on fixture host trees (legacy_cron.ROOT in tmp_path): the report,
the timer drop-in, the configuration, the --write-config rule, --dry-run and a second run
changing nothing, --undo restoring every byte, and check or systemctl failing. systemctl and
check are fakes; everything else (files, renames, modes, owners) is real."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.unit.conftest import FakeDockerCli, Stack, make_sqlite
from torrust_maint import cli, legacy_cron, timer_switch
from torrust_maint import config as config_module
from torrust_maint.actions import migrate, migrate_switch
from torrust_maint.docker import Docker
from torrust_maint.errors import ConfigError, MaintError

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-Pa55"
JOB = ("root cd /opt/torrust && /usr/local/bin/maintenance-backup.sh "
       ">> /var/log/tracker-backup.log 2>&1")
CRON_D = """\
# Installed by the Torrust deployer: nightly maintenance window.
SHELL=/bin/bash
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
{schedule} {job}
"""
ROOT_CRONTAB = """\
COMPOSE_DIR=/opt/torrust
LOG_FILE=/var/log/tracker-backup.log
# m h dom mon dow command
{schedule} /usr/local/bin/maintenance-backup.sh >> "$LOG_FILE" 2>&1
"""
SQLITE_CONF = """\
# Legacy backup settings
BACKUP_RETENTION_DAYS=7
BACKUP_PATHS_FILE="/etc/backup/backup-paths.txt"
export DB_TYPE='sqlite'
DB_PATH=/data/storage/tracker/lib/database/sqlite3.db  # the tracker's database
"""
MYSQL_CONF = f"""\
BACKUP_RETENTION_DAYS=14
BACKUP_PATHS_FILE=/etc/backup/backup-paths.txt
DB_TYPE=mysql
DB_HOST=mysql
DB_PORT=3306
DB_USER=torrust
DB_PASSWORD='{PASSWORD}'
DB_NAME=torrust_tracker
"""
PATHS = """\
# What the backup container archives
/data/storage/tracker/etc

/data/.env
/data/docker-compose.yml
"""
DROP_IN = timer_switch.DROP_IN


class FakeSystemctl:
    """systemctl on the fixture tree: enable/disable make the wants link, start/stop flip
    `active`; `fail` makes the next call of a verb exit 1."""

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[tuple[str, ...]] = []
        self.active = False
        self.fail: set[str] = set()

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        verb = args[0]
        if verb in self.fail:
            return subprocess.CompletedProcess(args, 1, "", f"Failed to {verb} unit.\n")
        wants = self.root / legacy_cron.TIMER_WANTS
        if verb == "is-active":
            return subprocess.CompletedProcess(args, 0 if self.active else 3, "", "")
        if verb == "enable" and not os.path.lexists(wants):
            wants.symlink_to("/lib/systemd/system/torrust-backup.timer")
        if verb == "disable":
            wants.unlink(missing_ok=True)
        if verb in ("start", "stop") or "--now" in args:
            self.active = verb in ("start", "enable")
        return subprocess.CompletedProcess(args, 0, "", "")

    def changes(self) -> list[tuple[str, ...]]:
        return [call for call in self.calls if call[0] != "is-active"]


@dataclass
class Host:
    """A legacy host tree: cron, the deployment's legacy settings, our configuration."""

    root: Path
    systemctl: FakeSystemctl
    checked: list[config_module.Config] = field(default_factory=list)
    check_problems: list[str] = field(default_factory=list)

    @property
    def compose(self) -> Path:
        return self.root / "opt/torrust"

    @property
    def config(self) -> Path:
        return self.root / "etc/torrust-maint/torrust-maint.toml"

    @property
    def cron_d(self) -> Path:
        return self.root / "etc/cron.d/tracker-backup"

    @property
    def crontab(self) -> Path:
        return self.root / legacy_cron.ROOT_CRONTAB

    @property
    def state(self) -> Path:
        return self.root / "var/lib/torrust-maint"

    @property
    def drop_in(self) -> Path:
        return self.root / DROP_IN

    def run(self, *, dry_run: bool = False, write_config: bool = False,
            undo: bool = False) -> int:
        # No tracker on this Docker: the DB_PATH comparison is skipped (tested on its own).
        return migrate.run(self.config, Docker(runner=FakeDockerCli()), dry_run=dry_run,
                           write_config=write_config, undo=undo)

    def fake_check(self, config, docker, echo) -> list[str]:
        self.checked.append(config)
        return list(self.check_problems)


def shipped_config(host_root: Path, compose: Path) -> str:
    """The package's conffile, pointing at the fixture deployment and state directory."""
    text = (REPO / "conf/torrust-maint.toml").read_text()
    text = text.replace('compose_dir = "/opt/torrust"', f'compose_dir = "{compose}"')
    text = text.replace('directory = "/opt/torrust/storage/backup"',
                        f'directory = "{compose}/storage/backup"')
    return text.replace('#directory = "/var/lib/torrust-maint"',
                        f'#directory = "/var/lib/torrust-maint"\ndirectory = '
                        f'"{host_root}/var/lib/torrust-maint"')


@pytest.fixture
def host(tmp_path, monkeypatch) -> Host:
    root = tmp_path / "root"
    fake = FakeSystemctl(root)
    made = Host(root, fake)
    for directory in ("etc/cron.d", "etc/systemd/system/timers.target.wants",
                      "run/systemd/system", "var/lib/torrust-maint", "etc/torrust-maint",
                      "opt/torrust/storage/backup/etc", "opt/torrust/storage/tracker/etc"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    made.cron_d.write_text(CRON_D.format(schedule="0 3 * * *", job=JOB))
    made.cron_d.chmod(0o644)
    etc = made.compose / "storage/backup/etc"
    (etc / "backup.conf").write_text(SQLITE_CONF)
    (etc / "backup-paths.txt").write_text(PATHS)
    made.config.write_text(shipped_config(root, made.compose))
    made.config.chmod(0o640)
    monkeypatch.setattr(legacy_cron, "ROOT", root)
    monkeypatch.setattr(timer_switch, "systemctl", fake)
    monkeypatch.setattr(migrate, "run_check", made.fake_check)
    return made


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file, directory and link under root: kind, mode, owner, bytes or target."""
    found: dict[str, tuple] = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory) / name
            info = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[key] = ("dir", info.st_mode, info.st_uid, info.st_gid)
            else:
                found[key] = ("file", info.st_mode, info.st_uid, info.st_gid, path.read_bytes())
    return found


def with_mtimes(root: Path, *paths: Path) -> dict[str, tuple]:
    return {**snapshot(root), **{str(p): (p.stat().st_mtime_ns,) for p in paths}}


def new_config(host: Host) -> config_module.Config:
    return config_module.parse(tomllib.loads(host.config.read_text()), host.config)


# -- the report, --dry-run and the --write-config rule -------------------------------------


def test_dry_run_reports_everything_and_changes_nothing(host, capsys):
    (host.compose / "storage/backup/etc/backup.conf").write_text(
        SQLITE_CONF + f"DB_PASSWORD={PASSWORD}\n")
    before = with_mtimes(host.root, host.cron_d, host.config)
    assert host.run(dry_run=True) == 0
    out = capsys.readouterr().out
    assert with_mtimes(host.root, host.cron_d, host.config) == before
    assert host.systemctl.changes() == []
    assert f"/etc/cron.d/tracker-backup:4: 0 3 * * *  {JOB.removeprefix('root ')}" in out
    assert "-> OnCalendar=*-*-* 03:00:00" in out
    assert "BACKUP_RETENTION_DAYS = '7'" in out
    assert "DB_PASSWORD: set (not shown)" in out
    assert PASSWORD not in out
    assert "keep_daily = 8, keep_last = keep_weekly = keep_monthly = 0" in out
    assert "/data/storage/tracker/etc -> storage/tracker/etc" in out
    assert "/data/.env -> .env" in out
    assert "-#keep_daily = 7\n+keep_daily = 8" in out
    assert '+database_driver = "sqlite3"' in out
    assert "  OnCalendar=\n  OnCalendar=*-*-* 03:00:00\n  RandomizedDelaySec=0" in out
    assert "(needs --write-config)" in out
    assert "comment out /etc/cron.d/tracker-backup:4" in out
    assert "systemctl enable --now torrust-backup.timer" in out
    assert len(host.checked) == 1  # check ran on the configuration as it would be
    assert host.checked[0].retention.keep_daily == 8


def test_a_config_change_without_write_config_stops_after_the_diff(host, capsys):
    before = with_mtimes(host.root, host.cron_d, host.config)
    with pytest.raises(ConfigError, match="rerun with --write-config"):
        host.run()
    out = capsys.readouterr().out
    assert "+keep_daily = 8" in out
    assert with_mtimes(host.root, host.cron_d, host.config) == before
    assert host.systemctl.calls == [] and host.checked == []


def test_the_cli_prints_the_write_config_rule_as_an_error(host, capsys):
    code = cli.main(["--config", str(host.config), "migrate"])
    assert code == 2
    err = capsys.readouterr().err
    assert "torrust-maint: error: " in err and "--write-config" in err
    assert "Traceback" not in err


# -- the switch-over, a second run, undo ----------------------------------------------------


def test_migrate_converts_the_schedule_and_settings_and_switches_over(host, capsys):
    cron_before = host.cron_d.read_bytes()
    config_text = host.config.read_text()
    assert host.run(write_config=True) == 0
    assert host.drop_in.read_text() == (
        "# Written by `torrust-maint migrate` from the legacy cron backup:\n"
        "#   /etc/cron.d/tracker-backup:4: 0 3 * * *\n"
        "# `torrust-maint migrate --undo` removes it and puts the cron line back.\n"
        "[Timer]\nOnCalendar=\nOnCalendar=*-*-* 03:00:00\nRandomizedDelaySec=0\n")
    lines = cron_before.decode().splitlines(keepends=True)
    lines[3] = "# disabled by torrust-maint migrate: " + lines[3]
    assert host.cron_d.read_text() == "".join(lines)
    assert stat.S_IMODE(host.cron_d.stat().st_mode) == 0o644
    assert legacy_cron.find_jobs() == []
    config = new_config(host)
    assert (config.retention.keep_last, config.retention.keep_daily,
            config.retention.keep_weekly, config.retention.keep_monthly) == (0, 8, 0, 0)
    assert config.backup.config_paths == ("storage/tracker/etc", ".env", "docker-compose.yml")
    assert config.backup.directory == host.compose / "storage/backup"
    assert config.deployment.database_driver == "sqlite3"
    assert stat.S_IMODE(host.config.stat().st_mode) == 0o640
    changed = [line for line in host.config.read_text().splitlines()
               if line not in config_text.splitlines()]
    assert changed == ['database_driver = "sqlite3"',
                       'config_paths = ["storage/tracker/etc", ".env", "docker-compose.yml"]',
                       "keep_last = 0", "keep_daily = 8", "keep_weekly = 0", "keep_monthly = 0"]
    assert host.systemctl.changes() == [("daemon-reload",),
                                        ("enable", "--now", "torrust-backup.timer")]
    assert legacy_cron.timer_enabled() and host.systemctl.active
    record = json.loads((host.state / "migrate/record.json").read_text())
    assert record["phase"] == "done"
    assert record["timer_before"] == {"enabled": False, "active": False}
    cron = next(item for item in record["files"] if item["kind"] == "cron")
    assert Path(cron["copy"]).read_bytes() == cron_before
    assert "migrated: torrust-backup.timer runs the backup now" in capsys.readouterr().out


def test_a_second_migrate_changes_nothing_and_says_so(host, capsys):
    host.run(write_config=True)
    after = with_mtimes(host.root, host.cron_d, host.config, host.drop_in)
    calls = len(host.systemctl.changes())
    capsys.readouterr()
    assert host.run(write_config=True) == 0
    assert "the host is migrated already" in capsys.readouterr().out
    assert with_mtimes(host.root, host.cron_d, host.config, host.drop_in) == after
    assert len(host.systemctl.changes()) == calls


def test_undo_puts_every_byte_mode_and_the_timer_back(host, capsys):
    before = with_mtimes(host.root, host.cron_d, host.config)
    host.run(write_config=True)
    assert host.drop_in.exists() and legacy_cron.find_jobs() == []
    capsys.readouterr()
    assert host.run(undo=True) == 0
    out = capsys.readouterr().out
    assert with_mtimes(host.root, host.cron_d, host.config) == before
    assert host.systemctl.changes()[-2:] == [("daemon-reload",),
                                             ("disable", "--now", "torrust-backup.timer")]
    assert not host.systemctl.active
    assert f"removed {host.drop_in}" in out and f"put back {host.cron_d}" in out
    assert host.run(undo=True) == 0
    assert "nothing to undo" in capsys.readouterr().out


def test_the_root_crontab_variant_keeps_its_mode_and_owner(host):
    host.cron_d.unlink()
    host.crontab.parent.mkdir(parents=True)
    host.crontab.write_text(ROOT_CRONTAB.format(schedule="30 2 * * 1-5"))
    os.chmod(host.crontab, 0o600)
    if os.geteuid() == 0:
        os.chown(host.crontab, 0, 102)  # root:crontab on Debian
    before = with_mtimes(host.root, host.crontab)
    owner = (host.crontab.stat().st_uid, host.crontab.stat().st_gid)
    assert host.run(write_config=True) == 0
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00\n" in host.drop_in.read_text()
    assert "#   /var/spool/cron/crontabs/root:4: 30 2 * * 1-5\n" in host.drop_in.read_text()
    assert host.crontab.read_text().splitlines()[3].startswith(
        "# disabled by torrust-maint migrate: 30 2 * * 1-5 /usr/local/bin/maintenance")
    info = host.crontab.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, *owner)
    assert info.st_mtime_ns != before[str(host.crontab)][0]
    host.run(undo=True)
    assert with_mtimes(host.root, host.crontab) == before


def test_cron_sees_a_new_mtime_even_within_the_same_second(host):
    """Debian's cron rereads a file only when its mtime in seconds changed."""
    future = int(host.cron_d.stat().st_mtime) + 100
    os.utime(host.cron_d, (future, future))
    host.run(write_config=True)
    assert int(host.cron_d.stat().st_mtime) > future - 1
    assert int(host.cron_d.stat().st_mtime) != future


@pytest.mark.parametrize("schedule, calendar", [
    ("*/15 * * * *", ["*-*-* *:00,15,30,45:00"]),
    ("@daily", ["*-*-* 00:00:00"]),
    ("0 3 1,15 * 0", ["*-*-01,15 03:00:00", "Sun *-*-* 03:00:00"]),
])
def test_each_oncalendar_value_goes_into_the_drop_in(host, schedule, calendar):
    host.cron_d.write_text(CRON_D.format(schedule=schedule, job=JOB))
    host.run(write_config=True)
    text = host.drop_in.read_text()
    assert text.split("[Timer]\n")[1] == "".join(
        f"{line}\n" for line in ["OnCalendar=", *(f"OnCalendar={v}" for v in calendar),
                                 "RandomizedDelaySec=0"])


def test_the_same_schedule_in_two_places_is_one_timer(host):
    host.crontab.parent.mkdir(parents=True)
    host.crontab.write_text(ROOT_CRONTAB.format(schedule="0 3 * * *"))
    host.run(write_config=True)
    assert legacy_cron.find_jobs() == []
    text = host.drop_in.read_text()
    assert "/etc/cron.d/tracker-backup:4" in text and "/var/spool/cron/crontabs/root:4" in text
    assert text.count("OnCalendar=*-*-* 03:00:00") == 1


# -- refusals: nothing changed ---------------------------------------------------------------


def refused(host: Host, match: str, **options) -> str:
    before = with_mtimes(host.root, host.cron_d)
    with pytest.raises(MaintError) as caught:
        host.run(write_config=True, **options)
    assert with_mtimes(host.root, host.cron_d) == before
    assert host.systemctl.changes() == []
    assert match in str(caught.value), str(caught.value)
    return str(caught.value)


def test_a_schedule_cron_schedule_refuses_is_an_error_with_the_way_by_hand(host):
    host.cron_d.write_text(CRON_D.format(schedule="5/10 3 * * *", job=JOB))
    message = refused(host, "a step after a single value")
    assert "/etc/cron.d/tracker-backup:4" in message
    assert "systemctl edit torrust-backup.timer" in message


def test_jobs_at_different_times_are_refused_naming_both(host):
    host.crontab.parent.mkdir(parents=True)
    host.crontab.write_text(ROOT_CRONTAB.format(schedule="30 2 * * 1-5"))
    message = refused(host, "the legacy cron jobs run at different times")
    assert "/etc/cron.d/tracker-backup:4 (0 3 * * *)" in message
    assert "/var/spool/cron/crontabs/root:4 (30 2 * * 1-5)" in message


def test_every_empty_setting_and_bad_path_is_reported_at_once(host, capsys):
    conf = host.compose / "storage/backup/etc/backup.conf"
    conf.write_text('BACKUP_RETENTION_DAYS=""\nBACKUP_PATHS_FILE=/etc/backup/backup-paths.txt\n'
                    f"DB_TYPE=sqlite\nDB_PATH=\nDB_PASSWORD={PASSWORD}\n")
    (host.compose / "storage/backup/etc/backup-paths.txt").write_text(
        "/data/storage/tracker/etc\n/etc/letsencrypt\n")
    message = refused(host, f"{conf}:1: BACKUP_RETENTION_DAYS is empty")
    assert f"{conf}:4: DB_PATH is empty" in message
    assert (f"{host.compose}/storage/backup/etc/backup-paths.txt:2: '/etc/letsencrypt' is not "
            "under /data") in message
    assert PASSWORD not in message + capsys.readouterr().out


def test_shell_code_in_backup_conf_is_refused_not_run(host, tmp_path):
    marker = tmp_path / "ran"
    conf = host.compose / "storage/backup/etc/backup.conf"
    conf.write_text(SQLITE_CONF + f'DB_PASSWORD="$(touch {marker})"\n')
    message = refused(host, f"{conf}:6: DB_PASSWORD: a command substitution")
    assert not marker.exists() and str(marker) not in message


def test_a_mysql_password_is_never_printed(host, capsys):
    (host.compose / "storage/backup/etc/backup.conf").write_text(MYSQL_CONF)
    assert host.run(write_config=True) == 0
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert "DB_PASSWORD: set (not shown)" in captured.out
    assert "DB_USER = 'torrust'" in captured.out
    config = new_config(host)
    assert config.deployment.database_driver == "mysql"
    assert config.retention.keep_daily == 15
    assert PASSWORD not in host.config.read_text() + host.drop_in.read_text()


def test_a_failing_check_switches_nothing(host):
    host.check_problems = ["[backup] directory: /nowhere is not writable"]
    message = refused(host, "check fails on the configuration as migrate would leave it")
    assert "/nowhere is not writable" in message
    assert legacy_cron.find_jobs() and not host.drop_in.exists()
    assert "keep_daily = 8" not in host.config.read_text()


def test_a_configuration_for_another_deployment_is_refused(host):
    host.config.write_text(host.config.read_text().replace(
        f'compose_dir = "{host.compose}"', 'compose_dir = "/srv/other"'))
    refused(host, "but the legacy cron job runs in")


# -- crash points and systemd ----------------------------------------------------------------


def test_enabling_the_timer_failing_puts_the_cron_jobs_back(host):
    original = with_mtimes(host.root, host.cron_d, host.config)
    host.systemctl.fail.add("enable")
    with pytest.raises(MaintError, match="the legacy cron jobs are active again"):
        host.run(write_config=True)
    assert legacy_cron.find_jobs() and not legacy_cron.timer_enabled()
    with pytest.raises(MaintError, match="an interrupted migrate left"):
        host.run(write_config=True)
    host.systemctl.fail.clear()
    assert host.run(undo=True) == 0
    assert with_mtimes(host.root, host.cron_d, host.config) == original


def test_undo_finishes_a_migrate_interrupted_between_the_two_schedules(host, monkeypatch):
    """As if the power went after the cron job was commented out, before the timer was on."""
    original = with_mtimes(host.root, host.cron_d, host.config)

    def power_cut(root, commands, echo):
        raise SystemExit("power cut")

    monkeypatch.setattr(timer_switch, "apply", power_cut)
    monkeypatch.setattr(migrate_switch, "put_cron_back", lambda plan: None)
    with pytest.raises(SystemExit):
        host.run(write_config=True)
    assert legacy_cron.find_jobs() == [] and host.drop_in.exists()
    monkeypatch.undo()
    monkeypatch.setattr(legacy_cron, "ROOT", host.root)
    monkeypatch.setattr(timer_switch, "systemctl", host.systemctl)
    assert host.run(undo=True) == 0
    assert with_mtimes(host.root, host.cron_d, host.config) == original


def test_undo_leaves_everything_alone_if_a_file_changed_since(host):
    host.run(write_config=True)
    host.config.write_text(host.config.read_text() + "\n# edited by hand\n")
    after = snapshot(host.root)
    with pytest.raises(MaintError, match=f"{host.config} changed since migrate"):
        host.run(undo=True)
    assert snapshot(host.root) == after


def test_without_systemd_the_commands_are_printed(host, capsys):
    (host.root / "run/systemd/system").rmdir()
    assert host.run(write_config=True) == 0
    assert host.systemctl.calls == []
    assert ("systemd does not run here: run systemctl daemon-reload && systemctl enable --now "
            "torrust-backup.timer") in capsys.readouterr().out
    assert legacy_cron.find_jobs() == []


def test_a_timer_enabled_beside_cron_is_migrated_and_left_enabled_by_undo(host):
    (host.root / legacy_cron.TIMER_WANTS).symlink_to("/lib/systemd/system/torrust-backup.timer")
    host.systemctl.active = True
    before = snapshot(host.root)
    assert host.run(write_config=True) == 0
    assert legacy_cron.find_jobs() == []
    host.run(undo=True)
    assert snapshot(host.root) == before and host.systemctl.active


def test_a_missing_configuration_is_written(host, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(host.state))
    host.config.unlink()
    assert host.run(dry_run=True) == 0
    assert not host.config.exists()
    assert host.run() == 0  # a new file needs no --write-config
    config = new_config(host)
    assert config.deployment.compose_dir == host.compose
    assert config.backup.directory == host.compose / "storage/backup"
    host.run(undo=True)
    assert not host.config.exists()


def test_nothing_to_migrate_without_a_cron_job(host, capsys):
    host.cron_d.unlink()
    assert host.run() == 0
    assert "nothing to migrate" in capsys.readouterr().out


def test_db_path_is_compared_with_the_database_the_tracker_uses(host, fake_docker):
    stack = Stack(host.compose, fake_docker)
    make_sqlite(host.compose / "storage/tracker/lib/database/other.db")
    stack.write_toml(path="/var/lib/torrust/tracker/database/other.db")
    stack.add_tracker()
    plan = migrate.build(host.config, host.root, legacy_cron.find_jobs(), lambda line: None)
    warning = migrate.database_warning(plan, stack.docker)
    assert warning is not None and "database/other.db: torrust-maint backs up" in warning
    make_sqlite(stack.db_path)
    stack.write_toml()
    assert migrate.database_warning(plan, stack.docker) is None


def test_the_diff_never_shows_a_secret_beside_a_changed_line(host, capsys):
    url = "ntfy://user:hunter2@ntfy.example.com/alerts"
    text = host.config.read_text().replace("\n[notify]\n", "\n", 1)  # keys all commented out
    host.config.write_text(text.replace(
        "#keep_monthly = 6\n", f"#keep_monthly = 6\n\n[notify]\nurls = [\"{url}\"]\n", 1))
    with pytest.raises(ConfigError, match="--write-config"):
        host.run()
    out = capsys.readouterr().out
    assert "+keep_monthly = 0" in out and " urls = ... (not shown)" in out
    assert "hunter2" not in out


def test_check_beside_an_enabled_timer_is_not_a_reason_to_refuse(monkeypatch):
    """The one problem migrate resolves (the cron job beside the timer) is not reported."""
    monkeypatch.setattr(legacy_cron, "find_jobs", lambda root=None: [
        legacy_cron.LegacyJob(Path("/etc/cron.d/tracker-backup"), 4, "0 3 * * *", "x")])
    two_windows = legacy_cron.warnings(legacy_cron.find_jobs(), True)[0]

    def failing_check(config, docker, echo):
        raise ConfigError([*two_windows, "[backup] directory: /b is not writable"])

    monkeypatch.setattr(migrate.check, "run", failing_check)
    assert migrate.run_check(None, None, print) == ["[backup] directory: /b is not writable"]


def test_a_backup_directory_elsewhere_is_kept_with_a_note_on_the_legacy_backups(host, capsys):
    elsewhere = host.root / "srv/tracker-backups"
    host.config.write_text(host.config.read_text().replace(
        f'directory = "{host.compose}/storage/backup"', f'directory = "{elsewhere}"'))
    assert host.run(dry_run=True) == 0
    out = capsys.readouterr().out
    assert (f"note: the legacy backups are in {host.compose}/storage/backup, and [backup] "
            f"directory is {elsewhere}") in out
    assert host.checked[0].backup.directory == elsewhere
