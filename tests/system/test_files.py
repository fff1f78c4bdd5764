"""Checks of the shipped files that need the tools, not a host container."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.system.conftest import REPO, timing

MAX_EXPOSURE = 2.5


@pytest.mark.parametrize("service", ["torrust-backup.service", "torrust-verify.service",
                                     "torrust-recover.service", "torrust-notify@.service"])
def test_security_exposure_offline(service):
    done = subprocess.run(["systemd-analyze", "security", "--offline=true",
                           str(REPO / "systemd" / service)],
                          capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    timing("offline", f"systemd-analyze security --offline=true {service} (exposure)",
           float(found[1]))
    assert float(found[1]) <= MAX_EXPOSURE


def test_logrotate_accepts_the_configuration(tmp_path):
    done = subprocess.run(["logrotate", "--debug", "--state", str(tmp_path / "state"),
                           str(REPO / "logrotate/torrust-maint")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower(), done.stderr
    assert "rotating pattern: /var/log/torrust-maint/*.log" in done.stderr


def test_logrotate_rotates_the_legacy_cron_log(tmp_path):
    """The package's stanza for the cron-based backup's log, run for real on a copy: the log
    is rotated and a new one made for the next append."""
    legacy = tmp_path / "tracker-backup.log"
    legacy.write_text("2025-01-01 03:00:00 backup done\n")
    config = tmp_path / "torrust-maint"
    text = (REPO / "logrotate/torrust-maint").read_text()
    config.write_text(text.replace("/var/log/tracker-backup.log", str(legacy))
                      .replace("/var/log/torrust-maint/*.log", str(tmp_path / "none/*.log")))
    done = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "state"),
                           str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tracker-backup.log.1").read_text() == "2025-01-01 03:00:00 backup done\n"
    assert legacy.read_text() == ""
    assert oct(legacy.stat().st_mode & 0o777) == "0o644"
