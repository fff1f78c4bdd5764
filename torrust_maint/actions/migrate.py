"""``torrust-maint migrate``: switch a host from the legacy cron backup to torrust-backup.timer.

It reports what it found, converts the schedule (a timer drop-in) and the legacy settings
(the configuration, shown as a diff; written with --write-config), runs `check` on the
configuration as it will be, then records what it will do (with exact copies of the files)
before commenting out the cron jobs and enabling the timer. ``--undo`` puts everything back
from that record; ``--dry-run`` shows everything and changes nothing.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path

from torrust_maint import legacy_cron, migrate_files, timer_switch
from torrust_maint.actions import check
from torrust_maint.actions.migrate_plan import Plan, build, describe, diff
from torrust_maint.config import Config, default_state_directory
from torrust_maint.docker import Docker
from torrust_maint.errors import ConfigError, MaintError

Echo = Callable[[str], None]
RECORD_DIRECTORY = "migrate"
LEGACY_NOTE = "warning: the legacy cron backup is still active"


def run_check(config: Config, docker: Docker, echo: Echo) -> list[str]:
    """`torrust-maint check` on the configuration as migrate leaves it; its problems (the
    legacy job beside an enabled timer is what migrate resolves: not one)."""
    two_windows = legacy_cron.warnings(legacy_cron.find_jobs(), True)[0]
    try:
        check.run(config, docker, echo=lambda line: None if line.startswith(LEGACY_NOTE)
                  else echo(f"  {line}"))
    except ConfigError as error:
        return [problem for problem in error.problems if problem not in two_windows]
    except MaintError as error:
        return [str(error)]
    return []


def record_directory(config_path: Path) -> Path:
    """Where the migrate record is: [state] directory of the configuration, read leniently
    (undo must find it whatever else the configuration says)."""
    try:
        data = tomllib.loads((migrate_files.read_bytes(config_path) or b"").decode("utf-8"))
        given = data.get("state", {}).get("directory")
    except (MaintError, OSError, ValueError, AttributeError):
        given = None
    base = Path(given) if isinstance(given, str) and given.startswith("/") \
        else default_state_directory()
    return base / RECORD_DIRECTORY


def database_warning(plan: Plan, docker: Docker) -> str | None:
    """DB_PATH against the database file the tracker really uses (discovery), if cheap."""
    from torrust_maint.deployment import discover

    if plan.sqlite_host_path is None:
        return None
    try:
        database = discover(plan.config.deployment, docker).database
    except MaintError:
        return None  # check has said why
    used = getattr(database, "host_path", None)
    if used is None or os.path.realpath(used) == os.path.realpath(plan.sqlite_host_path):
        return None
    return (f"warning: backup.conf's DB_PATH is {plan.sqlite_host_path} on the host, but the "
            f"tracker's database is {used}: torrust-maint backs up {used}")


def show(plan: Plan, echo: Echo) -> None:
    """The configuration's diff and the timer drop-in."""
    if plan.config_changes:
        echo(f"configuration {plan.config_path}:" if plan.old_text is not None
             else f"configuration {plan.config_path} (new file):")
        for line in diff(plan):
            echo(line)
    else:
        echo(f"configuration {plan.config_path}: already as migrate would write it")
    drop_in = plan.root / timer_switch.DROP_IN
    echo(f"timer drop-in {drop_in}:")
    for line in plan.drop_in.splitlines():
        echo(f"  {line}")


def steps(plan: Plan, write_config: bool) -> list[str]:
    """What a run does, in order, in words."""
    done = []
    if plan.config_changes:
        done.append(f"write {plan.config_path}" + ("" if write_config or plan.old_text is None
                                                   else " (needs --write-config)"))
    done.append(f"write {plan.root / timer_switch.DROP_IN}")
    done += [f"comment out {describe(job, plan.root)}" for job in plan.jobs]
    done += ["systemctl " + " ".join(command) for command in timer_switch.switching_on()]
    return done


def run(config_path: Path, docker: Docker, *, dry_run: bool = False,
        write_config: bool = False, undo: bool = False, echo: Echo = print) -> int:
    """The migrate command (see the module docstring)."""
    from torrust_maint.actions import migrate_switch

    root = legacy_cron.ROOT
    directory = record_directory(config_path)
    if undo:
        return migrate_switch.undo(directory, root, dry_run, echo)
    record = migrate_files.read_record(directory)
    jobs = legacy_cron.find_jobs(root)
    if record is not None:
        return migrate_switch.already_migrated(record, directory, jobs, root, echo)
    if not jobs:
        echo(f"nothing to migrate: no active cron line runs {legacy_cron.SCRIPT}")
        return 0
    plan = build(config_path, root, jobs, echo)
    show(plan, echo)
    if plan.config_changes and plan.old_text is not None and not (write_config or dry_run):
        raise ConfigError(f"{config_path} would change as shown; nothing was changed: rerun "
                          "with --write-config to write it and switch over")
    echo("check on the configuration as migrate leaves it:")
    problems = run_check(plan.config, docker, echo)
    warning = database_warning(plan, docker)
    if warning:
        echo(warning)
    if problems:
        raise ConfigError(["check fails on the configuration as migrate would leave it; "
                           "nothing was changed:", *problems])
    if dry_run:
        echo("dry run: nothing was changed; a run would:")
        for step in steps(plan, write_config):
            echo(f"  {step}")
        return 0
    migrate_switch.switch(plan, directory, echo)
    return 0
