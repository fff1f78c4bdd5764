"""retention.decide: keep_last / daily / weekly / monthly over recorded creation times."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import pytest

from torrust_maint.config import RetentionConfig
from torrust_maint.retention import decide

UTC = dt.UTC


@dataclass
class FakeSet:
    id: str
    created_at: dt.datetime | None


def at(text: str) -> dt.datetime:
    """An aware datetime; without an offset in the text, UTC."""
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sets_at(*times: str) -> list[FakeSet]:
    return [FakeSet(t, at(t)) for t in times]


def policy(last: int = 0, daily: int = 0, weekly: int = 0, monthly: int = 0) -> RetentionConfig:
    return RetentionConfig(keep_last=last, keep_daily=daily, keep_weekly=weekly,
                           keep_monthly=monthly)


def test_no_sets():
    result = decide([], policy(last=3))
    assert (result.keep, result.delete) == ({}, [])


def test_keep_last_only():
    sets = sets_at("2026-03-01T01:00", "2026-03-01T02:00", "2026-03-01T03:00",
                   "2026-03-01T04:00", "2026-03-01T05:00")
    result = decide(sets, policy(last=3))
    assert set(result.keep) == {"2026-03-01T03:00", "2026-03-01T04:00", "2026-03-01T05:00"}
    assert result.delete == ["2026-03-01T01:00", "2026-03-01T02:00"]  # oldest first
    assert result.keep["2026-03-01T05:00"] == ["newest", "keep_last"]
    assert result.keep["2026-03-01T03:00"] == ["keep_last"]


def test_daily_keeps_the_newest_set_of_each_day():
    sets = sets_at("2026-03-01T01:00", "2026-03-01T12:00", "2026-03-01T23:00",
                   "2026-03-02T05:00", "2026-03-02T06:00",
                   "2026-03-03T00:30")
    result = decide(sets, policy(daily=2))
    assert set(result.keep) == {"2026-03-03T00:30", "2026-03-02T06:00"}
    assert result.delete == ["2026-03-01T01:00", "2026-03-01T12:00", "2026-03-01T23:00",
                             "2026-03-02T05:00"]
    wider = decide(sets, policy(daily=3))
    assert set(wider.keep) == {"2026-03-03T00:30", "2026-03-02T06:00", "2026-03-01T23:00"}


def test_days_are_utc_days():
    # 01:00+02:00 on 2 March is 23:00 UTC on 1 March: the newest set of that UTC day.
    sets = [FakeSet("local-late", at("2026-03-02T01:00+02:00")),
            FakeSet("utc-earlier", at("2026-03-01T22:00")),
            FakeSet("next-day", at("2026-03-02T12:00"))]
    result = decide(sets, policy(daily=2))
    assert set(result.keep) == {"next-day", "local-late"}
    assert result.delete == ["utc-earlier"]


def test_weekly_uses_iso_weeks_across_the_year_boundary():
    # Mon 2025-12-29 .. Sun 2026-01-04 is ISO week 2026-W01; Sun 2025-12-28 is 2025-W52.
    sets = sets_at("2025-12-28T10:00", "2025-12-29T10:00", "2026-01-04T10:00",
                   "2026-01-05T10:00")
    result = decide(sets, policy(weekly=2))
    assert set(result.keep) == {"2026-01-05T10:00", "2026-01-04T10:00"}
    assert result.delete == ["2025-12-28T10:00", "2025-12-29T10:00"]
    three = decide(sets, policy(weekly=3))
    assert three.delete == ["2025-12-29T10:00"]


def test_monthly_keeps_the_newest_set_of_each_month():
    sets = sets_at("2026-01-31T23:59", "2026-02-01T00:00", "2026-02-28T12:00",
                   "2026-03-15T08:00")
    result = decide(sets, policy(monthly=2))
    assert set(result.keep) == {"2026-03-15T08:00", "2026-02-28T12:00"}
    assert result.delete == ["2026-01-31T23:59", "2026-02-01T00:00"]


def test_rules_are_a_union_and_each_kept_set_names_its_rules():
    sets = sets_at("2025-12-15T03:00",  # the only December set
                   "2026-01-20T03:00",  # an older January week
                   "2026-01-27T03:00",  # an older day of the newest week
                   "2026-01-28T03:00",
                   "2026-01-28T04:00")
    result = decide(sets, policy(last=1, daily=2, weekly=2, monthly=2))
    assert result.keep == {
        "2026-01-28T04:00": ["newest", "keep_last", "keep_daily", "keep_weekly",
                             "keep_monthly"],
        "2026-01-27T03:00": ["keep_daily"],
        "2026-01-20T03:00": ["keep_weekly"],
        "2025-12-15T03:00": ["keep_monthly"],
    }
    assert result.delete == ["2026-01-28T03:00"]


def test_newest_is_kept_even_when_every_rule_is_zero():
    sets = sets_at("2026-03-01T01:00", "2026-03-02T01:00", "2026-03-03T01:00")
    result = decide(sets, policy())
    assert result.keep == {"2026-03-03T01:00": ["newest"]}
    assert result.delete == ["2026-03-01T01:00", "2026-03-02T01:00"]


def test_sets_without_creation_time_are_kept_and_not_counted():
    sets = [FakeSet("undated", None)] + sets_at("2026-03-01T01:00", "2026-03-02T01:00")
    result = decide(sets, policy(last=1))
    assert result.keep == {"undated": ["no recorded creation time"],
                           "2026-03-02T01:00": ["newest", "keep_last"]}
    assert result.delete == ["2026-03-01T01:00"]


def test_only_undated_sets():
    result = decide([FakeSet("a", None), FakeSet("b", None)], policy())
    assert set(result.keep) == {"a", "b"} and result.delete == []


def test_result_does_not_depend_on_input_order():
    sets = sets_at(*(f"2026-0{month}-{day:02d}T{hour:02d}:00" for month in (1, 2, 3)
                     for day in (1, 9, 17, 25) for hour in (2, 14)))
    rules = policy(last=2, daily=3, weekly=2, monthly=2)
    expected = decide(sets, rules)
    shuffler = random.Random(20261126)
    for _ in range(20):
        shuffled = sets[:]
        shuffler.shuffle(shuffled)
        again = decide(shuffled, rules)
        assert again.keep == expected.keep
        assert again.delete == expected.delete
    assert len(expected.keep) + len(expected.delete) == len(sets)


@pytest.mark.parametrize("count", range(0, 6))
@pytest.mark.parametrize("keep_last", range(0, 8))
def test_keep_last_keeps_exactly_the_newest_n(count, keep_last):
    start = at("2026-03-01T00:00")
    shuffler = random.Random(count * 100 + keep_last)
    offsets = shuffler.sample(range(10_000), count)  # distinct minutes, random order
    sets = [FakeSet(f"set-{o}", start + dt.timedelta(minutes=o)) for o in offsets]
    result = decide(sets, policy(last=keep_last))
    newest_first = sorted(offsets, reverse=True)
    wanted = max(min(keep_last, count), min(1, count))  # the newest is always kept
    assert set(result.keep) == {f"set-{o}" for o in newest_first[:wanted]}
    assert result.delete == [f"set-{o}" for o in sorted(newest_first[wanted:])]


def test_keep_last_counts_sets_not_distinct_times():
    # Two sets recorded at the same instant are still two sets for keep_last.
    same = at("2026-03-02T01:00")
    sets = [FakeSet("20260302T010000Z", same), FakeSet("20260302T010000Z-1", same),
            FakeSet("20260301T010000Z", at("2026-03-01T01:00"))]
    result = decide(sets, policy(last=2))
    assert set(result.keep) == {"20260302T010000Z", "20260302T010000Z-1"}
    assert result.delete == ["20260301T010000Z"]
