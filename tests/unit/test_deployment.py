"""deployment: .env parsing, mount translation and discovery against a fake docker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torrust_maint.config import DeploymentConfig
from torrust_maint.deployment import (
    ENV_DB_PATH,
    ENV_DRIVER,
    MysqlDatabase,
    SqliteDatabase,
    _mysql_credentials,
    discover,
    find_trackers,
    host_path_for,
    parse_env_file,
    parse_mysql_dsn,
)
from torrust_maint.docker import Container, Mount
from torrust_maint.errors import ConfigError, DockerError, MaintError

from .conftest import CONTAINER_DB_PATH, CONTAINER_ETC, CONTAINER_LIB, ENV_TOML_PATH, make_sqlite

# -- .env ------------------------------------------------------------------------------------

ENV_TEXT = """\
# deployer-generated
USER_ID=1000

  SPACED = spaced value   
SINGLE='single # not a comment'
DOUBLE="double value" # a comment after quotes
export EXPORTED=yes
INLINE=abc # trailing comment
HASH=a#b
EMPTY=
QUOTED_EMPTY=""
URL=mysql://user:pw@db:3306/torrust?x=1
"""


def test_parse_env_file():
    assert parse_env_file(ENV_TEXT, ".env") == {
        "USER_ID": "1000",
        "SPACED": "spaced value",
        "SINGLE": "single # not a comment",
        "DOUBLE": "double value",
        "EXPORTED": "yes",
        "INLINE": "abc",
        "HASH": "a#b",
        "EMPTY": "",
        "QUOTED_EMPTY": "",
        "URL": "mysql://user:pw@db:3306/torrust?x=1",
    }


def test_later_assignment_wins():
    assert parse_env_file("A=1\nA=2\n", ".env") == {"A": "2"}


@pytest.mark.parametrize("line", ["NOEQUALS", "=value", "BAD-KEY=x", "two words=x"])
def test_bad_line_names_file_and_line(line):
    with pytest.raises(ConfigError) as caught:
        parse_env_file(f"# header\nGOOD=1\n{line}\n", "/srv/tracker/.env")
    assert caught.value.problems == ["/srv/tracker/.env:3: not a KEY=value line"]


def test_unterminated_quote():
    with pytest.raises(ConfigError) as caught:
        parse_env_file('A=1\nTOKEN="abc\n', "/srv/tracker/.env")
    assert caught.value.problems == ["/srv/tracker/.env:2: TOKEN: unterminated quote"]


# -- mounts ----------------------------------------------------------------------------------

def container_with(*mounts: tuple[str, str]) -> Container:
    return Container(id="c1", name="tracker-1", service="tracker", project="p",
                     working_dir="/srv", running=True, status="running", health=None,
                     mounts=tuple(Mount(source, destination) for source, destination in mounts))


NESTED = [("/srv/lib", "/var/lib/torrust/tracker"),
          ("/srv/db", "/var/lib/torrust/tracker/database")]


@pytest.mark.parametrize("mounts", [NESTED, NESTED[::-1]])
def test_longest_covering_mount_wins_whatever_the_order(mounts):
    container = container_with(*mounts)
    assert host_path_for(container, "/var/lib/torrust/tracker/database/sqlite3.db") == \
        Path("/srv/db/sqlite3.db")
    assert host_path_for(container, "/var/lib/torrust/tracker/other.db") == \
        Path("/srv/lib/other.db")


def test_mount_point_itself_and_trailing_slashes():
    container = container_with(("/srv/data/", "/data/"))
    assert host_path_for(container, "/data") == Path("/srv/data")
    assert host_path_for(container, "/data/x/y.db") == Path("/srv/data/x/y.db")


def test_root_mount_covers_everything():
    container = container_with(("/srv/rootfs", "/"))
    assert host_path_for(container, "/var/db.sqlite") == Path("/srv/rootfs/var/db.sqlite")


@pytest.mark.parametrize("path", [
    "/etc/x.db",
    "/var/lib/torrust/trackerX/db.sqlite",  # a prefix, but not on a path component boundary
    "/var/lib/torrust",
    "/var/lib/torrust/tracker/../secrets/db.sqlite",  # `..` climbs out of the mount
])
def test_paths_not_on_a_mount(path):
    assert host_path_for(container_with(*NESTED), path) is None


def test_path_is_normalised_before_matching():
    container = container_with(*NESTED)
    assert host_path_for(container, "/var/lib/torrust/tracker/./database//x/../sqlite3.db") == \
        Path("/srv/db/sqlite3.db")


def test_find_trackers_reports_each_missing_service():
    found, problems = find_trackers([container_with()], ("tracker", "udp"), Path("/srv"))
    assert [c.name for c in found] == ["tracker-1"]
    assert problems == ["[deployment] tracker_services: no container of service 'udp' in the "
                        "compose project at /srv (services found: tracker); "
                        "is the stack deployed?"]


# -- discovery -------------------------------------------------------------------------------

def test_discover_finds_the_tracker_of_this_project_only(stack, tmp_path):
    other_dir = tmp_path / "other-stack"
    other_dir.mkdir()
    # Another project's tracker (sorting first by name) and a non-compose container.
    stack.fake.add("aaa-tracker-1", working_dir=str(other_dir), project="other",
                   mounts=[(str(other_dir), CONTAINER_LIB)])
    stack.fake.add("loose", working_dir=str(stack.compose_dir), service=None)
    stack.fake.add("compose-grafana-1", working_dir=str(stack.compose_dir), service="grafana")
    tracker_id = stack.add_tracker()

    deployment = discover(stack.settings(), stack.docker)

    assert deployment.tracker_ids == [tracker_id]
    assert deployment.tracker_names == "compose-tracker-1"
    assert deployment.driver == "sqlite3"
    assert deployment.database.container_path == CONTAINER_DB_PATH
    assert deployment.database.host_path == stack.db_path
    assert deployment.compose_dir == stack.compose_dir


def test_discover_matches_the_working_dir_through_symlinks(stack, tmp_path):
    link = tmp_path / "link-to-compose"
    link.symlink_to(stack.compose_dir)
    tracker_id = stack.fake.add("compose-tracker-1", working_dir=str(link) + "/",
                                env={ENV_TOML_PATH: f"{CONTAINER_ETC}/tracker.toml"},
                                mounts=[(str(stack.lib), CONTAINER_LIB),
                                        (str(stack.etc), CONTAINER_ETC)])
    assert discover(stack.settings(), stack.docker).tracker_ids == [tracker_id]


def test_several_tracker_containers_are_sorted_by_name(stack):
    second = stack.add_tracker(name="compose-tracker-2")
    first = stack.add_tracker(name="compose-tracker-1")
    assert discover(stack.settings(), stack.docker).tracker_ids == [first, second]


def test_tracker_containers_disagreeing_on_the_database_is_an_error(stack, tmp_path):
    stack.add_tracker(name="compose-tracker-1")
    stack.add_tracker(name="compose-tracker-2", mounts=[(str(tmp_path), CONTAINER_LIB)])
    with pytest.raises(ConfigError, match="tracker containers disagree on the host path"):
        discover(stack.settings(), stack.docker)


def test_no_tracker_container_lists_the_services_found(stack):
    stack.fake.add("compose-grafana-1", working_dir=str(stack.compose_dir), service="grafana")
    stack.fake.add("compose-prometheus-1", working_dir=str(stack.compose_dir),
                   service="prometheus")
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    (problem,) = caught.value.problems
    assert "no container of service 'tracker'" in problem
    assert str(stack.compose_dir) in problem
    assert "(services found: grafana, prometheus)" in problem


def test_no_compose_container_at_all(stack, tmp_path):
    stack.fake.add("elsewhere-tracker-1", working_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"\(no compose containers found there\)"):
        discover(stack.settings(), stack.docker)


def test_compose_dir_must_exist(stack, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f"compose_dir: {missing} is not a directory"):
        discover(DeploymentConfig(compose_dir=missing), stack.docker)
    assert stack.fake.calls == []


# -- the driver ----------------------------------------------------------------------------

MYSQL_ENV = "MYSQL_DATABASE=torrust_tracker\nMYSQL_USER=db_user\nMYSQL_PASSWORD=db_pw\n"


def add_mysql(stack, name: str = "compose-mysql-1", service: str = "mysql",
              networks: dict[str, str] | None = None, env: dict | None = None,
              **options) -> str:
    """The database service's container; by default on the tracker's network."""
    if networks is None:
        networks = {"compose_default": "172.20.0.3"}
    return stack.fake.add(name, working_dir=str(stack.compose_dir), service=service,
                          networks=networks, image="mysql:8.0",
                          env=env or {"MYSQL_ROOT_PASSWORD": "root_pw"}, **options)


def add_tracker_on_network(stack, env: dict | None = None, **options) -> str:
    return stack.add_tracker(env={ENV_TOML_PATH: f"{CONTAINER_ETC}/tracker.toml", **(env or {})},
                             networks={"compose_default": "172.20.0.2"}, **options)


def viable_both_ways(stack, env_file_driver: str | None, toml_driver: str | None,
                     container_driver: str | None) -> str:
    """A stack where either engine would be discovered without error; the driver it chose."""
    env_text = MYSQL_ENV
    if env_file_driver is not None:
        env_text += f"{ENV_DRIVER}={env_file_driver}\n"
    stack.write_env(env_text)
    if toml_driver is None:
        (stack.etc / "tracker.toml").write_text(f'[core.database]\npath = "{CONTAINER_DB_PATH}"\n')
    else:
        stack.write_toml(driver=toml_driver)
    add_tracker_on_network(stack, {ENV_DRIVER: container_driver} if container_driver else None)
    add_mysql(stack)
    deployment = discover(stack.settings(), stack.docker)
    if deployment.driver == "mysql":
        assert isinstance(deployment.database, MysqlDatabase)
        assert deployment.database.host == "172.20.0.3"
    else:
        assert isinstance(deployment.database, SqliteDatabase)
        assert deployment.database.host_path == stack.db_path
    return deployment.driver


@pytest.mark.parametrize("env_file_driver,toml_driver,container_driver,expected", [
    ("sqlite3", "sqlite3", "mysql", "mysql"),  # the container's environment beats both
    ("mysql", "mysql", "sqlite3", "sqlite3"),
])
def test_driver_from_container_env_beats_env_file_and_toml(stack, env_file_driver, toml_driver,
                                                           container_driver, expected):
    assert viable_both_ways(stack, env_file_driver, toml_driver, container_driver) == expected


@pytest.mark.parametrize("env_file_driver,toml_driver,expected", [
    ("mysql", "sqlite3", "mysql"),
    ("sqlite3", "mysql", "sqlite3"),
])
def test_driver_from_env_file_beats_toml(stack, env_file_driver, toml_driver, expected):
    assert viable_both_ways(stack, env_file_driver, toml_driver, None) == expected


@pytest.mark.parametrize("toml_driver", ["mysql", "sqlite3"])
def test_driver_from_toml(stack, toml_driver):
    assert viable_both_ways(stack, None, toml_driver, None) == toml_driver


def test_unsupported_driver(stack):
    stack.write_env(f"{ENV_DRIVER}=mysql\n" + MYSQL_ENV)
    add_tracker_on_network(stack, {ENV_DRIVER: "oracle"})
    add_mysql(stack)
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    assert caught.value.problems == [
        "database driver 'oracle' is not supported (supported: sqlite3, mysql, postgresql)"]


def test_configured_driver_beats_discovery(stack):
    stack.write_env(f"{ENV_DRIVER}=mysql\n")
    stack.add_tracker(env={ENV_DRIVER: "mysql"})
    deployment = discover(stack.settings(database_driver="sqlite3"), stack.docker)
    assert deployment.driver == "sqlite3"


def test_empty_driver_in_container_env_names_its_origin(stack):
    stack.write_env(f"{ENV_DRIVER}=sqlite3\n")
    stack.add_tracker(env={ENV_DRIVER: ""})
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    assert caught.value.problems == [
        f"tracker container compose-tracker-1 environment: {ENV_DRIVER} is set but empty"
    ]


def test_empty_driver_in_env_file_names_the_file(stack):
    stack.write_env(f"{ENV_DRIVER}=  \n")
    stack.add_tracker()
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    assert caught.value.problems == [f"{stack.compose_dir / '.env'}: {ENV_DRIVER} is set but empty"]


def test_empty_driver_in_toml_names_the_file(stack):
    toml = stack.write_toml(driver="")
    stack.add_tracker()
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    assert caught.value.problems == [f"{toml} [core.database]: driver is set but empty"]


def test_no_driver_anywhere(stack):
    (stack.etc / "tracker.toml").unlink()
    stack.add_tracker()
    with pytest.raises(ConfigError, match="cannot tell the database driver: .*"
                                          "set \\[deployment\\] database_driver"):
        discover(stack.settings(), stack.docker)


def test_bad_env_file_is_reported(stack):
    stack.write_env("A=1\nthis is not an assignment\n")
    stack.add_tracker()
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    assert caught.value.problems == [f"{stack.compose_dir / '.env'}:2: not a KEY=value line"]


def test_non_utf8_env_file_is_a_config_error(stack):
    (stack.compose_dir / ".env").write_bytes(b"NAME=tr\xe4cker\n")
    stack.add_tracker()
    with pytest.raises(ConfigError, match=f"^{stack.compose_dir / '.env'}: "):
        discover(stack.settings(), stack.docker)


def test_broken_tracker_toml_is_a_config_error(stack):
    (stack.etc / "tracker.toml").write_text("[core.database\n")
    stack.add_tracker()
    with pytest.raises(ConfigError, match="tracker.toml: cannot read tracker configuration"):
        discover(stack.settings(), stack.docker)


# -- the SQLite path -------------------------------------------------------------------------

def test_toml_found_through_its_container_path(stack):
    other_db = stack.lib / "database/custom.db"
    make_sqlite(other_db)
    stack.write_toml(path=f"{CONTAINER_LIB}/database/custom.db", name="custom.toml")
    stack.add_tracker(env={ENV_TOML_PATH: f"{CONTAINER_ETC}/custom.toml"})
    deployment = discover(stack.settings(), stack.docker)
    assert deployment.database.host_path == other_db


def test_sqlite_path_override_from_env_is_translated_through_mounts(stack):
    moved = stack.lib / "elsewhere/tracker.db"
    make_sqlite(moved)
    stack.add_tracker(env={ENV_DB_PATH: f"{CONTAINER_LIB}/elsewhere/tracker.db",
                           ENV_TOML_PATH: f"{CONTAINER_ETC}/tracker.toml"})
    deployment = discover(stack.settings(), stack.docker)
    assert deployment.database.container_path == f"{CONTAINER_LIB}/elsewhere/tracker.db"
    assert deployment.database.host_path == moved


def test_configured_sqlite_path_wins(stack):
    moved = stack.lib / "configured.db"
    make_sqlite(moved)
    stack.add_tracker(env={ENV_DB_PATH: "/nowhere/x.db"})
    deployment = discover(stack.settings(sqlite_path=f"{CONTAINER_LIB}/configured.db"),
                          stack.docker)
    assert deployment.database.host_path == moved


def test_sqlite_path_not_on_a_mount(stack):
    stack.add_tracker(env={ENV_DB_PATH: "/tmp/sqlite3.db"})
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    assert caught.value.problems == [
        "tracker container compose-tracker-1 environment: /tmp/sqlite3.db is not on a mount "
        "of tracker container(s) compose-tracker-1: the database would be lost with the container"
    ]


def test_sqlite_file_missing_on_the_host(stack):
    stack.db_path.unlink()
    stack.add_tracker()
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{stack.etc / 'tracker.toml'} [core.database]: ")
    assert f"should be at {stack.db_path} on the host, but no file is there" in problem


def test_relative_sqlite_path_is_refused(stack):
    stack.write_toml(path="./storage/tracker/lib/database/sqlite3.db")
    stack.add_tracker()
    with pytest.raises(ConfigError, match="is relative; set \\[deployment\\] sqlite_path"):
        discover(stack.settings(), stack.docker)


def test_single_file_bind_mount_of_the_database_is_refused(stack):
    """Its -wal/-shm/-journal would live in the container's layer (issue 8, defect 6)."""
    stack.add_tracker(mounts=[(str(stack.db_path), CONTAINER_DB_PATH),
                              (str(stack.etc), CONTAINER_ETC)])
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{stack.etc / 'tracker.toml'} [core.database]: the SQLite "
                              f"database {CONTAINER_DB_PATH} is bind-mounted as a single file "
                              f"(mount {stack.db_path} -> {CONTAINER_DB_PATH} of tracker "
                              "container compose-tracker-1)")
    assert f"mount the directory that holds it ({CONTAINER_LIB}/database in the container)" \
        in problem


def test_a_file_mount_of_a_second_tracker_is_refused_too(stack):
    stack.add_tracker(name="compose-tracker-1")
    stack.add_tracker(name="compose-tracker-2",
                      mounts=[(str(stack.db_path), CONTAINER_DB_PATH + "/"),
                              (str(stack.etc), CONTAINER_ETC)])
    with pytest.raises(ConfigError, match="of tracker container compose-tracker-2\\)"):
        discover(stack.settings(), stack.docker)


def test_symlinked_database_file_is_refused(stack, tmp_path):
    elsewhere = tmp_path / "elsewhere.db"
    make_sqlite(elsewhere)
    stack.db_path.unlink()
    stack.db_path.symlink_to(elsewhere)
    stack.add_tracker()
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    assert caught.value.problems == [
        f"{stack.etc / 'tracker.toml'} [core.database]: {stack.db_path} is a symbolic link (on "
        f"the host path of the SQLite database {CONTAINER_DB_PATH}); refusing to follow it as "
        "root: the tracker can write there"]


def test_symlinked_directory_below_the_mount_is_refused(stack, tmp_path):
    moved = tmp_path / "moved"
    stack.db_path.parent.rename(moved)
    stack.db_path.parent.symlink_to(moved)
    stack.add_tracker()
    with pytest.raises(ConfigError, match=f": {stack.lib / 'database'} is a symbolic link "
                                          "\\(on the host path of the SQLite database"):
        discover(stack.settings(), stack.docker)


def test_database_that_is_not_a_regular_file_is_refused(stack):
    stack.db_path.unlink()
    os.mkfifo(stack.db_path)
    stack.add_tracker()
    with pytest.raises(ConfigError, match=f"should be a regular file at {stack.db_path} on "
                                          "the host, but it is not"):
        discover(stack.settings(), stack.docker)


def test_symlinks_in_the_mount_source_itself_are_resolved(stack, tmp_path):
    """The mount source is the host's own (root's) path: only what is below it is refused."""
    link = tmp_path / "lib-link"
    link.symlink_to(stack.lib)
    stack.add_tracker(mounts=[(str(link), CONTAINER_LIB), (str(stack.etc), CONTAINER_ETC)])
    deployment = discover(stack.settings(), stack.docker)
    assert deployment.database.host_path == stack.db_path


def test_docker_failure_is_reported(stack):
    stack.add_tracker()
    stack.fake.fail("ps", stderr="Cannot connect to the Docker daemon")
    with pytest.raises(DockerError, match="docker ps failed: .*Cannot connect"):
        discover(stack.settings(), stack.docker)


def test_non_utf8_tracker_toml_is_a_config_error(stack):
    (stack.etc / "tracker.toml").write_bytes(b'[core.database]\ndriver = "sqlite3" # \xe4\n')
    stack.add_tracker()
    with pytest.raises(ConfigError, match="tracker.toml: cannot read tracker configuration"):
        discover(stack.settings(), stack.docker)


# -- MySQL: the DSN ----------------------------------------------------------------------------

SECRET = "S3cr3t-Pw"  # noqa: S105 - a test value
DSN_ORIGIN = "tracker container compose-tracker-1 environment"


def test_dsn_is_percent_decoded():
    dsn = "mysql://us%40er%3Ax:p%40ss%3Aw%2Fd%25%23@db.example:3307/tor%2Drent%20db"
    assert parse_mysql_dsn(dsn, DSN_ORIGIN) == {
        "user": "us@er:x", "password": "p@ss:w/d%#", "host": "db.example", "port": 3307,
        "database": "tor-rent db"}


def test_dsn_default_port_is_3306():
    assert parse_mysql_dsn(f"mysql://db_user:{SECRET}@mysql/torrust_tracker", DSN_ORIGIN) == {
        "user": "db_user", "password": SECRET, "host": "mysql", "port": 3306,
        "database": "torrust_tracker"}


def test_dsn_without_password():
    parsed = parse_mysql_dsn("mysql://db_user@mysql:3306/torrust_tracker", DSN_ORIGIN)
    assert (parsed["user"], parsed["password"], parsed["port"]) == ("db_user", "", 3306)


@pytest.mark.parametrize("dsn,problem", [
    (f"mysql://:{SECRET}@mysql:3306/torrust_tracker", "has no user"),
    ("mysql://mysql:3306/torrust_tracker", "has no user"),
    (f"mysql://db_user:{SECRET}@mysql:3306", "has no database name"),
    (f"mysql://db_user:{SECRET}@mysql:3306/", "has no database name"),
    (f"postgresql://db_user:{SECRET}@mysql:3306/torrust_tracker", "does not start with mysql://"),
    ("/var/lib/torrust/tracker/database/sqlite3.db",
     "does not start with mysql:// and has no user"),
    (f"mysql://db_user:{SECRET}@mysql:port/torrust_tracker", "has an invalid port"),
    (f"mysql://db_user:{SECRET}@mysql:99999/torrust_tracker", "has an invalid port"),
    (f"mariadb://:{SECRET}@mysql:x/", "does not start with mysql:// and has an invalid port "
                                      "and has no user and has no database name"),
])
def test_bad_dsn_names_the_problem_but_not_the_password(dsn, problem):
    with pytest.raises(ConfigError) as caught:
        parse_mysql_dsn(dsn, DSN_ORIGIN)
    assert caught.value.problems == [f"{DSN_ORIGIN}: {ENV_DB_PATH} {problem}"]
    assert SECRET not in str(caught.value)


def test_bad_dsn_hides_a_percent_encoded_password_too():
    with pytest.raises(ConfigError) as caught:
        parse_mysql_dsn("mysql://db_user:p%40ss-word-42@mysql:3306/", DSN_ORIGIN)
    assert "p%40ss-word-42" not in str(caught.value)
    assert "p@ss-word-42" not in str(caught.value)


# -- MySQL: the credentials ------------------------------------------------------------------

def credentials(container_env: dict, env: dict):
    sources = [(DSN_ORIGIN, container_env), ("/srv/compose/.env", env)]
    return _mysql_credentials(sources, env, Path("/srv/compose"))


CONTAINER_DSN = f"mysql://from_container:{SECRET}@mysql:3301/container_db"
ENV_FILE_DSN = "mysql://from_env_file:pw2@mysql:3302/env_file_db"
MYSQL_KEYS = {"MYSQL_DATABASE": "keys_db", "MYSQL_USER": "from_keys", "MYSQL_PASSWORD": "pw3"}


def test_credentials_container_dsn_beats_env_file_dsn_and_keys():
    found, origin = credentials({ENV_DB_PATH: CONTAINER_DSN},
                                {ENV_DB_PATH: ENV_FILE_DSN, **MYSQL_KEYS})
    assert (found["user"], found["password"], found["port"], found["database"]) == \
        ("from_container", SECRET, 3301, "container_db")
    assert origin == DSN_ORIGIN


def test_credentials_env_file_dsn_beats_keys():
    found, origin = credentials({}, {ENV_DB_PATH: ENV_FILE_DSN, **MYSQL_KEYS})
    assert (found["user"], found["password"], found["port"], found["database"]) == \
        ("from_env_file", "pw2", 3302, "env_file_db")
    assert origin == "/srv/compose/.env"


def test_credentials_from_mysql_keys():
    found, origin = credentials({}, dict(MYSQL_KEYS))
    assert found == {"user": "from_keys", "password": "pw3", "port": 3306, "database": "keys_db"}
    assert origin == "/srv/compose/.env"


@pytest.mark.parametrize("env,missing", [
    ({}, "MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD"),
    ({"MYSQL_DATABASE": "db", "MYSQL_USER": "", "MYSQL_PASSWORD": "pw"}, "MYSQL_USER"),
    ({"MYSQL_DATABASE": "  ", "MYSQL_USER": "u"}, "MYSQL_DATABASE, MYSQL_PASSWORD"),
])
def test_missing_or_empty_mysql_keys_are_listed_by_name(env, missing):
    with pytest.raises(ConfigError) as caught:
        credentials({}, env)
    assert caught.value.problems == [
        f"cannot find the MySQL credentials: no {ENV_DB_PATH} DSN in the tracker container or "
        f".env, and /srv/compose/.env lacks (or has empty) {missing}"]


def test_empty_dsn_is_an_error_not_a_fallback():
    with pytest.raises(ConfigError) as caught:
        credentials({ENV_DB_PATH: ""}, dict(MYSQL_KEYS))
    assert caught.value.problems == [f"{DSN_ORIGIN}: {ENV_DB_PATH} is set but empty"]


# -- MySQL: discovery ------------------------------------------------------------------------

def mysql_stack(stack, tracker_env: dict | None = None, env_text: str = MYSQL_ENV):
    stack.write_env(f"{ENV_DRIVER}=mysql\n" + env_text)
    return add_tracker_on_network(stack, tracker_env)


def test_discover_mysql_from_the_container_dsn(stack):
    stack.write_env(f"{ENV_DRIVER}=mysql\n{ENV_DB_PATH}={ENV_FILE_DSN}\n" + MYSQL_ENV)
    tracker_id = add_tracker_on_network(stack, {ENV_DB_PATH: CONTAINER_DSN})
    mysql_id = add_mysql(stack)
    deployment = discover(stack.settings(), stack.docker)
    database = deployment.database
    assert deployment.driver == "mysql"
    assert deployment.tracker_ids == [tracker_id]
    assert database.container.id == mysql_id
    assert database.container.image == "mysql:8.0"
    # The DSN's host name is the tracker's view; we connect to the container's address.
    assert (database.host, database.port) == ("172.20.0.3", 3301)
    assert (database.user, database.password, database.database) == \
        ("from_container", SECRET, "container_db")
    assert database.credentials_origin == DSN_ORIGIN


def test_discover_mysql_from_the_env_file_dsn(stack):
    mysql_stack(stack, env_text=f"{ENV_DB_PATH}={ENV_FILE_DSN}\n" + MYSQL_ENV)
    add_mysql(stack)
    database = discover(stack.settings(), stack.docker).database
    assert (database.user, database.password, database.database, database.port) == \
        ("from_env_file", "pw2", "env_file_db", 3302)
    assert database.credentials_origin == str(stack.compose_dir / ".env")


def test_discover_mysql_from_mysql_keys(stack):
    mysql_stack(stack)
    add_mysql(stack)
    database = discover(stack.settings(), stack.docker).database
    assert (database.host, database.port, database.user, database.password, database.database) \
        == ("172.20.0.3", 3306, "db_user", "db_pw", "torrust_tracker")
    assert database.credentials_origin == str(stack.compose_dir / ".env")


def test_discover_mysql_needs_no_sqlite_file(stack):
    stack.db_path.unlink()
    mysql_stack(stack)
    add_mysql(stack)
    assert discover(stack.settings(), stack.docker).driver == "mysql"


def test_database_container_is_found_by_its_service_label(stack):
    mysql_stack(stack)
    add_mysql(stack, name="compose-mariadb-1", service="mariadb",
              networks={"compose_default": "172.20.0.9"})
    # The default service name, "mysql", but a container named for another service.
    mysql_id = add_mysql(stack, name="aaa-not-the-db", networks={"compose_default": "172.20.0.4"})
    database = discover(stack.settings(), stack.docker).database
    assert (database.container.id, database.host) == (mysql_id, "172.20.0.4")


def test_database_service_setting_overrides_the_default(stack):
    mysql_stack(stack)
    add_mysql(stack)
    mariadb_id = add_mysql(stack, name="compose-mariadb-1", service="mariadb",
                           networks={"compose_default": "172.20.0.9"})
    database = discover(stack.settings(database_service="mariadb"), stack.docker).database
    assert (database.container.id, database.container.name, database.host) == \
        (mariadb_id, "compose-mariadb-1", "172.20.0.9")


def test_database_service_of_another_project_is_not_used(stack, tmp_path):
    mysql_stack(stack)
    other = tmp_path / "other"
    other.mkdir()
    stack.fake.add("other-mysql-1", working_dir=str(other), service="mysql", project="other",
                   networks={"compose_default": "172.30.0.3"})
    with pytest.raises(ConfigError, match="no container of service 'mysql'"):
        discover(stack.settings(), stack.docker)


def test_address_on_a_network_shared_with_the_tracker_is_preferred(stack):
    mysql_stack(stack)
    # The database's first network is not the tracker's.
    add_mysql(stack, networks={"backup_net": "10.9.0.5", "compose_default": "172.20.0.3",
                               "other_net": "10.8.0.5"})
    assert discover(stack.settings(), stack.docker).database.host == "172.20.0.3"


def test_without_a_shared_network_the_first_address_is_used(stack):
    mysql_stack(stack)
    add_mysql(stack, networks={"backup_net": "10.9.0.5", "other_net": "10.8.0.5"})
    assert discover(stack.settings(), stack.docker).database.host == "10.9.0.5"


def test_no_database_container_of_the_service(stack):
    mysql_stack(stack)
    stack.fake.add("compose-grafana-1", working_dir=str(stack.compose_dir), service="grafana")
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(database_service="db"), stack.docker)
    assert caught.value.problems == [
        f"[deployment] database_service: no container of service 'db' in the compose project at "
        f"{stack.compose_dir} (services found: grafana, tracker)"]


@pytest.mark.parametrize("networks", [{}, {"compose_default": ""}])
def test_database_container_without_an_address(stack, networks):
    """A stopped database container is the deployment's state, not a config error: exit 1."""
    mysql_stack(stack)
    add_mysql(stack, networks=networks, running=False)
    with pytest.raises(MaintError) as caught:
        discover(stack.settings(), stack.docker)
    assert not isinstance(caught.value, ConfigError)
    assert str(caught.value) == (
        "database container compose-mysql-1 ([deployment] database_service 'mysql') is not "
        "running (exited): start it; nothing was done")


def test_bad_dsn_in_discovery_does_not_show_the_password(stack):
    mysql_stack(stack, {ENV_DB_PATH: f"mysql://db_user:{SECRET}@mysql:3306/"})
    add_mysql(stack)
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    assert caught.value.problems == [f"{DSN_ORIGIN}: {ENV_DB_PATH} has no database name"]


def test_mysql_database_repr_never_shows_the_password(stack):
    mysql_stack(stack, {ENV_DB_PATH: CONTAINER_DSN})
    add_mysql(stack, env={"MYSQL_PASSWORD": SECRET, "MYSQL_ROOT_PASSWORD": "root-" + SECRET})
    deployment = discover(stack.settings(), stack.docker)
    database = deployment.database
    assert database.password == SECRET
    for text in (repr(database), str(database), database.describe(), repr(deployment)):
        assert SECRET not in text
    assert "from_container" in repr(database)  # the repr is there, only the secret is not


def test_a_symlinked_tracker_toml_is_refused_not_followed(stack, tmp_path):
    """Root reads tracker.toml from a directory the tracker can write."""
    outside = tmp_path / "outside.toml"
    outside.write_text('[core.database]\ndriver = "sqlite3"\npath = "/etc/shadow"\n')
    (stack.etc / "tracker.toml").unlink(missing_ok=True)
    (stack.etc / "tracker.toml").symlink_to(outside)
    stack.add_tracker()
    with pytest.raises(ConfigError, match="tracker.toml is a symbolic link"):
        discover(stack.settings(), stack.docker)


def test_a_fifo_as_tracker_toml_is_refused_without_hanging(stack):
    (stack.etc / "tracker.toml").unlink(missing_ok=True)
    os.mkfifo(stack.etc / "tracker.toml")
    stack.add_tracker()
    with pytest.raises(ConfigError, match="tracker.toml is a FIFO"):
        discover(stack.settings(), stack.docker)


def test_a_container_removed_between_ps_and_inspect_is_no_error(stack, fake_docker):
    """Another compose project's `down` during discovery must not fail our backup."""
    stack.add_tracker()
    real = fake_docker._do

    def ps_then_gone(verb, args):
        result = real(verb, args)
        if verb == "ps":
            ghost = "f" * 64
            return type(result)(0, result.stdout + f"{ghost}\n".encode(), b"")
        return result

    fake_docker._do = ps_then_gone
    deployment = discover(stack.settings(), stack.docker)
    assert [c.name for c in deployment.trackers] == ["compose-tracker-1"]


@pytest.mark.parametrize("status, health, said", [
    ("restarting", None, "is restarting; nothing was done"),
    ("running", "starting", "is running and starting; nothing was done"),
    ("running", "unhealthy", "is running and unhealthy; nothing was done"),
])
def test_a_database_container_not_ready_is_a_transient_fault(stack, status, health, said):
    """Retried by a backup's preflight ([retry]); a stopped container is not (it will not
    come back by itself)."""
    from torrust_maint.errors import DatabaseNotReady

    mysql_stack(stack)
    mysql_id = add_mysql(stack, healthcheck=health is not None, healthy_after=1000)
    stack.fake.set_running(mysql_id, True)  # (re)started: its health "starting" again
    state = stack.fake.containers[mysql_id]["State"]
    state["Status"] = status
    if health is not None:
        state["Health"]["Status"] = health
    with pytest.raises(DatabaseNotReady) as caught:
        discover(stack.settings(), stack.docker)
    assert str(caught.value) == ("database container compose-mysql-1 ([deployment] "
                                 f"database_service 'mysql') {said}")


@pytest.mark.parametrize("stderr, unavailable", [
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
     "daemon running?", True),
    ("error during connect: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.41/containers/json\": "
     "context deadline exceeded", True),
    ("Error response from daemon: No such container: x", False),
    ("Error response from daemon: Container x is not running", False),
])
def test_the_daemon_not_answering_is_told_from_other_docker_errors(stderr, unavailable):
    from torrust_maint.docker import failure
    from torrust_maint.errors import DockerError, DockerUnavailable

    error = failure("docker ps", stderr)
    assert isinstance(error, DockerError)
    assert isinstance(error, DockerUnavailable) is unavailable
    assert str(error) == f"docker ps failed: {stderr}"


def test_a_stopped_database_container_is_not_retried(stack):
    """Defect: an exited container whose last health was "unhealthy" was retried (30 s)
    although it will not come back by itself."""
    from torrust_maint.errors import DatabaseNotReady

    mysql_stack(stack)
    mysql_id = add_mysql(stack, healthcheck=True)
    stack.fake.set_running(mysql_id, False)  # exited, health "unhealthy"
    for network in stack.fake.containers[mysql_id]["NetworkSettings"]["Networks"].values():
        network["IPAddress"] = ""  # as Docker shows a stopped container
    with pytest.raises(MaintError) as caught:
        discover(stack.settings(), stack.docker)
    assert not isinstance(caught.value, DatabaseNotReady)
    assert "is not running (exited): start it; nothing was done" in str(caught.value)


def test_double_quoted_env_values_decode_escapes_as_compose_does():
    text = 'P="tr@ck:er/p%ss\\"w0rd#1\'\\$pg" # comment\nB="x\\\\y"\nN="a\\nb"\n'
    assert parse_env_file(text, ".env") == {"P": "tr@ck:er/p%ss\"w0rd#1'$pg", "B": "x\\y",
                                            "N": "a\nb"}
