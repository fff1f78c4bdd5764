"""``torrust-maint verify``: prove a set restores — checksums, then a throwaway restore.

Each artifact's size and sha256 are checked against the manifest; then the database is
restored somewhere throwaway (SQLite: a scratch file and ``PRAGMA integrity_check``; MySQL: a
throwaway container of the deployment's database image) and its per-table row counts (and,
for MySQL, checksums) compared with the manifest. The outcome is recorded in the manifest.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torrust_maint import catalog, notify
from torrust_maint.compress import sha256_of
from torrust_maint.config import Config
from torrust_maint.docker import Docker
from torrust_maint.engines import ENGINES
from torrust_maint.errors import ConfigError, MaintError
from torrust_maint.journal import event
from torrust_maint.lock import run_lock

log = logging.getLogger(__name__)

SCRATCH_PREFIX = ".torrust-maint-verify-"


@dataclass
class Outcome:
    """The result of verifying one set."""

    set_id: str
    passed: bool
    seconds: float
    problems: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"id": self.set_id, "outcome": "passed" if self.passed else "failed",
                "duration_seconds": self.seconds, "problems": self.problems, **self.details}


def artifact_problems(backup_set: catalog.BackupSet) -> list[str]:
    """Missing files, wrong sizes and wrong sha256 sums, each naming the file."""
    problems = []
    for artifact in (backup_set.manifest or {}).get("artifacts", []):
        path = backup_set.path / artifact["path"]
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        size = path.stat().st_size
        if size != artifact.get("size"):
            problems.append(f"{path}: {size} bytes, manifest says {artifact.get('size')} "
                            "(truncated or changed)")
        digest = sha256_of(path)
        if digest != artifact.get("sha256"):
            problems.append(f"{path}: sha256 {digest} does not match the manifest's "
                            f"{artifact.get('sha256')}")
    return problems


def restore_check(backup_set: catalog.BackupSet, docker: Docker, scratch_parent) -> dict:
    """Restore the database artifact somewhere throwaway and compare it with the manifest."""
    manifest = backup_set.manifest or {}
    database = manifest.get("database", {})
    engine = ENGINES.get(database.get("driver"))
    if engine is None:
        raise MaintError(f"unknown database driver {database.get('driver')!r} in the manifest")
    artifact = next((a for a in manifest.get("artifacts", []) if a.get("name") == "database"),
                    None)
    if artifact is None:
        raise MaintError("the manifest lists no database artifact")
    scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=scratch_parent)
    try:
        from pathlib import Path

        return engine.verify(docker, backup_set.path / artifact["path"],
                             artifact["compression"], database, Path(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def verify_set(backup_set: catalog.BackupSet, docker: Docker, directory) -> Outcome:
    """Verify one set and record the outcome in its manifest (caller holds the lock)."""
    started = time.monotonic()
    notify.status(f"verifying {backup_set.id}")
    problems: list[str] = []
    details: dict = {}
    if not backup_set.complete:
        problems.append(f"{backup_set.path}: not a complete set ({backup_set.problem})")
    else:
        problems = artifact_problems(backup_set)
        if not problems:
            try:
                details = restore_check(backup_set, docker, directory)
            except MaintError as error:
                problems.append(f"{backup_set.id}: restore check failed: {error}")
    outcome = Outcome(backup_set.id, not problems, round(time.monotonic() - started, 3),
                      problems, {"checked": sorted(details.get("tables", {}))})
    if backup_set.complete and backup_set.manifest is not None:
        manifest = dict(backup_set.manifest)
        manifest["verification"] = {
            "verified_at": catalog.rfc3339(catalog.utc_now()),
            "outcome": "passed" if outcome.passed else "failed",
            "duration_seconds": outcome.seconds,
            "problems": problems,
        }
        catalog.rewrite_manifest(backup_set, manifest)
    if outcome.passed:
        event("set_verified", "set %s verified in %.1f s", backup_set.id, outcome.seconds,
              BACKUP_ID=backup_set.id, VERIFY_SEC=outcome.seconds)
    else:
        event("verify_failed", "set %s FAILED verification: %s", backup_set.id,
              "; ".join(problems), level=logging.ERROR, BACKUP_ID=backup_set.id,
              ERROR="; ".join(problems))
    return outcome


def select(sets: list[catalog.BackupSet], target: str | None, every: bool,
           scheduled: bool) -> list[catalog.BackupSet]:
    """The sets a verify command names: an id, `latest` (default), --all or --scheduled."""
    complete = [s for s in sets if s.complete]
    if every:
        return sets
    if scheduled:  # the timer: the latest set and one random older one
        if not complete:
            return []
        older = complete[:-1]
        return [complete[-1]] + ([random.choice(older)] if older else [])  # noqa: S311
    if target in (None, "latest"):
        if not complete:
            raise ConfigError("no complete backup set to verify")
        return [complete[-1]]
    chosen = [s for s in sets if s.id == target]
    if not chosen:
        raise ConfigError(f"no backup set {target!r} (see `torrust-maint list`)")
    return chosen


def run(config: Config, docker: Docker, *, target: str | None = None, every: bool = False,
        scheduled: bool = False, as_json: bool = False,
        echo: Callable[[str], None] = print) -> int:
    directory = config.backup.directory
    with run_lock(directory):
        sets = select(catalog.list_sets(directory), target, every, scheduled)
        outcomes = [verify_set(s, docker, directory) for s in sets]
    if as_json:
        echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        for outcome in outcomes:
            if outcome.passed:
                echo(f"{outcome.set_id}: verified ({outcome.seconds:.1f} s; tables "
                     f"{', '.join(outcome.details.get('checked', []))})")
            else:
                for problem in outcome.problems:
                    echo(f"{outcome.set_id}: FAILED: {problem}")
        if not outcomes:
            echo("no backup sets to verify")
    failed = [o.set_id for o in outcomes if not o.passed]
    if failed:
        raise MaintError(f"verification failed for {', '.join(failed)}")
    return 0
