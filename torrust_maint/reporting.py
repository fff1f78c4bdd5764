"""A run's outcome, recorded in the state file and sent as a notice.

Under systemd the backup and verify units set ``TORRUST_MAINT_NOTICES=unit``: the run only
records its outcome (its unit has no network), and ``torrust-notify@.service``, started by
``OnFailure=``/``OnSuccess=``, sends the notice, also for a run that was killed, timed out
or OOM-killed and so recorded nothing. Run by hand, the run sends its own notice.
Each notice is sent once: its invocation id is claimed in the state file first.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from torrust_maint import catalog, notifications, state, systemd_units
from torrust_maint.config import Config
from torrust_maint.errors import EXIT_FAILED, MaintError, VerificationInconclusive

log = logging.getLogger(__name__)

NOTICES_ENV = "TORRUST_MAINT_NOTICES"  # "unit": torrust-notify@.service sends them


def reported(config: Config, job: str, body: Callable[[dict[str, Any]], int]) -> int:
    """Run `body(details)` as one run of `job`, record its outcome, and notify.

    `body` may fill `details` (backup_id, downtime_seconds) as it goes. Errors are re-raised
    after they are recorded, so the command line prints them as before.
    """
    directory = config.state.directory
    invocation = os.environ.get("INVOCATION_ID") or None
    started = time.monotonic()
    run: dict[str, Any] = {}
    try:
        run = state.record_start(directory, job, invocation)
    except (OSError, MaintError) as error:
        log.warning("the run state is not recorded: %s", error)
        run = {"started_at": catalog.rfc3339(catalog.utc_now()), "invocation_id": invocation}
    details: dict[str, Any] = {}
    try:
        code = body(details)
    except BaseException as error:
        finish(config, job, run, details, started, error=error)
        raise
    finish(config, job, run, details, started, code=code)
    return code


def finish(config: Config, job: str, run: dict[str, Any], details: dict[str, Any],
           started: float, *, code: int | None = None,
           error: BaseException | None = None) -> None:
    """Record the end of a run and send its notices (unless a unit sends them)."""
    outcome = dict(run, **details, duration_seconds=round(time.monotonic() - started, 3))
    if error is None:
        outcome.update(outcome="success" if code == 0 else "failure", exit_code=code)
    else:
        outcome.update(outcome="failure", error=describe(error),
                       exit_code=getattr(error, "exit_code", EXIT_FAILED))
        if isinstance(error, VerificationInconclusive):
            outcome["inconclusive"] = True
    try:
        part = state.record_end(config.state.directory, job, outcome)
    except (OSError, MaintError) as state_error:
        log.warning("the run state is not recorded: %s", state_error)
        part = {"last_run": outcome,
                "consecutive_failures": 0 if outcome["outcome"] == "success" else 1}
    if os.environ.get(NOTICES_ENV) == "unit" and outcome.get("invocation_id"):
        return  # torrust-notify@.service sends them (OnFailure=/OnSuccess=)
    claim = outcome.get("invocation_id") or f"pid-{os.getpid()}-{outcome.get('started_at')}"
    notify(config, job, part, claim)


def describe(error: BaseException) -> str:
    """An error as one line for the state and the notice."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, MaintError):
        return " ".join(str(error).split("\n")) or type(error).__name__
    if isinstance(error, OSError):  # the environment (a full or removed disk), as cli.main
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror or error}{where}"
    return f"internal error: {type(error).__name__}: {error}"


def notify(config: Config, job: str, part: dict[str, Any], claim: str) -> None:
    """Send the notices the last run of `job` raises, once per `claim` (an invocation id)."""
    events = [e for e in notifications.events_for(job, part) if e in config.notify.on]
    if not events or not config.notify.configured:
        return
    try:
        if not state.claim_notice(config.state.directory, job, claim):
            log.info("the notice of this run was already sent")
            return
    except (OSError, MaintError) as error:
        log.warning("sending without the once-only claim: %s", error)
    next_run = systemd_units.next_backup()  # None when systemd cannot tell
    for name in events:
        if name == "success" and "recovery" in events:
            continue  # the recovery notice says it succeeded
        notice = notifications.compose(job, part, name,
                                       deployment=str(config.deployment.compose_dir),
                                       next_run=next_run)
        notifications.send(config.notify, notice)

