"""deployment: .env parsing, mount translation and discovery against a fake docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from torrust_maint.config import DeploymentConfig
from torrust_maint.deployment import (
    ENV_DB_PATH,
    ENV_DRIVER,
    discover,
    find_trackers,
    host_path_for,
    parse_env_file,
)
from torrust_maint.docker import Container, Mount
from torrust_maint.errors import ConfigError, DockerError

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

def unsupported(stack) -> str:
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    return str(caught.value)


def test_driver_from_container_env_beats_env_file_and_toml(stack):
    stack.write_env(f"{ENV_DRIVER}=sqlite3\n")
    stack.add_tracker(env={ENV_DRIVER: "mysql",
                           ENV_TOML_PATH: f"{CONTAINER_ETC}/tracker.toml"})
    assert unsupported(stack) == ("database driver 'mysql' is not supported yet "
                                  "(supported: sqlite3)")


def test_driver_from_env_file_beats_toml(stack):
    stack.write_env(f"{ENV_DRIVER}=mysql\n")
    stack.add_tracker()
    assert "'mysql' is not supported" in unsupported(stack)


def test_driver_from_toml(stack):
    stack.write_toml(driver="mysql")
    stack.add_tracker()
    assert "'mysql' is not supported" in unsupported(stack)


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
        f"tracker container compose-tracker-1 environment: /tmp/sqlite3.db is not on a mount "
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
