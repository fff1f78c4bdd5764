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

from torrust_maint import catalog, safefs
from torrust_maint.actions import backup as backup_action
from torrust_maint.actions.verify import artifact_problems
from torrust_maint.compress import copy_stream, open_decompressed
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


def manifest_of(backup_set: catalog.BackupSet) -> dict:
    """The manifest of a set chosen as complete (choose() returns only those)."""
    if backup_set.manifest is None:
        raise MaintError(f"{backup_set.path}: not a complete set ({backup_set.problem})")
    return backup_set.manifest


def confirm(backup_set: catalog.BackupSet, deployment: Deployment,
            ask: Callable[[str], str]) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError("restore asks for confirmation on a terminal; pass --yes to skip it")
    answer = ask(f"Restore set {backup_set.id} ({manifest_of(backup_set)['created_at']}) over the "
                 f"live database of {deployment.compose_dir}? The current state is backed up "
                 "first. [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def restore_config(backup_set: catalog.BackupSet, compose_dir: Path) -> list[str]:
    """Extract the set's config archive into compose_dir; only plain relative paths.

    The tracker can write parts of compose_dir (storage/tracker/etc): directories are walked
    without following symlinks, files written and renamed relative to their directory's fd.
    """
    artifact = next(a for a in manifest_of(backup_set)["artifacts"] if a["name"] == "config")
    restored = []
    with open_decompressed(backup_set.path / artifact["path"], artifact["compression"]) as raw:
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                name = _plain_member_name(member)
                if member.isdir():
                    os.close(safefs.open_dir_beneath(compose_dir, name, create=True))
                    continue
                source = tar.extractfile(member)
                assert source is not None
                _put_config_file(compose_dir, name, source, member.mode & 0o777)
                restored.append(name)
    return restored


def _plain_member_name(member: tarfile.TarInfo) -> str:
    """The member's normalised relative path; MaintError for anything but a plain file or
    directory beneath the compose dir."""
    name = os.path.normpath(member.name)
    if name.startswith(("/", "..")) or not (member.isfile() or member.isdir()):
        raise MaintError(f"config archive member {member.name!r} is not a plain "
                         "relative file or directory; refusing")
    return name


def _put_config_file(compose_dir: Path, name: str, source, mode: int) -> None:
    """Write compose_dir/name under a new temporary name and rename it into place, both
    relative to the fd of its directory (walked without symlinks, made where missing)."""
    directory, filename = os.path.split(name)
    temporary = filename + ".torrust-maint-restore"
    dir_fd = safefs.open_dir_beneath(compose_dir, directory, create=True)
    try:
        shown = compose_dir / directory / temporary
        if safefs.check_regular(temporary, dir_fd=dir_fd, shown=shown) is not None:
            os.unlink(temporary, dir_fd=dir_fd)  # left by a killed restore
        with open(safefs.create_exclusive(temporary, mode, dir_fd=dir_fd), "wb") as sink:
            copy_stream(source, sink)
        try:
            os.replace(temporary, filename, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            os.unlink(temporary, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def run(config: Config, docker: Docker, set_id: str, *, assume_yes: bool = False,
        with_config: bool = False, echo: Callable[[str], None] = print,
        ask: Callable[[str], str] = input) -> int:
    target = choose(config, set_id)
    problems = artifact_problems(target)
    if problems:
        raise MaintError("refusing to restore a damaged set: " + "; ".join(problems))
    deployment = discover(config.deployment, docker)
    driver = manifest_of(target)["database"]["driver"]
    if driver != deployment.driver:
        raise ConfigError(f"set {target.id} holds a {driver} database, the deployment uses "
                          f"{deployment.driver}")
    if not assume_yes and not confirm(target, deployment, ask):
        raise MaintError("restore cancelled; nothing was changed")

    engine = ENGINES[driver]
    artifact = next(a for a in manifest_of(target)["artifacts"] if a["name"] == "database")
    expected = manifest_of(target)["database"]
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
        wait_until_ready(docker, list(deployment.trackers), config.deployment.start_timeout,
                         WindowReport())
    counts = ", ".join(f"{t}={n}" for t, n in result.get("tables", {}).items())
    event("restore_completed", "restored set %s; safety set %s", target.id, safety_id,
          BACKUP_ID=target.id, SAFETY_BACKUP_ID=safety_id, DB_DRIVER=driver)
    echo(f"restored set {target.id} (rows checked: {counts}); the state before it is in set "
         f"{safety_id}; tracker running")
    if result.get("config"):
        echo(f"restored config files: {', '.join(result['config'])}")
    return 0
