"""Which backup sets to keep: keep_last / daily / weekly / monthly, by recorded creation time.

Each rule is applied on its own over the sets, newest first, keeping the newest set of each
period until it has kept its count (as restic does); a set is kept if any rule keeps it. The
newest set is always kept. Periods are UTC days, ISO weeks and calendar months.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from torrust_maint.config import RetentionConfig


class Dated(Protocol):
    id: str

    @property
    def created_at(self) -> dt.datetime | None: ...


PERIODS: dict[str, Callable[[dt.datetime], object]] = {
    "last": lambda moment: moment,
    "daily": lambda moment: moment.date(),
    "weekly": lambda moment: moment.isocalendar()[:2],
    "monthly": lambda moment: (moment.year, moment.month),
}


@dataclass
class Decision:
    """What retention keeps (with the rules that keep each set) and what it deletes."""

    keep: dict[str, list[str]]
    delete: list[str]


def decide(sets: Sequence[Dated], policy: RetentionConfig) -> Decision:
    """Split complete sets into keep and delete; sets without a creation time are kept."""
    dated = [s for s in sets if s.created_at is not None]
    newest_first = sorted(dated, key=lambda s: (s.created_at, s.id), reverse=True)
    keep: dict[str, list[str]] = {s.id: ["no recorded creation time"]
                                  for s in sets if s.created_at is None}
    if newest_first:
        keep.setdefault(newest_first[0].id, []).append("newest")
    for rule, period_of in PERIODS.items():
        count = getattr(policy, f"keep_{rule}")
        seen: set[object] = set()
        for backup_set in newest_first:
            if len(seen) >= count:
                break
            created_at = backup_set.created_at
            assert created_at is not None  # newest_first holds dated sets only
            period = period_of(created_at.astimezone(dt.UTC))
            if rule == "last":  # every set counts, even two recorded at the same instant
                period = (period, backup_set.id)
            if period not in seen:
                seen.add(period)
                keep.setdefault(backup_set.id, []).append(f"keep_{rule}")
    delete = [s.id for s in reversed(newest_first) if s.id not in keep]
    return Decision(keep=keep, delete=delete)
