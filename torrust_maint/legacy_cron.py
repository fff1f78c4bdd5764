"""The cron-based backup of hosts set up before this package (``maintenance-backup.sh`` run from
``/etc/cron.d`` or root's crontab), found so that a host never runs two maintenance windows a
night: `check`, `status` and the package's postinst report it next to an enabled timer."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/")  # tests point it at a fixture tree
CRON_D = Path("etc/cron.d")
ROOT_CRONTAB = Path("var/spool/cron/crontabs/root")
SCRIPT = "maintenance-backup.sh"
TIMER = "torrust-backup.timer"
TIMER_WANTS = Path("etc/systemd/system/timers.target.wants") / TIMER
# cron reads only /etc/cron.d files whose names are made of these (run-parts' rule): a
# `tracker-backup.dpkg-old` or `tracker-backup~` is ignored.
CRON_D_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
ENVIRONMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
READ_LIMIT = 1 << 20


@dataclass(frozen=True)
class LegacyJob:
    """One active cron line that runs the legacy backup script."""

    path: Path
    line_number: int
    schedule: str
    command: str

    def describe(self) -> str:
        return f"{self.path}:{self.line_number} ({self.schedule}: {self.command})"


def parse_line(line: str, system: bool) -> tuple[str, str] | None:
    """(schedule, command) of a cron line; None for a blank line, a comment or a variable.
    `system`: an /etc/cron.d line, with a user field before the command."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or ENVIRONMENT.match(stripped):
        return None
    fields = stripped.split(None, 1 if stripped.startswith("@") else 5)
    count = 1 if stripped.startswith("@") else 5
    if len(fields) <= count:
        return None
    schedule, rest = " ".join(fields[:count]), fields[count]
    if system:
        user_and_command = rest.split(None, 1)
        if len(user_and_command) < 2:
            return None
        rest = user_and_command[1]
    return schedule, rest


def _read(path: Path) -> str | None:
    """A cron file's text; None if absent, not a regular file, or unreadable. Debian's cron
    follows a symlink in /etc/cron.d (root's directory), so it is followed here too."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return None
        with open(path, "rb") as handle:
            return handle.read(READ_LIMIT).decode("utf-8", errors="replace")
    except OSError:
        return None


def cron_files(root: Path) -> list[tuple[Path, bool]]:
    """The files cron reads that may run the script: /etc/cron.d's (with a user field) and
    root's crontab."""
    found = []
    directory = root / CRON_D
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        names = []
    found += [(directory / name, True) for name in names if CRON_D_NAME.match(name)]
    found.append((root / ROOT_CRONTAB, False))
    return found


def find_jobs(root: Path | None = None) -> list[LegacyJob]:
    """Every active cron line that runs maintenance-backup.sh."""
    jobs = []
    for path, system in cron_files(root or ROOT):
        text = _read(path)
        if text is None or SCRIPT not in text:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            parsed = parse_line(line, system)
            if parsed and SCRIPT in parsed[1]:
                jobs.append(LegacyJob(path, number, parsed[0], parsed[1].strip()))
    return jobs


def timer_enabled(root: Path | None = None) -> bool:
    """Whether torrust-backup.timer is enabled (its timers.target.wants link); read from the
    file system, so it works where systemd does not run (postinst in a chroot, containers)."""
    return os.path.lexists((root or ROOT) / TIMER_WANTS)


def warnings(jobs: list[LegacyJob], enabled: bool) -> tuple[list[str], list[str]]:
    """(problems, notes) about the legacy jobs: both schedules active is a problem (two
    windows a night); the legacy job alone is a note saying what to do before enabling."""
    if not jobs:
        return [], []
    where = "; ".join(job.describe() for job in jobs)
    if enabled:
        return [f"two maintenance windows a night: the legacy cron backup ({where}) and "
                f"{TIMER} are both active; keep one: comment out that cron line (keeping "
                f"{TIMER}), or `systemctl disable --now {TIMER}` (keeping cron)"], []
    return [], [f"the legacy cron backup is still active ({where}); before `systemctl enable "
                f"--now {TIMER}`, comment out that cron line, or the host runs two "
                "maintenance windows a night; `torrust-maint migrate` does both, with the "
                "schedule and the settings"]
