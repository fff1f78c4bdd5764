"""sd_notify for the service manager: STATUS= progress and EXTEND_TIMEOUT_USEC= for long phases.

python3-systemd's ``systemd.daemon.notify`` is used (we need python3-systemd for the journal
anyway); outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os


def _send(message: str) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        from systemd import daemon
    except ImportError:
        return
    daemon.notify(message)


def status(text: str) -> None:
    """Show `text` in `systemctl status torrust-backup`."""
    _send(f"STATUS={text}")


def extend_timeout(seconds: float) -> None:
    """Ask the service manager for `seconds` more before it times the service out."""
    _send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")
