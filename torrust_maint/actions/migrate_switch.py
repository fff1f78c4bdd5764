"""The switch-over of ``torrust-maint migrate`` and its undo, in an order that survives a crash.

1. Exact copies of the files to change, and the record naming them (phase "started"), are
   written first: undo works from any point after.
2. The configuration and the timer drop-in are written and systemd reloaded: harmless while
   the timer is not enabled.
3. With SIGINT, SIGTERM and SIGHUP held back (recorded, acted on after the block), the cron
   jobs are commented out and the timer is enabled at once; if enabling fails, the cron
   files are put back: a failure never leaves the host with both schedules or neither.
4. The record says "done". Undo runs the same steps backwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torrust_maint import migrate_files, timer_switch
from torrust_maint.actions.migrate_plan import Plan, describe
from torrust_maint.errors import MaintError
from torrust_maint.legacy_cron import LegacyJob
from torrust_maint.window import signals_held  # records a signal, acts on it after the block

Echo = Callable[[str], None]
VERSION = 1


def copies(plan: Plan, directory: Path) -> list[dict[str, Any]]:
    """Copy every file migrate changes into `directory`; the record's entries."""
    entries = []
    for number, edit in enumerate(plan.cron_edits, start=1):
        cron_copy = directory / f"cron-{number}-{edit.path.name}"
        migrate_files.copy_exactly(edit.path, cron_copy)
        entries.append(migrate_files.entry("cron", edit.path, edit.before, edit.after,
                                           cron_copy))
    targets = [("drop-in", plan.root / timer_switch.DROP_IN, plan.drop_in)]
    if plan.config_changes:
        targets.append(("config", plan.config_path, plan.new_text))
    for kind, path, text in targets:
        before = migrate_files.read_bytes(path)
        copy: Path | None = None
        if before is not None:
            copy = directory / f"{kind}-{path.name}"
            migrate_files.copy_exactly(path, copy)
        entries.append(migrate_files.entry(kind, path, before, text.encode(), copy))
    return entries


def write_files(plan: Plan) -> None:
    """The configuration (keeping its mode and owner) and the timer drop-in."""
    if plan.config_changes:
        old = os.stat(plan.config_path) if plan.old_text is not None else None
        migrate_files.replace_atomically(plan.config_path, plan.new_text.encode(), old)
    drop_in = plan.root / timer_switch.DROP_IN
    drop_in.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    migrate_files.replace_atomically(drop_in, plan.drop_in.encode())


def put_cron_back(plan: Plan) -> None:
    for edit in plan.cron_edits:
        migrate_files.replace_atomically(edit.path, edit.before, edit.stat, exact=True)


def switch_schedules(plan: Plan, echo: Echo) -> None:
    """Comment out the cron jobs and enable the timer as one step (see the docstring)."""
    with signals_held():
        for edit in plan.cron_edits:
            migrate_files.replace_atomically(edit.path, edit.after, edit.stat,
                                             newer_than=edit.stat)
        try:
            timer_switch.apply(plan.root, timer_switch.switching_on(), echo)
        except MaintError as error:
            put_cron_back(plan)
            raise MaintError(f"{error}; the legacy cron jobs are active again (put back); "
                             "`torrust-maint migrate --undo` removes the timer drop-in and "
                             "puts the configuration back") from None
        except BaseException:
            put_cron_back(plan)
            raise
    for job in plan.jobs:
        echo(f"commented out {describe(job, plan.root)}")


def switch(plan: Plan, directory: Path, echo: Echo) -> None:
    """Record, write, then switch the schedules over (see the module docstring)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {"version": VERSION, "phase": "started",
              "timer_before": timer_switch.state(plan.root),
              "files": copies(plan, directory)}
    migrate_files.write_record(directory, record)
    write_files(plan)
    echo(f"wrote {plan.root / timer_switch.DROP_IN}" +
         (f" and {plan.config_path}" if plan.config_changes else ""))
    switch_schedules(plan, echo)
    record["phase"] = "done"
    migrate_files.write_record(directory, record)
    echo(f"migrated: {timer_switch.TIMER} runs the backup now; the record and the copies are "
         f"in {directory} (`torrust-maint migrate --undo` puts everything back)")


def put_back(entries: list[dict[str, Any]], kind: str, of_kind: bool, echo: Echo) -> None:
    """Undo the entries of that kind (of_kind), or of every other kind."""
    for item in entries:
        if (item["kind"] == kind) == of_kind:
            done = migrate_files.undo(item)
            if done:
                echo(done)


def undo(directory: Path, root: Path, dry_run: bool, echo: Echo) -> int:
    """Put back every file the record names and the timer as it was; remove the record."""
    record = migrate_files.read_record(directory)
    if record is None:
        echo(f"nothing to undo: no migrate record in {directory}")
        return 0
    conflicts = [found for found in map(migrate_files.conflict, record["files"]) if found]
    if conflicts:
        raise MaintError("\n".join(conflicts))
    commands = timer_switch.restoring(record["timer_before"], timer_switch.state(root))
    if dry_run:
        echo("dry run: nothing was changed; undo would put back " + ", ".join(
            item["path"] for item in record["files"]) + " and run " + "; ".join(
            "systemctl " + " ".join(command) for command in commands))
        return 0
    with signals_held():
        put_back(record["files"], "cron", False, echo)
        migrate_files.remove_if_empty((root / timer_switch.DROP_IN).parent)
        timer_switch.apply(root, commands, echo)
        put_back(record["files"], "cron", True, echo)
    migrate_files.remove_record(directory, record)
    echo(f"undone: the legacy cron backup is back; removed the record in {directory}")
    return 0


def already_migrated(record: dict[str, Any], directory: Path, jobs: list[LegacyJob],
                     root: Path, echo: Echo) -> int:
    """A second migrate: say that the host is migrated, or what is amiss."""
    record_path = directory / migrate_files.RECORD
    if record.get("phase") != "done":
        raise MaintError(f"an interrupted migrate left {record_path}: run `torrust-maint "
                         "migrate --undo`, then migrate again")
    problems = [f"{describe(job, root)} runs {job.schedule} again" for job in jobs]
    drop_in = root / timer_switch.DROP_IN
    written = {item["sha256_after"] for item in record["files"] if item["kind"] == "drop-in"}
    if migrate_files.sha256(migrate_files.read_bytes(drop_in)) not in written:
        problems.append(f"the timer drop-in {drop_in} is missing or changed")
    if not timer_switch.state(root)["enabled"]:
        problems.append(f"{timer_switch.TIMER} is not enabled (systemctl enable --now "
                        f"{timer_switch.TIMER})")
    if problems:
        raise MaintError(f"the host was migrated ({record_path}), but: " + "; ".join(problems)
                         + "; fix that, or `torrust-maint migrate --undo` and migrate again")
    echo(f"the host is migrated already ({record_path}): no legacy cron job is active, the "
         f"timer drop-in is in place and {timer_switch.TIMER} is enabled; nothing to do")
    return 0
