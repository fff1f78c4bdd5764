"""What ``torrust-maint migrate`` would do on this host, worked out without changing anything:
the legacy cron jobs and their schedule as ``OnCalendar=`` values, the legacy settings
converted into the configuration's new text, and the cron files with their jobs commented
out. Every problem is collected and raised at once (ConfigError), before any change.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torrust_maint import config as config_module
from torrust_maint import legacy_settings, migrate_files, safefs, toml_lines
from torrust_maint.cron_schedule import ScheduleError, to_calendar
from torrust_maint.errors import ConfigError, MaintError
from torrust_maint.legacy_cron import SCRIPT, LegacyJob, parse_line
from torrust_maint.legacy_settings import Conversion

CD = re.compile(r"^\s*cd\s+(\S+)\s*&&")
CRON_VARIABLE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
SECRET_LINE = re.compile(r"^ \s*(urls|repository|password\w*)\s*=", re.IGNORECASE)


@dataclass(frozen=True)
class CronEdit:
    """One cron file: its bytes and stat now, and its bytes with the jobs commented out."""

    path: Path
    before: bytes
    after: bytes
    stat: os.stat_result


@dataclass(frozen=True)
class Plan:
    """Everything migrate changes, worked out and validated."""

    root: Path
    config_path: Path
    old_text: str | None  # None: the configuration file does not exist
    new_text: str
    config: config_module.Config
    jobs: list[LegacyJob]
    cron_edits: list[CronEdit]
    drop_in: str
    sqlite_host_path: Path | None

    @property
    def config_changes(self) -> bool:
        return self.old_text != self.new_text


def host_name(path: Path, root: Path) -> str:
    """A path of the host tree as the host names it."""
    return "/" + str(path.relative_to(root)).lstrip(".") if path.is_relative_to(root) \
        else str(path)


def under_root(text: str, root: Path) -> Path:
    """A host path, inside the host tree `root`."""
    return root / os.path.normpath("/" + text.strip("'\"")).lstrip("/")


def describe(job: LegacyJob, root: Path) -> str:
    return f"{host_name(job.path, root)}:{job.line_number}"


def schedule(jobs: list[LegacyJob], root: Path) -> tuple[list[str], list[str]]:
    """The OnCalendar= values of the jobs' one schedule, and the problems."""
    found: dict[tuple[str, ...], list[str]] = {}
    problems = []
    for job in jobs:
        try:
            found.setdefault(tuple(to_calendar(job.schedule)), []).append(
                f"{describe(job, root)} ({job.schedule})")
        except ScheduleError as error:
            problems.append(f"{describe(job, root)}: {error}")
    if len(found) > 1:
        problems.append("the legacy cron jobs run at different times (" + "; ".join(
            ", ".join(where) for where in found.values()) + "): one timer has one schedule; "
            "comment out the jobs you do not want, then run migrate again")
    return (list(next(iter(found))) if len(found) == 1 else []), problems


def job_compose_dir(job: LegacyJob, text: str, root: Path) -> Path | None:
    """Where the job runs: its `cd DIR &&`, else COMPOSE_DIR= set above it in its file."""
    found = CD.match(job.command)
    if found:
        return under_root(found.group(1), root)
    value = None
    for line in text.splitlines()[:job.line_number - 1]:
        variable = CRON_VARIABLE.match(line)
        if variable and variable.group(1) == "COMPOSE_DIR":
            value = variable.group(2)
    return under_root(value, root) if value else None


def cron_edits(jobs: list[LegacyJob], root: Path) -> tuple[list[CronEdit], list[str]]:
    """Each cron file holding a job, with its job lines commented out; the problems."""
    edits, problems = [], []
    for path in dict.fromkeys(job.path for job in jobs):
        try:
            before = migrate_files.read_bytes(path)
            info = os.stat(path, follow_symlinks=False)
        except (safefs.UnsafePath, OSError) as error:
            problems.append(f"{host_name(path, root)}: {error}; comment out its job by hand")
            continue
        assert before is not None  # legacy_cron just read it
        numbers = {job.line_number for job in jobs if job.path == path}
        lines = before.splitlines()
        for number in sorted(numbers):
            parsed = parse_line(lines[number - 1].decode("utf-8", "replace"),
                                system=path.parent.name == "cron.d") \
                if number <= len(lines) else None
            if parsed is None or SCRIPT not in parsed[1]:
                problems.append(f"{host_name(path, root)}:{number}: not where cron's lines "
                                "are (odd line breaks); comment out its job by hand")
        edits.append(CronEdit(path, before, migrate_files.comment_out(before, numbers), info))
    return edits, problems


def read_config(path: Path) -> tuple[str | None, dict[str, Any], list[str]]:
    """The configuration's text (None if absent) and its TOML data, or the problem."""
    try:
        raw = migrate_files.read_bytes(path)
    except (MaintError, OSError) as error:
        return None, {}, [f"{path}: {error}"]
    if raw is None:
        return None, {}, []
    try:
        text = raw.decode("utf-8")
        return text, tomllib.loads(text), []
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        return None, {}, [f"{path}: cannot be edited: {error}; fix it, then run migrate again"]


def compose_dir(jobs: list[LegacyJob], data: dict[str, Any], root: Path,
                config_path: Path) -> tuple[Path | None, list[str]]:
    """compose_dir: the configuration's, which must be where the jobs run; else theirs."""
    legacy: set[Path] = set()
    for job in jobs:
        text = (migrate_files.read_bytes(job.path) or b"").decode("utf-8", "replace")
        found = job_compose_dir(job, text, root)
        if found is not None:
            legacy.add(found)
    configured = data.get("deployment", {}).get("compose_dir")
    if len(legacy) > 1:
        return None, ["the legacy cron jobs run in different directories: "
                      f"{', '.join(sorted(map(str, legacy)))}; keep one job"]
    if isinstance(configured, str) and configured.startswith("/"):
        mine = Path(os.path.normpath(configured))
        if legacy and mine not in legacy:
            return None, [f"{config_path}: [deployment] compose_dir is {configured}, but the "
                          f"legacy cron job runs in {next(iter(legacy))}; "
                          "set compose_dir to the deployment the job backs up"]
        return mine, []
    if legacy:
        return next(iter(legacy)), []
    return None, [f"cannot tell compose_dir: the legacy cron job has no `cd DIR &&` and no "
                  f"COMPOSE_DIR=, and {config_path} sets none; set [deployment] compose_dir"]


def toml_settings(conversion: Conversion, compose: Path,
                  data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The converted settings, with compose_dir and the backup directory where the
    configuration sets none (the legacy backups are in compose_dir/storage/backup)."""
    settings = {section: dict(values) for section, values in conversion.settings.items()}
    if "compose_dir" not in data.get("deployment", {}):
        settings.setdefault("deployment", {})["compose_dir"] = str(compose)
    if "directory" not in data.get("backup", {}):
        settings.setdefault("backup", {})["directory"] = str(compose / "storage/backup")
    return settings


def edited_config(path: Path, old_text: str, data: dict[str, Any],
                  settings: dict[str, dict[str, Any]]
                  ) -> tuple[str, config_module.Config | None, list[str]]:
    """The configuration's new text and its validated Config, or the problems."""
    new_text = toml_lines.set_keys(old_text, settings)
    try:
        new_data = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        new_data = None
    if new_data != toml_lines.expected(data, settings):
        wanted = "; ".join(f"[{section}] {key} = {toml_lines.toml_value(value)}"
                           for section, values in settings.items()
                           for key, value in values.items())
        return new_text, None, [f"{path}: cannot be edited line by line (its layout is "
                                f"unusual); set by hand: {wanted}"]
    assert new_data is not None
    try:
        return new_text, config_module.parse(new_data, path), []
    except ConfigError as error:
        return new_text, None, [f"the configuration as migrate would write it: {problem}"
                                for problem in error.problems]


def drop_in_text(jobs: list[LegacyJob], calendar: list[str], root: Path) -> str:
    """The timer drop-in: the packaged schedule cleared, the cron schedule, no random delay."""
    lines = ["# Written by `torrust-maint migrate` from the legacy cron backup:"]
    lines += [f"#   {describe(job, root)}: {job.schedule}" for job in jobs]
    lines += ["# `torrust-maint migrate --undo` removes it and puts the cron line back.",
              "[Timer]", "OnCalendar="]
    lines += [f"OnCalendar={value}" for value in calendar]
    lines += ["RandomizedDelaySec=0"]
    return "\n".join(lines) + "\n"


def diff(plan: Plan) -> list[str]:
    """A unified diff of the configuration; context lines that may hold a secret hidden."""
    old = (plan.old_text or "").splitlines(keepends=True)
    new = plan.new_text.splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, f"{plan.config_path}",
                                 f"{plan.config_path} (as migrate writes it)")
    return [line.rstrip("\n") if not SECRET_LINE.match(line) else
            f" {line.split('=')[0].strip()} = ... (not shown)" for line in lines]


def report_jobs(jobs: list[LegacyJob], calendar: list[str], root: Path,
                echo: Callable[[str], None]) -> None:
    echo("legacy cron jobs:")
    for job in jobs:
        echo(f"  {describe(job, root)}: {job.schedule}  {job.command}")
    for value in calendar:
        echo(f"  -> OnCalendar={value}")


def build(config_path: Path, root: Path, jobs: list[LegacyJob],
          echo: Callable[[str], None]) -> Plan:
    """Work out the plan, reporting what was found; ConfigError with every problem."""
    calendar, problems = schedule(jobs, root)
    report_jobs(jobs, calendar, root, echo)
    old_text, data, unreadable = read_config(config_path)
    problems += unreadable
    compose, found = compose_dir(jobs, data, root, config_path)
    problems += found
    conversion = legacy_settings.convert(compose) if compose else Conversion()
    for line in conversion.report:
        echo(line)
    problems += conversion.problems
    edits, found = cron_edits(jobs, root)
    problems += found
    new_text, config = "", None
    if compose is not None and not unreadable:
        settings = toml_settings(conversion, compose, data)
        new_text, config, found = edited_config(config_path, old_text or "", data, settings)
        problems += found
    if problems or config is None:
        raise ConfigError(problems or ["nothing to validate"])
    legacy_backups = compose / "storage/backup" if compose else None
    if legacy_backups is not None and config.backup.directory != legacy_backups:
        echo(f"note: the legacy backups are in {legacy_backups}, and [backup] directory is "
             f"{config.backup.directory}: `list`, `verify`, `restore` and `prune` see legacy "
             "backups only in the backup directory; move them there to keep them in the "
             "catalog")
    return Plan(root, config_path, old_text, new_text, config, jobs, edits,
                drop_in_text(jobs, calendar, root), conversion.sqlite_host_path)
