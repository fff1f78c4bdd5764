"""The pieces of `torrust-maint migrate` that read and convert: backup.conf read without being
run, the legacy settings converted (retention, paths, database), and the TOML line editing
that keeps every other byte of the configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from torrust_maint import legacy_settings, shell_assignments, toml_lines

REPO = Path(__file__).resolve().parents[2]
SECRET = "pa$$ w0rd'\"`x`"


@pytest.mark.parametrize("line, value", [
    ("KEY=value", "value"),
    ("KEY=/data/storage # a comment", "/data/storage"),
    ('KEY="two words"', "two words"),
    ('KEY="a \\"quoted\\" \\$dollar"', 'a "quoted" $dollar'),
    ("KEY='$(not run) `nor this`'", "$(not run) `nor this`"),
    ("export KEY=7", "7"),
    ("  export   KEY='x'   # note", "x"),
    ("KEY=", ""),
    ('KEY=""', ""),
])
def test_plain_assignments_are_read_as_the_shell_would(line, value):
    values, problems = shell_assignments.parse(f"# header\n\n{line}\n", "backup.conf")
    assert problems == []
    assert values["KEY"] == shell_assignments.Assignment("KEY", value, 3)


@pytest.mark.parametrize("line, says", [
    ("KEY=$(id -u)", "a command substitution"),
    ('KEY="prefix-$(hostname)"', "a command substitution"),
    ("KEY=`id`", "a command substitution"),
    ("KEY=$HOME/backups", "a variable expansion"),
    ('KEY="${BASE}/x"', "a variable expansion"),
    ("KEY=value; rm -rf /", "shell syntax"),
    ("KEY=value rm -rf /", "text after the value"),
    ("KEY='unterminated", "an unterminated single quote"),
    ("KEY=*.db", "shell syntax"),
    ("source /etc/other.conf", "not a KEY=value assignment"),
    ("if true; then KEY=1; fi", "not a KEY=value assignment"),
])
def test_anything_the_shell_would_expand_or_run_is_a_problem_naming_the_line(line, says):
    values, problems = shell_assignments.parse(f"A=1\n{line}\n", "/x/backup.conf")
    assert values.keys() == {"A"}
    [problem] = problems
    assert problem.startswith("/x/backup.conf:2: ") and says in problem
    assert "KEY=value, KEY=\"value\" or KEY='value'" in problem


def test_a_refused_line_never_quotes_its_value():
    _, problems = shell_assignments.parse(f'DB_PASSWORD="{SECRET}$(x)"\n', "backup.conf")
    assert problems and all(part not in problems[0] for part in ("pa$$", "w0rd", SECRET))


def deployment(tmp_path: Path, conf: str, paths: str = "/data/storage/tracker/etc\n") -> Path:
    compose = tmp_path / "opt/torrust"
    etc = compose / "storage/backup/etc"
    etc.mkdir(parents=True)
    (etc / "backup.conf").write_text(conf)
    (etc / "backup-paths.txt").write_text(paths)
    return compose


SQLITE = ("BACKUP_PATHS_FILE=/etc/backup/backup-paths.txt\nDB_TYPE=sqlite\n"
          "DB_PATH=/data/storage/tracker/lib/database/sqlite3.db\n")


@pytest.mark.parametrize("days", [0, 1, 7, 30, 99_999])
def test_retention_days_keep_today_and_the_days_before(tmp_path, days):
    compose = deployment(tmp_path, f"BACKUP_RETENTION_DAYS={days}\n{SQLITE}")
    conversion = legacy_settings.convert(compose)
    assert conversion.problems == []
    assert conversion.settings["retention"] == {"keep_last": 0, "keep_daily": days + 1,
                                                "keep_weekly": 0, "keep_monthly": 0}


def test_an_unset_retention_is_the_legacy_scripts_seven_days_with_a_note(tmp_path):
    conversion = legacy_settings.convert(deployment(tmp_path, SQLITE))
    assert conversion.settings["retention"]["keep_daily"] == 8
    assert any("BACKUP_RETENTION_DAYS is not set: the legacy script kept 7 days" in line
               for line in conversion.report)


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "7d", "100000", "' 7'"])
def test_a_retention_that_is_not_a_number_of_days_is_a_problem(tmp_path, value):
    compose = deployment(tmp_path, f"BACKUP_RETENTION_DAYS={value}\n{SQLITE}")
    conversion = legacy_settings.convert(compose)
    [problem] = conversion.problems
    assert "backup.conf:1: BACKUP_RETENTION_DAYS must be a number of days" in problem
    assert "retention" not in conversion.settings


def test_backup_paths_are_made_relative_to_compose_dir(tmp_path):
    paths = ("# archived\n/data/storage/tracker/etc\n\n  /data/.env  \n/data/./docker-compose.yml\n"
             "/data/.env\n/data\n")
    compose = deployment(tmp_path, "BACKUP_RETENTION_DAYS=3\n" + SQLITE, paths)
    conversion = legacy_settings.convert(compose)
    assert conversion.problems == []
    assert conversion.settings["backup"]["config_paths"] == [
        "storage/tracker/etc", ".env", "docker-compose.yml", "."]
    assert "  note: .env is listed twice; kept once" in conversion.report


@pytest.mark.parametrize("path", ["/etc/letsencrypt", "/data/../etc/shadow", "storage/x",
                                  "/database"])
def test_a_backup_path_outside_data_is_a_problem_naming_file_and_line(tmp_path, path):
    compose = deployment(tmp_path, SQLITE, f"/data/.env\n# c\n{path}\n")
    conversion = legacy_settings.convert(compose)
    [problem] = conversion.problems
    assert problem.startswith(f"{compose}/storage/backup/etc/backup-paths.txt:3: ")
    assert "is not under /data" in problem


@pytest.mark.parametrize("paths_file, where", [
    ("/etc/backup/backup-paths.txt", "storage/backup/etc/backup-paths.txt"),
    ("/data/storage/backup/etc/backup-paths.txt", "storage/backup/etc/backup-paths.txt"),
])
def test_the_paths_file_is_found_through_the_containers_mounts(tmp_path, paths_file, where):
    compose = deployment(tmp_path, SQLITE.replace("/etc/backup/backup-paths.txt", paths_file))
    conversion = legacy_settings.convert(compose)
    assert conversion.problems == []
    assert f"{compose / where}:" in conversion.report


def test_a_paths_file_outside_the_mounts_or_missing_is_a_problem(tmp_path):
    compose = deployment(tmp_path, SQLITE.replace("/etc/backup/backup-paths.txt",
                                                  "/srv/paths.txt"))
    assert "BACKUP_PATHS_FILE '/srv/paths.txt' is neither under /etc/backup nor under /data" \
        in legacy_settings.convert(compose).problems[0]
    (compose / "storage/backup/etc/backup-paths.txt").unlink()
    compose2 = deployment(tmp_path / "2", SQLITE)
    (compose2 / "storage/backup/etc/backup-paths.txt").unlink()
    [problem] = legacy_settings.convert(compose2).problems
    assert problem.startswith("BACKUP_PATHS_FILE (") and "backup-paths.txt: not found" in problem


@pytest.mark.parametrize("db_type, driver", [("sqlite", "sqlite3"), ("mysql", "mysql")])
def test_db_type_is_the_database_driver(tmp_path, db_type, driver):
    conf = (f"BACKUP_PATHS_FILE=/etc/backup/backup-paths.txt\nDB_TYPE={db_type}\nDB_PATH=/data/x\n"
            "DB_HOST=mysql\nDB_PORT=3306\nDB_USER=u\nDB_NAME=n\nDB_PASSWORD=\n")
    conversion = legacy_settings.convert(deployment(tmp_path, conf))
    assert conversion.problems == []
    assert conversion.settings["deployment"] == {"database_driver": driver}
    assert "  DB_PASSWORD: empty (not shown)" in conversion.report


def test_db_type_none_sets_no_driver(tmp_path):
    conf = "BACKUP_PATHS_FILE=/etc/backup/backup-paths.txt\nDB_TYPE=none\n"
    conversion = legacy_settings.convert(deployment(tmp_path, conf))
    assert conversion.problems == [] and "deployment" not in conversion.settings


def test_every_missing_or_empty_setting_of_the_db_type_is_listed(tmp_path):
    conf = ("BACKUP_PATHS_FILE=/etc/backup/backup-paths.txt\nDB_TYPE=mysql\nDB_HOST=\n"
            "DB_PORT=''\nDB_USER=\"  \"\n")
    compose = deployment(tmp_path, conf)
    origin = compose / legacy_settings.BACKUP_CONF
    assert legacy_settings.convert(compose).problems == [
        f"{origin}:3: DB_HOST is empty; an empty setting is never given a default: set it, "
        "then run migrate again",
        f"{origin}:4: DB_PORT is empty; an empty setting is never given a default: set it, "
        "then run migrate again",
        f"{origin}:5: DB_USER is empty; an empty setting is never given a default: set it, "
        "then run migrate again",
        f"{origin}: DB_NAME is not set; set it (the legacy backup needed it), then run "
        "migrate again"]


def test_an_unknown_db_type_and_a_missing_backup_conf_are_problems(tmp_path):
    compose = deployment(tmp_path, "BACKUP_PATHS_FILE=/etc/backup/backup-paths.txt\n"
                                   "DB_TYPE=postgres\n")
    assert "DB_TYPE must be sqlite, mysql or none, not 'postgres'" in \
        legacy_settings.convert(compose).problems[0]
    (compose / legacy_settings.BACKUP_CONF).unlink()
    [problem] = legacy_settings.convert(compose).problems
    assert problem.startswith(f"{compose / legacy_settings.BACKUP_CONF}: not found")


# -- TOML line editing ------------------------------------------------------------------


SHIPPED = (REPO / "conf/torrust-maint.toml").read_text()


def test_setting_a_commented_key_replaces_that_line_and_nothing_else():
    new = toml_lines.set_key(SHIPPED, "retention", "keep_last", 0)
    old_lines, new_lines = SHIPPED.splitlines(), new.splitlines()
    assert len(old_lines) == len(new_lines)
    [changed] = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert (old_lines[changed], new_lines[changed]) == ("#keep_last = 7", "keep_last = 0")
    assert tomllib.loads(new)["offsite"] == tomllib.loads(SHIPPED)["offsite"]  # its keep_last


def test_an_active_key_and_an_array_over_several_lines_are_replaced():
    text = ('[backup]\n# paths\nconfig_paths = [\n  ".env",\n  "x",\n]\ndirectory = "/b"\n'
            "[other]\nconfig_paths = 1\n")
    new = toml_lines.set_keys(text, {"backup": {"config_paths": ["a", 'q"uote'],
                                                "directory": "/c"}})
    assert new == ('[backup]\n# paths\nconfig_paths = ["a", "q\\"uote"]\ndirectory = "/c"\n'
                   "[other]\nconfig_paths = 1\n")


def test_a_missing_key_goes_after_its_header_and_a_missing_section_at_the_end():
    text = "# top\n[deployment]\ncompose_dir = \"/opt/torrust\"  # here"
    new = toml_lines.set_keys(text, {"deployment": {"database_driver": "mysql"},
                                     "retention": {"keep_daily": 8}})
    assert new == ('# top\n[deployment]\ndatabase_driver = "mysql"\ncompose_dir = '
                   '"/opt/torrust"  # here\n\n[retention]\nkeep_daily = 8\n')
    assert toml_lines.set_keys("", {"state": {"directory": "/s"}}) == \
        '[state]\ndirectory = "/s"\n'


def test_expected_is_the_old_data_with_the_settings_applied():
    data = {"backup": {"directory": "/b", "compression": "zstd"}, "x": 1}
    wanted = toml_lines.expected(data, {"backup": {"directory": "/c"}, "state": {"a": 1}})
    assert wanted == {"backup": {"directory": "/c", "compression": "zstd"}, "x": 1,
                      "state": {"a": 1}}
    assert data["backup"]["directory"] == "/b"
