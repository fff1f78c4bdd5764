"""Our timers and services as systemd sees them, read over its D-Bus API (python3-pystemd).

``units()`` answers ``torrust-maint status``: whether the timers are enabled, their next and
last elapse, and the last result of each service. ``next_backup()`` is the next scheduled
backup run for the notifications. Both return None where systemd cannot be reached (not
booted with systemd, no system bus, pystemd missing, access denied): never an exception.

The ``reader`` seam is a callable ``reader(unit_name) -> dict`` of the unit's D-Bus
properties (the names below); the default reads them with pystemd over the system bus. Values
may be bytes (as pystemd returns strings) or str; a missing property counts as unknown.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torrust_maint.catalog import rfc3339

log = logging.getLogger(__name__)

TIMERS = ("torrust-backup.timer", "torrust-verify.timer")
SERVICES = ("torrust-backup.service", "torrust-verify.service")
BACKUP_TIMER = TIMERS[0]

Reader = Callable[[str], dict[str, Any]]

SYSTEMD_RUNNING = "/run/systemd/system"  # as sd_booted(3) tells
USEC_INFINITY = 2**64 - 1  # systemd's "never" (as is 0)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# UnitFileState values under which the timer is started at boot (systemctl is-enabled).
ENABLED = ("enabled", "enabled-runtime")

UNIT_PROPERTIES = ("LoadState", "ActiveState", "UnitFileState")
TIMER_PROPERTIES = ("NextElapseUSecRealtime", "LastTriggerUSec")
SERVICE_PROPERTIES = ("Result", "ExecMainStatus", "ExecMainExitTimestamp",
                      "ExecMainStartTimestamp")


def units(reader: Reader | None = None) -> dict[str, dict[str, Any]] | None:
    """Our timers and services (see the module docstring), or None without systemd.

    {"torrust-backup.timer": {"load_state", "enabled" (UnitFileState), "active",
                              "next_elapse", "last_elapse"},
     "torrust-backup.service": {"load_state", "active", "result" (Result),
                                "exit_status" (ExecMainStatus), "last_exit", "last_start"},
     ... and the same for torrust-verify.*}. Times are RFC 3339 UTC strings or None (never);
    a unit that is not loaded has its load_state ("not-found", "masked", ...) and None elsewhere.
    """
    raw = _read_all(reader)
    if raw is None:
        return None
    result: dict[str, dict[str, Any]] = {}
    for name in TIMERS:
        result[name] = _timer(raw[name])
    for name in SERVICES:
        result[name] = _service(raw[name])
    return result


def next_backup(reader: Reader | None = None) -> str | None:
    """The next elapse of torrust-backup.timer (RFC 3339 UTC), or None: systemd not reachable,
    the timer not loaded or not enabled, or nothing scheduled."""
    found = units(reader)
    if found is None:
        return None
    timer = found[BACKUP_TIMER]
    if timer["load_state"] != "loaded" or timer["enabled"] not in ENABLED:
        return None
    next_elapse: str | None = timer["next_elapse"]
    return next_elapse


def _read_all(reader: Reader | None) -> dict[str, dict[str, Any]] | None:
    """Every unit's raw properties, or None when systemd cannot be reached."""
    names = (*TIMERS, *SERVICES)
    try:
        if reader is not None:
            return {name: reader(name) for name in names}
        if not os.path.isdir(SYSTEMD_RUNNING):
            log.debug("systemd units: not booted with systemd (no %s)", SYSTEMD_RUNNING)
            return None
        with _pystemd_reader() as read:
            return {name: read(name) for name in names}
    # ImportError (no pystemd), pystemd.dbusexc.DBus*Error (no bus, access denied, systemd
    # gone), OSError, or whatever a reader raises: status and notifications go on without it.
    except Exception as error:  # noqa: BLE001 -- systemd's view is optional, never fatal
        log.debug("systemd units: cannot read them over D-Bus: %s: %s",
                  type(error).__name__, error)
        return None


@contextmanager
def _pystemd_reader() -> Iterator[Reader]:
    """A reader over one system bus connection (pystemd opens one per property otherwise)."""
    from pystemd.dbuslib import DBus
    from pystemd.systemd1 import Unit

    bus = DBus()
    bus.open()
    try:
        def read(name: str) -> dict[str, Any]:
            unit = Unit(name.encode(), bus=bus)
            unit.load()
            props: dict[str, Any] = {"LoadState": unit.Unit.LoadState}
            if _text(props["LoadState"]) != "loaded":
                return props
            for prop in UNIT_PROPERTIES[1:]:
                props[prop] = getattr(unit.Unit, prop)
            typed, wanted = ((unit.Timer, TIMER_PROPERTIES) if name.endswith(".timer")
                             else (unit.Service, SERVICE_PROPERTIES))
            for prop in wanted:
                props[prop] = getattr(typed, prop)
            return props

        yield read
    finally:
        bus.close()


def _timer(props: dict[str, Any]) -> dict[str, Any]:
    load_state = _text(props.get("LoadState"))
    if load_state != "loaded":
        return {"load_state": load_state or "not-found", "enabled": None, "active": None,
                "next_elapse": None, "last_elapse": None}
    return {"load_state": load_state,
            "enabled": _text(props.get("UnitFileState")),
            "active": _text(props.get("ActiveState")),
            "next_elapse": _usec(props.get("NextElapseUSecRealtime")),
            "last_elapse": _usec(props.get("LastTriggerUSec"))}


def _service(props: dict[str, Any]) -> dict[str, Any]:
    load_state = _text(props.get("LoadState"))
    if load_state != "loaded":
        return {"load_state": load_state or "not-found", "active": None, "result": None,
                "exit_status": None, "last_exit": None, "last_start": None}
    last_exit = _usec(props.get("ExecMainExitTimestamp"))
    return {"load_state": load_state,
            "active": _text(props.get("ActiveState")),
            "result": _text(props.get("Result")),
            # systemd resets ExecMainStatus to 0 when the main process starts: it is an exit
            # status only once the process has exited.
            "exit_status": _int(props.get("ExecMainStatus")) if last_exit else None,
            "last_exit": last_exit,
            "last_start": _usec(props.get("ExecMainStartTimestamp"))}


def _text(value: Any) -> str | None:
    """A D-Bus string (bytes from pystemd) as str; empty or missing as None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value:
        return None
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _usec(value: Any) -> str | None:
    """Realtime µs since the epoch as RFC 3339 UTC; 0 and 2**64-1 (never) as None."""
    usec = _int(value)
    if usec is None or usec <= 0 or usec >= USEC_INFINITY:
        return None
    try:
        return rfc3339(EPOCH + dt.timedelta(microseconds=usec))
    except OverflowError:  # past year 9999: not a time systemd means
        return None
