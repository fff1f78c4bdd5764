"""notifications: what a notice says, which events a run raises, and URLs that never leak.

The URLs here carry a distinctive secret and a host; no error, log record (at DEBUG, fields
included) or return value may hold either. Delivery uses the real Apprise library against a
receiver on localhost (or a closed localhost port for a failure).
"""

from __future__ import annotations

import http.server
import importlib
import json
import logging
import os
import socket
import threading
from pathlib import Path

import pytest

from torrust_maint import notifications
from torrust_maint.config import NotifyConfig
from torrust_maint.notifications import (
    Notice,
    NotifyError,
    compose,
    events_for,
    ordinal,
    read_urls_file,
    redacted,
    targets,
)

SECRET = "S3cr3tT0ken"
USER = "hookuser42"
HOST = "127.0.0.1"


def closed_port() -> int:
    """A localhost port that nothing listens on (bound for a moment, then released)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def secret_url(port: int = 9, path: str = "hook") -> str:
    return f"json://{USER}:{SECRET}@{HOST}:{port}/{path}"


def leaks(text: str) -> list[str]:
    """The parts of a secret URL found in `text` (its scheme alone may be shown)."""
    return [part for part in (SECRET, USER, HOST, f"json://{USER}") if part in text]


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    """Every record's message and every value it carries (journal fields included)."""
    texts = []
    for record in records:
        texts.append(record.getMessage())
        texts.extend(str(value) for value in record.__dict__.values())
    return texts


def assert_no_leak(*texts: str) -> None:
    found = {text: leaks(text) for text in texts if leaks(text)}
    assert not found, found


def urls_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "notify-urls"
    path.write_text(text)
    path.chmod(mode)
    return path


def url_error(path: Path) -> str:
    with pytest.raises(NotifyError) as caught:
        read_urls_file(path)
    return str(caught.value)


# -- ordinal and events ----------------------------------------------------------------------

@pytest.mark.parametrize(("number", "expected"), [
    (1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"), (13, "13th"),
    (21, "21st"), (22, "22nd"), (23, "23rd"), (101, "101st"), (111, "111th"), (112, "112th"),
    (100, "100th"), (20, "20th"),
])
def test_ordinal(number, expected):
    assert ordinal(number) == expected


def after(outcome: str, failures_before: int = 0, consecutive: int = 0, **run) -> dict:
    last = {"outcome": outcome, **run}
    if outcome == "success":
        last["failures_before"] = failures_before
    return {"last_run": last, "consecutive_failures": consecutive}


@pytest.mark.parametrize(("job", "part", "expected"), [
    ("backup", after("success", failures_before=2), ["recovery", "success"]),
    ("backup", after("success", failures_before=0), ["success"]),
    ("backup", after("failure", consecutive=1), ["failure"]),
    ("backup", after("failure", consecutive=4), ["failure"]),
    ("verify", after("failure", consecutive=1), ["verify_failure"]),
    ("verify", after("success"), []),
    ("verify", after("success", failures_before=3), []),
    ("backup", after("running"), []),
    ("backup", {}, []),
])
def test_events_for(job, part, expected):
    assert events_for(job, part) == expected


# -- what a notice says ----------------------------------------------------------------------

def test_a_failure_notice_carries_everything_an_operator_needs():
    part = after("failure", consecutive=3, error="the tracker is not running again",
                 exit_code=4, backup_id="20260301T030000Z", downtime_seconds=1.23456,
                 duration_seconds=42.04, started_at="2026-03-01T03:00:00.000000Z")
    notice = compose("backup", part, "failure", deployment="/srv/tracker",
                     next_run="2026-03-02T03:00:00Z", host="tracker-host-7")
    lines = notice.body.splitlines()

    assert notice.event == "failure"
    assert notice.title == "torrust-maint: backup FAILED on tracker-host-7 (3rd in a row)"
    assert "host: tracker-host-7" in lines
    assert "deployment: /srv/tracker" in lines
    assert "outcome: failure (exit 4)" in lines
    assert "error: the tracker is not running again" in lines
    assert "backup: 20260301T030000Z" in lines
    assert "tracker downtime: 1.235 s" in lines
    assert "duration: 42.0 s" in lines
    assert "3rd failure in a row" in lines
    assert "started: 2026-03-01T03:00:00.000000Z" in lines
    assert lines[-1] == "next scheduled run: 2026-03-02T03:00:00Z"


def test_a_first_failure_has_no_count_in_its_title():
    notice = compose("backup", after("failure", consecutive=1, exit_code=1), "failure",
                     deployment="/srv/tracker", host="h")
    assert notice.title == "torrust-maint: backup FAILED on h"
    assert "first failure (the run before it did not fail)" in notice.body.splitlines()
    assert not any(line.startswith("next scheduled run") for line in notice.body.splitlines())


def test_a_recovery_notice_counts_the_failed_runs_before():
    part = after("success", failures_before=2, exit_code=0, backup_id="20260301T030000Z",
                 downtime_seconds=0.5)
    notice = compose("backup", part, "recovery", deployment="/srv/tracker", host="h")
    lines = notice.body.splitlines()
    assert notice.title == "torrust-maint: backup recovered on h"
    assert "outcome: success" in lines  # exit 0 is not shown
    assert "after 2 failed runs in a row" in lines
    assert not any("failure in a row" in line for line in lines)
    one = compose("backup", after("success", failures_before=1), "recovery",
                  deployment="/d", host="h")
    assert "after 1 failed run in a row" in one.body.splitlines()


def test_an_inconclusive_verification_says_so_in_its_headline():
    part = after("failure", consecutive=1, inconclusive=True, error="docker did not answer")
    notice = compose("verify", part, "verify_failure", deployment="/srv/tracker", host="h")
    assert notice.title == ("torrust-maint: verification INCONCLUSIVE (no verdict on the data) "
                            "on h")
    failed = compose("verify", after("failure", consecutive=1), "verify_failure",
                     deployment="/srv/tracker", host="h")
    assert failed.title == "torrust-maint: verification FAILED on h"


def test_the_host_defaults_to_this_machine():
    notice = compose("backup", after("success"), "success", deployment="/d")
    assert f"host: {socket.gethostname()}" in notice.body.splitlines()
    assert notice.title.endswith(f"succeeded on {socket.gethostname()}")


# -- the URLs file ---------------------------------------------------------------------------

def test_a_urls_file_skips_comments_and_blank_lines(tmp_path):
    first, second = secret_url(9), secret_url(10, "other")
    path = urls_file(tmp_path, f"# where notices go\n\n  {first}  \n   # indented comment\n"
                               f"{second}\n\n")
    assert read_urls_file(path) == [first, second]
    settings = NotifyConfig(urls=("ntfy://topic-of-mine",), urls_file=path)
    found = targets(settings)
    assert [label for label, _ in found] == ["[notify] urls item 1 (ntfy)",
                                             "[notify] urls_file URL 1 (json)",
                                             "[notify] urls_file URL 2 (json)"]
    assert [url for _, url in found] == ["ntfy://topic-of-mine", first, second]
    assert_no_leak(*(label for label, _ in found))


def test_a_read_only_urls_file_0400_is_accepted(tmp_path):
    path = urls_file(tmp_path, secret_url() + "\n", mode=0o400)
    assert read_urls_file(path) == [secret_url()]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_urls_file_others_can_read_is_refused(tmp_path, mode):
    path = urls_file(tmp_path, secret_url() + "\n", mode=mode)
    message = url_error(path)
    assert message.startswith("[notify] urls_file: ")
    assert f"chmod 600 {path}" in message
    assert f"{mode:04o}" in message
    assert_no_leak(message)


def test_a_symlinked_urls_file_is_refused(tmp_path):
    real = urls_file(tmp_path, secret_url() + "\n")
    link = tmp_path / "link-to-urls"
    link.symlink_to(real)
    message = url_error(link)
    assert message.startswith("[notify] urls_file: ")
    assert "symbolic link" in message
    assert_no_leak(message)


def test_a_missing_urls_file(tmp_path):
    message = url_error(tmp_path / "absent")
    assert message == f"[notify] urls_file: {tmp_path / 'absent'} does not exist"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   \n"])
def test_a_urls_file_without_urls(tmp_path, text):
    path = urls_file(tmp_path, text)
    assert url_error(path) == f"[notify] urls_file: {path} holds no URL"


@pytest.mark.parametrize("bad", [
    f"{USER}:{SECRET}@{HOST}/hook",  # no scheme
    f"json://{USER}:{SECRET} @{HOST}/hook",  # a space inside
    f"json:/{USER}:{SECRET}@{HOST}",  # one slash
    f"j$on://{USER}:{SECRET}@{HOST}",  # not a scheme
])
def test_a_line_that_is_not_a_url_is_named_by_its_number_never_quoted(tmp_path, bad, caplog):
    path = urls_file(tmp_path, f"# notices\n{secret_url()}\n\n{bad}\n")
    with caplog.at_level(logging.DEBUG):
        message = url_error(path)
    assert message.startswith(f"[notify] urls_file: {path}: URL 2 ")
    assert_no_leak(message, *record_texts(caplog.records))


def test_a_urls_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "notify-urls"
    path.write_bytes(b"json://\xff\xfe@host/x\n")
    path.chmod(0o600)
    assert url_error(path) == f"[notify] urls_file: {path} is not UTF-8 text"


def test_a_huge_urls_file_is_refused(tmp_path):
    path = urls_file(tmp_path, "#" * (notifications.MAX_URLS_FILE_BYTES + 1))
    assert "is larger than" in url_error(path)


def test_the_settings_repr_never_shows_a_url():
    settings = NotifyConfig(urls=(secret_url(),))
    assert_no_leak(repr(settings))


# -- redaction -------------------------------------------------------------------------------

def test_redacted_blots_out_every_piece_of_the_url():
    url = f"json://{USER}:{SECRET}@hooks.example.org:8443/api/{SECRET}x?token=abc123"
    text = (f"Connection error sending to hooks.example.org:8443 as {USER} with "
            f"{SECRET}; see {url} and json://other@elsewhere/p; status 500")
    result = redacted(text, url)
    assert SECRET not in result and USER not in result
    assert "hooks.example.org" not in result and "abc123" not in result
    assert "json://" not in result and "elsewhere" not in result
    assert result.startswith("Connection error sending to …")
    assert result.endswith("status 500")  # the rest of the message stays readable


# -- problems (check) ------------------------------------------------------------------------

def test_problems_names_an_unknown_service_without_quoting_it(caplog):
    import apprise  # noqa: F401 -- its import adds its own NullHandler

    handlers = list(logging.getLogger("apprise").handlers)
    settings = NotifyConfig(urls=(f"nosuchservice://{USER}:{SECRET}@{HOST}/x",
                                  secret_url()))
    with caplog.at_level(logging.DEBUG):
        found = notifications.problems(settings)
    assert found == ["[notify] urls item 1 (nosuchservice): Apprise cannot use this URL "
                     "(unknown service or a missing part; see apprise(1))"]
    assert_no_leak(*found, *record_texts(caplog.records))
    assert logging.getLogger("apprise").handlers == handlers  # the capture is taken down


def test_problems_reports_an_unusable_urls_file(tmp_path):
    path = urls_file(tmp_path, secret_url() + "\n", mode=0o644)
    found = notifications.problems(NotifyConfig(urls_file=path))
    assert len(found) == 1 and "chmod 600" in found[0]
    assert_no_leak(*found)


def test_problems_of_good_urls_is_empty():
    assert notifications.problems(NotifyConfig(urls=(secret_url(),))) == []


# -- sending ---------------------------------------------------------------------------------

class Receiver:
    """An HTTP endpoint on localhost that records what Apprise's json:// posts."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        received = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 -- http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


FAILURE = Notice("failure", "torrust-maint: backup FAILED on h", "host: h\nerror: boom")


def test_send_delivers_title_and_body(receiver, caplog):
    settings = NotifyConfig(urls=(secret_url(receiver.port, "deliver"),))
    with caplog.at_level(logging.DEBUG):
        assert notifications.send(settings, FAILURE) is True
    [(path, payload)] = receiver.posts
    assert path == "/deliver"
    assert (payload["title"], payload["message"]) == (FAILURE.title, FAILURE.body)
    sent = [r for r in caplog.records if getattr(r, "TORRUST_EVENT", None) == "notice_sent"]
    assert len(sent) == 1 and sent[0].NOTICE_DELIVERED == 1
    assert_no_leak(*record_texts(caplog.records))


def test_send_to_a_closed_port_logs_label_and_scheme_only(caplog):
    settings = NotifyConfig(urls=(secret_url(closed_port()),))
    with caplog.at_level(logging.DEBUG):
        assert notifications.send(settings, FAILURE) is False
    errors = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.ERROR and r.name == notifications.log.name]
    assert len(errors) == 1
    assert errors[0].startswith("notice not delivered to [notify] urls item 1 (json): ")
    failed = [r for r in caplog.records if getattr(r, "TORRUST_EVENT", None) == "notice_failed"]
    assert [(r.NOTICE_DELIVERED, r.NOTICE_URLS) for r in failed] == [(0, 1)]
    assert_no_leak(*record_texts(caplog.records))


def test_send_goes_on_after_a_failing_url(receiver, caplog):
    settings = NotifyConfig(urls=(secret_url(closed_port()), secret_url(receiver.port)))
    with caplog.at_level(logging.DEBUG):
        assert notifications.send(settings, FAILURE) is False
    assert len(receiver.posts) == 1
    failed = [r for r in caplog.records if getattr(r, "TORRUST_EVENT", None) == "notice_failed"]
    assert [(r.NOTICE_DELIVERED, r.NOTICE_URLS) for r in failed] == [(1, 2)]
    assert_no_leak(*record_texts(caplog.records))


def test_a_plugin_that_raises_does_not_fail_the_run(monkeypatch, caplog):
    import apprise

    def explode(self, **kwargs):
        raise RuntimeError(f"plugin bug while talking to {HOST} as {USER}:{SECRET}")

    monkeypatch.setattr(apprise.Apprise, "notify", explode)
    with caplog.at_level(logging.DEBUG):
        assert notifications.send(NotifyConfig(urls=(secret_url(),)), FAILURE) is False
    messages = [r.getMessage() for r in caplog.records]
    assert any("RuntimeError: plugin bug while talking to …" in m for m in messages)
    assert_no_leak(*record_texts(caplog.records))


def test_send_of_an_unusable_url_names_its_label(caplog):
    settings = NotifyConfig(urls=(f"nosuchservice://{USER}:{SECRET}@{HOST}/x",))
    with caplog.at_level(logging.DEBUG):
        assert notifications.send(settings, FAILURE) is False
    assert any(r.getMessage() == "notice not sent to [notify] urls item 1 (nosuchservice): "
               "Apprise cannot use this URL" for r in caplog.records)
    assert_no_leak(*record_texts(caplog.records))


def test_send_of_an_unusable_urls_file_sends_nothing(tmp_path, caplog):
    path = urls_file(tmp_path, secret_url() + "\n", mode=0o644)
    with caplog.at_level(logging.DEBUG):
        assert notifications.send(NotifyConfig(urls_file=path), FAILURE) is False
    assert any("chmod 600" in r.getMessage() for r in caplog.records)
    assert_no_leak(*record_texts(caplog.records))


def test_send_skips_events_not_wanted(receiver):
    settings = NotifyConfig(urls=(secret_url(receiver.port),), on=("failure", "recovery"))
    success = Notice("success", "torrust-maint: backup succeeded on h", "host: h")
    assert notifications.send(settings, success) is True
    assert receiver.posts == []
    assert notifications.send(settings, FAILURE) is True
    assert len(receiver.posts) == 1


def test_send_without_urls_sends_nothing(monkeypatch):
    def never(*args):
        raise AssertionError("nothing is configured: no URL may be tried")

    monkeypatch.setattr(notifications, "_send_one", never)
    assert notifications.send(NotifyConfig(), FAILURE) is True


@pytest.mark.parametrize("name", ["apprise", "urllib3"])
def test_the_quieted_loggers_are_restored_after_a_send(name):
    importlib.import_module(name)  # its import adds a NullHandler: not ours to restore
    logger = logging.getLogger(name)
    before = (logger.propagate, logger.level, list(logger.handlers))
    notifications.send(NotifyConfig(urls=(secret_url(closed_port()),)), FAILURE)
    assert (logger.propagate, logger.level, list(logger.handlers)) == before


def test_no_environment_variable_carries_a_url_after_a_send(receiver):
    notifications.send(NotifyConfig(urls=(secret_url(receiver.port),)), FAILURE)
    assert_no_leak(*(f"{key}={value}" for key, value in os.environ.items()
                     if key.startswith(("APPRISE", "TORRUST"))))
