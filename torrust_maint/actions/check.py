"""``torrust-maint check``: validate configuration and deployment, listing every problem."""

from __future__ import annotations

import os
from collections.abc import Callable

from torrust_maint.actions.backup import database_files, existing_config_paths
from torrust_maint.config import Config
from torrust_maint.deployment import discover
from torrust_maint.docker import Docker
from torrust_maint.errors import ConfigError, MaintError


def check_mysql(database, docker: Docker, echo: Callable[[str], None]) -> list[str]:
    """Log in as the tracker's user and find the dump tool, as a backup would."""
    from torrust_maint.engines import mysql

    problems = []
    try:
        connection = mysql.connect(database)
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            echo(f"mysql server: {cursor.fetchone()[0]} (login as {database.user!r}: ok)")
        connection.close()
    except MaintError as error:
        problems.append(str(error))
    try:
        tool, version = mysql.dump_tool(docker, database)
        echo(f"dump tool: {version}")
    except MaintError as error:
        problems.append(str(error))
    return problems


def run(config: Config, docker: Docker, *, echo: Callable[[str], None] = print) -> int:
    problems: list[str] = []
    echo(f"config: {config.path}: ok")
    try:
        deployment = discover(config.deployment, docker)
    except ConfigError as error:
        problems.extend(error.problems)
        deployment = None
    except MaintError as error:
        problems.append(str(error))
        deployment = None
    if deployment is not None:
        echo(f"deployment: {deployment.compose_dir}")
        for container in deployment.trackers:
            health = f", {container.health}" if container.health else ""
            echo(f"tracker container: {container.name} ({container.status}{health})")
            if not container.running:
                echo(f"warning: tracker container {container.name} is not running "
                     "(a backup now would exit 3)")
        if deployment.driver == "sqlite3":
            echo(f"database: {deployment.database.describe()}, "
                 f"{sum(size for _, size in database_files(deployment.database))} bytes")
        else:
            echo(f"database: {deployment.database.describe()}")
            problems.extend(check_mysql(deployment.database, docker, echo))
        _, missing = existing_config_paths(deployment, config)
        for relative in missing:
            echo(f"warning: config path {deployment.compose_dir / relative} does not exist")
    directory = config.backup.directory
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        problems.append(f"[backup] directory: {directory} is not writable")
    else:
        note = "" if directory.exists() else " (will be created)"
        echo(f"backup directory: {directory}{note}")
    if problems:
        raise ConfigError(problems)
    echo("check: ok")
    return 0
