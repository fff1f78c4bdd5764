"""``torrust-maint status``: the state of the backups at a glance, for people and monitoring.

Reads only: it creates nothing (not even the lock file) and needs no Docker. Exit 1 when the
last backup run failed, the newest success is older than ``[status] max_age``, the newest
set FAILED verification, a window marker is open (the tracker may be stopped) or a restore
was interrupted, so that a monitoring check can run it as it is. Under systemd it also shows
the timers and the services' last results (over D-Bus, python3-pystemd).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from torrust_maint import (
    catalog,
    legacy_backups,
    legacy_cron,
    lock,
    restore_record,
    safefs,
    state,
    systemd_units,
)
from torrust_maint.config import Config
from torrust_maint.errors import EXIT_FAILED, EXIT_OK, MaintError
from torrust_maint.lock import pid_alive
from torrust_maint.recovery import WindowMarker


def gather(config: Config) -> dict:
    """Everything status reports, as JSON-ready data."""
    directory = config.backup.directory
    sets = catalog.list_sets(directory)
    complete = [s for s in sets if s.complete and s.created_at is not None
                and s.kind != catalog.RAW]
    passed = [s for s in complete if s.verification == "passed"]
    failing = newest_failed(complete)
    return {
        "config": str(config.path),
        "backup_directory": str(directory),
        "free_bytes": free_bytes(directory),
        "complete_sets": len([s for s in sets if s.complete]),
        "total_bytes": sum(int(a.get("size") or 0) for s in sets if s.complete
                           for a in (s.manifest or {}).get("artifacts") or []
                           if isinstance(a, dict) and isinstance(a.get("size"), int)),
        "newest": describe(complete[-1]) if complete else None,
        "newest_passed": describe(passed[-1]) if passed else None,
        "newest_failed_count": len(failing),
        "newest_failed": [s.id for s in failing],
        "unfinished": [str(s.path) for s in sets
                       if s.path.name.startswith(catalog.STAGING_PREFIX)],
        "window": window(directory),
        "lock": lock_holder(directory),
        "pending_restore": pending_restore(directory),
        "raw_sets": [s.id for s in sets if s.complete and s.kind == catalog.RAW],
        **runs(config, complete),
        "max_age_seconds": config.status.max_age,
        "offsite": offsite_status(config, passed),
        "systemd": systemd_units.units(),  # None when systemd cannot be asked
        "legacy_cron": legacy_cron_status(),
        "legacy_sets": legacy_sets_status(config),
    }


def legacy_sets_status(config: Config) -> dict:
    """How many backups of the cron-based setup are kept, and the newest (by its name)."""
    try:
        sets = legacy_backups.list_sets(config.backup.directory)
    except MaintError:  # unreadable: the rest of status still reports
        sets = []
    return {"count": len(sets), "bytes": sum(s.size for s in sets),
            "newest": sets[-1].id if sets else None}


def legacy_cron_status() -> dict:
    """The cron-based backup's active lines and whether our timer is enabled beside them."""
    jobs = legacy_cron.find_jobs()
    return {"jobs": [job.describe() for job in jobs],
            "timer_enabled": legacy_cron.timer_enabled()}


def offsite_status(config: Config, passed: list[catalog.BackupSet]) -> dict | None:
    """What is off-site, as the state records it (no network): the last upload, the sets
    uploaded, the newest verified set not off-site yet, the last check of an off-site copy."""
    if not config.offsite.configured or config.offsite.repository is None:
        return None
    from torrust_maint import offsite
    from torrust_maint.restic import shown_repository

    try:
        data = state.read(config.state.directory)
    except state.StateError:
        data = {}
    upload = state.job(data, "upload")
    recorded = offsite.read_record(config.state.directory)
    backups = [s for s in passed if s.kind == catalog.BACKUP]
    newest = backups[-1] if backups else None
    waiting = newest is not None and newest.id not in recorded
    return {
        "repository": shown_repository(config.offsite.repository),
        "host": config.offsite.host,
        "sets": len(recorded),
        "last_run": upload.get("last_run"),
        "consecutive_failures": int(upload.get("consecutive_failures") or 0),
        "newest_verified": newest.id if newest else None,
        "newest_verified_offsite": None if newest is None else not waiting,
        "newest_verified_age_seconds": (age_of(catalog.rfc3339(newest.created_at))
                                        if newest and newest.created_at else None),
        "last_check": data.get("offsite_verified"),
    }


def runs(config: Config, complete: list[catalog.BackupSet]) -> dict:
    """The run state: last run, last success and its age, failures in a row, per job."""
    try:
        data = state.read(config.state.directory)
        error = None
    except state.StateError as problem:
        data, error = {}, str(problem)
    backup = state.job(data, "backup")
    last = backup.get("last_run")
    if last and last.get("outcome") == "running" and not pid_alive(int(last.get("pid") or 0)):
        last = dict(last, outcome="interrupted",
                    error="the run ended without recording an outcome (killed?)")
    success = backup.get("last_success")
    success_at = (success or {}).get("finished_at")
    newest_backup = next((s for s in reversed(complete) if s.kind == catalog.BACKUP), None)
    if success_at is None and newest_backup is not None and newest_backup.created_at:
        success_at = catalog.rfc3339(newest_backup.created_at)  # a state older than the sets
    return {
        "state_file": str(config.state.directory / state.STATE_NAME),
        "state_error": error,
        "last_run": last,
        "last_success": success,
        "last_success_at": success_at,
        "last_success_age_seconds": age_of(success_at),
        "last_failure": backup.get("last_failure"),
        "consecutive_failures": int(backup.get("consecutive_failures") or 0),
        "verify_runs": {key: state.job(data, "verify").get(key)
                        for key in ("last_run", "last_success", "last_failure",
                                    "consecutive_failures")},
    }


def age_of(moment: str | None) -> int | None:
    """Seconds since an RFC 3339 time, or None."""
    if not moment:
        return None
    try:
        parsed = catalog.parse_rfc3339(moment)
    except ValueError:
        return None
    return round((catalog.utc_now() - parsed).total_seconds())


def pending_restore(directory: Path) -> dict | None:
    """An interrupted restore, and where the state from before it is kept."""
    record = restore_record.read(directory)
    if record is None:
        return None
    return {"restore_of": record.get("restore_of"), "phase": record.get("phase"),
            "started_at": record.get("started_at"), "safety_set": record.get("safety_set"),
            "text": restore_record.describe(record)}


def newest_failed(complete: list[catalog.BackupSet]) -> list[catalog.BackupSet]:
    """The newest sets, oldest first, that failed verification in a row (none if the newest
    did not fail)."""
    streak: list[catalog.BackupSet] = []
    for backup_set in reversed(complete):
        if backup_set.verification != "failed":
            break
        streak.insert(0, backup_set)
    return streak


def describe(backup_set: catalog.BackupSet) -> dict:
    """A set's id, creation time, age and verification (with an inconclusive last attempt)."""
    created_at = backup_set.created_at
    assert created_at is not None
    verdict = (backup_set.manifest or {}).get("verification") or {}
    return {
        "id": backup_set.id,
        "created_at": catalog.rfc3339(created_at),
        "age_seconds": round((catalog.utc_now() - created_at).total_seconds()),
        "verification": backup_set.verification,
        "verified_at": verdict.get("verified_at") if isinstance(verdict, dict) else None,
        "verification_attempt": backup_set.verification_attempt,
        "window_mode": catalog.window_mode(backup_set.manifest or {}),
    }


def free_bytes(directory: Path) -> int | None:
    """Free bytes on the backup directory's filesystem; None if it does not exist."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def window(directory: Path) -> dict | None:
    """The open window marker, if any: when, by which process, which containers."""
    marker = WindowMarker.read(directory)
    if marker is None:
        return None
    return {"path": str(marker.path), "opened_at": marker.opened_at, "pid": marker.pid,
            "pid_running": pid_alive(marker.pid),
            "container_names": list(marker.container_names)}


def lock_holder(directory: Path) -> dict:
    """Whether a run holds the lock, and its pid (read from /proc/locks: never taken here)."""
    path = directory / lock.LOCK_NAME
    try:
        safefs.check_regular(path)
    except safefs.UnsafePath:
        return {"held": None, "pid": None,
                "error": f"cannot open {path}: not a regular file (a symlink is never followed)"}
    pid = lock.holder(directory)
    return {"held": pid is not None, "pid": pid or None}


def problems(data: dict) -> list[str]:
    """Why the backups are unhealthy (exit 1); none when all is well."""
    found = []
    last = data.get("last_run") or {}
    if last.get("outcome") in ("failure", "interrupted"):
        count = data.get("consecutive_failures") or 1
        found.append(f"the last backup run failed ({count} in a row): "
                     f"{last.get('error') or 'exit ' + str(last.get('exit_code'))}")
    age_seconds = data.get("last_success_age_seconds")
    if age_seconds is None:
        found.append("no successful backup yet")
    elif age_seconds > data["max_age_seconds"]:
        found.append(f"the newest successful backup is {age(age_seconds)} old, more than "
                     f"[status] max_age ({age(data['max_age_seconds'])})")
    if data["newest_failed_count"] > 0:
        found.append("the newest set FAILED verification")
    if data["window"] is not None:
        found.append("a maintenance window is open")
    if data.get("pending_restore") is not None:
        found.append("a restore was interrupted")
    if data.get("state_error"):
        found.append(data["state_error"])
    found += offsite_problems(data.get("offsite"), data["max_age_seconds"])
    legacy = data.get("legacy_cron") or {}
    if legacy.get("jobs") and legacy.get("timer_enabled"):
        found.append(f"two maintenance windows a night: the legacy cron backup "
                     f"({'; '.join(legacy['jobs'])}) and {legacy_cron.TIMER} are both active; "
                     "`torrust-maint check` says what to run")
    return found


def offsite_problems(offsite: dict | None, max_age: int) -> list[str]:
    """The off-site copies are unhealthy: the last upload failed, the newest verified set
    is not off-site after max_age (an upload unit that never ran), or an off-site copy failed
    its restore check."""
    if offsite is None:
        return []
    found = []
    last = offsite.get("last_run") or {}
    if last.get("outcome") == "failure":
        found.append(f"the last off-site upload failed ({offsite['consecutive_failures']} in a "
                     f"row): {last.get('error') or 'exit ' + str(last.get('exit_code'))}")
    age_seconds = offsite.get("newest_verified_age_seconds")
    if offsite.get("newest_verified_offsite") is False and (age_seconds or 0) > max_age:
        found.append(f"the newest verified set {offsite['newest_verified']} is not off-site "
                     f"{age(age_seconds or 0)} after it was made ([status] max_age)")
    check = offsite.get("last_check") or {}
    if check.get("outcome") == "failed":
        found.append(f"the off-site copy of {check.get('set_id')} FAILED its restore check")
    return found


def age(seconds: int) -> str:
    """A short human age: 45 s, 12 min, 5 h 3 min, 2 d 4 h."""
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def verification_text(described: dict) -> str:
    """passed, failed or unverified, and an inconclusive last attempt after it."""
    text = described["verification"]
    if described["verified_at"]:
        text += f" at {described['verified_at']}"
    attempt = described["verification_attempt"]
    if attempt:
        text += (f"; last attempt {attempt.get('outcome', 'inconclusive')} at "
                 f"{attempt.get('at')}: {attempt.get('error')}")
    return text


def lines(data: dict) -> list[str]:
    """The human-readable report."""
    free = data["free_bytes"]
    out = [f"config: {data['config']}",
           f"backup directory: {data['backup_directory']} "
           + (f"({free / 1e9:.1f} GB free)" if free is not None else "(does not exist)"),
           f"complete sets: {data['complete_sets']} ({data['total_bytes'] / 1e6:.1f} MB)"]
    legacy = data.get("legacy_sets") or {}
    if legacy.get("count"):
        out.append(f"legacy cron backups: {legacy['count']} ({legacy['bytes'] / 1e6:.1f} MB), "
                   f"newest {legacy['newest']} (`torrust-maint list`)")
    out += run_lines(data)
    out += set_lines(data)
    out += [f"unfinished: {path} (an interrupted run's; the next backup or prune removes it)"
            for path in data["unfinished"]]
    out.append(window_line(data["window"]))
    out.append(lock_line(data["lock"]))
    if data["pending_restore"]:
        out.append(f"INTERRUPTED RESTORE: {data['pending_restore']['text']}")
    out += offsite_lines(data.get("offsite"))
    out += systemd_lines(data.get("systemd"))
    out += [f"legacy cron backup: active in {job}" for job in
            (data.get("legacy_cron") or {}).get("jobs", [])]
    out += [f"UNHEALTHY: {problem}" for problem in data.get("problems", [])]
    out += [f"raw set {set_id}: raw files of a database from before a restore that could not "
            "be exported; never pruned (remove it by hand once you no longer need it)"
            for set_id in data["raw_sets"]]
    return out


def offsite_lines(offsite: dict | None) -> list[str]:
    """The off-site copies in a few lines (from the state: no network)."""
    if offsite is None:
        return ["off-site: off (no [offsite] repository)"]
    out = [f"off-site: {offsite['repository']} (host {offsite['host']}): "
           f"{offsite['sets']} set(s) recorded"]
    last = offsite.get("last_run")
    if last:
        out.append(f"last upload: {last.get('outcome')} at {last.get('finished_at') or '-'}"
                   + (f": {last['error']}" if last.get("error") else ""))
    else:
        out.append("last upload: none yet")
    if offsite.get("newest_verified"):
        where = "off-site" if offsite["newest_verified_offsite"] else "NOT off-site yet"
        out.append(f"newest verified set {offsite['newest_verified']}: {where}")
    check = offsite.get("last_check")
    if check:
        out.append(f"last check of an off-site copy: {check.get('set_id')} "
                   f"{check.get('outcome')} at {check.get('at')}")
    return out


def run_lines(data: dict) -> list[str]:
    """The last backup run, the last success and the failures in a row."""
    last = data.get("last_run")
    if not last:
        out = ["last run: none recorded"]
    else:
        text = f"last run: {last.get('started_at')}, {last.get('outcome')}"
        if last.get("outcome") == "running":
            text += f" (pid {last.get('pid')})"
        elif last.get("error"):
            text += f": {last['error']}"
        out = [text]
    success_age = data.get("last_success_age_seconds")
    if data.get("last_success_at"):
        success = data.get("last_success") or {}
        out.append(f"last success: {data['last_success_at']} ({age(success_age or 0)} ago)"
                   + (f", set {success['backup_id']}" if success.get("backup_id") else ""))
    else:
        out.append("last success: none")
    if data.get("consecutive_failures"):
        out.append(f"failures in a row: {data['consecutive_failures']}")
    return out


def systemd_lines(units: dict | None) -> list[str]:
    """Timers (enabled, next and last elapse) and services (last result) under systemd."""
    if units is None:
        return ["systemd: not reachable (timers not shown)"]
    out = []
    for name, unit in units.items():
        if unit.get("load_state") not in (None, "loaded"):
            out.append(f"{name}: {unit.get('load_state')}")
        elif name.endswith(".timer"):
            out.append(f"{name}: {unit.get('enabled')}, {unit.get('active')}, next "
                       f"{unit.get('next_elapse') or 'none'}, last "
                       f"{unit.get('last_elapse') or 'never'}")
        else:
            out.append(f"{name}: {unit.get('active')}, last result {unit.get('result')}"
                       + (f" (exit status {unit['exit_status']} at {unit.get('last_exit')})"
                          if unit.get("last_exit") else ""))
    return out


def set_lines(data: dict) -> list[str]:
    """The newest set, the newest passed set and a warning for failed newest sets."""
    newest, passed = data["newest"], data["newest_passed"]
    out = [f"newest set: {newest['id']} ({age(newest['age_seconds'])} old, "
           f"{mode_text(newest)}), verification {verification_text(newest)}"
           if newest else "newest set: none",
           f"newest verified set: {passed['id']} ({age(passed['age_seconds'])} old)"
           if passed else "newest verified set: none"]
    count = data["newest_failed_count"]
    if count:
        out.append(f"WARNING: {count} newest set{'s' if count > 1 else ''} FAILED "
                   f"verification: {', '.join(data['newest_failed'])}")
    return out


def mode_text(described: dict) -> str:
    """How the set's snapshot was taken, in words."""
    return {"online": "online: the tracker ran throughout",
            "stop": "in a stop window"}.get(described.get("window_mode") or "", "mode unknown")


def window_line(marker: dict | None) -> str:
    """The open window, if any, and what to do about it."""
    if marker is None:
        return "window: none open"
    names = ", ".join(marker["container_names"])
    if marker["pid_running"]:
        state = f"pid {marker['pid']} is running (a backup or restore in progress?)"
    else:
        state = f"pid {marker['pid']} is gone: `torrust-maint recover` starts the tracker"
    return f"WINDOW OPEN since {marker['opened_at']}, stopped {names}; {state}"


def lock_line(lock: dict) -> str:
    """Who holds the run lock, if anyone."""
    if lock.get("error"):
        return f"lock: {lock['error']}"
    if lock["held"]:
        return f"lock: held by pid {lock['pid'] if lock['pid'] is not None else 'unknown'}"
    return "lock: free"


def run(config: Config, *, as_json: bool = False, echo: Callable[[str], None] = print) -> int:
    """Print the status; exit 1 when something needs the operator (see problems())."""
    data = gather(config)
    data["problems"] = problems(data)
    data["ok"] = not data["problems"]
    if as_json:
        echo(json.dumps(data, indent=2))
    else:
        for line in lines(data):
            echo(line)
    return EXIT_OK if data["ok"] else EXIT_FAILED
