"""``torrust-maint restore ID``: put a set back, never losing the current state.

One window: stop the tracker, snapshot the current database into a new safety set, restore
the chosen set's database (and with --with-config its config files), check the restored
database against the set's row counts, start the tracker and wait until it is healthy. The
check runs before the start: afterwards the tracker's own writes would change the counts.
"""

from __future__ import annotations

import logging
import os
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from torrust_maint import catalog
from torrust_maint.actions import backup as backup_action
from torrust_maint.actions.verify import artifact_problems
from torrust_maint.compress import open_decompressed
from torrust_maint.config import Config
from torrust_maint.deployment import Deployment, discover
from torrust_maint.docker import Docker
from torrust_maint.engines import ENGINES
from torrust_maint.errors import ConfigError, MaintError
from torrust_maint.journal import event
from torrust_maint.lock import run_lock
from torrust_maint.window import WindowReport, signals_raise, wait_until_ready

log = logging.getLogger(__name__)



def choose(config: Config, set_id: str) -> catalog.BackupSet:
    sets = [s for s in catalog.list_sets(config.backup.directory) if s.complete]
    if set_id == "latest":
        if not sets:
            raise ConfigError(f"no complete backup set in {config.backup.directory}")
        return sets[-1]
    for backup_set in sets:
        if backup_set.id == set_id:
            return backup_set
    raise ConfigError(f"no complete backup set {set_id!r} (see `torrust-maint list`)")


def confirm(backup_set: catalog.BackupSet, deployment: Deployment,
            ask: Callable[[str], str]) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError("restore asks for confirmation on a terminal; pass --yes to skip it")
    answer = ask(f"Restore set {backup_set.id} ({backup_set.manifest['created_at']}) over the "
                 f"live database of {deployment.compose_dir}? The current state is backed up "
                 "first. [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def restore_config(backup_set: catalog.BackupSet, compose_dir: Path) -> list[str]:
    """Extract the set's config archive into compose_dir; only plain relative paths."""
    artifact = next(a for a in backup_set.manifest["artifacts"] if a["name"] == "config")
    restored = []
    with open_decompressed(backup_set.path / artifact["path"], artifact["compression"]) as raw:
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                name = os.path.normpath(member.name)
                if name.startswith(("/", "..")) or not (member.isfile() or member.isdir()):
                    raise MaintError(f"config archive member {member.name!r} is not a plain "
                                     "relative file or directory; refusing")
                target = compose_dir / name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                temporary = target.with_name(target.name + ".torrust-maint-restore")
                with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                  member.mode & 0o777), "wb") as sink:
                    sink.write(source.read())
                os.replace(temporary, target)
                restored.append(name)
    return restored


def run(config: Config, docker: Docker, set_id: str, *, assume_yes: bool = False,
        with_config: bool = False, echo: Callable[[str], None] = print,
        ask: Callable[[str], str] = input) -> int:
    target = choose(config, set_id)
    problems = artifact_problems(target)
    if problems:
        raise MaintError("refusing to restore a damaged set: " + "; ".join(problems))
    deployment = discover(config.deployment, docker)
    driver = target.manifest["database"]["driver"]
    if driver != deployment.driver:
        raise ConfigError(f"set {target.id} holds a {driver} database, the deployment uses "
                          f"{deployment.driver}")
    if not assume_yes and not confirm(target, deployment, ask):
        raise MaintError("restore cancelled; nothing was changed")

    engine = ENGINES[driver]
    artifact = next(a for a in target.manifest["artifacts"] if a["name"] == "database")
    expected = target.manifest["database"]
    result: dict = {}

    def put_back() -> None:
        event("restore_started", "restoring set %s over the live database", target.id,
              BACKUP_ID=target.id, DB_DRIVER=driver)
        if with_config:
            result["config"] = restore_config(target, deployment.compose_dir)
        result.update(engine.restore(docker, deployment.database, target.path / artifact["path"],
                                     artifact["compression"], expected))

    phases = backup_action.Phases()
    started = phases.clock()
    to_stop = [c for c in deployment.trackers if c.running]
    catalog.ensure_directory(config.backup.directory)
    with run_lock(config.backup.directory), signals_raise():
        try:
            safety_id = backup_action.write_set(
                config, docker, deployment, to_stop, phases, started, catalog.utc_now(), echo,
                inside_window=put_back, reason=f"safety backup before restoring {target.id}")
        except BaseException as error:
            state = "the restore had begun" if result else "nothing was restored"
            event("restore_failed", "restore of %s failed (%s): %s", target.id, state, error,
                  level=logging.ERROR, BACKUP_ID=target.id, ERROR=str(error))
            raise
        # Trackers that were not running before (a broken database?) are started too.
        wait_until_ready(docker, deployment.tracker_ids, config.deployment.start_timeout,
                         WindowReport())
    counts = ", ".join(f"{t}={n}" for t, n in result.get("tables", {}).items())
    event("restore_completed", "restored set %s; safety set %s", target.id, safety_id,
          BACKUP_ID=target.id, SAFETY_BACKUP_ID=safety_id, DB_DRIVER=driver)
    echo(f"restored set {target.id} (rows checked: {counts}); the state before it is in set "
         f"{safety_id}; tracker running")
    if result.get("config"):
        echo(f"restored config files: {', '.join(result['config'])}")
    return 0
