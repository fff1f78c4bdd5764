"""Prove a legacy cron backup restores: every file gunzips, the config archive lists, and the
database restores somewhere throwaway (SQLite: ``integrity_check``; MySQL: an import into a
throwaway container of the deployment's image). There is no manifest, so the row counts and
checksums found become the expectations a restore of the set is checked against."""

from __future__ import annotations

import gzip
import shutil
import tarfile
import tempfile
from pathlib import Path

from torrust_maint import catalog, legacy_backups
from torrust_maint.compress import sha256_of
from torrust_maint.engines import mysql as mysql_engine
from torrust_maint.engines import sqlite as sqlite_engine
from torrust_maint.errors import VerificationFailed
from torrust_maint.progress import Progress

CHUNK = 1 << 20
SCRATCH_PREFIX = ".torrust-maint-verify-"  # as verify's, so its leftover sweep takes it


def gunzipped_size(legacy_file: legacy_backups.LegacyFile) -> int:
    """Decompress the whole file (gzip's CRC checks every byte); its uncompressed size."""
    total = 0
    with gzip.open(legacy_file.path, "rb") as source, \
            Progress(f"verify: gunzip {legacy_file.relative}", None) as progress:
        while chunk := source.read(CHUNK):
            total += len(chunk)
            progress(total)
    return total


def config_members(legacy_file: legacy_backups.LegacyFile) -> list[str]:
    """The archive's members, read to the end; VerificationFailed for one that is not a plain
    file or directory beneath /data, where the old container saw the compose dir."""
    names = []
    try:
        with tarfile.open(legacy_file.path, mode="r|gz") as archive:
            for member in archive:
                if not (member.isfile() or member.isdir()) \
                        or legacy_backups.config_member_path(member.name) is None:
                    raise VerificationFailed(
                        f"{legacy_file.relative}: member {member.name!r} is not a plain file "
                        f"or directory beneath /{legacy_backups.CONFIG_MEMBER_PREFIX}")
                if member.isfile():
                    names.append(member.name)
    except tarfile.TarError as error:
        raise VerificationFailed(f"{legacy_file.relative}: not a readable tar archive: "
                                 f"{error}") from None
    return names


def inspect(legacy: legacy_backups.LegacySet, docker, image: str | None,
            scratch_parent: Path) -> dict:
    """What the set holds, proven by restoring it: tables with row counts (and checksums for
    MySQL), the database's uncompressed size, the config files. VerificationFailed for data
    that does not restore; MaintError or OSError when the check could not run."""
    details: dict = {"sizes": {}}
    for legacy_file in legacy.files:
        details["sizes"][legacy_file.relative] = gunzipped_size(legacy_file)
    if legacy.config is not None:
        details["config_files"] = config_members(legacy.config)
    if legacy.database is None:
        return details
    expected: dict = {"legacy": True, "driver": legacy.driver}
    if legacy.driver == "mysql":
        expected.update(image=image, checksum_method=mysql_engine.CHECKSUM_METHOD)
    engine = mysql_engine if legacy.driver == "mysql" else sqlite_engine
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=scratch_parent))
    try:
        found = engine.verify(docker, legacy.database.path, "gzip", expected, scratch,
                              size=details["sizes"][legacy.database.relative])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    details.update(tables=found["tables"], table_checksums=found.get("table_checksums", {}),
                   image=image)
    return details


def as_backup_set(legacy: legacy_backups.LegacySet, directory: Path,
                  details: dict | None) -> catalog.BackupSet:
    """The legacy set as a set of ours for `restore`: a manifest held in memory (nothing is
    written beside the old files), whose expectations are what `inspect` found by restoring
    it (None: not inspected, a dry run)."""
    database: dict = {"driver": legacy.driver, "legacy": True}
    if details is not None:
        database = {"driver": legacy.driver, "tables": details.get("tables", {}),
                    "table_checksums": details.get("table_checksums", {}),
                    "checksum_method": mysql_engine.CHECKSUM_METHOD,
                    "image": details.get("image")}
    artifacts = []
    for legacy_file in legacy.files:
        artifact = {"name": "database" if legacy_file is legacy.database else "config",
                    "path": legacy_file.relative, "size": legacy_file.size,
                    "sha256": sha256_of(legacy_file.path), "compression": "gzip"}
        if details is not None:
            artifact["uncompressed_size"] = details["sizes"][legacy_file.relative]
        if legacy_file is legacy.config:
            artifact["member_prefix"] = legacy_backups.CONFIG_MEMBER_PREFIX
        artifacts.append(artifact)
    manifest = {"tool": catalog.TOOL, "format": catalog.MANIFEST_FORMAT, "id": legacy.id,
                "created_at": catalog.rfc3339(legacy.created_at), "complete": True,
                "database": database, "artifacts": artifacts, "legacy": True}
    return catalog.BackupSet(legacy.id, directory, manifest)
