"""Load and validate the TOML configuration, reporting every problem at once."""

from __future__ import annotations

import os
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
DRIVERS = ("sqlite3", "mysql")


@dataclass(frozen=True)
class DeploymentConfig:
    """Where the tracker stack lives and what may override discovery."""

    compose_dir: Path
    tracker_services: tuple[str, ...] = ("tracker",)
    database_driver: str | None = None
    sqlite_path: str | None = None
    database_service: str = "mysql"
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


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path
    deployment: DeploymentConfig
    backup: BackupConfig
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# -- validators: each returns (value, problem) -------------------------------

Check = Callable[[Any], "tuple[Any, str | None]"]


def _string(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str):
        return None, f"must be a string, not {_type_name(value)}"
    if not value.strip():
        return None, "must not be empty"
    return value, None


def _absolute_path(value: Any) -> tuple[Any, str | None]:
    text, problem = _string(value)
    if problem:
        return None, problem
    if not text.startswith("/"):
        return None, f"must be an absolute path, not {text!r}"
    return Path(os.path.normpath(text)), None


def _log_file(value: Any) -> tuple[Any, str | None]:
    path, problem = _absolute_path(value)
    if problem:
        return None, problem
    if str(path) == "/" or value.endswith("/"):
        return None, f"must be a file path, not the directory {value!r}"
    return path, None


def _relative_path(value: Any) -> tuple[Any, str | None]:
    text, problem = _string(value)
    if problem:
        return None, problem
    norm = os.path.normpath(text)
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        return None, f"must be a path inside compose_dir, not {text!r}"
    return norm, None


def _container_path(value: Any) -> tuple[Any, str | None]:
    text, problem = _string(value)
    if problem:
        return None, problem
    if not text.startswith("/"):
        return None, f"must be the absolute path as the tracker container sees it, not {text!r}"
    return os.path.normpath(text), None


def _boolean(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, bool):
        return None, f"must be true or false, not {_type_name(value)}"
    return value, None


def _int_between(low: int, high: int) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be an integer, not {_type_name(value)}"
        if not low <= value <= high:
            return None, f"must be between {low} and {high}, not {value}"
        return value, None

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        text, problem = _string(value)
        if problem:
            return None, problem
        if text not in choices:
            return None, f"must be one of {', '.join(choices)}, not {text!r}"
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


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


# section -> key -> (check, required)
SCHEMA: dict[str, dict[str, tuple[Check, bool]]] = {
    "deployment": {
        "compose_dir": (_absolute_path, True),
        "tracker_services": (_list_of(_string), False),
        "database_driver": (_one_of(DRIVERS), False),
        "sqlite_path": (_container_path, False),
        "database_service": (_string, False),
        "stop_timeout": (_int_between(0, 3600), False),
        "start_timeout": (_int_between(1, 3600), False),
        "snapshot_timeout": (_int_between(1, 600), False),
    },
    "backup": {
        "directory": (_absolute_path, True),
        "compression": (_one_of(COMPRESSIONS), False),
        "compression_level": (_int_between(1, 19), False),
        "config_paths": (_list_of(_relative_path), False),
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
}

CLASSES = {"deployment": DeploymentConfig, "backup": BackupConfig, "retention": RetentionConfig,
           "verify": VerifyConfig, "logging": LoggingConfig}


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


def load(path: Path) -> Config:
    """Read and validate the config file, raising ConfigError listing every problem."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read configuration file: {error.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> Config:
    """Validate parsed TOML data into a Config, collecting all problems."""
    problems: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    for name in data:
        if name not in SCHEMA:
            problems.append(f"{path}: [{name}]: unknown section (known: {', '.join(SCHEMA)})")
    for section_name, keys in SCHEMA.items():
        section = data.get(section_name, {})
        values: dict[str, Any] = {}
        sections[section_name] = values
        if not isinstance(section, dict):
            problems.append(f"{path}: {section_name}: must be a table [{section_name}]")
            continue
        for key in section:
            if key not in keys:
                problems.append(
                    f"{path}: [{section_name}] {key}: unknown key (known: {', '.join(keys)})"
                )
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
        retention=RetentionConfig(**sections["retention"]),
        verify=VerifyConfig(**sections["verify"]),
        logging=LoggingConfig(**sections["logging"]),
    )


def _cross_checks(sections: dict[str, dict[str, Any]], path: Path) -> list[str]:
    problems = []
    deployment, backup, retention = (
        sections["deployment"],
        sections["backup"],
        sections["retention"],
    )
    if "sqlite_path" in deployment and deployment.get("database_driver") == "mysql":
        problems.append(
            f"{path}: [deployment] sqlite_path: set, but database_driver is \"mysql\""
        )
    if retention and not any(retention.get(key, 1) for key in SCHEMA["retention"]):
        problems.append(
            f"{path}: [retention]: every keep_* is 0, which would keep nothing; "
            "set at least one above 0"
        )
    level = backup.get("compression_level")
    if level is not None and backup.get("compression", "zstd") == "gzip" and level > 9:
        problems.append(
            f"{path}: [backup] compression_level: gzip takes 1 to 9, not {level}"
        )
    return problems
