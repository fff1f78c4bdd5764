"""sd_notify for the service manager: STATUS= progress and EXTEND_TIMEOUT_USEC= for long phases.

python3-systemd's ``systemd.daemon.notify`` is used (we need python3-systemd for the journal
anyway); outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import time


def _send(message: str) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        import systemd.daemon
    except ImportError:
        return
    systemd.daemon.notify(message)


def status(text: str) -> None:
    """Show `text` in `systemctl status torrust-backup`.

    Every phase of a run announces itself here, so this is also where the reliability tests
    (tests/reliability) inject faults at a known phase; see ``_fault_pause``.
    """
    _send(f"STATUS={text}")
    _fault_pause(text)


def _fault_pause(text: str) -> None:
    """TEST HOOK (fault injection), inert unless TORRUST_MAINT_FAULT_PAUSE is set.

    When TORRUST_MAINT_FAULT_PAUSE is set and is a substring of the status `text`, the text is
    appended as a line to the file named by TORRUST_MAINT_FAULT_LOG (if set) and the call
    sleeps TORRUST_MAINT_FAULT_SECONDS (default 5) before returning, or less: it returns as
    soon as the file named by TORRUST_MAINT_FAULT_RELEASE (if set) exists. A test waits for
    the line, then signals the process, recreates containers, fills the disk..., and creates
    the release file. A signal handler that raises (outside the window) ends the sleep.
    """
    pattern = os.environ.get("TORRUST_MAINT_FAULT_PAUSE")
    if not pattern or pattern not in text:
        return
    log_path = os.environ.get("TORRUST_MAINT_FAULT_LOG")
    if log_path:
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    release = os.environ.get("TORRUST_MAINT_FAULT_RELEASE")
    deadline = time.monotonic() + float(os.environ.get("TORRUST_MAINT_FAULT_SECONDS") or 5)
    while time.monotonic() < deadline:
        if release and os.path.exists(release):
            return
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))


def extend_timeout(seconds: float) -> None:
    """Ask the service manager for `seconds` more before it times the service out."""
    _send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")
