"""Discovery of a PostgreSQL tracker (v4): the URL, the schema-3 keys, the database service."""

from __future__ import annotations

import urllib.parse

import pytest

from tests.unit.conftest import CONTAINER_ETC
from torrust_maint.deployment import (
    ENV_DB_PATH,
    ENV_DB_PREFIX,
    ENV_DRIVER,
    ENV_TOML_PATH,
    PostgresqlDatabase,
    discover,
    parse_database_url,
)
from torrust_maint.errors import ConfigError

ORIGIN = "tracker container compose-tracker-1 environment"
PASSWORD = "p@ss:w/rd#1%+ 'x\"$"  # what the deployer percent-encodes, and raw characters


def add_postgres(stack, service: str = "postgres", name: str = "compose-postgres-1") -> str:
    return stack.fake.add(name, working_dir=str(stack.compose_dir), service=service,
                          networks={"compose_default": "172.20.0.4"}, image="postgres:17",
                          env={"POSTGRES_PASSWORD": "unused"})


def add_tracker(stack, env: dict[str, str]) -> str:
    return stack.add_tracker(env={ENV_TOML_PATH: f"{CONTAINER_ETC}/tracker.toml", **env},
                             networks={"compose_default": "172.20.0.2"})


def encoded(value: str) -> str:
    return urllib.parse.quote(value, safe="'\"$")


def test_url_with_an_encoded_password_names_the_database_container(stack):
    url = f"postgresql://torrust:{encoded(PASSWORD)}@postgres:5432/torrust_tracker"
    add_tracker(stack, {ENV_DRIVER: "postgresql", ENV_DB_PATH: url})
    add_postgres(stack)
    database = discover(stack.settings(), stack.docker).database
    assert isinstance(database, PostgresqlDatabase)
    assert (database.user, database.password, database.database) == (
        "torrust", PASSWORD, "torrust_tracker")
    assert (database.host, database.port) == ("172.20.0.4", 5432)
    assert database.container.name == "compose-postgres-1"
    assert PASSWORD not in repr(database)


def test_url_in_tracker_toml_path(stack):
    (stack.etc / "tracker.toml").write_text(
        '[core.database]\ndriver = "postgresql"\n'
        'path = "postgres://app%2Buser:pw@db:6543/tracker%20db"\n')
    add_tracker(stack, {})
    add_postgres(stack)
    database = discover(stack.settings(), stack.docker).database
    assert isinstance(database, PostgresqlDatabase)
    assert (database.user, database.password, database.port, database.database) == (
        "app+user", "pw", 6543, "tracker db")


def test_schema3_keys_from_toml_and_override(stack):
    (stack.etc / "tracker.toml").write_text(
        '[core.database]\ndriver = "postgresql"\nhost = "postgres"\nport = 5433\n'
        'user = "torrust"\npassword = "from-toml"\ndatabase = "torrust_tracker"\n')
    add_tracker(stack, {ENV_DB_PREFIX + "PASSWORD": "from-override"})
    add_postgres(stack)
    database = discover(stack.settings(), stack.docker).database
    assert isinstance(database, PostgresqlDatabase)
    assert (database.user, database.password, database.port, database.database) == (
        "torrust", "from-override", 5433, "torrust_tracker")


def test_schema3_without_a_password_names_what_is_missing(stack):
    (stack.etc / "tracker.toml").write_text(
        '[core.database]\ndriver = "postgresql"\nuser = "torrust"\ndatabase = "t"\n')
    add_tracker(stack, {})
    add_postgres(stack)
    with pytest.raises(ConfigError) as caught:
        discover(stack.settings(), stack.docker)
    [problem] = caught.value.problems
    assert "cannot find the PostgreSQL connection" in problem
    assert problem.endswith("no password key (config schema 3) there either")


def test_schema3_port_that_is_not_a_number(stack):
    (stack.etc / "tracker.toml").write_text(
        '[core.database]\ndriver = "postgresql"\nuser = "u"\npassword = "p"\n'
        'database = "d"\nport = "fifty"\n')
    add_tracker(stack, {})
    add_postgres(stack)
    with pytest.raises(ConfigError, match="the PostgreSQL port 'fifty' is not a number"):
        discover(stack.settings(), stack.docker)


def test_database_service_defaults_to_postgres_and_can_be_set(stack):
    url = "postgresql://torrust:pw@db:5432/torrust_tracker"
    add_tracker(stack, {ENV_DRIVER: "postgresql", ENV_DB_PATH: url})
    add_postgres(stack, service="db", name="compose-db-1")
    with pytest.raises(ConfigError, match="no container of service 'postgres'"):
        discover(stack.settings(), stack.docker)
    database = discover(stack.settings(database_service="db"), stack.docker).database
    assert database.container.name == "compose-db-1"


@pytest.mark.parametrize("url,problem", [
    ("mysql://u:p@h/d", "does not start with postgresql://"),
    ("postgresql://u:p@h:99999/d", "has an invalid port"),
    ("postgresql://:p@h/d", "has no user"),
    ("postgresql://u:p@h/", "has no database name"),
])
def test_bad_urls_are_refused_without_the_password(url, problem):
    with pytest.raises(ConfigError) as caught:
        parse_database_url(url, ORIGIN, "postgresql")
    [message] = caught.value.problems
    assert problem in message
    assert ":p@" not in message


def test_default_port_is_5432():
    parsed = parse_database_url("postgresql://u:p@h/d", ORIGIN, "postgresql")
    assert parsed["port"] == 5432
