"""Cron schedules converted to OnCalendar=: each supported case checked against the real
`systemd-analyze calendar` (the timer's next elapses) and cron's next runs (python3-croniter),
and every unsupported case refused with the way to set the schedule by hand."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pytest
from croniter import croniter

from torrust_maint.cron_schedule import ScheduleError, to_calendar

BASE = dt.datetime(2026, 1, 1, 0, 0, 30)  # UTC; a Thursday, between two minutes
RUNS = 40

# (cron, OnCalendar= values): what the deployer writes and what operators change it to.
TABLE = [
    ("0 3 * * *", ["*-*-* 03:00:00"]),
    ("30 2 * * *", ["*-*-* 02:30:00"]),
    ("15 3 * * 0", ["Sun *-*-* 03:15:00"]),
    ("15 3 * * 7", ["Sun *-*-* 03:15:00"]),
    ("0 4 * * mon-fri", ["Mon,Tue,Wed,Thu,Fri *-*-* 04:00:00"]),
    ("0 4 * * 1,3,5", ["Mon,Wed,Fri *-*-* 04:00:00"]),
    ("0 */6 * * *", ["*-*-* 00,06,12,18:00:00"]),
    ("*/20 1-2 * * *", ["*-*-* 01,02:00,20,40:00"]),
    ("5 0-23/8 * * *", ["*-*-* 00,08,16:05:00"]),
    ("0 3 1 * *", ["*-*-01 03:00:00"]),
    ("0 3 1,15 * *", ["*-*-01,15 03:00:00"]),
    ("0 3 * 1,7 *", ["*-01,07-* 03:00:00"]),
    ("0 3 1 jan *", ["*-01-01 03:00:00"]),
    ("0 3 1,15 * 0", ["*-*-01,15 03:00:00", "Sun *-*-* 03:00:00"]),  # cron: either day field
    ("0 0 29 2 *", ["*-02-29 00:00:00"]),
    ("@daily", ["*-*-* 00:00:00"]),
    ("@weekly", ["Sun *-*-* 00:00:00"]),
    ("@monthly", ["*-*-01 00:00:00"]),
    ("@hourly", ["*-*-* *:00:00"]),
    ("  0   3 * *  * ", ["*-*-* 03:00:00"]),
]


def systemd_elapses(events: list[str], count: int) -> list[dt.datetime]:
    """The next `count` elapses of a timer with these OnCalendar= values, from BASE (UTC)."""
    found: set[dt.datetime] = set()
    for event in events:
        done = subprocess.run(
            ["systemd-analyze", "calendar", f"--iterations={count}",
             f"--base-time={BASE:%Y-%m-%d %H:%M:%S} UTC", event],
            capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"})
        for line in done.stdout.splitlines():
            label, _, value = line.strip().partition(": ")
            if label == "Next elapse" or label.startswith("Iter. #"):
                found.add(dt.datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S UTC"))
    return sorted(found)[:count]


def cron_runs(expression: str, count: int) -> list[dt.datetime]:
    runs = croniter(expression, BASE)
    return [runs.get_next(dt.datetime) for _ in range(count)]


@pytest.mark.parametrize("expression, expected", TABLE, ids=[row[0] for row in TABLE])
def test_conversion_elapses_when_cron_runs(expression, expected):
    events = to_calendar(expression)
    assert events == expected
    assert systemd_elapses(events, RUNS) == cron_runs(expression.strip(), RUNS)


@pytest.mark.parametrize("expression, says", [
    ("@reboot", "@reboot has no calendar equivalent"),
    ("0 3 * *", "4 fields, a cron schedule has 5"),
    ("0 3 * * * /bin/true", "6 fields"),
    ("61 3 * * *", "minute 61 is outside 0-59"),
    ("0 3 * * 8", "day of week 8 is outside 0-7"),
    ("0 5-1 * * *", "hour range '5-1' runs backwards"),
    ("5/10 3 * * *", "a step after a single value"),
    ("0 3 */2 * 1", "a stepped `*/n` day field"),
    ("0 3 1 * */2", "a stepped `*/n` day field"),
    ("0 3 * * foo", "day of week 'foo' is not a number"),
    ("*/0 3 * * *", "minute step '0' is not a positive number"),
])
def test_what_cannot_be_converted_exactly_is_refused_with_the_way_by_hand(expression, says):
    with pytest.raises(ScheduleError) as caught:
        to_calendar(expression)
    message = str(caught.value)
    assert says in message
    assert "systemctl edit torrust-backup.timer" in message
    assert "systemd-analyze calendar" in message
