"""Load and validate the TOML configuration, reporting every problem at once."""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torrust_maint.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/torrust-maint/torrust-maint.toml"
CONFIG_ENV_VAR = "TORRUST_MAINT_CONFIG"

DEFAULT_CONFIG_PATHS = (
    ".env",
    "docker-compose.yml",
    "storage/tracker/etc",
    "storage/prometheus/etc",
    "storage/grafana/provisioning",
)
COMPRESSIONS = ("zstd", "gzip")
WINDOW_MODES = ("stop", "online")
DRIVERS = ("sqlite3", "mysql", "postgresql")
MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few kilobytes; never read /dev/zero whole
PATH_MAX = 4096  # bytes, as Linux counts them
NAME_MAX = 255  # bytes of one path component
SERVICE_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")  # the Compose specification's service names
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,60}$")
TRACKER_STORAGE = "storage/tracker"  # what the deployer mounts into the tracker container


@dataclass(frozen=True)
class DeploymentConfig:
    """Where the tracker stack lives and what may override discovery."""

    compose_dir: Path
    tracker_services: tuple[str, ...] = ("tracker",)
    database_driver: str | None = None
    sqlite_path: str | None = None
    database_service: str | None = None  # None: "mysql" or "postgres", by driver
    stop_timeout: int = 10
    start_timeout: int = 120
    snapshot_timeout: int = 15


@dataclass(frozen=True)
class BackupConfig:
    """Where backup sets go and how they are written."""

    directory: Path
    compression: str = "zstd"
    compression_level: int | None = None
    config_paths: tuple[str, ...] = DEFAULT_CONFIG_PATHS


@dataclass(frozen=True)
class WindowConfig:
    """How a backup takes its snapshot: "stop" stops the tracker for it (a maintenance
    window), "online" opens it while the tracker runs."""

    mode: str = "stop"

    @property
    def online(self) -> bool:
        return self.mode == "online"


@dataclass(frozen=True)
class RetentionConfig:
    """How many sets to keep per period (restic/borg semantics, periods in UTC)."""

    keep_last: int = 7
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6


@dataclass(frozen=True)
class LoggingConfig:
    """Where log lines go besides the terminal or the journal."""

    file: Path | None = None


@dataclass(frozen=True)
class VerifyConfig:
    """Whether each new set is restored and checked right after the backup."""

    after_backup: bool = True


NOTIFY_EVENTS = ("failure", "recovery", "success", "verify_failure")
DEFAULT_NOTIFY_ON = ("failure", "recovery")
DEFAULT_STATE_DIRECTORY = Path("/var/lib/torrust-maint")


@dataclass(frozen=True)
class NotifyConfig:
    """Where notices go (Apprise URLs, inline or in a 0600 file) and for which events."""

    urls: tuple[str, ...] = field(default=(), repr=False)  # secrets: tokens, passwords
    urls_file: Path | None = None
    on: tuple[str, ...] = DEFAULT_NOTIFY_ON

    @property
    def configured(self) -> bool:
        return bool(self.urls) or self.urls_file is not None


@dataclass(frozen=True)
class RetryConfig:
    """Attempts of a backup whose preflight meets a transient fault (before any window);
    the delay doubles after each attempt, up to max_delay."""

    attempts: int = 3
    delay: int = 10
    max_delay: int = 300


@dataclass(frozen=True)
class StatusConfig:
    """When `status` calls the backups unhealthy: the newest success is older than max_age."""

    max_age: int = 26 * 3600  # seconds


def default_state_directory() -> Path:
    """systemd's $STATE_DIRECTORY (StateDirectory=) when it set one, else the default."""
    given = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(given) if given.startswith("/") else DEFAULT_STATE_DIRECTORY


@dataclass(frozen=True)
class StateConfig:
    """Where the run state (last run, last success, consecutive failures) is kept."""

    directory: Path = field(default_factory=default_state_directory)


DEFAULT_OFFSITE_PASSWORD_FILE = Path("/etc/torrust-maint/offsite-password")


@dataclass(frozen=True)
class OffsiteConfig:
    """Off-site copies through restic: the repository (a secret: it may hold credentials),
    where its password and backend keys are, the host name the snapshots carry, and the
    off-site retention (restic forget's keep_* rules, per host)."""

    repository: str | None = field(default=None, repr=False)
    password_file: Path = DEFAULT_OFFSITE_PASSWORD_FILE
    environment_file: Path | None = None
    host: str = field(default_factory=lambda: os.uname().nodename)
    keep_last: int = 3
    keep_daily: int = 14
    keep_weekly: int = 8
    keep_monthly: int = 12
    check_subset: str = "5%"
    options: tuple[str, ...] = ()  # restic -o key=value (on argv: never a secret)
    limit_upload: int = 0  # KiB/s, 0: no limit (the tracker shares the uplink)
    limit_download: int = 0

    @property
    def configured(self) -> bool:
        return self.repository is not None


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path
    deployment: DeploymentConfig
    backup: BackupConfig
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    state: StateConfig = field(default_factory=StateConfig)
    offsite: OffsiteConfig = field(default_factory=OffsiteConfig)
    window: WindowConfig = field(default_factory=WindowConfig)  # last: Config(...) by position


# -- validators: each returns (value, problem) -------------------------------

Check = Callable[[Any], "tuple[Any, str | None]"]


def shown(text: str, limit: int = 80) -> str:
    """A value for an error message: quoted with every odd character escaped, cut if long."""
    if len(text) > limit:
        return f"{text[:limit]!r}... ({len(text)} characters)"
    return repr(text)


def _string(value: Any) -> tuple[Any, str | None]:
    """A non-empty one-line string: no control characters, no spaces around it."""
    if not isinstance(value, str):
        return None, f"must be a string, not {_type_name(value)}"
    if not value.strip():
        return None, "must not be empty"
    # NUL, newline, escape, C1, bidi overrides, zero-width and line separators: never in a
    # path or a name, and never printed raw into a terminal or a log line.
    odd = next((char for char in value if not char.isprintable()), None)
    if odd is not None:
        return None, (f"must not contain control or invisible characters such as {odd!r}: "
                      f"{shown(value)}")
    if value != value.strip():
        return None, f"must not begin or end with spaces: {shown(value)}"
    if len(value.encode()) > PATH_MAX:
        return None, f"is {len(value.encode())} bytes long, more than the {PATH_MAX} allowed"
    return value, None


def _path_parts(text: str) -> str | None:
    """Why a path's components are unusable: `..` (symlinks make it ambiguous), over-long."""
    parts = text.split("/")
    if ".." in parts:
        return f"must not contain '..' (write the path it leads to): {shown(text)}"
    if any(len(part.encode()) > NAME_MAX for part in parts):
        return f"has a name longer than {NAME_MAX} bytes: {shown(text)}"
    return None


def _normalised(text: str) -> str:
    """An absolute path without `.`, doubled or trailing slashes (normpath keeps `//x`)."""
    return "/" + os.path.normpath(text).lstrip("/")


def _absolute_path(value: Any) -> tuple[Any, str | None]:
    """An absolute host path, normalised."""
    text, problem = _string(value)
    if problem:
        return None, problem
    if not text.startswith("/"):
        return None, f"must be an absolute path, not {shown(text)}"
    problem = _path_parts(text)
    if problem:
        return None, problem
    return Path(_normalised(text)), None


def _directory(value: Any) -> tuple[Any, str | None]:
    """An absolute directory other than / itself."""
    path, problem = _absolute_path(value)
    if problem:
        return None, problem
    if path == Path("/"):
        return None, "must not be the root directory /"
    return path, None


def _log_file(value: Any) -> tuple[Any, str | None]:
    """An absolute path of a file (not / and not ending in /)."""
    path, problem = _absolute_path(value)
    if problem:
        return None, problem
    if str(path) == "/" or value.endswith("/"):
        return None, f"must be a file path, not the directory {shown(value)}"
    return path, None


def _relative_path(value: Any) -> tuple[Any, str | None]:
    """A path inside compose_dir, normalised."""
    text, problem = _string(value)
    if problem:
        return None, problem
    norm = os.path.normpath(text)
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        return None, f"must be a path inside compose_dir, not {shown(text)}"
    problem = _path_parts(text)
    if problem:
        return None, problem
    return norm, None


def _container_path(value: Any) -> tuple[Any, str | None]:
    """An absolute path inside the tracker container, normalised."""
    text, problem = _string(value)
    if problem:
        return None, problem
    if not text.startswith("/"):
        return None, ("must be the absolute path as the tracker container sees it, "
                      f"not {shown(text)}")
    problem = _path_parts(text)
    if problem:
        return None, problem
    return _normalised(text), None


def _service_name(value: Any) -> tuple[Any, str | None]:
    """A Compose service name (letters, digits, `.`, `_` and `-`)."""
    text, problem = _string(value)
    if problem:
        return None, problem
    if not SERVICE_NAME.match(text):
        return None, ("must be a Compose service name (letters, digits, '.', '_', '-'), "
                      f"not {shown(text)}")
    return text, None


def _boolean(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, bool):
        return None, f"must be true or false, not {_type_name(value)}"
    return value, None


def _int_between(low: int, high: int) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be an integer, not {_type_name(value)}"
        if not low <= value <= high:
            return None, f"must be between {low} and {high}, not {_number(value)}"
        return value, None

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        text, problem = _string(value)
        if problem:
            return None, problem
        if text not in choices:
            return None, f"must be one of {', '.join(choices)}, not {shown(text)}"
        return text, None

    return check


def _list_of(item_check: Check) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, list):
            return None, f"must be a list, not {_type_name(value)}"
        if not value:
            return None, "must not be an empty list"
        items = []
        for index, item in enumerate(value):
            checked, problem = item_check(item)
            if problem:
                return None, f"item {index + 1} {problem}"
            items.append(checked)
        if len(set(items)) != len(items):
            return None, "must not repeat an item"
        return tuple(items), None

    return check


def _notify_url(value: Any) -> tuple[Any, str | None]:
    """An Apprise URL. Its text is a secret (tokens, passwords): messages name only its scheme."""
    if not isinstance(value, str):
        return None, f"must be a string, not {_type_name(value)}"
    problem = url_problem(value)
    if problem:
        return None, problem
    return value, None


def url_problem(url: str) -> str | None:
    """Why an Apprise URL is unusable, without quoting it (it may hold a secret)."""
    scheme, separator, rest = url.partition("://")
    if not separator or not rest.strip() or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return "is not a URL of the form scheme://... (see apprise(1) for the services)"
    if any(not char.isprintable() or char.isspace() for char in url):
        return f"({scheme}://...) must not contain spaces or control characters"
    return None


def _restic_repository(value: Any) -> tuple[Any, str | None]:
    """A restic repository string (a path, sftp:, rest:, s3:, b2:, rclone:...). It may hold a
    password (rest:https://user:pass@...): messages never quote it."""
    if not isinstance(value, str):
        return None, f"must be a string, not {_type_name(value)}"
    if not value.strip():
        return None, "must not be empty"
    if any(not char.isprintable() or char.isspace() for char in value):
        return None, "must not contain spaces or control characters"
    if not (value.startswith("/") or re.match(r"^[a-z0-9]+:", value)):
        return None, ("must be a restic repository: an absolute path or backend:location "
                      "such as sftp:user@host:/srv/restic or rest:https://host:8000/ "
                      "(see restic(1))")
    return value, None


def _restic_host(value: Any) -> tuple[Any, str | None]:
    """The host name the snapshots carry (restic --host): letters, digits, `.`, `_`, `-`."""
    text, problem = _string(value)
    if problem:
        return None, problem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", text):
        return None, f"must be a host name (letters, digits, '.', '_', '-'), not {shown(text)}"
    return text, None


def _restic_option(value: Any) -> tuple[Any, str | None]:
    """An extended option of restic (-o key=value), such as sftp.command=ssh ..."""
    text, problem = _string(value)
    if problem:
        return None, problem
    if not re.match(r"^[a-z0-9]+\.[A-Za-z0-9._-]+=", text):
        return None, f"must be an extended option key=value such as sftp.command=..., not " \
                     f"{shown(text.split('=')[0])}=..."
    return text, None


def _data_subset(value: Any) -> tuple[Any, str | None]:
    """restic check --read-data-subset: a share such as "5%" (0.1% to 100%)."""
    text, problem = _string(value)
    if problem:
        return None, problem
    match = re.fullmatch(r"(\d{1,3}(?:\.\d{1,2})?)%", text)
    if not match or not 0 < float(match.group(1)) <= 100:
        return None, f"must be a share of the data such as \"5%\" (up to 100%), not {shown(text)}"
    return text, None


DURATION = re.compile(r"^(\d{1,6})\s*(s|min|m|h|d)$")
DURATION_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> tuple[Any, str | None]:
    """A duration: "26h", "90min", "2d", "600s", or an integer of seconds; at least a minute."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None, f"must be a duration such as \"26h\" or \"90min\", not {_type_name(value)}"
    if isinstance(value, int):
        seconds = value
    else:
        match = DURATION.match(value.strip())
        if not match:
            return None, (f"must be a duration such as \"26h\", \"90min\" or \"2d\", "
                          f"not {shown(value)}")
        seconds = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    if not 60 <= seconds <= 366 * 86400:
        return None, "must be between 1 minute and 366 days"
    return seconds, None


def _number(value: int) -> str:
    """An integer for a message; one too long to print is described by its size."""
    if value.bit_length() > 64:
        return f"a {value.bit_length()}-bit number"
    return str(value)


def _type_name(value: Any) -> str:
    """What a TOML value is, in words."""
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
        dt.datetime: "a date-time",
        dt.date: "a date",
        dt.time: "a time",
    }.get(type(value), type(value).__name__)


# section -> key -> (check, required)
SCHEMA: dict[str, dict[str, tuple[Check, bool]]] = {
    "deployment": {
        "compose_dir": (_directory, True),
        "tracker_services": (_list_of(_service_name), False),
        "database_driver": (_one_of(DRIVERS), False),
        "sqlite_path": (_container_path, False),
        "database_service": (_service_name, False),
        "stop_timeout": (_int_between(0, 3600), False),
        "start_timeout": (_int_between(1, 3600), False),
        "snapshot_timeout": (_int_between(1, 600), False),
    },
    "backup": {
        "directory": (_directory, True),
        "compression": (_one_of(COMPRESSIONS), False),
        "compression_level": (_int_between(1, 19), False),
        "config_paths": (_list_of(_relative_path), False),
    },
    "window": {
        "mode": (_one_of(WINDOW_MODES), False),
    },
    "retention": {
        "keep_last": (_int_between(0, 100000), False),
        "keep_daily": (_int_between(0, 100000), False),
        "keep_weekly": (_int_between(0, 100000), False),
        "keep_monthly": (_int_between(0, 100000), False),
    },
    "verify": {
        "after_backup": (_boolean, False),
    },
    "logging": {
        "file": (_log_file, False),
    },
    "notify": {
        "urls": (_list_of(_notify_url), False),
        "urls_file": (_log_file, False),
        "on": (_list_of(_one_of(NOTIFY_EVENTS)), False),
    },
    "retry": {
        "attempts": (_int_between(1, 20), False),
        "delay": (_int_between(0, 3600), False),
        "max_delay": (_int_between(0, 3600), False),
    },
    "status": {
        "max_age": (_duration, False),
    },
    "state": {
        "directory": (_directory, False),
    },
    "offsite": {
        "repository": (_restic_repository, False),
        "password_file": (_log_file, False),
        "environment_file": (_log_file, False),
        "host": (_restic_host, False),
        "keep_last": (_int_between(0, 100000), False),
        "keep_daily": (_int_between(0, 100000), False),
        "keep_weekly": (_int_between(0, 100000), False),
        "keep_monthly": (_int_between(0, 100000), False),
        "check_subset": (_data_subset, False),
        "options": (_list_of(_restic_option), False),
        "limit_upload": (_int_between(0, 999_999), False),
        "limit_download": (_int_between(0, 999_999), False),
    },
}

CLASSES = {"deployment": DeploymentConfig, "backup": BackupConfig, "window": WindowConfig,
           "retention": RetentionConfig, "verify": VerifyConfig, "logging": LoggingConfig,
           "notify": NotifyConfig, "retry": RetryConfig, "status": StatusConfig,
           "state": StateConfig, "offsite": OffsiteConfig}


def config_path_from(cli_path: str | None, environ: dict[str, str]) -> Path:
    """Choose the config file: --config, then $TORRUST_MAINT_CONFIG, then the default."""
    if cli_path is not None:
        if not cli_path.strip():
            raise ConfigError("--config must not be empty")
        return Path(cli_path)
    env_value = environ.get(CONFIG_ENV_VAR)
    if env_value is not None:
        if not env_value.strip():
            raise ConfigError(f"environment variable {CONFIG_ENV_VAR} is set but empty")
        return Path(env_value)
    return Path(DEFAULT_CONFIG_PATH)


def read_config_file(path: Path) -> bytes:
    """The file's bytes; a missing, unreadable, misnamed or oversized file is a ConfigError."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot read configuration file: {error.strerror or error}") from None
    except ValueError:  # open() refuses a NUL byte in the name
        raise ConfigError(f"{shown(str(path))}: not a file name (it holds a NUL byte)") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes, "
                          "not a torrust-maint configuration")
    return raw


def load(path: Path) -> Config:
    """Read and validate the config file, raising ConfigError listing every problem."""
    raw = read_config_file(path)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except ValueError:  # tomllib lets int() refuse a number of thousands of digits
        raise ConfigError(f"{path}: invalid TOML: a number too long to read") from None
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> Config:
    """Validate parsed TOML data into a Config, collecting all problems."""
    problems: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    for name, value in data.items():
        if name not in SCHEMA:
            problems.append(_unknown_top_level(name, value, path))
    for section_name, keys in SCHEMA.items():
        section = data.get(section_name, {})
        values: dict[str, Any] = {}
        sections[section_name] = values
        if not isinstance(section, dict):
            problems.append(f"{path}: {section_name}: must be a table [{section_name}]")
            continue
        for key in section:
            if key not in keys:
                problems.append(f"{path}: [{section_name}] {_name(key)}: unknown key "
                                f"(known: {', '.join(keys)})")
        for key, (check, required) in keys.items():
            if key not in section:
                if required:
                    problems.append(f"{path}: [{section_name}] {key}: required setting is missing")
                continue
            value, problem = check(section[key])
            if problem:
                problems.append(f"{path}: [{section_name}] {key}: {problem}")
            else:
                values[key] = value
    problems.extend(_cross_checks(sections, path))
    if problems:
        raise ConfigError(problems)
    return Config(
        path=path,
        deployment=DeploymentConfig(**sections["deployment"]),
        backup=BackupConfig(**sections["backup"]),
        window=WindowConfig(**sections["window"]),
        retention=RetentionConfig(**sections["retention"]),
        verify=VerifyConfig(**sections["verify"]),
        logging=LoggingConfig(**sections["logging"]),
        notify=NotifyConfig(**sections["notify"]),
        retry=RetryConfig(**sections["retry"]),
        status=StatusConfig(**sections["status"]),
        state=StateConfig(**sections["state"]),
        offsite=OffsiteConfig(**sections["offsite"]),
    )


def _name(key: str) -> str:
    """A key or section name for a message: bare when TOML could write it bare, else quoted."""
    return key if BARE_KEY.match(key) else shown(key, 40)


def _unknown_top_level(name: str, value: Any, path: Path) -> str:
    """An unknown section, or a setting written before any [section] header."""
    if isinstance(value, dict):
        return f"{path}: [{_name(name)}]: unknown section (known: {', '.join(SCHEMA)})"
    home = next((section for section, keys in SCHEMA.items() if name in keys), None)
    hint = f"; it belongs under [{home}]" if home else f" (sections: {', '.join(SCHEMA)})"
    return f"{path}: {_name(name)}: a setting outside any [section]{hint}"


def _backup_directory_checks(deployment: dict[str, Any], backup: dict[str, Any],
                             path: Path) -> list[str]:
    """The backup directory must be neither compose_dir, nor in the tracker's own storage,
    nor inside a config path (each set would archive every set before it)."""
    directory, compose_dir = backup.get("directory"), deployment.get("compose_dir")
    if directory is None or compose_dir is None:
        return []
    setting = f"{path}: [backup] directory: {directory}"
    if directory == compose_dir:
        return [f"{setting} is compose_dir itself; choose a directory of its own"]
    storage = compose_dir / TRACKER_STORAGE
    if directory.is_relative_to(storage):
        return [f"{setting} is inside {storage}, the tracker's own storage (the tracker "
                "container can write there); choose a directory outside it"]
    for relative in backup.get("config_paths", DEFAULT_CONFIG_PATHS):
        if directory.is_relative_to(compose_dir / relative):
            return [f"{setting} is inside config path {relative!r}, which every backup "
                    "archives: each set would hold all the sets before it"]
    return []


def _cross_checks(sections: dict[str, dict[str, Any]], path: Path) -> list[str]:
    """Problems of settings that are each valid but contradict one another."""
    problems = _backup_directory_checks(sections["deployment"], sections["backup"], path)
    deployment, backup, retention = (
        sections["deployment"],
        sections["backup"],
        sections["retention"],
    )
    driver = deployment.get("database_driver")
    if "sqlite_path" in deployment and driver not in (None, "sqlite3"):
        problems.append(
            f"{path}: [deployment] sqlite_path: set, but database_driver is \"{driver}\""
        )
    if retention and not any(retention.get(key, 1) for key in SCHEMA["retention"]):
        problems.append(
            f"{path}: [retention]: every keep_* is 0, which would keep nothing; "
            "set at least one above 0"
        )
    problems.extend(_offsite_checks(sections, path))
    retry = sections["retry"]
    if retry.get("max_delay", RetryConfig.max_delay) < retry.get("delay", RetryConfig.delay):
        problems.append(f"{path}: [retry] max_delay: must not be less than delay")
    level = backup.get("compression_level")
    if level is not None and backup.get("compression", "zstd") == "gzip" and level > 9:
        problems.append(
            f"{path}: [backup] compression_level: gzip takes 1 to 9, not {level}"
        )
    return problems


def _offsite_checks(sections: dict[str, dict[str, Any]], path: Path) -> list[str]:
    """[offsite] needs its repository once any other key is set; uploads take verified sets,
    so sets must be verified after each backup; its keep_* must keep something."""
    offsite = sections["offsite"]
    problems = []
    if offsite and "repository" not in offsite:
        problems.append(f"{path}: [offsite] repository: required once [offsite] has settings "
                        "(or remove the section)")
    if "repository" in offsite and sections["verify"].get("after_backup") is False:
        problems.append(f"{path}: [verify] after_backup: false, but [offsite] uploads only "
                        "verified sets; set it to true (or remove [offsite])")
    keeps = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")
    if "repository" in offsite and not any(offsite.get(key, 1) for key in keeps):
        problems.append(f"{path}: [offsite]: every keep_* is 0, which would forget every "
                        "snapshot; set at least one above 0")
    return problems
