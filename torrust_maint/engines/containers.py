"""What the server engines (MySQL, PostgreSQL) do alike with the database's containers: end a
client tool started through docker exec, measure free space, remove a throwaway server."""

from __future__ import annotations

import logging
import subprocess

from torrust_maint.docker import Docker
from torrust_maint.errors import DockerError

log = logging.getLogger(__name__)


def release(process: subprocess.Popen | None) -> None:
    """Kill a client tool if it still runs and close its pipes, whatever state they are in."""
    if process is None:
        return
    if process.poll() is None:
        process.kill()
        process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe and not pipe.closed:
            try:
                pipe.close()
            except OSError:
                pass  # unsent input: the process is gone


def free_bytes(docker: Docker, container, directory: str) -> int | None:
    """Free bytes of `directory`'s filesystem inside the container; None when `df` cannot
    tell."""
    try:
        out = docker.exec_output(container.id, ["df", "-P", "-k", directory])
        return int(out.decode().splitlines()[-1].split()[3]) * 1024
    except (DockerError, ValueError, IndexError) as error:
        log.warning("cannot tell the free space of %s in %s: %s", directory, container.name,
                    error)
        return None


def remove_throwaway(docker: Docker, name: str) -> None:
    """Remove a throwaway container; a failure is logged (the next run removes leftovers)."""
    try:
        docker.remove(name)
    except DockerError as error:
        log.warning("could not remove throwaway container %s: %s", name, error)
