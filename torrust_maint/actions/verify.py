"""``torrust-maint verify``: prove a set restores — checksums, then a throwaway restore.

Each artifact's size and sha256 are checked against the manifest; then the database is
restored somewhere throwaway (SQLite: a scratch file and ``PRAGMA integrity_check``; MySQL: a
throwaway container of the deployment's database image) and its per-table row counts (and,
for MySQL, checksums) compared with the manifest. A verdict (passed or failed) is recorded in
the manifest under ``verification``; a check that could not run to one (Docker, disk) is
inconclusive, recorded under ``verification_attempt`` only; a signal records nothing.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import random
import shutil
import stat
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from torrust_maint import catalog, legacy_backups, legacy_check, notify
from torrust_maint.compress import sha256_of
from torrust_maint.config import Config
from torrust_maint.docker import Docker
from torrust_maint.engines import ENGINES
from torrust_maint.engines import mysql as mysql_engine
from torrust_maint.errors import (
    ConfigError,
    Interrupted,
    MaintError,
    VerificationFailed,
    VerificationInconclusive,
)
from torrust_maint.journal import event
from torrust_maint.lock import run_lock
from torrust_maint.progress import Progress
from torrust_maint.window import signals_raise

log = logging.getLogger(__name__)

SCRATCH_PREFIX = ".torrust-maint-verify-"
# An artifact whose sha256 matches but that does not decompress was written broken: a verdict.
DECOMPRESSION_ERRORS = (zstandard.ZstdError, gzip.BadGzipFile, zlib.error, EOFError)
INCONCLUSIVE_NOTE = "this says nothing about the data"


@dataclass
class Outcome:
    """The result of verifying one set: passed or failed (a verdict on the data), or
    inconclusive (the check could not run to a verdict)."""

    set_id: str
    result: str
    seconds: float
    problems: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.result == "passed"

    def to_json(self) -> dict:
        return {"id": self.set_id, "outcome": self.result,
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
        with Progress(f"checksumming {backup_set.id}/{artifact['path']}", size) as progress:
            digest = sha256_of(path, progress)
        if digest != artifact.get("sha256"):
            problems.append(f"{path}: sha256 {digest} does not match the manifest's "
                            f"{artifact.get('sha256')}")
    return problems


def remove_leftovers(docker: Docker, directory: Path) -> None:
    """What a killed verification left (caller holds the run lock, so none of it is in use):
    its throwaway containers and its scratch directories (only real directories of ours)."""
    mysql_engine.remove_leftover_throwaways(docker, directory)
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name.startswith(SCRATCH_PREFIX) and stat.S_ISDIR(entry.lstat().st_mode):
            log.warning("removing %s, left by an interrupted verification", entry)
            shutil.rmtree(entry, ignore_errors=True)


def restore_check(backup_set: catalog.BackupSet, docker: Docker, scratch_parent) -> dict:
    """Restore the database artifact somewhere throwaway and compare it with the manifest."""
    manifest = backup_set.manifest or {}
    database = manifest.get("database", {})
    engine = ENGINES.get(database.get("driver"))
    if engine is None:
        raise VerificationFailed(
            f"unknown database driver {database.get('driver')!r} in the manifest")
    artifact = next((a for a in manifest.get("artifacts", []) if a.get("name") == "database"),
                    None)
    if artifact is None:
        raise VerificationFailed("the manifest lists no database artifact")
    scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=scratch_parent)
    try:
        return engine.verify(docker, backup_set.path / artifact["path"],
                             artifact["compression"], database, Path(scratch),
                             size=artifact.get("uncompressed_size"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def verify_set(backup_set: catalog.BackupSet, docker: Docker, directory) -> Outcome:
    """Verify one set and record the outcome in its manifest (caller holds the lock).

    Interrupted (a signal) propagates and records nothing: it says nothing about the data.
    """
    started = time.monotonic()
    notify.status(f"verifying {backup_set.id}")
    result, problems, details = examine(backup_set, docker, directory)
    outcome = Outcome(backup_set.id, result, round(time.monotonic() - started, 3),
                      problems, {"checked": sorted(details.get("tables", {}))})
    record(backup_set, outcome)
    announce(outcome)
    return outcome


def examine(backup_set: catalog.BackupSet, docker: Docker,
            directory) -> tuple[str, list[str], dict]:
    """(result, problems, details): failed for damaged artifacts and data that does not
    restore as recorded, inconclusive when the restore check could not run to a verdict."""
    if not backup_set.complete:
        return "failed", [f"{backup_set.path}: not a complete set ({backup_set.problem})"], {}
    problems = artifact_problems(backup_set)
    if problems:
        return "failed", problems, {}
    try:
        return "passed", [], restore_check(backup_set, docker, directory)
    except Interrupted:
        raise
    except DECOMPRESSION_ERRORS as error:
        return "failed", [f"{backup_set.id}: the database artifact does not decompress: "
                          f"{error}"], {}
    except VerificationFailed as error:
        return "failed", [f"{backup_set.id}: restore check failed: {error}"], {}
    except (MaintError, OSError) as error:  # Docker, disk, a database that would not start
        return "inconclusive", [f"the restore check did not run: {error}"], {}


def record(backup_set: catalog.BackupSet, outcome: Outcome) -> None:
    """A verdict replaces `verification`; an inconclusive run is recorded as
    `verification_attempt` only, leaving the verdict (or its absence) as it was."""
    if not backup_set.complete or backup_set.manifest is None:
        return
    manifest = dict(backup_set.manifest)
    now = catalog.rfc3339(catalog.utc_now())
    if outcome.result == "inconclusive":
        manifest["verification_attempt"] = {
            "at": now, "outcome": "inconclusive", "duration_seconds": outcome.seconds,
            "error": "; ".join(outcome.problems),
        }
    else:
        manifest.pop("verification_attempt", None)
        manifest["verification"] = {
            "verified_at": now, "outcome": outcome.result,
            "duration_seconds": outcome.seconds, "problems": outcome.problems,
        }
    catalog.rewrite_manifest(backup_set, manifest)


def announce(outcome: Outcome) -> None:
    """The journal event of an outcome: set_verified, verify_failed or verify_inconclusive."""
    problems = "; ".join(outcome.problems)
    if outcome.result == "passed":
        event("set_verified", "set %s verified in %.1f s", outcome.set_id, outcome.seconds,
              BACKUP_ID=outcome.set_id, VERIFY_SEC=outcome.seconds)
    elif outcome.result == "failed":
        event("verify_failed", "set %s FAILED verification: %s", outcome.set_id, problems,
              level=logging.ERROR, BACKUP_ID=outcome.set_id, ERROR=problems)
    else:
        event("verify_inconclusive", "could not verify set %s: %s; %s", outcome.set_id,
              problems, INCONCLUSIVE_NOTE, level=logging.WARNING, BACKUP_ID=outcome.set_id,
              ERROR=problems)


def select(sets: list[catalog.BackupSet], target: str | None, every: bool,
           scheduled: bool) -> list[catalog.BackupSet]:
    """The sets a verify command names: an id, `latest` (default), --all or --scheduled."""
    raw = {s.id for s in sets if s.complete and s.kind == catalog.RAW}
    if target in raw:
        raise ConfigError(f"set {target} holds the raw files of a database that could not be "
                          "exported: there is nothing to restore and check (its checksums were "
                          "checked when it was written)")
    sets = [s for s in sets if s.id not in raw]  # nothing in them restores
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
    """Verify the chosen sets; exit 0 only when every one passed (errors are raised)."""
    directory = config.backup.directory
    with run_lock(directory), signals_raise():
        remove_leftovers(docker, directory)
        legacy = select_legacy(config, target, every)
        sets = [] if legacy_backups.is_legacy_id(target) else select(
            catalog.list_sets(directory), target, every, scheduled)
        outcomes = [verify_set(s, docker, directory) for s in sets]
        outcomes += [verify_legacy(config, docker, s) for s in legacy]
        if scheduled:
            outcomes += verify_fetched(config, docker)
    if as_json:
        echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        show(outcomes, echo)
    raise_unless_passed(outcomes)
    return 0


def select_legacy(config: Config, target: str | None,
                  every: bool) -> list[legacy_backups.LegacySet]:
    """The legacy cron backups a verify command names: one by id, or all with --all."""
    if not (every or legacy_backups.is_legacy_id(target)):
        return []
    sets = legacy_backups.list_sets(config.backup.directory, config.state.directory)
    if every:
        return sets
    chosen = [s for s in sets if s.id == target]
    if not chosen:
        raise ConfigError(f"no legacy backup set {target!r} (see `torrust-maint list`)")
    return chosen


def verify_legacy(config: Config, docker: Docker, legacy: legacy_backups.LegacySet) -> Outcome:
    """Verify a legacy cron backup (gunzip, then a throwaway restore) and keep the verdict in
    the state directory; an inconclusive run keeps nothing."""
    started = time.monotonic()
    notify.status(f"verifying {legacy.id}")
    result, problems, details = examine_legacy(config, docker, legacy)
    outcome = Outcome(legacy.id, result, round(time.monotonic() - started, 3), problems,
                      {"checked": sorted(details.get("tables", {})), "kind": "legacy"})
    if result != "inconclusive":
        legacy_backups.record_verdict(config.state.directory, legacy, result, problems)
    announce(outcome)
    return outcome


def examine_legacy(config: Config, docker: Docker,
                   legacy: legacy_backups.LegacySet) -> tuple[str, list[str], dict]:
    """(result, problems, details) of a legacy set, told apart as examine() does."""
    try:
        image = legacy_database_image(config, docker) if legacy.driver == "mysql" else None
        return "passed", [], legacy_check.inspect(legacy, docker, image,
                                                  config.backup.directory)
    except Interrupted:
        raise
    except DECOMPRESSION_ERRORS as error:
        return "failed", [f"{legacy.id}: a file does not gunzip: {error}"], {}
    except VerificationFailed as error:
        return "failed", [f"{legacy.id}: restore check failed: {error}"], {}
    except (MaintError, OSError) as error:
        return "inconclusive", [f"the restore check did not run: {error}"], {}


def legacy_database_image(config: Config, docker: Docker) -> str:
    """The image of the deployment's MySQL server, to import a legacy dump into."""
    from torrust_maint.deployment import ServerDatabase, discover

    database = discover(config.deployment, docker).database
    if not isinstance(database, ServerDatabase) or database.driver != "mysql":
        raise MaintError("a legacy MySQL dump is imported into a throwaway container of the "
                         "deployment's MySQL image, and this deployment has no MySQL server")
    return database.container.image


def verify_fetched(config: Config, docker: Docker) -> list[Outcome]:
    """Restore the off-site copy that `offsite check` fetched into the state directory
    (torrust-offsite-check.service runs before the weekly verify), like any set; record the
    outcome in the state and remove the copy once it passed (a failed one is kept to look at)."""
    from torrust_maint import offsite, state

    fetched_directory = config.state.directory / offsite.FETCH_DIRECTORY
    outcomes = []
    for fetched in catalog.list_sets(fetched_directory):
        outcome = verify_set(fetched, docker, config.backup.directory)
        outcome.set_id = f"{fetched.id} (off-site copy)"
        outcomes.append(outcome)
        verdict = {"set_id": fetched.id, "outcome": outcome.result,
                   "at": catalog.rfc3339(catalog.utc_now()), "problems": outcome.problems}
        state.update(config.state.directory, functools.partial(_record_offsite, verdict))
        if outcome.passed:
            shutil.rmtree(fetched.path, ignore_errors=True)
    return outcomes


def _record_offsite(verdict: dict, data: dict) -> None:
    data["offsite_verified"] = verdict


def show(outcomes: list[Outcome], echo: Callable[[str], None]) -> None:
    """One line per passed set, per problem of a failed one, per inconclusive one."""
    for outcome in outcomes:
        if outcome.passed:
            echo(f"{outcome.set_id}: verified ({outcome.seconds:.1f} s; tables "
                 f"{', '.join(outcome.details.get('checked', []))})")
        elif outcome.result == "failed":
            for problem in outcome.problems:
                echo(f"{outcome.set_id}: FAILED: {problem}")
        else:
            echo(f"{outcome.set_id}: could not verify: {'; '.join(outcome.problems)}; "
                 f"{INCONCLUSIVE_NOTE}")
    if not outcomes:
        echo("no backup sets to verify")


def raise_unless_passed(outcomes: list[Outcome]) -> None:
    """VerificationFailed if a set failed, else VerificationInconclusive if one could not be
    verified (each exits 1)."""
    failed = [o.set_id for o in outcomes if o.result == "failed"]
    unknown = [o for o in outcomes if o.result == "inconclusive"]
    lines = [f"could not verify {o.set_id}: {'; '.join(o.problems)}; {INCONCLUSIVE_NOTE}"
             for o in unknown]
    if failed:
        raise VerificationFailed("\n".join([f"verification failed for {', '.join(failed)}",
                                            *lines]))
    if unknown:
        raise VerificationInconclusive("\n".join(lines))
