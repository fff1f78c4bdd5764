"""The legacy cron backup found on fixture host trees: /etc/cron.d, root's crontab, lines that
cron would not run; reported by `status` and `check` next to an enabled timer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torrust_maint import legacy_cron
from torrust_maint.actions import check, status

CRON_D_FILE = """\
# Installed by the Torrust deployer: nightly maintenance window.
SHELL=/bin/bash
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
0 3 * * * root cd /opt/torrust && /usr/local/bin/maintenance-backup.sh >> /var/log/tracker-backup.log 2>&1
"""
ROOT_CRONTAB = """\
COMPOSE_DIR=/opt/torrust
LOG_FILE=/var/log/tracker-backup.log
# m h dom mon dow command
30 2 * * 1-5 /usr/local/bin/maintenance-backup.sh >> "$LOG_FILE" 2>&1
"""


def host(tmp_path: Path, cron_d: str | None = None, crontab: str | None = None,
         enabled: bool = False, name: str = "tracker-backup") -> Path:
    """A fixture root with the given cron files and timer state."""
    root = tmp_path / "root"
    (root / legacy_cron.CRON_D).mkdir(parents=True)
    if cron_d is not None:
        (root / legacy_cron.CRON_D / name).write_text(cron_d)
    if crontab is not None:
        (root / legacy_cron.ROOT_CRONTAB).parent.mkdir(parents=True)
        (root / legacy_cron.ROOT_CRONTAB).write_text(crontab)
    if enabled:
        (root / legacy_cron.TIMER_WANTS).parent.mkdir(parents=True)
        os.symlink("/usr/lib/systemd/system/torrust-backup.timer", root / legacy_cron.TIMER_WANTS)
    return root


def test_the_deployers_cron_d_file_is_found_with_its_schedule(tmp_path):
    root = host(tmp_path, cron_d=CRON_D_FILE)
    [job] = legacy_cron.find_jobs(root)
    assert (job.path, job.line_number, job.schedule) == (
        root / "etc/cron.d/tracker-backup", 4, "0 3 * * *")
    assert job.command.startswith("cd /opt/torrust && /usr/local/bin/maintenance-backup.sh")


def test_a_root_crontab_line_is_found_without_a_user_field(tmp_path):
    root = host(tmp_path, crontab=ROOT_CRONTAB)
    [job] = legacy_cron.find_jobs(root)
    assert (job.line_number, job.schedule) == (4, "30 2 * * 1-5")
    assert job.command.startswith("/usr/local/bin/maintenance-backup.sh")


@pytest.mark.parametrize("cron_d, name", [
    (CRON_D_FILE.replace("0 3 * * * root", "#0 3 * * * root"), "tracker-backup"),
    (CRON_D_FILE, "tracker-backup.dpkg-old"),  # cron ignores names with a dot
    (CRON_D_FILE, "tracker-backup~"),
    ("0 3 * * * root /usr/local/bin/other-backup.sh\n", "tracker-backup"),
])
def test_lines_cron_would_not_run_are_not_jobs(tmp_path, cron_d, name):
    assert legacy_cron.find_jobs(host(tmp_path, cron_d=cron_d, name=name)) == []


def test_a_nickname_schedule(tmp_path):
    root = host(tmp_path, cron_d="@daily root /usr/local/bin/maintenance-backup.sh\n")
    [job] = legacy_cron.find_jobs(root)
    assert job.schedule == "@daily"


def test_a_symlinked_cron_file_counts_as_cron_runs_it(tmp_path):
    elsewhere = tmp_path / "kept-elsewhere"
    elsewhere.write_text(CRON_D_FILE)
    root = host(tmp_path)
    os.symlink(elsewhere, root / legacy_cron.CRON_D / "tracker-backup")
    [job] = legacy_cron.find_jobs(root)
    assert job.schedule == "0 3 * * *"


def test_a_directory_named_like_a_cron_file_is_no_job(tmp_path):
    root = host(tmp_path)
    (root / legacy_cron.CRON_D / "tracker-backup").mkdir()
    assert legacy_cron.find_jobs(root) == []


def test_both_schedules_active_is_a_problem_naming_what_to_run(tmp_path):
    root = host(tmp_path, cron_d=CRON_D_FILE, enabled=True)
    problems, notes = legacy_cron.warnings(legacy_cron.find_jobs(root),
                                           legacy_cron.timer_enabled(root))
    [problem] = problems
    assert notes == []
    assert problem.startswith("two maintenance windows a night")
    assert "etc/cron.d/tracker-backup:4" in problem
    assert "systemctl disable --now torrust-backup.timer" in problem


def test_the_legacy_job_alone_is_a_note_before_the_timer_is_enabled(tmp_path):
    root = host(tmp_path, cron_d=CRON_D_FILE)
    problems, [note] = legacy_cron.warnings(legacy_cron.find_jobs(root),
                                            legacy_cron.timer_enabled(root))
    assert problems == []
    assert "before `systemctl enable --now torrust-backup.timer`" in note


def test_nothing_to_say_without_a_legacy_job(tmp_path):
    root = host(tmp_path, enabled=True)
    assert legacy_cron.warnings(legacy_cron.find_jobs(root), True) == ([], [])


def test_check_and_status_report_two_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(legacy_cron, "ROOT", host(tmp_path, crontab=ROOT_CRONTAB, enabled=True))
    echoed: list[str] = []
    [problem] = check.check_legacy_cron(echoed.append)
    assert "two maintenance windows a night" in problem and echoed == []
    data = {"legacy_cron": status.legacy_cron_status()}
    assert data["legacy_cron"]["timer_enabled"] is True
    assert "var/spool/cron/crontabs/root:4" in data["legacy_cron"]["jobs"][0]
    found = [p for p in status.problems({**minimal_status(), **data})
             if "two maintenance windows" in p]
    assert len(found) == 1


def minimal_status() -> dict:
    """What status.problems() reads, for a healthy host."""
    return {"last_run": {}, "last_success_age_seconds": 10, "max_age_seconds": 86400,
            "newest_failed_count": 0, "window": None, "pending_restore": None,
            "offsite": None}
