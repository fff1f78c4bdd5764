"""The legacy backup's settings (``storage/backup/etc/backup.conf`` and the backup-paths file)
converted into torrust-maint's configuration values, with every problem found at once.

The legacy backup container mounted compose_dir at ``/data`` (read-only) and
``storage/backup/etc`` at ``/etc/backup``: its paths are translated through those mounts. An
empty setting is a problem, never a default; only an unset BACKUP_RETENTION_DAYS takes the
legacy script's own default (``${BACKUP_RETENTION_DAYS:-7}``), said in a note.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torrust_maint import safefs, shell_assignments
from torrust_maint.config import shown
from torrust_maint.shell_assignments import Assignment

BACKUP_CONF = Path("storage/backup/etc/backup.conf")
MOUNTS = (("/data", Path(".")), ("/etc/backup", Path("storage/backup/etc")))
DATA = MOUNTS[:1]  # backup-paths and DB_PATH name what the container saw of compose_dir
LEGACY_RETENTION_DAYS = 7  # the legacy script's ${BACKUP_RETENTION_DAYS:-7}
MAX_RETENTION_DAYS = 99_999  # keep_daily = days + 1 must stay within config's 100000
READ_LIMIT = 1 << 20
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
DRIVERS = {"sqlite": "sqlite3", "mysql": "mysql", "none": None}
REQUIRED = {"sqlite": ("DB_PATH",), "mysql": ("DB_HOST", "DB_PORT", "DB_USER", "DB_NAME"),
            "none": ()}
KNOWN = ("BACKUP_RETENTION_DAYS", "BACKUP_PATHS_FILE", "DB_TYPE", "DB_PATH", "DB_HOST",
         "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME")


@dataclass
class Conversion:
    """TOML values by section and key, report lines, problems, and DB_PATH on the host."""

    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sqlite_host_path: Path | None = None

    def set(self, section: str, key: str, value: Any) -> None:
        self.settings.setdefault(section, {})[key] = value


def read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None) of a small UTF-8 file, never through a symlink; else (None, why)."""
    try:
        with open(safefs.open_nofollow(path), "rb") as handle:
            raw = handle.read(READ_LIMIT + 1)
    except FileNotFoundError:
        return None, f"{path}: not found"
    except safefs.UnsafePath as error:
        return None, str(error)
    except OSError as error:
        return None, f"{path}: cannot read: {error.strerror or error}"
    if len(raw) > READ_LIMIT:
        return None, f"{path}: larger than {READ_LIMIT} bytes, not a legacy backup setting file"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, f"{path}: not UTF-8 text"


def host_path(container_path: str, compose_dir: Path,
              mounts: tuple[tuple[str, Path], ...] = MOUNTS) -> Path | None:
    """Where a path of the legacy backup container is on the host; None outside `mounts`."""
    if not container_path.startswith("/"):
        return None
    normal = posixpath.normpath(container_path)
    if ".." in container_path.split("/"):
        return None
    for mount, relative in mounts:
        if normal == mount or normal.startswith(mount + "/"):
            return Path(os.path.normpath(compose_dir / relative / normal[len(mount) + 1:]))
    return None


def shown_value(item: Assignment) -> str:
    """A setting for the report: a secret only as set or empty."""
    if SECRET.search(item.key):
        return f"{item.key}: {'set' if item.value else 'empty'} (not shown)"
    return f"{item.key} = {shown(item.value)}"


def required(values: dict[str, Assignment], key: str, origin: Path,
             conversion: Conversion) -> Assignment | None:
    """The setting, or None with a problem: unset or empty is never given a default."""
    item = values.get(key)
    if item is None:
        conversion.problems.append(f"{origin}: {key} is not set; set it (the legacy backup "
                                   "needed it), then run migrate again")
        return None
    if not item.value.strip():
        conversion.problems.append(f"{origin}:{item.line}: {key} is empty; an empty setting "
                                   "is never given a default: set it, then run migrate again")
        return None
    return item


def convert_retention(values: dict[str, Assignment], origin: Path,
                      conversion: Conversion) -> None:
    """`find -mtime +N` with one backup a night kept today's and the N days before: N + 1
    daily sets, nothing older."""
    item = values.get("BACKUP_RETENTION_DAYS")
    if item is None:
        days = LEGACY_RETENTION_DAYS
        conversion.report.append(
            f"  note: BACKUP_RETENTION_DAYS is not set: the legacy script kept "
            f"{LEGACY_RETENTION_DAYS} days (${{BACKUP_RETENTION_DAYS:-{LEGACY_RETENTION_DAYS}}}),"
            " so that is converted")
    else:
        item = required(values, item.key, origin, conversion)
        if item is None:
            return
        if not item.value.isdigit() or int(item.value) > MAX_RETENTION_DAYS:
            conversion.problems.append(
                f"{origin}:{item.line}: BACKUP_RETENTION_DAYS must be a number of days from 0 "
                f"to {MAX_RETENTION_DAYS}, not {shown(item.value)}")
            return
        days = int(item.value)
    for key, keep in (("keep_last", 0), ("keep_daily", days + 1), ("keep_weekly", 0),
                      ("keep_monthly", 0)):
        conversion.set("retention", key, keep)
    conversion.report.append(f"  retention: {days} days (find -mtime +{days}) -> [retention] "
                             f"keep_daily = {days + 1}, keep_last = keep_weekly = "
                             "keep_monthly = 0")


def translate_paths(text: str, origin: Path, compose_dir: Path,
                    conversion: Conversion) -> list[str]:
    """The backup-paths file's paths relative to compose_dir (first occurrence of each)."""
    relative: list[str] = []
    problems_before = len(conversion.problems)
    for number, line in enumerate(text.splitlines(), start=1):
        path = line.strip()
        if not path or path.startswith("#"):
            continue
        found = host_path(path, compose_dir, DATA)
        if found is None:
            conversion.problems.append(
                f"{origin}:{number}: {shown(path)} is not under /data (compose_dir as the "
                "legacy backup container saw it); remove that line or move what it names "
                "into compose_dir, then run migrate again")
            continue
        rel = str(found.relative_to(compose_dir))
        conversion.report.append(f"  {path} -> {rel}")
        if rel in relative:
            conversion.report.append(f"  note: {rel} is listed twice; kept once")
            continue
        relative.append(rel)
    if not relative and len(conversion.problems) == problems_before:
        conversion.problems.append(f"{origin}: lists no path; list the paths to archive "
                                   "(e.g. /data/storage/tracker/etc), then run migrate again")
    return relative


def convert_paths(values: dict[str, Assignment], origin: Path, compose_dir: Path,
                  conversion: Conversion) -> None:
    """BACKUP_PATHS_FILE's paths as [backup] config_paths."""
    item = required(values, "BACKUP_PATHS_FILE", origin, conversion)
    if item is None:
        return
    path = host_path(item.value, compose_dir)
    if path is None:
        conversion.problems.append(
            f"{origin}:{item.line}: BACKUP_PATHS_FILE {shown(item.value)} is neither under "
            "/etc/backup nor under /data (the legacy backup container's mounts)")
        return
    text, problem = read_text(path)
    if text is None:
        conversion.problems.append(f"BACKUP_PATHS_FILE ({origin}:{item.line}): {problem}")
        return
    conversion.report.append(f"{path}:")
    relative = translate_paths(text, path, compose_dir, conversion)
    if relative:
        conversion.set("backup", "config_paths", relative)


def convert_database(values: dict[str, Assignment], origin: Path, compose_dir: Path,
                     conversion: Conversion) -> None:
    """DB_TYPE as [deployment] database_driver; the settings its type needs must be set."""
    item = required(values, "DB_TYPE", origin, conversion)
    if item is None:
        return
    if item.value not in DRIVERS:
        conversion.problems.append(f"{origin}:{item.line}: DB_TYPE must be sqlite, mysql or "
                                   f"none, not {shown(item.value)}")
        return
    driver = DRIVERS[item.value]
    if driver is None:
        conversion.report.append("  note: DB_TYPE=none: the legacy backup saved no database; "
                                 "torrust-maint backs up the tracker's database as discovered")
    else:
        conversion.set("deployment", "database_driver", driver)
        conversion.report.append(f"  DB_TYPE {item.value} -> [deployment] database_driver = "
                                 f"\"{driver}\"")
    found = [required(values, key, origin, conversion) for key in REQUIRED[item.value]]
    db_path = found[0] if item.value == "sqlite" else None
    if db_path is not None:
        conversion.sqlite_host_path = host_path(db_path.value, compose_dir, DATA)
        if conversion.sqlite_host_path is None:
            conversion.problems.append(f"{origin}:{db_path.line}: DB_PATH "
                                       f"{shown(db_path.value)} is not under /data")


def convert(compose_dir: Path) -> Conversion:
    """Read backup.conf and the backup-paths file of the deployment; convert what they say."""
    conversion = Conversion()
    origin = compose_dir / BACKUP_CONF
    text, problem = read_text(origin)
    if text is None:
        conversion.problems.append(f"{problem} (the legacy backup's settings, which migrate "
                                   "converts)")
        return conversion
    values, conversion.problems = shell_assignments.parse(text, str(origin))
    conversion.report.append(f"{origin}:")
    conversion.report += [f"  {shown_value(values[key])}" for key in KNOWN if key in values]
    others = sorted(set(values) - set(KNOWN))
    if others:
        conversion.report.append(f"  not used: {', '.join(others)}")
    convert_retention(values, origin, conversion)
    convert_database(values, origin, compose_dir, conversion)
    convert_paths(values, origin, compose_dir, conversion)
    return conversion
