"""Real notification receivers for tests: an HTTP endpoint and an SMTP server on 127.0.0.1.

Both run in the test process (threads), record what they receive, and are context managers:

    with HttpReceiver() as http, SmtpReceiver() as smtp:
        urls = [http.url("/hook"), smtp.url()]   # Apprise URLs: json://..., mailto://...
        ...
        [post] = http.wait_for(1)
        [mail] = smtp.wait_for(1)

Apprise's JSON plugin POSTs {"version", "title", "message", "attachments", "type"}; its e-mail
plugin speaks plain SMTP to a mailto:// URL (no STARTTLS, no login without a user).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now): a dead endpoint."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def dead_url(path: str = "/dead") -> str:
    """An Apprise JSON URL whose port refuses connections."""
    return f"json://{HOST}:{free_port()}{path}"


class _Recorder:
    """A list of received items and a wait for a number of them."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._changed = threading.Condition()

    def _add(self, item: Any) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    @property
    def received(self) -> list[Any]:
        with self._changed:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = 60) -> list[Any]:
        """At least `count` items (all received so far), or AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._items) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{type(self).__name__}: {len(self._items)} of "
                                         f"{count} expected messages after {timeout} s: "
                                         f"{self._items!r}")
                self._changed.wait(left)
            return list(self._items)

    def clear(self) -> None:
        with self._changed:
            self._items.clear()


# -- HTTP ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class HttpRequest:
    """One request as received: method, path (with query), headers, raw body, JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    json: Any = None

    @property
    def title(self) -> str:
        return (self.json or {}).get("title", "")

    @property
    def message(self) -> str:
        return (self.json or {}).get("message", "")


class HttpReceiver(_Recorder):
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) recording every request.

    `status` is the code it answers (200; set 500 to play a broken endpoint). Every request
    is recorded before it is answered, so once a sender has its answer, the request is here.
    """

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    def url(self, path: str = "/notify") -> str:
        """The Apprise URL that POSTs JSON here (path may carry a query)."""
        return f"json://{HOST}:{self.port}{path}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                receiver._add(HttpRequest(self.command, self.path, dict(self.headers.items()),
                                          raw, body))
                answer = b'{"ok": true}' if receiver.status < 300 else b'{"error": "broken"}'
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PUT = do_GET = _handle  # noqa: N815 -- http.server's names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet: pytest shows what the test asserts

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="http-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- SMTP ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mail:
    """One message as received: the envelope, the parsed message, its subject and text."""

    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    raw: bytes = field(repr=False)

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """The plain-text body (decoded), or the first text part of any kind."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        return part.get_content().replace("\r\n", "\n")


class SmtpReceiver(_Recorder):
    """An aiosmtpd SMTP server on 127.0.0.1 (a free port), plain (no TLS), recording mail.

    `auth` = (user, password) makes it offer AUTH over the plain connection (as a test
    server may) and accept only that login; without it no login is asked for.
    """

    def __init__(self, auth: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.auth = auth
        self.logins: list[str] = []
        self._controller: Any = None
        self.port = 0

    def url(self, sender: str = "backup@example.com", to: str = "ops@example.com") -> str:
        """The Apprise URL that mails here (plain SMTP)."""
        user = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return f"mailto://{user}{HOST}:{self.port}?from={sender}&to={to}"

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any,  # noqa: N802 -- aiosmtpd's
                                  envelope: Any) -> str:
                raw = envelope.original_content or envelope.content
                if isinstance(raw, str):
                    raw = raw.encode("utf-8", "surrogateescape")
                message = email.message_from_bytes(raw, policy=email.policy.default)
                receiver._add(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, raw))
                return "250 Message accepted for delivery"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          auth_data: Any) -> AuthResult:
            if (isinstance(auth_data, LoginPassword) and self.auth is not None
                    and (auth_data.login.decode(), auth_data.password.decode()) == self.auth):
                receiver.logins.append(auth_data.login.decode())
                return AuthResult(success=True)
            return AuthResult(success=False, handled=False)

        options: dict[str, Any] = {}
        if self.auth is not None:
            options.update(authenticator=authenticator, auth_require_tls=False,
                           auth_required=True)
        last_error: Exception | None = None
        for _ in range(10):  # a free port may be taken between the probe and the bind
            port = free_port()
            with warnings.catch_warnings():  # AUTH without TLS: on purpose, on 127.0.0.1
                warnings.simplefilter("ignore", UserWarning)
                controller = Controller(Handler(), hostname=HOST, port=port, ready_timeout=30,
                                        **options)
            try:
                controller.start()
            except (OSError, RuntimeError, TimeoutError) as error:
                last_error = error
                with contextlib.suppress(Exception):
                    controller.stop()
                continue
            self._controller, self.port = controller, port
            return self
        raise RuntimeError(f"the SMTP receiver could not start: {last_error}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
