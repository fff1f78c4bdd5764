"""Retries of a run's preflight after a transient fault, with a doubling delay.

Only faults that say nothing of the deployment's health and may be gone in a minute are
retried: the Docker daemon busy or restarting, the database container restarting or not yet
healthy, the run lock held by a run that is finishing. Only the steps before the window are
ever retried: nothing here runs once the tracker has been stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from torrust_maint import notify
from torrust_maint.config import RetryConfig
from torrust_maint.errors import DatabaseNotReady, DockerUnavailable, LockedError, MaintError
from torrust_maint.journal import event

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT = (DockerUnavailable, DatabaseNotReady, LockedError)


def delays(settings: RetryConfig) -> list[float]:
    """The waits before attempts 2, 3, ...: delay, 2 x delay, ... capped at max_delay."""
    return [min(settings.delay * 2 ** n, settings.max_delay)
            for n in range(settings.attempts - 1)]


def call(settings: RetryConfig, what: str, attempt: Callable[[], T],
         sleep: Callable[[float], None] = time.sleep) -> T:
    """`attempt()`, tried again after each transient fault until attempts run out; the last
    error is raised with the number of attempts added. A signal ends the waiting (the
    caller's handler raises Interrupted, which is never retried)."""
    waits = delays(settings)
    for number in range(1, settings.attempts + 1):
        try:
            return attempt()
        except TRANSIENT as error:
            if number == settings.attempts:
                if settings.attempts > 1:
                    error.args = (f"{error} (after {settings.attempts} attempts)",)
                raise
            wait = waits[number - 1]
            event("attempt_failed", "%s: attempt %d of %d failed (transient): %s; "
                  "trying again in %.0f s", what, number, settings.attempts, error, wait,
                  level=logging.WARNING, ATTEMPT=number, ATTEMPTS=settings.attempts,
                  ERROR=str(error), RETRY_IN_SEC=wait)
            notify.status(f"{what}: attempt {number} failed, trying again in {wait:.0f} s")
            sleep(wait)
    raise MaintError(f"{what}: no attempt was made ([retry] attempts)")  # attempts >= 1
