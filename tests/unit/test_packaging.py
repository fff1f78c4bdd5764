"""The files the Debian package ships agree with the code: conffile, units, man page."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import pytest

from torrust_maint import cli, config

REPO = Path(__file__).resolve().parents[2]
CONFFILE = REPO / "conf/torrust-maint.toml"
SYSTEMD = REPO / "systemd"


def uncommented(text: str) -> str:
    """The conffile with every commented-out `#key = value` line turned on."""
    return re.sub(r"(?m)^#(\w+ = )", r"\1", text)


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str
    parser.read(SYSTEMD / name)
    return parser


def test_conffile_sets_the_deployers_two_paths_and_nothing_else():
    parsed = config.load(CONFFILE)
    assert parsed.deployment.compose_dir == Path("/opt/torrust")
    assert parsed.backup.directory == Path("/opt/torrust/storage/backup")
    data = tomllib.loads(CONFFILE.read_text())
    assert {s: sorted(k) for s, k in data.items() if k} == {
        "deployment": ["compose_dir"], "backup": ["directory"]}


def test_conffile_documents_every_setting_with_its_default():
    data = tomllib.loads(uncommented(CONFFILE.read_text()))
    for section, keys in config.SCHEMA.items():
        assert section in data, f"[{section}] missing from {CONFFILE}"
        for key in keys:
            assert key in data[section], f"[{section}] {key} missing from {CONFFILE}"
    parsed = config.parse(data, CONFFILE)  # every documented value is valid
    defaults = config.parse({"deployment": {"compose_dir": "/opt/torrust"},
                             "backup": {"directory": "/opt/torrust/storage/backup"}}, CONFFILE)
    assert parsed.backup.config_paths == defaults.backup.config_paths
    assert parsed.retention == defaults.retention
    assert parsed.deployment.stop_timeout == defaults.deployment.stop_timeout
    assert parsed.deployment.start_timeout == defaults.deployment.start_timeout
    assert parsed.deployment.tracker_services == defaults.deployment.tracker_services


def test_service_runs_backup_and_always_recovers():
    service = unit("torrust-backup.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["NotifyAccess"] == "main"
    assert service["Service"]["ExecStart"] == "/usr/bin/torrust-maint backup"
    assert service["Service"]["ExecStopPost"] == "/usr/bin/torrust-maint recover"
    assert service["Unit"]["OnFailure"] == "torrust-notify@%n.service"
    # see the unit; a success also starts the off-site upload
    assert service["Unit"]["OnSuccess"] == "torrust-notify@%N.service torrust-offsite.service"
    assert service["Service"]["StateDirectory"] == "torrust-maint"
    assert service["Service"]["Environment"] == "TORRUST_MAINT_NOTICES=unit"
    assert service["Service"]["LogsDirectory"] == "torrust-maint"
    assert "/opt/torrust/storage/backup" in service["Service"]["ReadWritePaths"]
    # a WAL-mode snapshot opens the live database: its directory is writable
    assert "/opt/torrust/storage/tracker/lib" in service["Service"]["ReadWritePaths"]


def test_verify_service_and_weekly_timer_are_shipped():
    service = unit("torrust-verify.service")
    assert service["Service"]["ExecStart"] == "/usr/bin/torrust-maint verify --scheduled"
    assert service["Unit"]["OnFailure"] == "torrust-notify@%n.service"
    assert service["Unit"]["OnSuccess"] == "torrust-notify@%N.service"  # see the unit
    assert service["Service"]["StateDirectory"] == "torrust-maint"
    assert "ExecStopPost" not in service["Service"]
    timer = unit("torrust-verify.timer")
    assert timer["Timer"]["OnCalendar"] == "Sun *-*-* 05:00:00"
    assert timer["Timer"]["Persistent"] == "true"
    installed = (REPO / "debian/torrust-maint.install").read_text()
    for name in ("torrust-verify.service", "torrust-verify.timer"):
        assert f"systemd/{name} lib/systemd/system/" in installed


def test_notify_unit_reports_the_unit_and_cannot_reach_docker_or_write_backups():
    notify = unit("torrust-notify@.service")["Service"]
    assert notify["ExecStart"] == "/usr/bin/torrust-maint report %i"
    assert notify["StateDirectory"] == "torrust-maint"
    assert notify["ProtectSystem"] == "strict" and "ReadWritePaths" not in notify
    assert "/run/docker.sock" in notify["InaccessiblePaths"].replace("-", "")
    assert notify["CapabilityBoundingSet"] == ""
    assert "IPAddressDeny" not in notify  # it sends: the backup units cannot


def test_timer_is_daily_at_three_and_persistent():
    timer = unit("torrust-backup.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 03:00:00"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_logrotate_covers_the_default_log_file():
    text = (REPO / "logrotate/torrust-maint").read_text()
    assert "/var/log/torrust-maint/*.log {" in text
    assert 'file = "/var/log/torrust-maint/torrust-maint.log"' in CONFFILE.read_text()


def test_man_page_names_every_subcommand():
    page = (REPO / "man/torrust-maint.8").read_text().replace("\\-", "-")
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    for name in commands.choices:
        assert re.search(rf"^\.B(I)? {re.escape(name)}\b", page, re.M), name


def test_boot_time_recovery_unit_is_enabled_and_runs_recover():
    """A power loss mid-window is recovered at boot, not at the next scheduled run."""
    service = unit("torrust-recover.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"] == "/usr/bin/torrust-maint recover"
    assert service["Install"]["WantedBy"] == "multi-user.target"
    assert "docker.service" in service["Unit"]["After"]
    rules = (REPO / "debian/rules").read_text()
    assert "dh_installsystemd --no-start torrust-recover.service" in rules
    installed = (REPO / "debian/torrust-maint.install").read_text()
    shipped = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))
    for name in shipped:
        assert f"systemd/{name} " in installed, name
        assert name in rules, f"{name} is not given to dh_installsystemd"


def test_prerm_stops_every_timer_on_removal():
    prerm = (REPO / "debian/prerm").read_text()
    stop_line = next(line for line in prerm.splitlines() if "deb-systemd-invoke stop" in line)
    for timer in sorted(p.name for p in SYSTEMD.glob("*.timer")):
        assert timer in stop_line, f"prerm does not stop {timer}"


@pytest.mark.parametrize(("name", "command"), [
    ("torrust-offsite.service", "/usr/bin/torrust-maint offsite upload"),
    ("torrust-offsite-check.service", "/usr/bin/torrust-maint offsite check"),
])
def test_offsite_units_have_the_network_but_no_docker_and_read_only_backups(name, command):
    service = unit(name)
    section = service["Service"]
    assert section["ExecStart"] == command
    assert section["ExecCondition"] == "/usr/bin/torrust-maint offsite configured"
    assert section["LoadCredential"] == "offsite-password:/etc/torrust-maint/offsite-password"
    assert section["SetCredential"].startswith("offsite-password:")
    assert section["ProtectSystem"] == "strict"
    assert "ReadWritePaths" not in section  # the backups are read-only here
    assert "/run/docker.sock" in section["InaccessiblePaths"]
    assert "IPAddressDeny" not in section
    assert section["StateDirectory"] == "torrust-maint"
    assert section["CacheDirectory"] == "torrust-maint"
    assert section["Environment"] == "TORRUST_MAINT_NOTICES=unit"
    assert service["Unit"]["OnFailure"] == "torrust-notify@%n.service"
    installed = (REPO / "debian/torrust-maint.install").read_text()
    assert f"systemd/{name} lib/systemd/system/" in installed
    assert name in (REPO / "debian/rules").read_text()


def test_the_weekly_verify_pulls_in_the_offsite_check_first():
    verify = unit("torrust-verify.service")["Unit"]
    assert "torrust-offsite-check.service" in verify["Wants"]
    assert "torrust-offsite-check.service" in verify["After"]


def test_the_credential_fallback_is_the_text_restic_py_treats_as_missing():
    from torrust_maint import restic

    for name in ("torrust-offsite.service", "torrust-offsite-check.service"):
        fallback = unit(name)["Service"]["SetCredential"]
        assert fallback == f"{restic.CREDENTIAL}:{restic.CREDENTIAL_UNSET}"


def test_logrotate_covers_the_legacy_cron_log():
    """The log the cron-based backup appended to forever is rotated once the package is in."""
    text = (REPO / "logrotate/torrust-maint").read_text()
    stanza = text.split("/var/log/tracker-backup.log {", 1)[1].split("}", 1)[0]
    assert "missingok" in stanza and "rotate 12" in stanza
    assert "copytruncate" not in stanza
