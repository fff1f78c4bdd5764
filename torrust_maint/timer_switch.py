"""torrust-backup.timer switched on and put back by ``torrust-maint migrate``: every systemctl
call goes through ``systemctl()`` (tests replace it). Where systemd does not run, the
commands are printed for the operator instead."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from torrust_maint import legacy_cron
from torrust_maint.errors import MaintError

TIMER = legacy_cron.TIMER
DROP_IN = Path("etc/systemd/system") / f"{TIMER}.d" / "migrated-from-cron.conf"
SYSTEMD_RUNNING = Path("run/systemd/system")  # as sd_booted(3) tells


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run systemctl with these arguments (an argv list, never a shell)."""
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def call(*args: str) -> None:
    """systemctl, or a MaintError with what it said."""
    done = systemctl(*args)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise MaintError(f"systemctl {' '.join(args)} failed (exit {done.returncode}): {said}")


def running(root: Path) -> bool:
    """Whether systemd runs the host (else the commands are printed, not run)."""
    return (root / SYSTEMD_RUNNING).is_dir()


def state(root: Path) -> dict[str, bool]:
    """Whether the timer is enabled (its wants link) and active (started) now."""
    active = running(root) and systemctl("is-active", "--quiet", TIMER).returncode == 0
    return {"enabled": legacy_cron.timer_enabled(root), "active": active}


def restoring(before: dict[str, bool], now: dict[str, bool]) -> list[list[str]]:
    """The systemctl commands that put the timer back from `now` to `before`."""
    commands = [["daemon-reload"]]
    enable = ["enable" if before["enabled"] else "disable"]
    start = ["start" if before["active"] else "stop"]
    change_enabled, change_active = before["enabled"] != now["enabled"], \
        before["active"] != now["active"]
    if change_enabled and change_active and before["enabled"] == before["active"]:
        return commands + [[*enable, "--now", TIMER]]
    if change_enabled:
        commands.append([*enable, TIMER])
    if change_active:
        commands.append([*start, TIMER])
    return commands


def switching_on() -> list[list[str]]:
    return [["daemon-reload"], ["enable", "--now", TIMER]]


def apply(root: Path, commands: list[list[str]], echo: Callable[[str], None]) -> None:
    """Run the commands, or print them where systemd does not run."""
    if not running(root):
        echo("systemd does not run here: run " + " && ".join(
            "systemctl " + " ".join(command) for command in commands))
        return
    for command in commands:
        call(*command)
        echo(f"ran: systemctl {' '.join(command)}")

