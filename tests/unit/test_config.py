"""config.parse / config.load / config_path_from: every problem named by file, section, key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from torrust_maint import config
from torrust_maint.config import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    DEFAULT_CONFIG_PATHS,
    config_path_from,
    load,
    parse,
)
from torrust_maint.errors import EXIT_USAGE, ConfigError

PATH = Path("/etc/torrust-maint/test.toml")
MINIMAL = {
    "deployment": {"compose_dir": "/srv/tracker"},
    "backup": {"directory": "/var/backups/torrust"},
}


def data_with(section: str, key: str, value) -> dict:
    data = copy.deepcopy(MINIMAL)
    data.setdefault(section, {})[key] = value
    return data


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data, PATH)
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value.problems


def only_problem(data: dict) -> str:
    problems = problems_of(data)
    assert len(problems) == 1, problems
    return problems[0]


# -- a valid configuration -------------------------------------------------------------------

def test_minimal_config_gets_the_documented_defaults():
    parsed = parse(copy.deepcopy(MINIMAL), PATH)
    assert parsed.path == PATH
    assert parsed.deployment.compose_dir == Path("/srv/tracker")
    assert parsed.deployment.tracker_services == ("tracker",)
    assert parsed.deployment.database_driver is None
    assert parsed.deployment.sqlite_path is None
    assert (parsed.deployment.stop_timeout, parsed.deployment.start_timeout) == (10, 120)
    assert parsed.backup.directory == Path("/var/backups/torrust")
    assert parsed.backup.compression == "zstd"
    assert parsed.backup.compression_level is None
    assert parsed.backup.config_paths == DEFAULT_CONFIG_PATHS
    assert (parsed.retention.keep_last, parsed.retention.keep_daily,
            parsed.retention.keep_weekly, parsed.retention.keep_monthly) == (7, 7, 4, 6)


def test_full_config_values_are_normalised():
    data = {
        "deployment": {
            "compose_dir": "/srv//tracker/",
            "tracker_services": ["tracker", "tracker-udp"],
            "database_driver": "sqlite3",
            "sqlite_path": "/var/lib/torrust/tracker/./database//sqlite3.db",
            "stop_timeout": 0,
            "start_timeout": 3600,
        },
        "backup": {
            "directory": "/var/backups/torrust/",
            "compression": "gzip",
            "compression_level": 9,
            "config_paths": ["./.env", "storage/tracker/etc/"],
        },
        "retention": {"keep_last": 0, "keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0},
    }
    parsed = parse(data, PATH)
    assert parsed.deployment.compose_dir == Path("/srv/tracker")
    assert parsed.deployment.tracker_services == ("tracker", "tracker-udp")
    assert parsed.deployment.sqlite_path == "/var/lib/torrust/tracker/database/sqlite3.db"
    assert (parsed.deployment.stop_timeout, parsed.deployment.start_timeout) == (0, 3600)
    assert parsed.backup.directory == Path("/var/backups/torrust")
    assert (parsed.backup.compression, parsed.backup.compression_level) == ("gzip", 9)
    assert parsed.backup.config_paths == (".env", "storage/tracker/etc")
    assert parsed.retention.keep_daily == 1 and parsed.retention.keep_last == 0


def test_zstd_accepts_levels_above_nine():
    data = data_with("backup", "compression_level", 19)
    assert parse(data, PATH).backup.compression_level == 19


# -- one problem each ----------------------------------------------------------------------

def test_missing_required_keys_are_both_reported():
    assert problems_of({}) == [
        f"{PATH}: [deployment] compose_dir: required setting is missing",
        f"{PATH}: [backup] directory: required setting is missing",
    ]


def test_unknown_section_is_named_with_the_known_ones():
    data = copy.deepcopy(MINIMAL)
    data["restore"] = {"directory": "/x"}
    assert only_problem(data) == (
        f"{PATH}: [restore]: unknown section (known: deployment, backup, window, retention, "
        "verify, logging, notify, retry, status, state, offsite)"
    )


def test_unknown_key_is_named_with_its_section():
    problem = only_problem(data_with("deployment", "compose_file", "/srv/x.yml"))
    assert problem.startswith(f"{PATH}: [deployment] compose_file: unknown key (known: ")
    assert "compose_dir" in problem and "sqlite_path" in problem


def test_section_that_is_not_a_table():
    data = copy.deepcopy(MINIMAL)
    data["retention"] = 7
    assert only_problem(data) == f"{PATH}: retention: must be a table [retention]"


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("deployment", "compose_dir", "", "must not be empty"),
        ("deployment", "compose_dir", "  \t ", "must not be empty"),
        ("deployment", "compose_dir", 5, "must be a string, not an integer"),
        ("deployment", "compose_dir", ["/srv"], "must be a string, not a list"),
        ("deployment", "compose_dir", "srv/tracker",
         "must be an absolute path, not 'srv/tracker'"),
        ("backup", "directory", "backups", "must be an absolute path, not 'backups'"),
        ("deployment", "stop_timeout", "10", "must be an integer, not a string"),
        ("deployment", "stop_timeout", True, "must be an integer, not a boolean"),
        ("deployment", "stop_timeout", 1.5, "must be an integer, not a number"),
        ("deployment", "stop_timeout", -1, "must be between 0 and 3600, not -1"),
        ("deployment", "start_timeout", 0, "must be between 1 and 3600, not 0"),
        ("deployment", "start_timeout", 3601, "must be between 1 and 3600, not 3601"),
        ("backup", "compression_level", 0, "must be between 1 and 19, not 0"),
        ("backup", "compression_level", 20, "must be between 1 and 19, not 20"),
        ("retention", "keep_daily", -1, "must be between 0 and 100000, not -1"),
        ("retention", "keep_monthly", "6", "must be an integer, not a string"),
        ("backup", "compression", "xz", "must be one of zstd, gzip, not 'xz'"),
        ("backup", "compression", 3, "must be a string, not an integer"),
        ("deployment", "database_driver", "pgsql",
         "must be one of sqlite3, mysql, postgresql, not 'pgsql'"),
        ("deployment", "database_driver", "", "must not be empty"),
        ("deployment", "tracker_services", [], "must not be an empty list"),
        ("deployment", "tracker_services", "tracker", "must be a list, not a string"),
        ("deployment", "tracker_services", ["tracker", "tracker"], "must not repeat an item"),
        ("deployment", "tracker_services", ["tracker", " "], "item 2 must not be empty"),
        ("deployment", "tracker_services", ["tracker", 7],
         "item 2 must be a string, not an integer"),
        ("backup", "config_paths", [], "must not be an empty list"),
        ("backup", "config_paths", [".env", "./.env"], "must not repeat an item"),
        ("backup", "config_paths", ["../x"],
         "item 1 must be a path inside compose_dir, not '../x'"),
        ("backup", "config_paths", [".env", "/abs"],
         "item 2 must be a path inside compose_dir, not '/abs'"),
        ("backup", "config_paths", ["storage/../../x"],
         "item 1 must be a path inside compose_dir, not 'storage/../../x'"),
        ("backup", "config_paths", [".."], "item 1 must be a path inside compose_dir, not '..'"),
        ("deployment", "sqlite_path", "database/sqlite3.db",
         "must be the absolute path as the tracker container sees it, not 'database/sqlite3.db'"),
    ],
)
def test_invalid_value_names_file_section_and_key(section, key, value, message):
    assert only_problem(data_with(section, key, value)) == f"{PATH}: [{section}] {key}: {message}"


def test_sqlite_path_contradicts_mysql_driver():
    data = data_with("deployment", "database_driver", "mysql")
    data["deployment"]["sqlite_path"] = "/var/lib/torrust/tracker/database/sqlite3.db"
    assert only_problem(data) == (
        f'{PATH}: [deployment] sqlite_path: set, but database_driver is "mysql"'
    )


def test_retention_keeping_nothing_is_refused():
    data = copy.deepcopy(MINIMAL)
    data["retention"] = {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}
    problem = only_problem(data)
    assert problem.startswith(f"{PATH}: [retention]: every keep_* is 0")


def test_some_keep_zero_with_defaults_elsewhere_is_fine():
    data = copy.deepcopy(MINIMAL)
    data["retention"] = {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0}
    assert parse(data, PATH).retention.keep_monthly == 6


def test_gzip_level_above_nine_is_refused():
    data = data_with("backup", "compression", "gzip")
    data["backup"]["compression_level"] = 10
    assert only_problem(data) == f"{PATH}: [backup] compression_level: gzip takes 1 to 9, not 10"


def test_all_problems_are_reported_at_once():
    data = {
        "deployment": {"compose_dir": "relative/dir", "stop_timeout": "ten"},
        "backup": {"directory": "/var/backups/torrust", "compression": "lzma"},
    }
    problems = problems_of(data)
    assert len(problems) == 3
    assert [p.split(":")[1].strip() for p in problems] == [
        "[deployment] compose_dir", "[deployment] stop_timeout", "[backup] compression",
    ]
    assert all(p.startswith(f"{PATH}: ") for p in problems)


def test_config_error_message_is_one_problem_per_line():
    error = ConfigError(["first", "second"])
    assert str(error).splitlines() == ["first", "second"]
    assert ConfigError("alone").problems == ["alone"]


# -- load: the file itself ----------------------------------------------------------------

VALID_TOML = """\
[deployment]
compose_dir = "/srv/tracker"

[backup]
directory = "/var/backups/torrust"
compression = "gzip"
"""


def test_load_reads_a_valid_file(tmp_path):
    path = tmp_path / "torrust-maint.toml"
    path.write_text(VALID_TOML)
    loaded = load(path)
    assert loaded.path == path
    assert loaded.backup.compression == "gzip"
    assert loaded.deployment.compose_dir == Path("/srv/tracker")


def test_load_reports_problems_with_the_real_file_name(tmp_path):
    path = tmp_path / "torrust-maint.toml"
    path.write_text(VALID_TOML + "level = 3\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        f"{path}: [backup] level: unknown key (known: directory, compression, "
        "compression_level, config_paths)"
    ]


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[deployment]\ncompose_dir = "/srv/tracker\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: invalid TOML: ")
    assert "line 2" in problem


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(VALID_TOML.replace("/srv/tracker", "/srv/tr\xe4cker").encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [f"{path}: not UTF-8 text"]


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [f"{path}: configuration file not found"]


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)  # a directory
    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path}: cannot read configuration file: ")


# -- which file ------------------------------------------------------------------------------

def test_config_option_wins_over_environment():
    chosen = config_path_from("/etc/a.toml", {CONFIG_ENV_VAR: "/etc/b.toml"})
    assert chosen == Path("/etc/a.toml")


def test_config_option_wins_even_over_an_empty_environment_variable():
    assert config_path_from("/etc/a.toml", {CONFIG_ENV_VAR: ""}) == Path("/etc/a.toml")


def test_environment_variable_wins_over_default():
    assert config_path_from(None, {CONFIG_ENV_VAR: "/etc/b.toml"}) == Path("/etc/b.toml")


def test_default_path():
    assert config_path_from(None, {}) == Path("/etc/torrust-maint/torrust-maint.toml")
    assert DEFAULT_CONFIG_PATH == "/etc/torrust-maint/torrust-maint.toml"


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_config_option_is_an_error(value):
    with pytest.raises(ConfigError, match="^--config must not be empty$"):
        config_path_from(value, {CONFIG_ENV_VAR: "/etc/b.toml"})


@pytest.mark.parametrize("value", ["", " "])
def test_empty_environment_variable_is_an_error(value):
    with pytest.raises(ConfigError) as caught:
        config_path_from(None, {CONFIG_ENV_VAR: value})
    assert caught.value.problems == ["environment variable TORRUST_MAINT_CONFIG is set but empty"]
    assert config.CONFIG_ENV_VAR == "TORRUST_MAINT_CONFIG"


# -- [window] ------------------------------------------------------------------------------

def test_window_mode_is_stop_unless_set():
    assert parse(copy.deepcopy(MINIMAL), PATH).window == config.WindowConfig(mode="stop")
    assert not parse(copy.deepcopy(MINIMAL), PATH).window.online
    online = parse(data_with("window", "mode", "online"), PATH).window
    assert (online.mode, online.online) == ("online", True)
    assert parse(data_with("window", "mode", "stop"), PATH).window.online is False


@pytest.mark.parametrize(("value", "message"), [
    ("offline", "must be one of stop, online, not 'offline'"),
    ("Online", "must be one of stop, online, not 'Online'"),
    (" online", "must not begin or end with spaces: ' online'"),
    ("", "must not be empty"),
    (True, "must be a string, not a boolean"),
    (["online"], "must be a string, not a list"),
])
def test_a_bad_window_mode_names_the_setting_and_the_allowed_values(value, message):
    assert only_problem(data_with("window", "mode", value)) == \
        f"{PATH}: [window] mode: {message}"


def test_an_unknown_window_key_is_named():
    assert only_problem(data_with("window", "online", True)) == \
        f"{PATH}: [window] online: unknown key (known: mode)"


def test_a_window_mode_outside_its_section_points_to_it():
    data = copy.deepcopy(MINIMAL)
    data["mode"] = "online"
    assert only_problem(data) == \
        f"{PATH}: mode: a setting outside any [section]; it belongs under [window]"
