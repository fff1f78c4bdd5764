"""``torrust-maint check``: validate configuration and deployment, listing every problem."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from torrust_maint.actions.backup import database_files, existing_config_paths
from torrust_maint.config import DEFAULT_STATE_DIRECTORY, Config, default_state_directory
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


def check_postgresql(database, docker: Docker, echo: Callable[[str], None]) -> list[str]:
    """Log in as the tracker's user, find pg_dump and prove how it logs in, as a backup
    would; warn about tables a set would not hold."""
    from torrust_maint.engines import postgresql

    try:
        snapshot = postgresql.prepare(docker, database)
    except MaintError as error:
        return [str(error)]
    try:
        echo(f"postgresql server: {snapshot.server_version} (login as {database.user!r}: ok)")
        echo(f"dump tool: {snapshot.tool_version} (logs in over the "
             f"{snapshot.login.describe()})")
        for warning in snapshot.warnings:
            echo(f"warning: {warning}")
        for problem in postgresql.restore_problems(snapshot.connection):
            echo(f"warning: a restore would be refused: the {problem}")
    finally:
        snapshot.close()
    return []


def check_legacy_cron(echo: Callable[[str], None]) -> list[str]:
    """The cron-based backup still scheduled: a problem next to an enabled timer (two windows
    a night), a warning before the timer is enabled."""
    from torrust_maint import legacy_cron

    problems, notes = legacy_cron.warnings(legacy_cron.find_jobs(),
                                           legacy_cron.timer_enabled())
    for note in notes:
        echo(f"warning: {note}")
    return problems


SYSTEMD_RUNNING = Path("/run/systemd/system")  # as sd_booted(3) tells
# The scheduled units, sandboxed with ProtectSystem=strict (see systemd/).
BACKUP_UNIT = "torrust-backup.service"
VERIFY_UNIT = "torrust-verify.service"
RECOVER_UNIT = "torrust-recover.service"  # at boot: the window marker and the run lock


def systemctl_show(unit: str) -> str:
    """`systemctl show` of the unit's LoadState, ProtectSystem and ReadWritePaths (Key=value
    lines, as systemd has merged the unit file and its drop-ins)."""
    done = subprocess.run(
        ["systemctl", "show", "--property=LoadState,ProtectSystem,ReadWritePaths", unit],
        capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise MaintError(f"systemctl show {unit} failed: {done.stderr.strip()}")
    return done.stdout


def parse_show(text: str) -> dict[str, str]:
    """Key=value lines of `systemctl show` as a dict."""
    return dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)


def read_write_paths(value: str) -> list[str]:
    """The paths of a ReadWritePaths= value, without the "-" (may be missing) and "+" prefixes."""
    return [word.lstrip("-+") for word in value.split()]


def is_beneath(path: Path, directories: list[str]) -> bool:
    """Whether path is one of the directories or inside one (symlinks resolved, as systemd
    resolves ReadWritePaths= when it sets up the unit's mounts)."""
    real = os.path.realpath(path)
    for directory in directories:
        allowed = os.path.realpath(directory)
        if real == allowed or real.startswith(allowed.rstrip("/") + "/"):
            return True
    return False


def unit_writes(config: Config, deployment) -> dict[str, list[tuple[Path, str]]]:
    """The paths each scheduled unit must be able to write, with why."""
    backups = (config.backup.directory, "[backup] directory")
    writes = {BACKUP_UNIT: [backups], VERIFY_UNIT: [backups], RECOVER_UNIT: [backups]}
    # StateDirectory= makes the default writable (and names it in $STATE_DIRECTORY).
    if config.state.directory not in (DEFAULT_STATE_DIRECTORY, default_state_directory()):
        for unit in (BACKUP_UNIT, VERIFY_UNIT):
            writes[unit].append((config.state.directory, "[state] directory"))
    if deployment is not None and deployment.driver == "sqlite3":
        writes[BACKUP_UNIT].append((
            deployment.database.host_path.parent,
            "the SQLite database's directory: a WAL snapshot creates -wal/-shm there, and "
            "restore replaces the file"))
    return writes


def sandbox_problems(unit: str, show: dict[str, str], needed: list[tuple[Path, str]],
                     echo: Callable[[str], None]) -> list[str]:
    """A problem per path the unit needs to write that its ProtectSystem=strict keeps
    read-only (outside its ReadWritePaths=), naming the drop-in that fixes it."""
    if show.get("LoadState") != "loaded":
        echo(f"systemd: {unit} is not installed ({show.get('LoadState') or 'unknown'}): "
             "its ReadWritePaths= were not checked")
        return []
    if show.get("ProtectSystem") != "strict":
        echo(f"systemd: {unit} has ProtectSystem={show.get('ProtectSystem')}: "
             "its ReadWritePaths= do not limit it")
        return []
    allowed = read_write_paths(show.get("ReadWritePaths", ""))
    problems = []
    for path, why in needed:
        if is_beneath(path, allowed):
            continue
        problems.append(
            f"{path} ({why}) is outside the ReadWritePaths= of {unit} "
            f"({' '.join(allowed) or 'none'}): ProtectSystem=strict keeps it read-only, so "
            f"every run of {unit} would fail; add it with a drop-in: `systemctl edit {unit}`, "
            f"then [Service] ReadWritePaths={path}")
    if not problems:
        echo(f"systemd: {unit} may write {', '.join(str(path) for path, _ in needed)}: ok")
    return problems


def check_sandbox(config: Config, deployment, echo: Callable[[str], None]) -> list[str]:
    """Check that the scheduled units' sandbox lets them write what they must."""
    if not SYSTEMD_RUNNING.is_dir():
        echo("systemd: not running here: the units' ReadWritePaths= were not checked")
        return []
    problems = []
    for unit, needed in unit_writes(config, deployment).items():
        try:
            show = parse_show(systemctl_show(unit))
        except (MaintError, OSError, subprocess.TimeoutExpired) as error:
            problems.append(f"cannot read the sandbox of {unit}: {error}")
            continue
        problems.extend(sandbox_problems(unit, show, needed, echo))
    return problems


def check_window_mode(config: Config, deployment, echo: Callable[[str], None]) -> list[str]:
    """Say the [window] mode; "online" with an SQLite database in rollback-journal mode is a
    problem (every backup would refuse it)."""
    from torrust_maint.engines import sqlite as sqlite_engine

    if not config.window.online:
        echo('window: mode "stop" (the tracker is stopped for each snapshot)')
        return []
    echo('window: mode "online" (no window, the tracker keeps running; a set holds what it '
         "had committed to the database, not what it keeps only in memory)")
    if deployment is not None and deployment.driver == "mysql":
        echo("window: MySQL holds the tracker's writes some milliseconds while the snapshot "
             "opens (LOCK TABLES ... READ: the user needs that privilege)")
        return check_lock_tables(deployment.database, echo)
    if deployment is None or deployment.driver != "sqlite3":
        return []
    refusal = sqlite_engine.online_refusal(deployment.database.host_path)
    return [refusal] if refusal else []


def check_lock_tables(database, echo: Callable[[str], None]) -> list[str]:
    """Online MySQL: the user's LOCK TABLES privilege (a login failure is reported once, by
    check_mysql)."""
    from torrust_maint.engines import mysql

    try:
        connection = mysql.connect(database)
    except MaintError:
        return []
    try:
        problem = mysql.lock_tables_problem(connection, database)
    except MaintError as error:
        return [str(error)]
    finally:
        connection.close()
    if problem is None:
        echo(f"window: MySQL user {database.user!r} has the LOCK TABLES privilege: ok")
        return []
    return [problem]


def check_window_marker(directory: Path, echo: Callable[[str], None]) -> list[str]:
    """An open window: the tracker may be stopped. Fine while the run that opened it holds
    the lock; otherwise a problem that `torrust-maint recover` resolves."""
    from torrust_maint import lock
    from torrust_maint.recovery import WindowMarker

    marker = WindowMarker.read(directory)
    if marker is None:
        return []
    names = ", ".join(marker.container_names)
    holder = lock.holder(directory)
    if holder is not None:
        echo(f"window: open since {marker.opened_at} ({names} stopped by the run of pid "
             f"{holder}, which holds the lock and starts it again)")
        return []
    return [f"an interrupted window's marker {marker.path} (opened {marker.opened_at} by pid "
            f"{marker.pid}) names {names}: the tracker may still be stopped; run "
            "`torrust-maint recover` (the next backup and the boot-time "
            "torrust-recover.service do it too)"]


def check_interrupted_restore(directory: Path) -> list[str]:
    """A restore whose state from before is not yet in a verified set (see restore_record)."""
    from torrust_maint import restore_record
    from torrust_maint.lock import holder

    record = restore_record.read(directory)
    if record is None or holder(directory) is not None:  # a run holding the lock: its own
        return []
    return [restore_record.describe(record)]


def readable_by_others(path: Path) -> bool:
    """Whether a file's mode lets users other than its owner and group read it."""
    try:
        return bool(os.stat(path).st_mode & 0o004)
    except OSError:
        return False


def check_notify(config: Config, echo: Callable[[str], None]) -> list[str]:
    """Every notification URL loads in Apprise (nothing is sent); URLs are never shown."""
    from torrust_maint import notifications

    settings = config.notify
    if not settings.configured:
        echo("notify: no [notify] urls: failures show only in the journal and `status`")
        return []
    problems = notifications.problems(settings)
    if settings.urls and readable_by_others(config.path):
        echo(f"warning: [notify] urls: {config.path} is readable by every user and the URLs "
             "hold secrets: move them to a urls_file (mode 0600), or chmod o-r the file")
    if not problems:
        schemes = [notifications.scheme(url) for _, url in notifications.targets(settings)]
        echo(f"notify: {len(schemes)} URL(s) ({', '.join(schemes)}), on "
             f"{', '.join(settings.on)}: ok (`torrust-maint notify-test` sends a test notice)")
    return problems


def check_offsite(config: Config, echo: Callable[[str], None]) -> list[str]:
    """The repository is reachable and opens with the password (restic reads its config;
    nothing is created). The repository is shown with any password in it masked."""
    from torrust_maint.restic import Restic, ResticError, shown_repository

    settings = config.offsite
    if not settings.configured:
        echo("offsite: no [offsite] repository: sets stay on this host only")
        return []
    assert settings.repository is not None
    shown = shown_repository(settings.repository)
    if shown != settings.repository and readable_by_others(config.path):
        echo(f"warning: [offsite] repository: {config.path} is readable by every user and the "
             "repository holds a password: put it in environment_file (mode 0600) as the "
             "backend's variables, or chmod o-r the file")
    try:
        restic = Restic(settings)
        restic.open_repository()
    except ResticError as error:
        return [str(error)]
    except MaintError as error:
        return [str(error)]
    echo(f"offsite: {shown} (host {settings.host}): reachable, opens with the password")
    return []


def check_sqlite_journal(database, echo: Callable[[str], None]) -> None:
    """Say the SQLite database's journal mode and, in rollback-journal mode, the expected
    in-window copy time (a warning recommending WAL above 5 s); never a problem."""
    from torrust_maint.actions import sqlite_wal

    for line in sqlite_wal.window_report(database):
        echo(line)


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
            check_sqlite_journal(deployment.database, echo)
        else:
            echo(f"database: {deployment.database.describe()}")
            check_server = check_postgresql if deployment.driver == "postgresql" else check_mysql
            problems.extend(check_server(deployment.database, docker, echo))
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
    problems.extend(check_notify(config, echo))
    problems.extend(check_offsite(config, echo))
    problems.extend(check_sandbox(config, deployment, echo))
    problems.extend(check_window_mode(config, deployment, echo))
    problems.extend(check_window_marker(directory, echo))
    problems.extend(check_interrupted_restore(directory))
    problems.extend(check_legacy_cron(echo))
    if problems:
        raise ConfigError(problems)
    echo("check: ok")
    return 0
