"""Logging: readable lines on a terminal, the journal when systemd runs us."""

from __future__ import annotations

import logging
import os
import sys

SYSLOG_IDENTIFIER = "torrust-maint"

# One MESSAGE_ID per kind of event (journalctl MESSAGE_ID=...): fixed forever once released.
MESSAGE_IDS = {
    "window_started": "929d54513f9a4875b78bc01d59cca9b3",
    "tracker_stopped": "6663318c5ed4482ea8db755538c0ddc8",
    "tracker_started": "e93038e91699405faa48c78737f3f7ba",
    "backup_committed": "951f809b16ee4dc0aafcb72aaa55c0a4",
    "backup_failed": "079997689f954a348948c97430a43f62",
    "backup_skipped": "59a3902dd800413c9a3c9dec641d2109",
    "sets_pruned": "8469d2032c954e65b37366ebdd9cb8a2",
    "window_recovered": "81113a07ce3e4ceeb59e7414686ce7f7",
}

event_log = logging.getLogger("torrust_maint.events")


def event(kind: str, message: str, *args, level: int = logging.INFO, **fields) -> None:
    """Log one event: a readable line everywhere, plus MESSAGE_ID and FIELDS in the journal.

    Field names are journal field names (upper case, e.g. TRACKER_DOWNTIME_SEC, BACKUP_ID).
    """
    extra = {"MESSAGE_ID": MESSAGE_IDS[kind], "TORRUST_EVENT": kind}
    extra.update({key.upper(): value for key, value in fields.items() if value is not None})
    event_log.log(level, message, *args, extra=extra)


def _journal_handler() -> logging.Handler | None:
    """A JournalHandler when stderr is connected to the journal (systemd sets JOURNAL_STREAM)."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return None
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return None
    if (info.st_dev, info.st_ino) != (device, inode):
        return None
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    return JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)


def setup(verbosity: int) -> None:
    """Configure the root logger for a command run."""
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    handler = _journal_handler()
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
