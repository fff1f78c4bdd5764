"""config: the [notify], [retry], [status] and [state] sections."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.unit.test_config import MINIMAL, PATH, only_problem, problems_of
from torrust_maint.config import (
    DEFAULT_NOTIFY_ON,
    DEFAULT_STATE_DIRECTORY,
    NotifyConfig,
    RetryConfig,
    StateConfig,
    StatusConfig,
    parse,
)

SECRET = "S3cr3tT0ken"
URL = f"json://user:{SECRET}@127.0.0.1:9/hook"


def with_section(section: str, **values) -> dict:
    data = copy.deepcopy(MINIMAL)
    data[section] = values
    return data


# -- defaults --------------------------------------------------------------------------------

def test_the_new_sections_default(monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    parsed = parse(copy.deepcopy(MINIMAL), PATH)
    assert parsed.notify == NotifyConfig()
    assert (parsed.notify.urls, parsed.notify.urls_file) == ((), None)
    assert parsed.notify.on == DEFAULT_NOTIFY_ON == ("failure", "recovery")
    assert not parsed.notify.configured
    assert (parsed.retry.attempts, parsed.retry.delay, parsed.retry.max_delay) == (3, 10, 300)
    assert parsed.status.max_age == 26 * 3600
    assert parsed.state.directory == DEFAULT_STATE_DIRECTORY == Path("/var/lib/torrust-maint")


def test_the_state_directory_defaults_to_systemds_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/first:{tmp_path}/second")
    assert parse(copy.deepcopy(MINIMAL), PATH).state.directory == tmp_path / "first"
    assert StateConfig().directory == tmp_path / "first"
    monkeypatch.setenv("STATE_DIRECTORY", "relative/dir")
    assert StateConfig().directory == DEFAULT_STATE_DIRECTORY


def test_a_configured_state_directory_wins(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/run/elsewhere")
    parsed = parse(with_section("state", directory="/srv/state//torrust/"), PATH)
    assert parsed.state.directory == Path("/srv/state/torrust")


@pytest.mark.parametrize(("value", "fragment"), [
    ("relative", "must be an absolute path"),
    ("/", "must not be the root directory /"),
    ("/srv/../etc", "must not contain '..'"),
])
def test_a_bad_state_directory(value, fragment):
    problem = only_problem(with_section("state", directory=value))
    assert problem.startswith(f"{PATH}: [state] directory: ")
    assert fragment in problem


# -- [notify] --------------------------------------------------------------------------------

def test_notify_urls_file_and_events():
    parsed = parse(with_section("notify", urls=[URL, "ntfy://my-topic"],
                                urls_file="/etc/torrust-maint/notify-urls",
                                on=["failure", "verify_failure", "success"]), PATH)
    assert parsed.notify.urls == (URL, "ntfy://my-topic")
    assert parsed.notify.urls_file == Path("/etc/torrust-maint/notify-urls")
    assert parsed.notify.on == ("failure", "verify_failure", "success")
    assert parsed.notify.configured
    assert SECRET not in repr(parsed.notify) and SECRET not in repr(parsed)


def test_a_urls_file_alone_is_configured():
    parsed = parse(with_section("notify", urls_file="/etc/torrust-maint/notify-urls"), PATH)
    assert parsed.notify.configured and parsed.notify.urls == ()


@pytest.mark.parametrize(("bad", "fragment"), [
    (f"user:{SECRET}@127.0.0.1/hook", "is not a URL of the form scheme://"),
    (f"json://user:{SECRET} @127.0.0.1/hook", "(json://...) must not contain spaces"),
    (f"json://user:{SECRET}@127.0.0.1/\nhook", "(json://...) must not contain spaces"),
    ("json://", "is not a URL of the form scheme://"),
    (f"1json://{SECRET}", "is not a URL of the form scheme://"),
])
def test_a_urls_item_that_is_not_a_url_is_named_by_number_never_quoted(bad, fragment):
    problem = only_problem(with_section("notify", urls=[URL, bad]))
    assert problem.startswith(f"{PATH}: [notify] urls: item 2 ")
    assert fragment in problem
    assert SECRET not in problem and "127.0.0.1" not in problem


@pytest.mark.parametrize(("value", "fragment"), [
    ([], "must not be an empty list"),
    (URL, "must be a list, not a string"),
    ([URL, URL], "must not repeat an item"),
    ([URL, 7], "item 2 must be a string, not an integer"),
])
def test_bad_urls_lists(value, fragment):
    problem = only_problem(with_section("notify", urls=value))
    assert problem.startswith(f"{PATH}: [notify] urls: ")
    assert fragment in problem
    assert SECRET not in problem


@pytest.mark.parametrize(("value", "fragment"), [
    (["failure", "sometimes"], "item 2 must be one of failure, recovery, success, "
                               "verify_failure, not 'sometimes'"),
    ([], "must not be an empty list"),
    (["failure", "failure"], "must not repeat an item"),
])
def test_bad_notify_events(value, fragment):
    problem = only_problem(with_section("notify", on=value))
    assert problem == f"{PATH}: [notify] on: {fragment}"


@pytest.mark.parametrize("value", ["notify-urls", "/etc/torrust-maint/", "/"])
def test_a_bad_urls_file(value):
    assert only_problem(with_section("notify", urls_file=value)).startswith(
        f"{PATH}: [notify] urls_file: ")


def test_an_unknown_notify_key_lists_the_known_ones():
    problem = only_problem(with_section("notify", url=URL))
    assert problem == f"{PATH}: [notify] url: unknown key (known: urls, urls_file, on)"


# -- [status] max_age ------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [
    ("26h", 26 * 3600),
    ("90min", 90 * 60),
    ("90m", 90 * 60),
    ("2d", 2 * 86400),
    ("600s", 600),
    ("60s", 60),
    (" 3h ", 3 * 3600),
    ("366d", 366 * 86400),
    (3600, 3600),
    (60, 60),
])
def test_max_age_durations(value, seconds):
    assert parse(with_section("status", max_age=value), PATH).status.max_age == seconds


@pytest.mark.parametrize(("value", "fragment"), [
    ("59s", "must be between 1 minute and 366 days"),
    (59, "must be between 1 minute and 366 days"),
    ("367d", "must be between 1 minute and 366 days"),
    (0, "must be between 1 minute and 366 days"),
    (-3600, "must be between 1 minute and 366 days"),
    ("26 hours", "must be a duration such as \"26h\", \"90min\" or \"2d\", not '26 hours'"),
    ("26", "must be a duration such as"),
    ("1.5h", "must be a duration such as"),
    ("h", "must be a duration such as"),
    ("", "must be a duration such as"),
    (1.5, "not a number"),
    (True, "not a boolean"),
    ([26], "not a list"),
])
def test_bad_max_age(value, fragment):
    problem = only_problem(with_section("status", max_age=value))
    assert problem.startswith(f"{PATH}: [status] max_age: ")
    assert fragment in problem


def test_the_status_default_matches_its_dataclass():
    assert StatusConfig().max_age == 93600


# -- [retry] ---------------------------------------------------------------------------------

def test_retry_settings():
    parsed = parse(with_section("retry", attempts=5, delay=0, max_delay=0), PATH)
    assert parsed.retry == RetryConfig(attempts=5, delay=0, max_delay=0)
    parsed = parse(with_section("retry", attempts=1), PATH)
    assert parsed.retry == RetryConfig(attempts=1, delay=10, max_delay=300)


@pytest.mark.parametrize("values", [
    {"delay": 60, "max_delay": 30},
    {"delay": 400},  # more than the default max_delay (300)
    {"max_delay": 5},  # less than the default delay (10)
])
def test_max_delay_less_than_delay_is_refused(values):
    assert only_problem(with_section("retry", **values)) == (
        f"{PATH}: [retry] max_delay: must not be less than delay")


def test_max_delay_equal_to_delay_is_fine():
    assert parse(with_section("retry", delay=30, max_delay=30), PATH).retry.max_delay == 30


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("attempts", 0, "must be between 1 and 20, not 0"),
    ("attempts", 21, "must be between 1 and 20, not 21"),
    ("attempts", "3", "must be an integer, not a string"),
    ("delay", -1, "must be between 0 and 3600, not -1"),
    ("max_delay", 3601, "must be between 0 and 3600, not 3601"),
    ("delay", True, "must be an integer, not a boolean"),
])
def test_bad_retry_values(key, value, fragment):
    problems = problems_of(with_section("retry", **{key: value}))
    assert f"{PATH}: [retry] {key}: {fragment}" in problems


def test_every_problem_of_the_new_sections_at_once():
    data = copy.deepcopy(MINIMAL)
    data.update(notify={"urls": ["not a url"], "on": ["never"]},
                retry={"attempts": 0}, status={"max_age": "26 hours"},
                state={"directory": "relative"})
    problems = problems_of(data)
    assert [p.split(":")[1].strip() for p in problems] == [
        "[notify] urls", "[notify] on", "[retry] attempts", "[status] max_age",
        "[state] directory"]
