"""torrust_maint.systemd_units against real systemd (python3-pystemd over the system bus) in the
Debian 12 and 13 host containers: what it reads must be what systemctl and busctl show.

The tests of this module run in order on one host container per release (see conftest.py);
each leaves the host as it found it (timers disabled, drop-ins removed).
"""

from __future__ import annotations

import datetime as dt
import json
import re

from tests.system.conftest import Host
from torrust_maint.catalog import parse_rfc3339, rfc3339

SERVICE = "torrust-backup.service"
TIMER = "torrust-backup.timer"
VERIFY_SERVICE = "torrust-verify.service"
VERIFY_TIMER = "torrust-verify.timer"
PROBE = ("import json, torrust_maint.systemd_units as s; "
         "print(json.dumps(dict(units=s.units(), next_backup=s.next_backup())))")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def read_units(host: Host, *prefix: str) -> dict:
    """units() and next_backup() as the installed package computes them in the host."""
    done = host.run(*prefix, "/usr/bin/python3", "-c", PROBE)
    assert done.stderr == "", done.stderr  # never a traceback, nothing above debug
    return json.loads(done.stdout)


def bus_path(unit: str) -> str:
    """systemd's D-Bus object path of a unit (sd_bus_path_encode)."""
    escaped = "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in unit)
    return f"/org/freedesktop/systemd1/unit/{escaped}"


def busctl_usec(host: Host, unit: str, interface: str, prop: str) -> int:
    """A µs property as another D-Bus client (busctl) reads it: exact."""
    out = host.run("busctl", "get-property", "org.freedesktop.systemd1", bus_path(unit),
                   f"org.freedesktop.systemd1.{interface}", prop).stdout.split()
    assert out[0] == "t", out
    return int(out[1])


def as_rfc3339(usec: int) -> str | None:
    if usec in (0, 2**64 - 1):
        return None
    return rfc3339(EPOCH + dt.timedelta(microseconds=usec))


def shown_time(host: Host, unit: str, prop: str) -> dt.datetime | None:
    """A timestamp as `systemctl show` prints it ("Fri 2026-11-27 03:03:22 UTC"; seconds)."""
    text = host.run("env", "TZ=UTC", "systemctl", "show", "--property", prop, "--value",
                    unit).stdout.strip()
    if not text:
        return None
    found = re.fullmatch(r"\w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", text)
    assert found, text
    return dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)


def drop_in(host: Host, unit: str, text: str) -> str:
    path = f"/etc/systemd/system/{unit}.d/zz-test-status-timers.conf"
    host.write(path, text)
    host.run("systemctl", "daemon-reload")
    return path


def remove_drop_in(host: Host, path: str) -> None:
    host.run("rm", "-f", path)
    host.run("systemctl", "daemon-reload")


def test_install(host: Host):
    host.run("apt-get", "update", "-qq")
    host.run("apt-get", "install", "--yes", "--quiet", "--no-install-recommends",
             f"/mnt/dist/{host.deb.name}", timeout=600)
    # python3-pystemd (and its dependency dbus, the system bus) come with the package.
    status = host.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "python3-pystemd").stdout
    assert status.startswith("ii"), status
    assert host.run("systemctl", "is-enabled", TIMER, check=False).stdout.strip() == "disabled"


def test_timers_disabled_then_enabled(host: Host):
    before = read_units(host)
    for timer in (TIMER, VERIFY_TIMER):
        assert before["units"][timer] == {"load_state": "loaded", "enabled": "disabled",
                                          "active": "inactive", "next_elapse": None,
                                          "last_elapse": None}, timer
    for service in (SERVICE, VERIFY_SERVICE):  # never ran: systemd's initial Result
        assert before["units"][service] == {"load_state": "loaded", "active": "inactive",
                                            "result": "success", "exit_status": None,
                                            "last_exit": None, "last_start": None}, service
    assert before["next_backup"] is None

    host.run("systemctl", "enable", "--now", TIMER)
    try:
        after = read_units(host)
        timer = after["units"][TIMER]
        assert (timer["load_state"], timer["enabled"], timer["active"]) == (
            "loaded", "enabled", "active")
        assert timer["last_elapse"] is None  # never triggered (no Persistent= stamp yet)
        next_elapse = parse_rfc3339(timer["next_elapse"])
        assert next_elapse > dt.datetime.now(dt.UTC)
        shown = shown_time(host, TIMER, "NextElapseUSecRealtime")
        assert shown is not None
        assert abs((next_elapse - shown).total_seconds()) <= 1, (timer, shown)
        # 03:00 + RandomizedDelaySec=5min
        assert (next_elapse.hour, next_elapse.minute) in ((3, m) for m in range(6)), timer
        # The same µs as another D-Bus client reads (the random delay is drawn anew at each
        # daemon-reload: compare with no reload in between).
        usec = busctl_usec(host, TIMER, "Timer", "NextElapseUSecRealtime")
        assert timer["next_elapse"] == as_rfc3339(usec)
        assert after["next_backup"] == timer["next_elapse"]
        assert after["units"][VERIFY_TIMER]["enabled"] == "disabled"
    finally:
        host.run("systemctl", "disable", "--now", TIMER)
    assert read_units(host)["next_backup"] is None


def test_service_result_of_a_failed_run(host: Host):
    """Not configured (no deployment at /opt/torrust): `torrust-maint backup` exits non-zero."""
    started = host.run("systemctl", "start", SERVICE, check=False, timeout=300)
    assert started.returncode != 0
    try:
        found = read_units(host)["units"][SERVICE]
        assert found["result"] == host.show(SERVICE, "Result") == "exit-code"
        assert found["active"] == host.show(SERVICE, "ActiveState") == "failed"
        assert found["exit_status"] == int(host.show(SERVICE, "ExecMainStatus")) != 0
        for field, prop in (("last_start", "ExecMainStartTimestamp"),
                            ("last_exit", "ExecMainExitTimestamp")):
            assert found[field] is not None
            assert found[field] == as_rfc3339(busctl_usec(host, SERVICE, "Service", prop))
            shown = shown_time(host, SERVICE, prop)
            assert shown is not None
            assert abs((parse_rfc3339(found[field]) - shown).total_seconds()) <= 1
        assert found["last_start"] <= found["last_exit"]
    finally:
        host.run("systemctl", "reset-failed", SERVICE)


def in_seconds(seconds: int) -> tuple[str, dt.datetime]:
    """An OnCalendar= expression that elapses once, `seconds` from now (then tomorrow)."""
    moment = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).replace(microsecond=0)
    return moment.strftime("*-*-* %H:%M:%S UTC"), moment


def test_last_elapse_once_the_timer_triggered(host: Host):
    """A drop-in schedule a few seconds ahead: LastTriggerUSec (realtime) and the run it started.

    systemd knows a timer's last trigger only while the timer is active: stopping it resets
    LastTriggerUSec to 0, starting it again (Persistent=true) reads it back from the stamp
    file, which systemd creates when it first starts the timer: before any trigger, the "last
    elapse" is then that first start.
    """
    calendar, at = in_seconds(5)
    path = drop_in(host, TIMER, f"[Timer]\nOnCalendar=\nOnCalendar={calendar}\n"
                                "RandomizedDelaySec=0\nAccuracySec=1us\n")
    try:
        host.run("systemctl", "start", TIMER)
        stamp = read_units(host)["units"][TIMER]["last_elapse"]  # the test above's first start
        assert stamp is not None and parse_rfc3339(stamp) < at
        assert stamp == as_rfc3339(busctl_usec(host, TIMER, "Timer", "LastTriggerUSec"))
        at_usec = (at - EPOCH) // dt.timedelta(microseconds=1)

        def triggered() -> int:
            usec = busctl_usec(host, TIMER, "Timer", "LastTriggerUSec")
            return usec if usec >= at_usec else 0

        usec = host.wait_for("the timer's trigger", triggered, timeout=30, every=0.5)

        def run_over() -> bool:
            return (busctl_usec(host, SERVICE, "Service", "ExecMainStartTimestamp") >= usec
                    and host.show(SERVICE, "ActiveState") in ("failed", "inactive"))

        host.wait_for("the run the timer started", run_over, timeout=60, every=0.5)
        found = read_units(host)["units"]
        timer = found[TIMER]
        assert (timer["load_state"], timer["enabled"], timer["active"]) == (
            "loaded", "disabled", "active")  # started by hand, not enabled
        assert timer["last_elapse"] == as_rfc3339(usec) is not None
        last = parse_rfc3339(timer["last_elapse"])
        assert abs((last - dt.datetime.now(dt.UTC)).total_seconds()) < 60
        next_elapse = parse_rfc3339(timer["next_elapse"])  # the same time tomorrow
        assert abs((next_elapse - last).total_seconds() - 86400) < 2, timer
        shown = shown_time(host, TIMER, "NextElapseUSecRealtime")
        assert shown is not None and abs((next_elapse - shown).total_seconds()) <= 1
        service = found[SERVICE]
        assert service["result"] == host.show(SERVICE, "Result") == "exit-code"
        assert service["exit_status"] == int(host.show(SERVICE, "ExecMainStatus")) != 0
        assert service["last_start"] >= timer["last_elapse"]

        host.run("systemctl", "stop", TIMER)
        assert read_units(host)["units"][TIMER] == {
            "load_state": "loaded", "enabled": "disabled", "active": "inactive",
            "next_elapse": None, "last_elapse": None}  # 2**64-1 and 0 once stopped
    finally:
        host.run("systemctl", "stop", TIMER)
        remove_drop_in(host, path)
        host.run("systemctl", "reset-failed", SERVICE)


def probe_output(host: Host) -> list[dict]:
    """What each run of the probe service printed (to the journal), oldest first."""
    out = host.run("journalctl", "--no-pager", "--output", "cat", "--unit", SERVICE).stdout
    return [json.loads(line.removeprefix("STATUS-PROBE "))
            for line in out.splitlines() if line.startswith("STATUS-PROBE ")]


def test_inside_the_hardened_backup_unit(host: Host):
    """What the notifications see: the same reads from within torrust-backup.service (its
    sandbox: ProtectSystem=strict, RestrictAddressFamilies=, the syscall filter ...)."""
    host.run("systemctl", "enable", "--now", TIMER)
    service_path = drop_in(host, SERVICE, "[Service]\nExecStart=\nExecStart=/usr/bin/python3 -c "
                           f"'print(\"STATUS-PROBE\", end=\" \"); {PROBE}'\nExecStopPost=\n")
    timer_path = None
    try:
        # Started by hand: the timer waits for 03:00 meanwhile.
        host.run("systemctl", "start", SERVICE, timeout=120)
        assert host.show(SERVICE, "Result") == "success"
        runs = probe_output(host)
        assert runs, "no output of the probe in the journal"
        inside = runs[-1]
        # The timer re-draws its RandomizedDelaySec= whenever the service it triggers changes
        # state (and at each daemon-reload): the time is the schedule's, not a fixed value.
        assert inside["next_backup"] == inside["units"][TIMER]["next_elapse"] is not None
        next_backup = parse_rfc3339(inside["next_backup"])
        assert next_backup > dt.datetime.now(dt.UTC)
        assert (next_backup.hour, next_backup.minute) in ((3, m) for m in range(6))
        assert inside["units"][TIMER]["enabled"] == "enabled"
        assert inside["units"][SERVICE]["active"] == "activating"  # its own run, not over
        assert inside["units"][SERVICE]["last_start"] is not None
        assert inside["units"][SERVICE]["exit_status"] is None
        assert inside["units"][VERIFY_TIMER]["load_state"] == "loaded"
        # Started again: the last trigger of the test above, from the Persistent= stamp.
        last = busctl_usec(host, TIMER, "Timer", "LastTriggerUSec")
        assert inside["units"][TIMER]["last_elapse"] == as_rfc3339(last) is not None

        # Started by the timer: until the run is over the timer is "running" and systemd has
        # no next elapse for it (NextElapseUSecRealtime is 2**64-1): next_backup() is None.
        timer_path = drop_in(host, TIMER, f"[Timer]\nOnCalendar=\nOnCalendar={in_seconds(5)[0]}\n"
                                          "RandomizedDelaySec=0\nAccuracySec=1us\n")
        host.run("systemctl", "restart", TIMER)
        host.wait_for("a run started by the timer", lambda: len(probe_output(host)) > len(runs),
                      timeout=30, every=0.5)
        host.run("systemctl", "stop", TIMER)
        by_timer = probe_output(host)[len(runs)]
        assert by_timer["next_backup"] is None
        timer = by_timer["units"][TIMER]
        assert (timer["enabled"], timer["active"], timer["next_elapse"]) == (
            "enabled", "active", None)
        assert timer["last_elapse"] is not None
        assert by_timer["units"][SERVICE]["last_start"] >= timer["last_elapse"]
    finally:
        if timer_path:
            remove_drop_in(host, timer_path)
        remove_drop_in(host, service_path)
        host.run("systemctl", "disable", "--now", TIMER)


def test_unprivileged_and_without_a_bus(host: Host):
    as_root = read_units(host)
    assert as_root["units"] is not None
    # Reading unit properties needs no privilege on the system bus.
    assert read_units(host, "runuser", "-u", "nobody", "--") == as_root
    # No system bus to reach (dbus-daemon down, say): None, quietly.
    nowhere = read_units(host, "env", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent")
    assert nowhere == {"units": None, "next_backup": None}
    assert host.run("systemctl", "is-enabled", TIMER, check=False).stdout.strip() == "disabled"
    assert host.run("systemctl", "is-active", TIMER, check=False).stdout.strip() == "inactive"


LEGACY_CRON = "/etc/cron.d/tracker-backup"
LEGACY_LINE = ("0 3 * * * root cd /opt/torrust && /usr/local/bin/maintenance-backup.sh "
               ">> /var/log/tracker-backup.log 2>&1\n")


def test_a_legacy_cron_backup_beside_the_timer_is_reported(host: Host):
    """postinst, `check` and `status` on a host that still has the cron-based backup: before
    the timer is enabled they say to disable the cron line first; with both active, that the
    host runs two maintenance windows a night."""
    host.write(LEGACY_CRON, "SHELL=/bin/bash\n" + LEGACY_LINE)
    try:
        reconfigured = host.run("dpkg-reconfigure", "torrust-maint")
        assert f"still scheduled in: {LEGACY_CRON}" in reconfigured.stderr
        assert "comment out that cron line before" in reconfigured.stderr
        checked = host.run("torrust-maint", "check", check=False)
        assert f"warning: the legacy cron backup is still active ({LEGACY_CRON}:2" \
            in checked.stdout
        host.run("systemctl", "enable", TIMER)
        reconfigured = host.run("dpkg-reconfigure", "torrust-maint")
        assert "TWO maintenance windows" in reconfigured.stderr
        status = host.run("torrust-maint", "status", check=False)
        assert status.returncode == 1
        assert "UNHEALTHY: two maintenance windows a night" in status.stdout
        assert f"legacy cron backup: active in {LEGACY_CRON}:2" in status.stdout
        checked = host.run("torrust-maint", "check", check=False)
        assert checked.returncode == 2
        assert "two maintenance windows a night" in checked.stderr
        assert "systemctl disable --now torrust-backup.timer" in checked.stderr
    finally:
        host.run("systemctl", "disable", TIMER)
        host.run("rm", "-f", LEGACY_CRON)
    assert "two maintenance windows" not in host.run("torrust-maint", "status",
                                                     check=False).stdout
