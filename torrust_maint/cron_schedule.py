"""A cron schedule as systemd calendar events (``OnCalendar=``), converted exactly or refused.

Cron (Debian's, Vixie's) runs a job at every minute whose fields all match, except that when
both the day of month and the day of week are restricted, either one matching is enough. A
systemd calendar event requires both, so that case becomes two events (a timer elapses at
the union of its ``OnCalendar=`` lines). Steps and ranges are written out as lists, which
systemd reads the same on every version. What could be read two ways is refused, with the
way to set the schedule by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from torrust_maint.errors import MaintError

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
NICKNAMES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
BY_HAND = ("set the schedule by hand: `systemctl edit torrust-backup.timer`, then under "
           "[Timer] an empty `OnCalendar=` line and your own `OnCalendar=` (check it with "
           "`systemd-analyze calendar`)")


class ScheduleError(MaintError):
    """A cron schedule that has no exact systemd equivalent here."""

    def __init__(self, expression: str, reason: str):
        super().__init__(f"cron schedule {expression!r}: {reason}; {BY_HAND}")


@dataclass(frozen=True)
class Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number of names[0]


FIELDS = (Field("minute", 0, 59), Field("hour", 0, 23), Field("day of month", 1, 31),
          Field("month", 1, 12, MONTHS, 1), Field("day of week", 0, 7, DAYS, 0))


def _number(text: str, field: Field, expression: str) -> int:
    lowered = text.lower()
    if field.names and lowered in field.names:
        return field.names.index(lowered) + field.name_base
    if not text.isdigit():
        raise ScheduleError(expression, f"{field.name} {text!r} is not a number")
    value = int(text)
    if not field.low <= value <= field.high:
        raise ScheduleError(expression, f"{field.name} {value} is outside "
                                        f"{field.low}-{field.high}")
    return value


def parse_field(text: str, field: Field, expression: str) -> frozenset[int] | None:
    """The values a field allows; None for a bare `*` (every value)."""
    if text == "*":
        return None
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(expression, f"{field.name} step {step_text!r} is not a "
                                                "positive number")
            step = int(step_text)
        if base == "*":
            start, end = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = (_number(first, field, expression), _number(last, field, expression))
            if start > end:
                raise ScheduleError(expression, f"{field.name} range {base!r} runs backwards "
                                                "(cron implementations disagree on it)")
        else:
            if slash:
                raise ScheduleError(expression, f"{field.name} {item!r}: a step after a "
                                                "single value is read differently by cron "
                                                "implementations")
            start = end = _number(base, field, expression)
        values.update(range(start, end + 1, step))
    if field.name == "day of week" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def _listed(values: frozenset[int] | None, width: int = 2) -> str:
    if values is None:
        return "*"
    return ",".join(f"{value:0{width}d}" for value in sorted(values))


def to_calendar(expression: str) -> list[str]:
    """The OnCalendar= values that elapse exactly when cron runs `expression` (a 5-field
    schedule or a nickname such as @daily); ScheduleError where there is no exact match."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text not in NICKNAMES:
            raise ScheduleError(expression, f"{text} has no calendar equivalent"
                                if text == "@reboot" else f"unknown nickname {text}")
        text = NICKNAMES[text]
    parts = text.split(" ")
    if len(parts) != 5:
        raise ScheduleError(expression, f"{len(parts)} fields, a cron schedule has 5 "
                                        "(minute hour day-of-month month day-of-week)")
    minute, hour, dom, month, dow = (parse_field(part, field, expression)
                                     for part, field in zip(parts, FIELDS, strict=True))
    for raw, other in ((parts[2], parts[4]), (parts[4], parts[2])):
        if raw.startswith("*") and raw != "*" and other != "*":
            raise ScheduleError(expression, "a stepped `*/n` day field together with a "
                                            "restricted other day field is read differently "
                                            "by cron implementations")
    time = f"{_listed(hour)}:{_listed(minute)}:00"
    months = _listed(month)
    days = None if dow is None else ",".join(SYSTEMD_DAYS[d] for d in sorted(dow))
    if dom is not None and days is not None:  # cron: either day field matching is enough
        return [f"*-{months}-{_listed(dom)} {time}", f"{days} *-{months}-* {time}"]
    prefix = f"{days} " if days is not None else ""
    return [f"{prefix}*-{months}-{_listed(dom)} {time}"]
