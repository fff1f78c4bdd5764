"""The progress of a long phase (export, checksums, the restore of a set to check or stage it).

The phase calls a Progress with the bytes done so far. On a terminal, unless logging is quiet
(-q), a bar (python3-tqdm) shows the bytes, the rate and, when the total is known, the time
left; it is drawn from the first bytes on and cleared when the phase ends, so the lines printed
after it start on a clean line. Without a terminal (systemd, cron, a pipe) a log line every
`every` seconds says how far the phase got (under systemd: in the journal). Either way the
service manager gets the same text as STATUS= and more time (EXTEND_TIMEOUT_USEC=) at that
pace; outside systemd those are no-ops.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from torrust_maint import notify

log = logging.getLogger(__name__)

EXTEND_SECONDS = 600  # asked of the service manager at each STATUS= update


def wants_bar(stream: Any) -> bool:
    """A terminal, and logging that shows INFO (-q shows warnings and errors only)."""
    if logging.getLogger("torrust_maint").getEffectiveLevel() > logging.INFO:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _new_bar(what: str, total: int | None, stream: Any) -> Any:
    """A tqdm bar on `stream`, or None when python3-tqdm is not installed."""
    try:
        from tqdm import tqdm  # type: ignore[import]
    except ImportError:
        return None

    class Bar(tqdm):
        monitor_interval = 0  # no monitor thread: update() is called for every chunk

    return Bar(desc=what, total=total, unit="B", unit_scale=True, file=stream, leave=False,
               dynamic_ncols=True)


class Progress:
    """Call with the bytes done so far (cumulative); close() or use it as a context manager.

    `total` (the bytes the phase will do, or an upper bound of them) gives the bar its ETA and
    the status its share done; None (or 0) when it is not known, as for a MySQL dump.
    """

    def __init__(self, what: str, total: int | None = None, *, every: float = 2.0,
                 stream: Any = None, clock: Callable[[], float] = time.monotonic):
        self.what, self.every, self.clock = what, every, clock
        # A manifest's size is checked before it gets here; anything else is "not known".
        self.total = total if type(total) is int and total > 0 else None
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = wants_bar(self.stream)
        self.bar: Any = None
        self.done = 0
        self.closed = False
        self.last = clock()

    def __call__(self, done: int) -> None:
        if self.closed:
            return
        self.done = done
        if self.terminal:
            self._draw(done)
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        text = self.status_text(done)
        notify.status(text)
        notify.extend_timeout(EXTEND_SECONDS)
        if not self.terminal:  # a log line would break the bar
            log.info(text)

    def status_text(self, done: int) -> str:
        text = f"{self.what}: {done / 1e6:.0f} MB so far"
        if self.total:
            share = min(100, done * 100 // self.total)
            text += f" ({share}% of {self.total / 1e6:.0f} MB)"
        return text

    def _draw(self, done: int) -> None:
        if self.bar is None:
            self.bar = _new_bar(self.what, self.total, self.stream)
            if self.bar is None:  # no tqdm: log lines, as without a terminal
                self.terminal = False
                return
        if self.bar.total is not None and done > self.bar.total:  # the total was a bound
            self.bar.total = done
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        """Clear the bar (the cursor is left at the start of an empty line); idempotent."""
        self.closed = True
        if self.bar is not None:
            bar, self.bar = self.bar, None
            bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
