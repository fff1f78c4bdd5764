"""The run state: last run, last success, last failure and the consecutive-failure count.

One small JSON file per host, ``state.json`` in ``[state] directory`` (systemd's
``StateDirectory=``, /var/lib/torrust-maint), so that it survives reboots. Every change is
a read-modify-write under an flock, written to a new file, fsynced and renamed over the old
one: a crash leaves the old state or the new one, never half of either. The directory is
root's (0700); no file in it is followed through a symlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torrust_maint import catalog, safefs

log = logging.getLogger(__name__)

STATE_NAME = "state.json"
LOCK_NAME = ".state.lock"
FORMAT = 1
JOBS = ("backup", "verify", "upload", "offsite-check")
MAX_STATE_BYTES = 1 << 20
NOTIFIED_KEPT = 20  # invocation ids remembered as notified (a notice is sent once)


class StateError(OSError):
    """The state file cannot be read or written (named in the message)."""


def read(directory: Path) -> dict[str, Any]:
    """The state, or an empty state when there is none yet; StateError when it is unreadable."""
    path = directory / STATE_NAME
    try:
        fd = safefs.open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        return {"format": FORMAT}
    except (OSError, safefs.UnsafePath) as error:  # UnsafePath: a symlink, FIFO, directory
        raise StateError(f"[state] directory: cannot read {path}: "
                         f"{getattr(error, 'strerror', None) or error}") from None
    with open(fd, "rb") as handle:
        raw = handle.read(MAX_STATE_BYTES + 1)
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or len(raw) > MAX_STATE_BYTES:
        raise StateError(f"[state] directory: {path} is not a torrust-maint state file "
                         "(remove it to start a new one)")
    return data


def job(data: dict[str, Any], name: str) -> dict[str, Any]:
    """One job's part of the state (backup or verify), empty if it never ran."""
    part = data.get(name)
    return part if isinstance(part, dict) else {}


def update(directory: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply `change` to the state under the state lock and write it atomically."""
    with _locked(directory):
        try:
            data = read(directory)
        except StateError as error:  # a damaged file is set aside, not trusted, not lost
            log.warning("%s; it is kept as %s.damaged and a new state begins", error, STATE_NAME)
            os.replace(directory / STATE_NAME, directory / f"{STATE_NAME}.damaged")
            data = {"format": FORMAT}
        change(data)
        data["format"] = FORMAT
        catalog.write_json_durably(directory, STATE_NAME, data, indent=2)
    return data


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.is_symlink() or not directory.is_dir():
            raise safefs.UnsafePath(f"{directory} is not a directory (a symlink is never "
                                    "followed)")
        fd = safefs.open_nofollow(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except (OSError, safefs.UnsafePath) as error:
        raise StateError(f"[state] directory: cannot use {directory}: "
                         f"{getattr(error, 'strerror', None) or error}") from None
    with open(fd, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# -- the run records ------------------------------------------------------------------------

def record_start(directory: Path, name: str, invocation_id: str | None) -> dict[str, Any]:
    """Mark a run of job `name` as running (a run killed later still shows here)."""
    run = {"started_at": catalog.rfc3339(catalog.utc_now()), "outcome": "running",
           "pid": os.getpid(), "invocation_id": invocation_id}

    def change(data: dict[str, Any]) -> None:
        data[name] = {**job(data, name), "last_run": run}

    update(directory, change)
    return run


def record_end(directory: Path, name: str, run: dict[str, Any]) -> dict[str, Any]:
    """Record a finished run (outcome success or failure); the job's state after it.

    A success resets the consecutive-failure count; it is kept in the run as
    ``failures_before`` so that a recovery notice can say how many runs had failed.
    """
    run = {**run, "finished_at": run.get("finished_at") or catalog.rfc3339(catalog.utc_now())}
    result: dict[str, Any] = {}

    def change(data: dict[str, Any]) -> None:
        part = job(data, name)
        failures = int(part.get("consecutive_failures") or 0)
        if run["outcome"] == "success":
            run["failures_before"] = failures
            part["last_success"] = run
            part["consecutive_failures"] = 0
        else:
            part["consecutive_failures"] = failures + 1
            part["last_failure"] = run
        run["consecutive_failures"] = part["consecutive_failures"]
        part["last_run"] = run
        data[name] = part
        result.update(part)

    update(directory, change)
    return result


def claim_notice(directory: Path, name: str, invocation_id: str) -> bool:
    """True once per invocation id: the caller is the one that sends its notice."""
    claimed = []

    def change(data: dict[str, Any]) -> None:
        part = job(data, name)
        notified = [i for i in part.get("notified") or [] if isinstance(i, str)]
        if invocation_id in notified:
            return
        part["notified"] = (notified + [invocation_id])[-NOTIFIED_KEPT:]
        data[name] = part
        claimed.append(True)

    update(directory, change)
    return bool(claimed)
