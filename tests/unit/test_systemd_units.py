"""systemd_units: our timers and services from D-Bus properties, through a fake reader."""

from __future__ import annotations

import builtins
import datetime as dt
import logging

import pytest

from torrust_maint import systemd_units
from torrust_maint.catalog import parse_rfc3339
from torrust_maint.systemd_units import SERVICES, TIMERS, next_backup, units

NEVER = 2**64 - 1
# 2025-11-27T03:02:13.123456Z in µs since the epoch
NEXT_USEC = 1764212533123456
NEXT = "2025-11-27T03:02:13.123456Z"
LAST_USEC = 1764126133000001
LAST = "2025-11-26T03:02:13.000001Z"


def timer(**props) -> dict:
    base = {"LoadState": b"loaded", "UnitFileState": b"enabled", "ActiveState": b"active",
            "NextElapseUSecRealtime": NEXT_USEC, "LastTriggerUSec": LAST_USEC}
    return {**base, **props}


def service(**props) -> dict:
    base = {"LoadState": b"loaded", "ActiveState": b"inactive", "Result": b"success",
            "ExecMainStatus": 0, "ExecMainStartTimestamp": LAST_USEC,
            "ExecMainExitTimestamp": LAST_USEC + 61_500_000}
    return {**base, **props}


def not_found() -> dict:
    return {"LoadState": b"not-found"}


class FakeReader:
    """reader(unit_name) -> that unit's properties, recording the names asked for."""

    def __init__(self, **by_unit: dict) -> None:
        self.by_unit = {
            "torrust-backup.timer": timer(), "torrust-verify.timer": timer(),
            "torrust-backup.service": service(), "torrust-verify.service": service()}
        for short, props in by_unit.items():  # backup_timer -> torrust-backup.timer
            name = "torrust-" + short.replace("_", ".")
            assert name in self.by_unit, short
            self.by_unit[name] = props
        self.asked: list[str] = []

    def __call__(self, name: str) -> dict:
        self.asked.append(name)
        return self.by_unit[name]


def test_every_unit_is_read_and_converted():
    reader = FakeReader()
    found = units(reader)
    assert sorted(reader.asked) == sorted((*TIMERS, *SERVICES))
    assert set(found) == {*TIMERS, *SERVICES}
    for name in TIMERS:
        assert found[name] == {"load_state": "loaded", "enabled": "enabled", "active": "active",
                               "next_elapse": NEXT, "last_elapse": LAST}
    for name in SERVICES:
        assert found[name] == {"load_state": "loaded", "active": "inactive",
                               "result": "success", "exit_status": 0,
                               "last_exit": "2025-11-26T03:03:14.500001Z", "last_start": LAST}


@pytest.mark.parametrize("usec, expected", [
    (1, "1970-01-01T00:00:00.000001Z"),
    (NEXT_USEC, NEXT),
    (1_700_000_000_000_000, "2023-11-14T22:13:20.000000Z"),
    (253402300799999999, "9999-12-31T23:59:59.999999Z"),
    (0, None),
    (NEVER, None),
    (NEVER - 1, None),  # past year 9999: no datetime
    (-5, None),
    (None, None),
    ("1764212533123456", None),  # not an integer from D-Bus
    (True, None),
])
def test_usec_to_rfc3339(usec, expected):
    found = units(FakeReader(backup_timer=timer(NextElapseUSecRealtime=usec)))
    assert found["torrust-backup.timer"]["next_elapse"] == expected
    if expected is not None:  # exact: no float rounding of the µs
        moment = parse_rfc3339(expected)
        assert (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
            microseconds=1) == usec


def test_never_elapsed_and_never_ran_are_none():
    found = units(FakeReader(
        backup_timer=timer(UnitFileState=b"disabled", ActiveState=b"inactive",
                           NextElapseUSecRealtime=0, LastTriggerUSec=0),
        verify_timer=timer(NextElapseUSecRealtime=NEVER, LastTriggerUSec=NEVER),
        verify_service=service(ExecMainStartTimestamp=0, ExecMainExitTimestamp=0)))
    assert found["torrust-backup.timer"] == {
        "load_state": "loaded", "enabled": "disabled", "active": "inactive",
        "next_elapse": None, "last_elapse": None}
    assert found["torrust-verify.timer"]["next_elapse"] is None
    assert found["torrust-verify.timer"]["last_elapse"] is None
    # Never ran: Result is systemd's initial "success", but there is no exit status.
    assert found["torrust-verify.service"] == {
        "load_state": "loaded", "active": "inactive", "result": "success",
        "exit_status": None, "last_exit": None, "last_start": None}


def test_a_failed_run():
    found = units(FakeReader(backup_service=service(
        ActiveState=b"failed", Result=b"exit-code", ExecMainStatus=3)))
    assert found["torrust-backup.service"]["active"] == "failed"
    assert found["torrust-backup.service"]["result"] == "exit-code"
    assert found["torrust-backup.service"]["exit_status"] == 3


def test_a_running_service_has_a_start_but_no_exit_yet():
    found = units(FakeReader(backup_service=service(
        ActiveState=b"activating", ExecMainStatus=0, ExecMainExitTimestamp=0)))
    backup = found["torrust-backup.service"]
    assert backup["last_start"] == LAST
    assert backup["last_exit"] is None and backup["exit_status"] is None


def test_not_found_units_have_their_load_state_only():
    found = units(FakeReader(backup_timer=not_found(), verify_service=not_found()))
    assert found["torrust-backup.timer"] == {
        "load_state": "not-found", "enabled": None, "active": None,
        "next_elapse": None, "last_elapse": None}
    assert found["torrust-verify.service"] == {
        "load_state": "not-found", "active": None, "result": None,
        "exit_status": None, "last_exit": None, "last_start": None}
    assert found["torrust-verify.timer"]["load_state"] == "loaded"


def test_other_load_states_and_missing_properties():
    found = units(FakeReader(backup_timer={"LoadState": b"masked", "UnitFileState": b"masked"},
                             verify_timer={}, backup_service={"LoadState": b""}))
    assert found["torrust-backup.timer"]["load_state"] == "masked"
    assert found["torrust-backup.timer"]["enabled"] is None
    assert found["torrust-verify.timer"]["load_state"] == "not-found"
    assert found["torrust-backup.service"]["load_state"] == "not-found"
    # A loaded unit without some property: that field is unknown, the rest still read.
    partial = units(FakeReader(backup_timer={"LoadState": b"loaded", "ActiveState": b"active"}))
    assert partial["torrust-backup.timer"] == {
        "load_state": "loaded", "enabled": None, "active": "active",
        "next_elapse": None, "last_elapse": None}


def test_bytes_and_str_are_both_decoded():
    found = units(FakeReader(
        backup_timer=timer(LoadState="loaded", UnitFileState="enabled-runtime",
                           ActiveState="active"),
        backup_service=service(Result="oom-kill", ActiveState=b"failed"),
        verify_service=service(Result="sign\u00e9".encode() + b"\xff")))
    assert found["torrust-backup.timer"]["enabled"] == "enabled-runtime"
    assert found["torrust-backup.service"]["result"] == "oom-kill"
    assert found["torrust-verify.service"]["result"] == "sign\u00e9\ufffd"
    for unit in found.values():
        for value in unit.values():
            assert not isinstance(value, bytes)


@pytest.mark.parametrize("error", [
    OSError(2, "No such file or directory"),
    PermissionError(13, "Permission denied"),
    ImportError("No module named 'pystemd'"),
    RuntimeError("[err -13]: Access denied"),
    KeyError("torrust-verify.service"),
])
def test_units_is_none_when_the_reader_raises(error, caplog):
    def reader(name):
        if name == "torrust-verify.service":
            raise error
        return FakeReader()(name)

    with caplog.at_level(logging.DEBUG, logger="torrust_maint.systemd_units"):
        assert units(reader) is None
        assert next_backup(reader) is None
    assert caplog.records
    assert all(record.levelno == logging.DEBUG for record in caplog.records)


def test_not_booted_with_systemd(monkeypatch, caplog):
    monkeypatch.setattr(systemd_units, "SYSTEMD_RUNNING", "/nonexistent/run/systemd/system")

    def no_pystemd(*args, **kwargs):
        raise AssertionError("pystemd must not be touched without systemd")

    monkeypatch.setattr(systemd_units, "_pystemd_reader", no_pystemd)
    with caplog.at_level(logging.DEBUG, logger="torrust_maint.systemd_units"):
        assert units() is None
        assert next_backup() is None
    assert all(record.levelno == logging.DEBUG for record in caplog.records)


def test_default_reader_without_pystemd(monkeypatch, tmp_path):
    monkeypatch.setattr(systemd_units, "SYSTEMD_RUNNING", str(tmp_path))
    real_import = builtins.__import__

    def no_pystemd(name, *args, **kwargs):
        if name.startswith("pystemd"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pystemd)
    assert units() is None
    assert next_backup() is None


def test_default_reader_without_a_system_bus(monkeypatch, tmp_path):
    """pystemd installed (as here) but no bus to talk to: its DBus error becomes None."""
    pytest.importorskip("pystemd")
    monkeypatch.setattr(systemd_units, "SYSTEMD_RUNNING", str(tmp_path))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    assert units() is None
    assert next_backup() is None


def test_next_backup():
    assert next_backup(FakeReader()) == NEXT
    verify_only = FakeReader(verify_timer=timer(NextElapseUSecRealtime=NEXT_USEC + 1))
    assert next_backup(verify_only) == NEXT  # the backup timer's, not the verify timer's


@pytest.mark.parametrize("backup_timer", [
    timer(NextElapseUSecRealtime=0),  # enabled, nothing scheduled
    timer(NextElapseUSecRealtime=NEVER),
    timer(UnitFileState=b"disabled", ActiveState=b"inactive", NextElapseUSecRealtime=0),
    timer(UnitFileState=b"disabled"),  # started by hand but not enabled
    timer(UnitFileState=b"masked"),
    not_found(),
])
def test_next_backup_none(backup_timer):
    assert next_backup(FakeReader(backup_timer=backup_timer)) is None


def test_next_backup_when_enabled_for_this_boot_only():
    found = FakeReader(backup_timer=timer(UnitFileState=b"enabled-runtime"))
    assert next_backup(found) == NEXT
