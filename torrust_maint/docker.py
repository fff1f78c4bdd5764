"""The one place that runs the docker CLI: argv lists in, parsed JSON out."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from typing import Protocol

from torrust_maint.errors import DockerError, DockerUnavailable

log = logging.getLogger(__name__)

LABEL_SERVICE = "com.docker.compose.service"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_PROJECT = "com.docker.compose.project"

# What the CLI says when the daemon is down, restarting or too busy to answer.
DAEMON_UNAVAILABLE = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "connection refused",
    "context deadline exceeded",
    "i/o timeout",
    "server is shutting down",
    "no answer within",
)


def failure(what: str, message: str) -> DockerError:
    """A failed docker call; DockerUnavailable when the daemon itself did not answer."""
    unavailable = any(sign in message.lower() for sign in DAEMON_UNAVAILABLE)
    return (DockerUnavailable if unavailable else DockerError)(f"{what} failed: {message}")


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    returncode: int
    stdout: bytes
    stderr: bytes


class Runner(Protocol):
    """Runs one argv list; the seam where unit tests put a fake."""

    def __call__(self, argv: list[str], timeout: float | None = None) -> CommandResult: ...


def subprocess_runner(argv: list[str], timeout: float | None = None) -> CommandResult:
    """Run argv without a shell and capture its output."""
    return _run_with(argv, timeout, None, None)


@dataclass(frozen=True)
class Mount:
    """A container mount: host path (Source) seen at Destination inside the container."""

    source: str
    destination: str
    read_write: bool = True


@dataclass(frozen=True)
class Container:
    """What we need to know of one container, from ``docker inspect``."""

    id: str
    name: str
    service: str
    project: str
    working_dir: str
    running: bool
    status: str
    health: str | None
    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)  # secrets: DSN, MYSQL_PASSWORD
    image: str = ""
    networks: dict[str, str] = field(default_factory=dict)  # network name -> IP address
    finished_at: str = ""  # State.FinishedAt: when it last stopped (RFC 3339, nanoseconds)
    started_at: str = ""  # State.StartedAt: when it last started

    @property
    def ready(self) -> bool:
        """Running, and healthy when the container has a healthcheck."""
        return self.running and self.health in (None, "healthy")

    @classmethod
    def from_inspect(cls, data: dict) -> Container:
        state = data.get("State") or {}
        labels = (data.get("Config") or {}).get("Labels") or {}
        health = state.get("Health")
        env = {}
        for item in (data.get("Config") or {}).get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        return cls(
            id=data["Id"],
            name=data.get("Name", "").lstrip("/"),
            service=labels.get(LABEL_SERVICE, ""),
            project=labels.get(LABEL_PROJECT, ""),
            working_dir=labels.get(LABEL_WORKING_DIR, ""),
            running=bool(state.get("Running")),
            status=state.get("Status", "unknown"),
            health=health.get("Status") if health else None,
            mounts=tuple(
                Mount(m.get("Source", ""), m.get("Destination", ""), bool(m.get("RW", True)))
                for m in data.get("Mounts") or []
            ),
            env=env,
            image=(data.get("Config") or {}).get("Image", ""),
            networks={name: net.get("IPAddress", "")
                      for name, net in ((data.get("NetworkSettings") or {}).get("Networks")
                                        or {}).items() if net and net.get("IPAddress")},
            finished_at=str(state.get("FinishedAt") or ""),
            started_at=str(state.get("StartedAt") or ""),
        )


class Docker:
    """Docker CLI calls. With dry_run, calls that change anything are printed, not run."""

    def __init__(self, runner: Runner = subprocess_runner, binary: str = "docker",
                 dry_run: bool = False, echo=print):
        self.runner = runner
        self.binary = binary
        self.dry_run = dry_run
        self.echo = echo

    def _run(self, args: list[str], timeout: float | None = 120,
             stdin: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
        argv = [self.binary, *args]
        log.debug("running: %s", " ".join(argv))
        if stdin is None and env is None:
            result = self.runner(argv, timeout=timeout)
        else:  # only the real runner takes input and environment
            result = _run_with(argv, timeout, stdin, env)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
            raise failure(f"docker {args[0]}", message)
        return result.stdout

    def _change(self, args: list[str], timeout: float | None = 120) -> None:
        if self.dry_run:
            self.echo(f"would run: {self.binary} {' '.join(args)}")
            return
        self._run(args, timeout=timeout)

    def inspect(self, ids: list[str]) -> list[Container]:
        """Inspect containers by id or name."""
        if not ids:
            return []
        return _parse_inspect(self._run(["container", "inspect", *ids]))

    def inspect_existing(self, ids: list[str]) -> list[Container]:
        """Inspect containers by id or name, leaving out those that no longer exist (a
        recreate or `docker compose down` removed them)."""
        if not ids:
            return []
        result = self.runner([self.binary, "container", "inspect", *ids], timeout=120)
        if result.returncode != 0 and b"No such" not in result.stderr:
            message = result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
            raise failure("docker container inspect", message)
        return _parse_inspect(result.stdout or b"[]")

    def compose_containers(self, compose_dir: str) -> list[Container]:
        """All containers (running or not) of the compose project in compose_dir."""
        out = self._run(["ps", "--all", "--no-trunc", "--quiet",
                         "--filter", f"label={LABEL_SERVICE}"])
        ids = out.decode().split()
        wanted = _real(compose_dir)
        # a container removed between `ps` and `inspect` (another project's `down`) is no error
        return [c for c in self.inspect_existing(ids)
                if c.working_dir and _real(c.working_dir) == wanted]

    def labelled_containers(self, labels: dict[str, str]) -> list[str]:
        """Names of the containers (running or not) that carry every one of these labels."""
        filters = [arg for key, value in labels.items()
                   for arg in ("--filter", f"label={key}={value}")]
        out = self._run(["ps", "--all", "--format", "{{.Names}}", *filters])
        return out.decode().split()

    def compose_up(self, compose_dir: str, timeout: float = 600) -> None:
        """`docker compose up --detach` of the project in compose_dir (its own .env and
        compose file); Compose v1's `docker-compose` where the v2 plugin is missing."""
        project = ["--project-directory", compose_dir]
        if self.runner([self.binary, "compose", "version"], timeout=60).returncode == 0:
            self._change(["compose", *project, "up", "--detach"], timeout=timeout)
            return
        if self.dry_run:
            self.echo(f"would run: docker-compose {' '.join(project)} up --detach")
            return
        result = self.runner(["docker-compose", *project, "up", "--detach"], timeout=timeout)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip()
            raise failure("docker-compose up", message or f"exit {result.returncode}")

    def stop(self, ids: list[str], timeout: int) -> None:
        """Stop containers, giving each `timeout` seconds between SIGTERM and SIGKILL."""
        self._change(["stop", "-t", str(timeout), *ids], timeout=timeout + 60)

    def start(self, ids: list[str]) -> None:
        """Start (stopped) containers."""
        self._change(["start", *ids], timeout=120)

    def exec_output(self, container_id: str, argv: list[str], timeout: float | None = 60,
                    env: dict[str, str] | None = None) -> bytes:
        """Run a read-only command in a running container and return its output. `env`
        reaches it from our environment (``--env NAME``), never from the command line."""
        if env is None:
            return self._run(["exec", container_id, *argv], timeout=timeout)
        return self._run(["exec", *inherited(env), container_id, *argv], timeout=timeout,
                         env={**os.environ, **env})

    def copy_file_into(self, container_id: str, directory: str, name: str, data: bytes) -> None:
        """Put one file (mode 0600) into a container through a tar on stdin: no argv secrets."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
        self._run(["cp", "-", f"{container_id}:{directory}"], stdin=buffer.getvalue())

    def run_detached(self, argv: list[str], secret_env: dict[str, str]) -> str:
        """`docker run --detach`; secret_env values reach the container from our environment
        (``--env NAME`` without a value), never from the command line."""
        out = self._run(["run", "--detach", *inherited(secret_env), *argv], timeout=300,
                        env={**os.environ, **secret_env})
        return out.decode().strip()

    def remove(self, container: str) -> None:
        """Remove a container and its anonymous volumes, whatever its state."""
        self._run(["rm", "--force", "--volumes", container])

    def exec_stream(self, container_id: str, argv: list[str],
                    env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a command in a container with stdin, stdout and stderr as pipes.

        Secrets go through stdin or `env` (inherited by name), never argv: argv is visible in
        `ps` on the host.
        """
        names = inherited(env or {})
        command = [self.binary, "exec", "--interactive", *names, container_id, *argv]
        log.debug("starting: %s", " ".join(command))
        try:
            return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE,
                                    env={**os.environ, **env} if env else None)
        except FileNotFoundError:
            raise DockerError(f"{self.binary}: command not found") from None


def inherited(env: dict[str, str]) -> list[str]:
    """``--env NAME`` for each variable: docker takes its value from the CLI's environment,
    so no value is ever on a command line."""
    return [arg for name in env for arg in ("--env", name)]


def _run_with(argv: list[str], timeout: float | None, stdin: bytes | None,
              env: dict[str, str] | None) -> CommandResult:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False,
                              input=stdin, env=env)
    except FileNotFoundError:
        raise DockerError(f"{argv[0]}: command not found (is the Docker CLI installed?)") from None
    except subprocess.TimeoutExpired:
        raise DockerUnavailable(f"{' '.join(argv[:3])} ...: no answer within {timeout:.0f} s"
                                ) from None
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _parse_inspect(out: bytes) -> list[Container]:
    """`docker container inspect` output as Containers."""
    try:
        return [Container.from_inspect(item) for item in json.loads(out)]
    except (ValueError, KeyError, TypeError) as error:
        raise DockerError(f"docker container inspect: unexpected output: {error}") from None


def _real(path: str) -> str:
    return os.path.realpath(path.rstrip("/") or "/")
