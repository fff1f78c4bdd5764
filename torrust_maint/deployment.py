"""Discovery: .env, tracker.toml, containers and mounts -> one Deployment."""

from __future__ import annotations

import os
import stat
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from torrust_maint import safefs
from torrust_maint.config import DeploymentConfig
from torrust_maint.docker import Container, Docker, Mount
from torrust_maint.errors import ConfigError, DatabaseNotReady, MaintError

ENV_TOML_PATH = "TORRUST_TRACKER_CONFIG_TOML_PATH"
ENV_DRIVER = "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER"
ENV_DB_PATH = "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH"
ENV_DB_PREFIX = "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__"
# The tracker's planned config schema 3: separate keys instead of a connection URL.
SCHEMA3_KEYS = ("host", "port", "user", "password", "database")
DEFAULT_SERVICES = {"mysql": "mysql", "postgresql": "postgres"}
URL_SCHEMES = {"mysql": ("mysql",), "postgresql": ("postgresql", "postgres")}
DEFAULT_PORTS = {"mysql": 3306, "postgresql": 5432}
DEFAULT_TOML_HOST_PATH = "storage/tracker/etc/tracker.toml"


@dataclass(frozen=True)
class SqliteDatabase:
    """The tracker's SQLite file, as the tracker sees it and as the host sees it."""

    container_path: str
    host_path: Path

    driver = "sqlite3"

    def describe(self) -> str:
        return f"sqlite3 {self.host_path} (in the tracker: {self.container_path})"


@dataclass(frozen=True)
class ServerDatabase:
    """A database server's database the tracker uses: its container, address and
    credentials (the subclass names the driver)."""

    container: Container
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    credentials_origin: str = ""

    driver = ""

    def describe(self) -> str:
        return (f"{self.driver} database {self.database!r} as user {self.user!r} in container "
                f"{self.container.name} ({self.host}:{self.port})")


@dataclass(frozen=True)
class MysqlDatabase(ServerDatabase):
    """The tracker's MySQL/MariaDB database."""

    driver = "mysql"


@dataclass(frozen=True)
class PostgresqlDatabase(ServerDatabase):
    """The tracker's PostgreSQL database."""

    driver = "postgresql"


ServerT = TypeVar("ServerT", bound=ServerDatabase)


@dataclass(frozen=True)
class Deployment:
    """One tracker stack: where it lives, its tracker containers and its database."""

    compose_dir: Path
    env: dict[str, str]
    trackers: tuple[Container, ...]
    database: SqliteDatabase | MysqlDatabase | PostgresqlDatabase
    notes: tuple[str, ...] = field(default=())

    @property
    def driver(self) -> str:
        return self.database.driver

    @property
    def tracker_ids(self) -> list[str]:
        return [c.id for c in self.trackers]

    @property
    def tracker_names(self) -> str:
        return ", ".join(c.name for c in self.trackers)


def parse_env_file(text: str, origin: str) -> dict[str, str]:
    """Parse a docker-compose style .env file (KEY=value, quotes, comments, ``export``)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export "):].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            raise ConfigError(f"{origin}:{number}: not a KEY=value line")
        raw = raw.strip()
        if raw[:1] == '"':
            value = _double_quoted(raw, f"{origin}:{number}: {key}")
        elif raw[:1] == "'":
            end = raw.find("'", 1)
            if end == -1:
                raise ConfigError(f"{origin}:{number}: {key}: unterminated quote")
            value = raw[1:end]
        else:
            value = raw.split(" #", 1)[0].strip()
        values[key] = value
    return values


DOUBLE_QUOTE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$"}


def _double_quoted(raw: str, where: str) -> str:
    """A double-quoted .env value as compose reads it: backslash escapes (\\n, \\", \\\\,
    \\$ ...) decoded, up to the closing quote."""
    value: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == '"':
            return "".join(value)
        if char == "\\" and index + 1 < len(raw):
            following = raw[index + 1]
            value.append(DOUBLE_QUOTE_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        value.append(char)
        index += 1
    raise ConfigError(f"{where}: unterminated quote")


def read_env_file(compose_dir: Path) -> dict[str, str]:
    """The deployment's .env, or an empty dict where there is none."""
    path = compose_dir / ".env"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_env_file(text, str(path))


def covering_mount(container: Container, container_path: str) -> Mount | None:
    """The container's mount with the longest destination that covers the path, if any."""
    container_path = os.path.normpath(container_path)  # no `..` out of a mount, no `./`
    best = None
    for mount in container.mounts:
        dest = mount.destination.rstrip("/") or "/"
        if container_path == dest or container_path.startswith(dest.rstrip("/") + "/"):
            if best is None or len(dest) > len(best.destination.rstrip("/")):
                best = mount
    return best


def host_path_for(container: Container, container_path: str) -> Path | None:
    """Translate a path inside the container to the host, by its longest covering mount."""
    best = covering_mount(container, container_path)
    if best is None:
        return None
    rest = os.path.relpath(os.path.normpath(container_path), best.destination)
    return Path(os.path.normpath(os.path.join(best.source, rest)))


def find_trackers(containers: list[Container], services: tuple[str, ...],
                  compose_dir: Path) -> tuple[list[Container], list[str]]:
    """Containers of the tracker services, and a problem per service that has none."""
    problems = []
    found = []
    for service in services:
        matches = [c for c in containers if c.service == service]
        if not matches:
            seen = sorted({c.service for c in containers})
            hint = (f" (services found: {', '.join(seen)})" if seen
                    else " (no compose containers found there)")
            problems.append(
                f"[deployment] tracker_services: no container of service {service!r} in the "
                f"compose project at {compose_dir}{hint}; is the stack deployed?"
            )
        found.extend(sorted(matches, key=lambda c: c.name))
    return found, problems


def _setting(name: str, sources: list[tuple[str, dict[str, str]]]) -> tuple[str | None, str]:
    """The first source that sets `name`; an empty value is an error, not a fallback."""
    for origin, values in sources:
        if name in values:
            if not values[name].strip():
                raise ConfigError(f"{origin}: {name} is set but empty")
            return values[name], origin
    return None, ""


def _tracker_toml(compose_dir: Path, tracker: Container,
                  sources: list[tuple[str, dict[str, str]]]) -> tuple[dict, str]:
    toml_container_path, _ = _setting(ENV_TOML_PATH, sources)
    host = None
    if toml_container_path:
        host = host_path_for(tracker, toml_container_path)
    if host is None:
        host = compose_dir / DEFAULT_TOML_HOST_PATH
    try:  # in a directory the tracker can write: no symlink followed, no FIFO waited on
        with open(safefs.open_nofollow(host), "rb") as handle:
            return tomllib.load(handle), str(host)
    except FileNotFoundError:
        return {}, str(host)
    except safefs.UnsafePath as error:
        raise ConfigError(f"tracker configuration: {error}") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{host}: cannot read tracker configuration: {error}") from None


def discover(settings: DeploymentConfig, docker: Docker) -> Deployment:
    """Build the Deployment from the host, raising ConfigError with every problem found."""
    compose_dir = settings.compose_dir
    if not compose_dir.is_dir():
        raise ConfigError(f"[deployment] compose_dir: {compose_dir} is not a directory")
    env = read_env_file(compose_dir)
    containers = docker.compose_containers(str(compose_dir))
    trackers, problems = find_trackers(containers, settings.tracker_services, compose_dir)
    if problems:
        raise ConfigError(problems)
    tracker = trackers[0]
    sources = [(f"tracker container {tracker.name} environment", tracker.env),
               (str(compose_dir / ".env"), env)]
    toml, toml_origin = _tracker_toml(compose_dir, tracker, sources)
    toml_database = toml.get("core", {}).get("database", {}) if isinstance(toml, dict) else {}
    toml_values = {key: str(value) for key, value in toml_database.items()}
    toml_source = [(f"{toml_origin} [core.database]", toml_values)]

    driver = settings.database_driver
    if driver is None:
        driver, _ = _setting(ENV_DRIVER, sources)
    if driver is None:
        driver, _ = _setting("driver", toml_source)
    if driver is None:
        raise ConfigError(
            f"cannot tell the database driver: {ENV_DRIVER} is not set in the tracker container "
            f"or {compose_dir / '.env'}, and {toml_origin} has no [core.database] driver; "
            "set [deployment] database_driver"
        )
    database: SqliteDatabase | MysqlDatabase | PostgresqlDatabase
    if driver == "mysql":
        credentials, origin = _mysql_credentials(sources, env, compose_dir)
        database = _server_database(MysqlDatabase, settings, containers, tracker, credentials,
                                    origin, compose_dir)
    elif driver == "postgresql":
        credentials, origin = _postgresql_credentials(sources, toml_source, toml_origin)
        database = _server_database(PostgresqlDatabase, settings, containers, tracker,
                                    credentials, origin, compose_dir)
    elif driver == "sqlite3":
        database = _sqlite_database(settings, trackers, sources, toml_source)
    else:
        raise ConfigError(f"database driver {driver!r} is not supported "
                          "(supported: sqlite3, mysql, postgresql)")
    return Deployment(compose_dir=compose_dir, env=env, trackers=tuple(trackers),
                      database=database)


def parse_mysql_dsn(dsn: str, origin: str) -> dict[str, str | int]:
    """user, password, host, port and database of a ``mysql://`` DSN (percent-decoded)."""
    return parse_database_url(dsn, origin, "mysql")


def parse_database_url(dsn: str, origin: str, driver: str) -> dict[str, str | int]:
    """user, password, host, port and database of the driver's connection URL
    (``mysql://``, ``postgresql://``; percent-decoded), split as the tracker's URL parser
    splits it; what it would not read the same way is refused. Errors never show the URL: it
    holds the password."""
    userinfo, rest, tail = _split_userinfo(dsn)
    _refuse_unreadable_dsn(dsn, tail, origin)
    try:
        parts = urllib.parse.urlsplit(rest)
    except ValueError:
        raise ConfigError(f"{origin}: {ENV_DB_PATH} has an invalid host") from None
    user, _, password = (userinfo or "").partition(":")
    problems = []
    schemes = URL_SCHEMES[driver]
    default_port = DEFAULT_PORTS[driver]
    if parts.scheme not in schemes:
        problems.append(f"does not start with {schemes[0]}://")
    try:
        port = parts.port or default_port
    except ValueError:
        problems.append("has an invalid port")
        port = default_port
    database = _dsn_decode(parts.path.lstrip("/"), origin)
    if not user:
        problems.append("has no user")
    if not database:
        problems.append("has no database name")
    if problems:
        raise ConfigError(f"{origin}: {ENV_DB_PATH} {' and '.join(problems)}")
    return {"user": _dsn_decode(user, origin), "password": _dsn_decode(password, origin),
            "host": parts.hostname or "", "port": port, "database": database}


def _split_userinfo(dsn: str) -> tuple[str | None, str, str]:
    """(user information or None, the DSN without it, what follows the host), split as URL
    parsers do: the authority ends at the first '/', '?' or '#', the user information at its
    last '@' (so a raw '@' or ':' in the password is read as the tracker reads it)."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return None, dsn, ""
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    return (userinfo if at else None), f"{scheme}{sep}{host}{rest[end:]}", rest[end:]


def _refuse_unreadable_dsn(dsn: str, tail: str, origin: str) -> None:
    """Refuse what URL parsers read differently from what was meant: control characters
    (they drop line breaks and tabs) and a raw '/', '?' or '#' in the user or password."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in dsn):
        raise ConfigError(f"{origin}: {ENV_DB_PATH} holds a control character such as a line "
                          "break, which URL parsers drop: percent-encode it (a line break is "
                          "%0A, a tab %09)")
    if "@" in tail:
        raise ConfigError(f"{origin}: {ENV_DB_PATH} has an '@' after its host: a '/', '?' or "
                          "'#' in the user or password must be percent-encoded (%2F, %3F, %23)")


def _dsn_decode(value: str, origin: str) -> str:
    """A percent-decoded user, password or database; refused when it is not UTF-8 or holds a
    NUL."""
    try:
        decoded = urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise ConfigError(f"{origin}: {ENV_DB_PATH}: the user, password or database is not "
                          "UTF-8 once percent-decoded") from None
    if "\0" in decoded:
        raise ConfigError(f"{origin}: {ENV_DB_PATH}: the user, password or database holds a "
                          "NUL (%00), "
                          "which the database's client tools cannot take")
    return decoded


def _mysql_credentials(sources, env: dict[str, str], compose_dir: Path) -> tuple[dict, str]:
    dsn, origin = _setting(ENV_DB_PATH, sources)
    if dsn is not None:
        return parse_mysql_dsn(dsn, origin), origin
    env_origin = str(compose_dir / ".env")
    missing = [key for key in ("MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD")
               if not env.get(key, "").strip()]
    if missing:
        raise ConfigError(
            f"cannot find the MySQL credentials: no {ENV_DB_PATH} DSN in the tracker container "
            f"or .env, and {env_origin} lacks (or has empty) {', '.join(missing)}")
    return ({"user": env["MYSQL_USER"], "password": env["MYSQL_PASSWORD"], "port": 3306,
             "database": env["MYSQL_DATABASE"]}, env_origin)


def _postgresql_credentials(sources, toml_source, toml_origin: str) -> tuple[dict, str]:
    """The connection of a PostgreSQL tracker: its ``postgresql://`` URL (the override, then
    tracker.toml's `path`), else the separate keys of config schema 3 (`host`, `port`,
    `user`, `password`, `database`; overrides first)."""
    url, origin = _setting(ENV_DB_PATH, sources)
    if url is None:
        url, origin = _setting("path", toml_source)
    if url is not None:
        return parse_database_url(url, origin, "postgresql"), origin
    found: dict[str, str] = {}
    origins: set[str] = set()
    for key in SCHEMA3_KEYS:
        value, where = _setting(ENV_DB_PREFIX + key.upper(), sources)
        if value is None:
            value, where = _setting(key, toml_source)
        if value is not None:
            found[key] = value
            origins.add(where)
    missing = [key for key in ("user", "password", "database") if key not in found]
    if missing:
        raise ConfigError(
            f"cannot find the PostgreSQL connection: no {ENV_DB_PATH} URL in the tracker "
            f"container or .env, no [core.database] path in {toml_origin}, and no "
            f"{', '.join(missing)} key (config schema 3) there either")
    try:
        port = int(found.get("port", DEFAULT_PORTS["postgresql"]))
    except ValueError:
        raise ConfigError(f"{' and '.join(sorted(origins))}: the PostgreSQL port "
                          f"{found['port']!r} is not a number") from None
    return ({"user": found["user"], "password": found["password"], "port": port,
             "database": found["database"], "host": found.get("host", "")},
            " and ".join(sorted(origins)))


def _server_database(kind: type[ServerT],
                     settings: DeploymentConfig, containers: list[Container],
                     tracker: Container, credentials: dict, origin: str,
                     compose_dir: Path) -> ServerT:
    """The database server's container, found by compose service, reached at its address on
    a network it shares with the tracker."""
    service = settings.database_service or DEFAULT_SERVICES[kind.driver]
    matches = [c for c in containers if c.service == service]
    if not matches:
        seen = sorted({c.service for c in containers})
        raise ConfigError(
            f"[deployment] database_service: no container of service {service!r} in the compose "
            f"project at {compose_dir} (services found: {', '.join(seen) or 'none'})")
    container = matches[0]
    shared = [net for net in container.networks if net in tracker.networks]
    networks = shared or list(container.networks)
    where = f"database container {container.name} ([deployment] database_service {service!r})"
    # Restarting, or running but not healthy yet: transient. Stopped: it will not come back.
    if container.status == "restarting" or (
            container.running and container.health in ("starting", "unhealthy")):
        raise DatabaseNotReady(f"{where} is {container.status}"
                               + (f" and {container.health}" if container.health else "")
                               + "; nothing was done")
    if not networks:
        state = "not running" if not container.running else "on no Docker network"
        raise MaintError(f"{where} is {state} ({container.status}): start it; "
                         "nothing was done")
    return kind(container=container, host=container.networks[networks[0]],
                port=int(credentials["port"]), database=str(credentials["database"]),
                user=str(credentials["user"]), password=str(credentials["password"]),
                credentials_origin=origin)


def _sqlite_database(settings: DeploymentConfig, trackers: list[Container],
                     sources, toml_source) -> SqliteDatabase:
    origin = "[deployment] sqlite_path"
    container_path = settings.sqlite_path
    if container_path is None:
        container_path, origin = _setting(ENV_DB_PATH, sources)
    if container_path is None:
        container_path, origin = _setting("path", toml_source)
    if container_path is None:
        raise ConfigError("cannot tell the SQLite path: no [core.database] path in tracker.toml "
                          "and no override; set [deployment] sqlite_path")
    if not container_path.startswith("/"):
        raise ConfigError(f"{origin}: the SQLite path {container_path!r} is relative; "
                          "set [deployment] sqlite_path to the absolute path in the container")
    host_paths = {c.name: host_path_for(c, container_path) for c in trackers}
    if any(path is None for path in host_paths.values()):
        missing = ", ".join(name for name, path in host_paths.items() if path is None)
        raise ConfigError(
            f"{origin}: {container_path} is not on a mount of tracker container(s) {missing}: "
            "the database would be lost with the container"
        )
    if len(set(host_paths.values())) > 1:
        raise ConfigError(f"tracker containers disagree on the host path of {container_path}: "
                          + ", ".join(f"{n} -> {p}" for n, p in host_paths.items()))
    for tracker in trackers:
        _refuse_file_mount(tracker, container_path, origin)
    host_path = _sqlite_host_file(trackers[0], container_path, origin)
    return SqliteDatabase(container_path=container_path, host_path=host_path)


def _refuse_file_mount(container: Container, container_path: str, origin: str) -> None:
    """A bind mount of the database file itself leaves its -wal/-shm/-journal in the container.

    SQLite creates them beside the file as the tracker sees it: in the container's own layer.
    A copy would miss committed WAL frames, and a read snapshot would share no -shm with the
    tracker (and corrupt an export).
    """
    mount = covering_mount(container, container_path)
    if mount is None or os.path.normpath(mount.destination) != os.path.normpath(container_path):
        return
    directory = os.path.dirname(os.path.normpath(container_path))
    raise ConfigError(
        f"{origin}: the SQLite database {container_path} is bind-mounted as a single file "
        f"(mount {mount.source} -> {mount.destination} of tracker container {container.name}): "
        "SQLite keeps its -wal/-shm/-journal beside it, inside the container, where a backup "
        f"cannot see them; mount the directory that holds it ({directory} in the container) "
        "instead, as the Torrust compose file does")


def _sqlite_host_file(container: Container, container_path: str, origin: str) -> Path:
    """The database's host path: the mount source with symlinks resolved (it is the host's),
    then the components below it, none of which may be a symlink (the tracker can write
    there); the file itself must be a regular file."""
    mount = covering_mount(container, container_path)
    assert mount is not None
    rest = os.path.relpath(os.path.normpath(container_path), mount.destination)
    root = Path(os.path.realpath(mount.source))
    path = root / rest
    walked, mode = root, _lstat_mode(root, origin)
    for part in Path(rest).parts:
        walked = walked / part
        mode = _lstat_mode(walked, origin)
        if not mode:
            raise ConfigError(f"{origin}: the SQLite database {container_path} should be at "
                              f"{path} on the host, but no file is there")
        if stat.S_ISLNK(mode):
            raise ConfigError(f"{origin}: {walked} is a symbolic link (on the host path of the "
                              f"SQLite database {container_path}); refusing to follow it as "
                              "root: the tracker can write there")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{origin}: the SQLite database {container_path} should be a regular "
                          f"file at {path} on the host, but it is not")
    return path


def _lstat_mode(path: Path, origin: str) -> int:
    """The file mode of `path` itself (a symlink is not followed), 0 if nothing is there."""
    try:
        return path.lstat().st_mode
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise ConfigError(f"{origin}: cannot look at {path}: {error.strerror}") from None
