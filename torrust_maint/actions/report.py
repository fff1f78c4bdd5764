"""``torrust-maint report UNIT``: run by torrust-notify@.service after a backup or verify unit
ends (``OnFailure=`` and ``OnSuccess=``), with the MONITOR_* variables systemd passes.

It logs a structured record of a failed unit to the journal, completes the run state when
the run could not (SIGKILL, a timeout, the OOM killer, a crash before it wrote anything),
and sends the run's notice, once. Its unit may reach the network but not the Docker socket,
and it cannot write to the backups.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

from torrust_maint import catalog, reporting, state
from torrust_maint import config as config_module
from torrust_maint.config import Config, ConfigError
from torrust_maint.journal import event

log = logging.getLogger(__name__)

RESULTS = {  # systemd's Result= values, in words
    "exit-code": "exited with an error",
    "signal": "was killed by a signal",
    "core-dump": "crashed (core dump)",
    "timeout": "timed out (TimeoutStartSec=)",
    "oom-kill": "was killed by the OOM killer (out of memory)",
    "watchdog": "missed its watchdog",
    "start-limit-hit": "was started too often (start limit hit)",
    "resources": "could not be started (resources)",
}


def job_of(unit: str) -> str:
    """Which job a unit runs: verify, upload (torrust-offsite), offsite-check, or backup."""
    if unit.startswith("torrust-verify"):
        return "verify"
    if unit.startswith("torrust-offsite-check"):
        return "offsite-check"
    if unit.startswith("torrust-offsite"):
        return "upload"
    return "backup"


def unit_result_text(unit: str, monitor: dict[str, str]) -> str:
    """`torrust-backup.service was killed by a signal (KILL)`."""
    result = monitor.get("MONITOR_SERVICE_RESULT") or "unknown"
    status = monitor.get("MONITOR_EXIT_STATUS") or ""
    words = RESULTS.get(result, f"failed ({result})")
    return f"{unit} {words}" + (f" ({status})" if status else "")


def log_failure(unit: str, monitor: dict[str, str]) -> None:
    """The structured failure record; OBJECT_SYSTEMD_UNIT shows it in `journalctl -u UNIT`."""
    result = monitor.get("MONITOR_SERVICE_RESULT") or "unknown"
    code = monitor.get("MONITOR_EXIT_CODE") or "unknown"
    status = monitor.get("MONITOR_EXIT_STATUS") or "unknown"
    event("unit_failed", "%s failed: result %s (%s %s)", unit, result, code, status,
          level=logging.ERROR, OBJECT_SYSTEMD_UNIT=unit, FAILED_UNIT=unit,
          SERVICE_RESULT=result, EXIT_CODE=code, EXIT_STATUS=status,
          OBJECT_SYSTEMD_INVOCATION_ID=monitor.get("MONITOR_INVOCATION_ID") or None)


def load_for_notices(path: Path) -> Config:
    """The configuration; when it is broken, its [notify] and [state] sections alone, so
    that a failure caused by a bad edit is still reported."""
    try:
        return config_module.load(path)
    except ConfigError as error:
        problems = error.problems
    raw = config_module.read_config_file(path)  # a missing file: nothing more to try
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, ValueError):
        raise ConfigError(problems) from None
    log.error("the configuration has problems (%s); notices use its [notify] and [state] "
              "sections only", "; ".join(problems))
    # The file's compose_dir names the deployment in the notice when it is valid; else a
    # placeholder that passes validation ("/" is refused as a compose_dir).
    minimal: dict[str, Any] = {"deployment": {"compose_dir": "/unknown"},
                               "backup": {"directory": "/nonexistent"}}
    for section in ("notify", "state"):
        if section in data:
            minimal[section] = data[section]
    deployment = data.get("deployment")
    named: dict[str, Any] = dict(minimal, deployment={
        "compose_dir": deployment.get("compose_dir")}) if isinstance(deployment, dict) else minimal
    try:
        return config_module.parse(named, path)
    except ConfigError:
        return config_module.parse(minimal, path)


def completed_run(part: dict[str, Any], unit: str, monitor: dict[str, str]) -> dict | None:
    """The run this unit ended, if it did not record its own end: a failure from what
    systemd says. None when the run recorded itself (or succeeded without a record)."""
    invocation = monitor.get("MONITOR_INVOCATION_ID") or None
    last = part.get("last_run") or {}
    if last.get("invocation_id") == invocation and last.get("outcome") in ("success",
                                                                             "failure"):
        return None
    if monitor.get("MONITOR_SERVICE_RESULT") == "success":
        return None
    run = dict(last) if last.get("invocation_id") == invocation else {
        "started_at": None, "invocation_id": invocation}
    run.update(outcome="failure", error=unit_result_text(unit, monitor),
               service_result=monitor.get("MONITOR_SERVICE_RESULT"),
               finished_at=catalog.rfc3339(catalog.utc_now()))
    code = monitor.get("MONITOR_EXIT_STATUS") or ""
    if monitor.get("MONITOR_EXIT_CODE") == "exited" and code.isdigit():
        run["exit_code"] = int(code)
    return run


def add_unit_result(directory: Path, job: str, unit: str,
                    monitor: dict[str, str]) -> dict[str, Any]:
    """Add what systemd says (timed out, OOM-killed...) to a failure the run recorded itself
    ("interrupted by SIGTERM" is how a timeout looks from inside)."""
    words = unit_result_text(unit, monitor)
    result: dict[str, Any] = {}

    def change(data: dict[str, Any]) -> None:
        part = state.job(data, job)
        last = part.get("last_run") or {}
        if last.get("outcome") == "failure" and words not in str(last.get("error") or ""):
            last["error"] = f"{last.get('error') or 'failed'} ({words})"
            last["service_result"] = monitor.get("MONITOR_SERVICE_RESULT")
            part["last_run"] = part["last_failure"] = last
        data[job] = part
        result.update(part)

    state.update(directory, change)
    return result


def unit_name(instance: str, monitor: dict[str, str]) -> str:
    """The unit that ended: systemd's MONITOR_UNIT, else the instance name given (the
    OnSuccess= instance is the name without ".service", see torrust-backup.service)."""
    name = monitor.get("MONITOR_UNIT") or instance
    return name if "." in name else f"{name}.service"


def succeeded(instance: str, monitor: dict[str, str]) -> bool:
    """Whether the unit ended well: result "success", or skipped by its ExecCondition=
    (result "exec-condition" from the OnSuccess= instance, named without ".service"; a
    condition that crashed fails the unit and comes through OnFailure=)."""
    result = monitor.get("MONITOR_SERVICE_RESULT") or "unknown"
    return result == "success" or (result == "exec-condition" and "." not in instance)


def run(instance: str, environ: dict[str, str]) -> int:
    """Record and notify the end of a unit; exit 0 unless nothing at all could be done."""
    monitor = {k: v for k, v in environ.items() if k.startswith("MONITOR_")}
    unit = unit_name(instance, monitor)
    if not succeeded(instance, monitor):
        log_failure(unit, monitor)
    job = job_of(unit)
    config = load_for_notices(config_module.config_path_from(None, environ))
    if job in ("upload", "offsite-check") and not config.offsite.configured:
        return 0  # skipped by its ExecCondition=: off-site copies are off
    directory = config.state.directory
    part = state.job(state.read(directory), job)
    run_record = completed_run(part, unit, monitor)
    if run_record is not None:
        log.warning("the run did not record its end (%s); recorded now",
                    run_record["error"])
        part = state.record_end(directory, job, run_record)
    elif monitor.get("MONITOR_SERVICE_RESULT") not in (None, "success", "exit-code"):
        part = add_unit_result(directory, job, unit, monitor)  # e.g. a timeout's SIGTERM
    if (part.get("last_run") or {}).get("invocation_id") != (
            monitor.get("MONITOR_INVOCATION_ID") or None):  # an older run's: notified then
        log.warning("%s left no record in %s; no notice is sent", unit, directory)
        return 0
    invocation = monitor.get("MONITOR_INVOCATION_ID") or f"unit-{unit}"
    reporting.notify(config, job, part, invocation)
    return 0
