"""``torrust-maint restore --from-offsite latest|ID [--with-config] --yes``: rebuild a lost host.

On a host where the package is installed and configured for the same repository (and
``[offsite] host`` names the lost host), it:

1. fetches the set from restic into the backup directory and checks every file against its
   manifest (a set that is here already is used as it is);
2. with ``--with-config``, puts the set's config files (``.env``, the compose file, the
   tracker's config) into compose_dir where they are absent. A different file there is
   refused unless ``--yes``; with it, the restore swaps it and keeps the old one in the
   safety set;
3. brings the stack up from its compose file when none of its containers exists yet;
4. restores as ``restore`` does: the set prepared while the tracker serves, a safety set of
   the database there first, the tracker stopped only for the swap.
"""

from __future__ import annotations

import logging
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from torrust_maint import catalog, offsite, safefs
from torrust_maint.actions import offsite as offsite_action
from torrust_maint.actions import restore as restore_action
from torrust_maint.compress import open_decompressed
from torrust_maint.config import Config
from torrust_maint.deployment import discover
from torrust_maint.docker import Docker
from torrust_maint.errors import ConfigError, MaintError
from torrust_maint.lock import run_lock
from torrust_maint.window import WindowReport, wait_until_ready

log = logging.getLogger(__name__)


def run(config: Config, docker: Docker, set_id: str | None, *, assume_yes: bool = False,
        with_config: bool = False, no_start: bool = False, dry_run: bool = False,
        echo: Callable[[str], None] = print, ask: Callable[[str], str] = input) -> int:
    """Fetch a set from off-site, then restore it (see the module's docstring)."""
    if set_id is None:
        raise ConfigError("restore --from-offsite needs a set ID or `latest` "
                          "(see `torrust-maint list --offsite`)")
    restic = offsite_action.restic_for(config)
    snapshot = offsite_action.choose_snapshot(restic, config, set_id)
    directory = config.backup.directory
    local = next((s for s in catalog.list_sets(directory)
                  if s.id == snapshot.set_id and s.complete), None)
    if dry_run:
        source = "here already" if local else f"fetched from {restic.shown}"
        echo(f"would restore set {snapshot.set_id} of host {snapshot.host} (snapshot "
             f"{snapshot.short_id}, {source})" + (" with its config files" if with_config
                                                  else ""))
        return 0
    if local is None:
        catalog.ensure_directory(directory)
        with run_lock(directory):
            local = offsite_action.fetch(restic, snapshot, directory)
        echo(f"fetched set {snapshot.set_id} from {restic.shown}; its checksums match")
    else:
        echo(f"set {snapshot.set_id} is here already; it is not fetched again")
    record_fetched(config, snapshot)
    if with_config:
        written = seed_config(local, config.deployment.compose_dir, assume_yes)
        if written:
            echo("config files put back (they were absent): " + ", ".join(written))
    bring_up(config, docker, echo)
    return restore_action.run(config, docker, snapshot.set_id, assume_yes=assume_yes,
                              with_config=with_config, no_start=no_start, echo=echo, ask=ask)


def record_fetched(config: Config, snapshot: offsite.Snapshot) -> None:
    """Note the set as off-site in this host's state (`list` marks it)."""
    try:
        offsite.add_to_record(config.state.directory, snapshot)
    except OSError as error:
        log.warning("the off-site record is not updated: %s", error)


def config_members(backup_set: catalog.BackupSet):
    """(relative name, mode, bytes) of each file of the set's config archive."""
    manifest = restore_action.manifest_of(backup_set)
    artifact = next((a for a in manifest["artifacts"] if a["name"] == "config"), None)
    if artifact is None:
        raise MaintError(f"set {backup_set.id} holds no config archive; --with-config "
                         "cannot put the config files back")
    with open_decompressed(backup_set.path / artifact["path"], artifact["compression"]) as raw:
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                name = restore_action._plain_member_name(member)
                if member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    yield name, member.mode & 0o777, source.read()


def seed_config(backup_set: catalog.BackupSet, compose_dir: Path, assume_yes: bool) -> list[str]:
    """Write the set's config files that are absent from compose_dir; refuse different ones
    without assume_yes (with it, the restore swaps them and keeps the old ones)."""
    compose_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    members = list(config_members(backup_set))
    different = [name for name, _, data in members
                 if _current(compose_dir, name) not in (None, data)]
    if different and not assume_yes:
        raise ConfigError(f"{compose_dir}: {', '.join(different)} differ from set "
                          f"{backup_set.id}'s; pass --yes to replace them (the current ones "
                          "are kept in the safety set)")
    written = []
    for name, mode, data in members:
        if _current(compose_dir, name) is None:
            _write_new(compose_dir, name, mode, data)
            written.append(name)
    return written


def _current(compose_dir: Path, name: str) -> bytes | None:
    """The bytes of compose_dir/name, None when absent (never read through a symlink)."""
    directory, filename = os.path.split(name)
    try:
        dir_fd = safefs.open_dir_beneath(compose_dir, directory)
    except FileNotFoundError:
        return None
    try:
        fd = safefs.open_nofollow(filename, os.O_RDONLY, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    finally:
        os.close(dir_fd)
    with open(fd, "rb") as handle:
        return handle.read()


def _write_new(compose_dir: Path, name: str, mode: int, data: bytes) -> None:
    directory, filename = os.path.split(name)
    dir_fd = safefs.open_dir_beneath(compose_dir, directory, create=True)
    try:
        with open(safefs.create_exclusive(filename, mode, dir_fd=dir_fd), "wb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def bring_up(config: Config, docker: Docker, echo: Callable[[str], None]) -> None:
    """Start the stack from its compose file when none of its containers exists (a fresh
    host): the restore then runs over the database it creates."""
    compose_dir = config.deployment.compose_dir
    if docker.compose_containers(str(compose_dir)):
        return
    if not (compose_dir / "docker-compose.yml").is_file() and not (
            compose_dir / "compose.yaml").is_file():
        raise ConfigError(f"[deployment] compose_dir: {compose_dir} has no compose file and "
                          "no containers; pass --with-config to put the set's back")
    echo(f"no container of {compose_dir} exists: bringing the stack up "
         "(docker compose up --detach)")
    docker.compose_up(str(compose_dir), timeout=config.deployment.start_timeout + 300)
    timeout = config.deployment.start_timeout
    wait_until_ready(docker, docker.compose_containers(str(compose_dir)), timeout,
                     WindowReport())
    deadline = time.monotonic() + timeout
    while True:  # the tracker creates its database as it starts
        try:
            discover(config.deployment, docker)
            return
        except MaintError as error:
            if time.monotonic() > deadline:
                raise MaintError(f"the stack brought up in {compose_dir} is not ready "
                                 f"{timeout} s later ([deployment] start_timeout): "
                                 f"{error}") from None
        time.sleep(0.5)
