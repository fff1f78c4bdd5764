"""Logging: readable lines on a terminal, the journal when systemd runs us, an optional file.

Under systemd (stderr is the journal stream named by JOURNAL_STREAM) every record goes to the
journal natively, with PRIORITY, SYSLOG_IDENTIFIER=torrust-maint, CODE_* and, for events
(``event()``), MESSAGE_ID, TORRUST_EVENT and the event's upper-case fields
(TRACKER_DOWNTIME_SEC, BACKUP_ID, BACKUP_BYTES, DB_DRIVER, ...).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

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
    "set_verified": "aeb8e0c73e0147fc940237a4d4900527",
    "verify_failed": "889cd5d82bd94a4e998ab597f9e4b410",
    "verify_inconclusive": "227a7b96dc284981aedfd2d106b69706",
    "restore_started": "1dad29fc440d437283395556b411bf27",
    "restore_swapped": "012d9024cfae4f30afbe1e81cdcfe9cb",
    "restore_completed": "915018e1df3d4ce481f227feedbdd3d2",
    "restore_failed": "706270caf63343eb88c45cda3278bf3d",
    "unit_failed": "058cb4fce9ab4886bc7d0b057ad82238",
    "attempt_failed": "5a1b8fc0356e41c2ad97078afa3d926b",
    "notice_sent": "ff4996e7081e4cd89c19a89c1206fc16",
    "notice_failed": "6ffed7e78944441ca6b6c96fb6d4f172",
    "offsite_uploaded": "35152df5ef154dcf92c72ba4a81e10e0",
    "offsite_failed": "b082bfb40964439fb9dc734eed5aa84e",
    "offsite_forgotten": "adb2bdf4c3e74b6a98a0732e34216d8a",
    "offsite_checked": "2de587f00eb947aba6857357e8e18dea",
    "offsite_fetched": "898c570fb602478c9d674e14d92f7f68",
    "switched_to_wal": "b1eff495dcea47b1bb92faf478923f7e",
}

# A journal field name a client may set: upper case, digits, underscores, not starting with
# an underscore (those are trusted fields journald adds itself), at most 64 characters.
FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}\Z")
# Fields the handler sets itself; a record attribute never overrides them.
RESERVED_FIELDS = frozenset({"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER",
                             "CODE_FILE", "CODE_LINE", "CODE_FUNC"})
LINE_FORMAT = "%(asctime)s %(levelname)s %(message)s"

event_log = logging.getLogger("torrust_maint.events")


def event(kind: str, message: str, *args, level: int = logging.INFO, **fields) -> None:
    """Log one event: a readable line everywhere, plus MESSAGE_ID and FIELDS in the journal.

    Field names are journal field names (upper case, e.g. TRACKER_DOWNTIME_SEC, BACKUP_ID).
    """
    extra = {"MESSAGE_ID": MESSAGE_IDS[kind], "TORRUST_EVENT": kind}
    extra.update({key.upper(): value for key, value in fields.items() if value is not None})
    event_log.log(level, message, *args, extra=extra)


def record_fields(record: logging.LogRecord) -> dict[str, str]:
    """The journal fields a record carries: its upper-case attributes (``extra=``).

    Lower-case LogRecord attributes (name, msg, args, exc_info, ...) are not journal fields and
    are left out, as are values that are None.
    """
    return {key: str(value) for key, value in record.__dict__.items()
            if FIELD_NAME.match(key) and key not in RESERVED_FIELDS and value is not None}


def journal_priority(levelno: int) -> int:
    """syslog priority of a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFieldsHandler(logging.Handler):
    """Sends each record to journald natively, with its event fields.

    (python-systemd's JournalHandler would also pass every lower-case LogRecord attribute as
    a field; journald drops those, but they are noise and their number grows with Python.)
    """

    def __init__(self, sender: Callable[..., object] | None = None,
                 identifier: str = SYSLOG_IDENTIFIER):
        super().__init__()
        if sender is None:
            from systemd.journal import send as journal_send

            sender = journal_send
        self.sender: Callable[..., object] = sender
        self.identifier = identifier

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            fields = record_fields(record)
            self.sender(message, PRIORITY=str(journal_priority(record.levelno)),
                        SYSLOG_IDENTIFIER=self.identifier, LOGGER=record.name,
                        CODE_FILE=record.pathname, CODE_LINE=record.lineno,
                        CODE_FUNC=record.funcName, **fields)
        except Exception:  # noqa: BLE001 -- logging must never break a backup
            self.handleError(record)


class FieldsFormatter(logging.Formatter):
    """A readable line, followed by an event's kind and fields (for the log file)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = record_fields(record)
        if not fields:
            return line
        kind = fields.pop("TORRUST_EVENT", None)
        fields.pop("MESSAGE_ID", None)
        pairs = " ".join(f"{key}={value!r}" if " " in value else f"{key}={value}"
                         for key, value in sorted(fields.items()))
        return f"{line} [{kind}{' ' if pairs else ''}{pairs}]" if kind else f"{line} [{pairs}]"


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
        return JournalFieldsHandler()
    except ImportError:
        return None


def setup(verbosity: int) -> None:
    """Configure the root logger for a command run."""
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    handler = _journal_handler()
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LINE_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def add_file_log(path: Path) -> logging.Handler | None:
    """Also append log lines (with event fields) to `path` ([logging] file).

    The directory (0750) and the file (0640) are created if missing. A file that cannot be
    opened is a warning,
    not a failed backup. The handler reopens the file when logrotate has moved it.
    """
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        try:  # 0640 whoever creates it (a root shell or the unit): as logrotate's `create`
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            pass
        else:
            os.fchmod(fd, 0o640)
            os.close(fd)
        handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8",
                                                      errors="backslashreplace")
    except OSError as error:
        logging.getLogger(__name__).warning(
            "[logging] file: cannot open %s: %s; logging to it is off for this run",
            path, error.strerror or error)
        return None
    handler.setFormatter(FieldsFormatter(LINE_FORMAT, "%Y-%m-%dT%H:%M:%S%z"))
    logging.getLogger().addHandler(handler)
    return handler
