"""Notices of run outcomes through Apprise (ntfy, e-mail, Matrix, webhooks and ~80 more).

The URLs carry secrets (tokens, passwords), so no URL is ever logged, printed or put in an
error: a URL is named by its position and scheme only ("URL 2 (mailto)"), and Apprise's own
log lines, which quote URLs half-masked, are kept out of our logs. A notice that cannot be
sent is logged; it never changes a run's outcome or exit code.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torrust_maint import safefs
from torrust_maint.config import NotifyConfig, url_problem
from torrust_maint.journal import event

log = logging.getLogger(__name__)

MAX_URLS_FILE_BYTES = 64 * 1024
# Apprise's message types: services such as ntfy, Slack or Discord colour or tag them.
NOTIFY_TYPES = {"failure": "failure", "verify_failure": "failure", "recovery": "success",
                "success": "success"}


class NotifyError(Exception):
    """The notification settings cannot be used (named in the message, no URL in it)."""


@dataclass(frozen=True)
class Notice:
    """One message: its event (failure, recovery, success, verify_failure), title and body."""

    event: str
    title: str
    body: str


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st..."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th')}"


JOB_TITLES = {"upload": "off-site upload", "offsite-check": "off-site check"}


def events_for(job: str, part: dict[str, Any]) -> list[str]:
    """Which events the last run of `job` raises, given that job's state after the run."""
    run = part.get("last_run") or {}
    if run.get("outcome") == "success":
        if job == "verify":  # a passing verification is the normal case: no notice
            return []
        return (["recovery"] if int(run.get("failures_before") or 0) else []) + ["success"]
    if run.get("outcome") == "failure":
        return ["verify_failure"] if job == "verify" else ["failure"]
    return []


def compose(job: str, part: dict[str, Any], event_name: str, *, deployment: str,
            next_run: str | None = None, host: str | None = None) -> Notice:
    """The notice for `event_name`: host, deployment, outcome, error, backup id, downtime,
    duration, failures in a row and the next scheduled run."""
    run = part.get("last_run") or {}
    host = host or socket.gethostname()
    failures = int(part.get("consecutive_failures") or 0)
    job = JOB_TITLES.get(job, job)
    headline = {
        "failure": f"{job} FAILED",
        "verify_failure": "verification FAILED",
        "recovery": f"{job} recovered",
        "success": f"{job} succeeded",
    }[event_name]
    if event_name == "verify_failure" and run.get("inconclusive"):
        headline = "verification INCONCLUSIVE (no verdict on the data)"
    lines = [f"host: {host}", f"deployment: {deployment}",
             f"outcome: {run.get('outcome', 'unknown')}"
             + (f" (exit {run['exit_code']})" if run.get("exit_code") not in (None, 0) else "")]
    if run.get("error"):
        lines.append(f"error: {run['error']}")
    if run.get("backup_id"):
        lines.append(f"backup: {run['backup_id']}")
    if run.get("uploaded") is not None:
        lines.append(f"sets uploaded: {run['uploaded']}, {run.get('bytes_added', 0)} bytes added")
    if run.get("downtime_seconds") is not None:
        lines.append(f"tracker downtime: {run['downtime_seconds']:.3f} s")
    if run.get("duration_seconds") is not None:
        lines.append(f"duration: {run['duration_seconds']:.1f} s")
    if event_name in ("failure", "verify_failure") and failures:
        lines.append(f"{ordinal(failures)} failure in a row" if failures > 1
                     else "first failure (the run before it did not fail)")
    if event_name == "recovery":
        before = int(run.get("failures_before") or 0)
        lines.append(f"after {before} failed run{'s' if before != 1 else ''} in a row")
    lines.append(f"started: {run.get('started_at', 'unknown')}")
    if next_run:
        lines.append(f"next scheduled run: {next_run}")
    title = f"torrust-maint: {headline} on {host}"
    if event_name == "failure" and failures > 1:
        title += f" ({ordinal(failures)} in a row)"
    return Notice(event_name, title, "\n".join(lines))


# -- the URLs -------------------------------------------------------------------------------

def scheme(url: str) -> str:
    """The part of a URL that is safe to show."""
    return url.partition("://")[0].lower() if "://" in url else "?"


def read_urls_file(path: Path) -> list[str]:
    """The URLs of a urls_file: one per line, blank lines and # comments skipped. It must be
    a regular file that no one but its owner can read or write (mode 0600 or 0400)."""
    try:
        raw = safefs.read_private_file(path, "[notify] urls_file", MAX_URLS_FILE_BYTES)
    except safefs.PrivateFileError as error:
        raise NotifyError(str(error)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotifyError(f"[notify] urls_file: {path} is not UTF-8 text") from None
    urls = [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]
    if not urls:
        raise NotifyError(f"[notify] urls_file: {path} holds no URL")
    for number, url in enumerate(urls, 1):
        problem = url_problem(url)
        if problem:
            raise NotifyError(f"[notify] urls_file: {path}: URL {number} {problem}")
    return urls


def targets(settings: NotifyConfig) -> list[tuple[str, str]]:
    """(label, url) for every configured URL; the label ("urls 2 (json)") is safe to show."""
    found = [(f"[notify] urls item {n} ({scheme(u)})", u)
             for n, u in enumerate(settings.urls, 1)]
    if settings.urls_file is not None:
        found += [(f"[notify] urls_file URL {n} ({scheme(u)})", u)
                  for n, u in enumerate(read_urls_file(settings.urls_file), 1)]
    return found


@contextlib.contextmanager
def apprise_log_captured() -> Iterator[list[str]]:
    """Keep Apprise's log lines (they quote URLs) out of ours; yield them for redaction."""
    captured: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                captured.append(record.getMessage())

    # urllib3 (under requests) logs the host and the path, which may hold a token, at DEBUG
    loggers = [logging.getLogger(name) for name in ("apprise", "urllib3")]
    handler = Collect()
    saved = [(logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        logger.addHandler(handler)
    try:
        yield captured
    finally:
        for logger, (propagate, level) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.propagate, logger.level = propagate, level


def redacted(text: str, url: str) -> str:
    """`text` with every piece of `url` (host, user, password, token, path) blotted out."""
    pieces = {piece for piece in re.split(r"[:/@?&=#,+%]+", url.partition("://")[2])
              if len(piece) >= 3}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "…")
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S*", "<url>", text)


def load(url: str) -> Any:
    """An Apprise object holding the one URL, or None when Apprise cannot use it."""
    import apprise

    with apprise_log_captured():
        notifier = apprise.Apprise()
        return notifier if notifier.add(url) else None


def problems(settings: NotifyConfig) -> list[str]:
    """What `check` reports of the notification settings (loads every URL, sends nothing)."""
    try:
        found = targets(settings)
    except NotifyError as error:
        return [str(error)]
    try:
        import apprise  # noqa: F401
    except ImportError:
        return ["[notify]: the apprise module is missing (install the apprise package)"]
    return [f"{label}: Apprise cannot use this URL (unknown service or a missing part; "
            "see apprise(1))" for label, url in found if load(url) is None]


def send(settings: NotifyConfig, notice: Notice) -> bool:
    """Send `notice` to every URL if its event is wanted; True when all delivered (or none was
    wanted). Each failure is logged with its URL's position and scheme, never the URL."""
    if notice.event not in settings.on or not settings.configured:
        return True
    try:
        found = targets(settings)
        import apprise
    except NotifyError as error:
        log.error("notice not sent: %s", error)
        return False
    except ImportError:
        log.error("notice not sent: the apprise module is missing (install apprise)")
        return False
    delivered = 0
    for label, url in found:
        if _send_one(apprise, label, url, notice):
            delivered += 1
    event("notice_sent" if delivered == len(found) else "notice_failed",
          "%s notice delivered to %d of %d URL(s)", notice.event, delivered, len(found),
          level=logging.INFO if delivered == len(found) else logging.ERROR,
          NOTICE_EVENT=notice.event, NOTICE_DELIVERED=delivered, NOTICE_URLS=len(found))
    return delivered == len(found)


def _send_one(apprise: Any, label: str, url: str, notice: Notice) -> bool:
    with apprise_log_captured() as captured:
        try:
            notifier = apprise.Apprise()
            if not notifier.add(url):
                log.error("notice not sent to %s: Apprise cannot use this URL", label)
                return False
            if notifier.notify(title=notice.title, body=notice.body,
                               body_format=apprise.NotifyFormat.TEXT,
                               notify_type=NOTIFY_TYPES.get(notice.event, "info")):
                return True
        except Exception as error:  # noqa: BLE001 -- a plugin's bug must not fail the run
            captured.append(f"{type(error).__name__}: {error}")
    reason = "; ".join(redacted(line, url) for line in captured[-2:]) or "no reason given"
    log.error("notice not delivered to %s: %s", label, reason)
    return False
