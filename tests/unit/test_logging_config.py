"""config: the [logging] section (optional file log), in the style of test_config.py."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from torrust_maint.config import LoggingConfig, load, parse
from torrust_maint.errors import EXIT_USAGE, ConfigError

PATH = Path("/etc/torrust-maint/test.toml")
MINIMAL = {
    "deployment": {"compose_dir": "/srv/tracker"},
    "backup": {"directory": "/var/backups/torrust"},
}


def with_logging(**keys) -> dict:
    data = copy.deepcopy(MINIMAL)
    data["logging"] = keys
    return data


def only_problem(data: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(data, PATH)
    assert caught.value.exit_code == EXIT_USAGE
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


def test_no_logging_section_means_no_file():
    assert parse(copy.deepcopy(MINIMAL), PATH).logging == LoggingConfig(file=None)


def test_empty_logging_section_means_no_file():
    assert parse(with_logging(), PATH).logging.file is None


def test_file_is_an_absolute_normalised_path():
    parsed = parse(with_logging(file="/var/log//torrust-maint/./torrust-maint.log"), PATH)
    assert parsed.logging.file == Path("/var/log/torrust-maint/torrust-maint.log")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        (" ", "must not be empty"),
        ("torrust-maint.log", "must be an absolute path, not 'torrust-maint.log'"),
        (1, "must be a string, not an integer"),
        (["/var/log/x.log"], "must be a string, not a list"),
        ("/var/log/torrust-maint/", "must be a file path, not the directory "
                                    "'/var/log/torrust-maint/'"),
        ("/", "must be a file path, not the directory '/'"),
    ],
)
def test_invalid_file_names_file_section_and_key(value, message):
    assert only_problem(with_logging(file=value)) == f"{PATH}: [logging] file: {message}"


def test_unknown_logging_key_is_named():
    problem = only_problem(with_logging(level="debug"))
    assert problem == f"{PATH}: [logging] level: unknown key (known: file)"


def test_logging_must_be_a_table():
    data = copy.deepcopy(MINIMAL)
    data["logging"] = "/var/log/x.log"
    assert only_problem(data) == f"{PATH}: logging: must be a table [logging]"


def test_logging_problems_are_reported_with_the_others():
    data = with_logging(file="relative.log")
    data["deployment"]["stop_timeout"] = -1
    with pytest.raises(ConfigError) as caught:
        parse(data, PATH)
    assert caught.value.problems == [
        f"{PATH}: [deployment] stop_timeout: must be between 0 and 3600, not -1",
        f"{PATH}: [logging] file: must be an absolute path, not 'relative.log'",
    ]


def test_load_reads_the_logging_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[deployment]\ncompose_dir = "/srv/t"\n[backup]\ndirectory = "/b"\n'
                    '[logging]\nfile = "/var/log/torrust-maint/torrust-maint.log"\n')
    assert load(path).logging.file == Path("/var/log/torrust-maint/torrust-maint.log")
