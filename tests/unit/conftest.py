"""Shared fixtures for the unit tests: a fake docker CLI and a tracker deployment on disk."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from torrust_maint.config import DeploymentConfig
from torrust_maint.docker import (
    LABEL_PROJECT,
    LABEL_SERVICE,
    LABEL_WORKING_DIR,
    CommandResult,
    Docker,
)

CONTAINER_LIB = "/var/lib/torrust/tracker"
CONTAINER_ETC = "/etc/torrust/tracker"
CONTAINER_DB_PATH = f"{CONTAINER_LIB}/database/sqlite3.db"
ENV_TOML_PATH = "TORRUST_TRACKER_CONFIG_TOML_PATH"


class FakeDockerCli:
    """Stands in for the docker binary: records every argv and answers from `containers`.

    Understands ``ps``, ``container inspect``, ``stop`` and ``start``; stop and start flip the
    containers' State. ``fail(verb)`` makes the next call(s) of a verb exit 1. ``exec`` answers
    from ``on_exec``; a command not registered there is "not found in $PATH" (exit 127).
    """

    def __init__(self) -> None:
        self.containers: dict[str, dict] = {}
        self.calls: list[list[str]] = []
        self.timeouts: list[float | None] = []
        self.failures: dict[str, list[tuple[str, bool]]] = {}
        self.broken: set[str] = set()  # `start` "succeeds" but these never run
        self.deaf: set[str] = set()  # `stop` "succeeds" but these keep running
        self._healthy_after: dict[str, int] = {}
        self._countdown: dict[str, int] = {}
        self.exec_results: dict[tuple[str, ...], CommandResult] = {}
        self.recreated = 0

    # -- set-up ------------------------------------------------------------------------
    def add(self, name: str, *, working_dir: str, service: str | None = "tracker",
            project: str = "compose", running: bool = True, env: dict | None = None,
            mounts: list[tuple[str, str]] = (), healthcheck: bool = False,
            healthy_after: int = 0, networks: dict[str, str] | None = None,
            image: str = "torrust/tracker:develop") -> str:
        container_id = f"{len(self.containers) + 1:064x}"
        labels = {}
        if service is not None:
            labels = {LABEL_SERVICE: service, LABEL_PROJECT: project,
                      LABEL_WORKING_DIR: working_dir}
        state = {"Running": running, "Status": "running" if running else "exited"}
        if healthcheck:
            state["Health"] = {"Status": "healthy" if running else "unhealthy"}
            self._healthy_after[container_id] = healthy_after
        self.containers[container_id] = {
            "Id": container_id,
            "Name": "/" + name,
            "State": state,
            "Config": {
                "Labels": labels,
                "Env": [f"{k}={v}" for k, v in (env or {}).items()] + ["PATH=/usr/bin"],
                "Image": image,
            },
            "Mounts": [{"Type": "bind", "Source": source, "Destination": destination,
                        "RW": True} for source, destination in mounts],
            "NetworkSettings": {"Networks": {
                name: {"IPAddress": address, "NetworkID": f"{name}-id"}
                for name, address in (networks or {}).items()}},
        }
        return container_id

    def on_exec(self, container_id: str, argv: list[str], stdout: bytes = b"",
                returncode: int = 0, stderr: bytes = b"") -> None:
        """What ``docker exec <container_id> *argv`` answers."""
        self.exec_results[(container_id, *argv)] = CommandResult(returncode, stdout, stderr)

    def fail(self, verb: str, *, times: int = 1, stderr: str = "boom",
             apply: bool = False) -> None:
        """The next `times` calls of verb exit 1; with apply, their effect happens anyway."""
        self.failures.setdefault(verb, []).extend([(stderr, apply)] * times)

    def recreate(self, cid: str, *, running: bool = True) -> str:
        """What `docker compose up --force-recreate` does: the same service, a new id."""
        old = self.containers.pop(cid)
        self.recreated += 1
        new_id = f"{len(self.containers) + 1000 + self.recreated:064x}"
        self.containers[new_id] = json.loads(json.dumps(old))
        self.containers[new_id]["Id"] = new_id
        self.set_running(new_id, running)
        return new_id

    @staticmethod
    def now() -> str:
        """Docker's timestamps: RFC 3339 with nanoseconds."""
        import datetime as dt

        return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"

    # -- inspection helpers for the tests ------------------------------------------------
    def running(self, container_id: str) -> bool:
        return self.containers[container_id]["State"]["Running"]

    def calls_to(self, verb: str) -> list[list[str]]:
        return [argv for argv in self.calls if self._verb(argv[1:]) == verb]

    # -- the runner --------------------------------------------------------------------
    def __call__(self, argv: list[str], timeout: float | None = None) -> CommandResult:
        self.calls.append(list(argv))
        self.timeouts.append(timeout)
        assert argv[0] == "docker", argv
        args = argv[1:]
        verb = self._verb(args)
        pending = self.failures.get(verb)
        if pending:
            stderr, apply = pending.pop(0)
            if apply:
                self._do(verb, args)
            return CommandResult(1, b"", f"Error response from daemon: {stderr}\n".encode())
        return self._do(verb, args)

    @staticmethod
    def _verb(args: list[str]) -> str:
        return "inspect" if args[:2] == ["container", "inspect"] else args[0]

    def _do(self, verb: str, args: list[str]) -> CommandResult:
        if verb == "ps" and "--format" in args:  # by labels: names of the matching ones
            assert args[:4] == ["ps", "--all", "--format", "{{.Names}}"], args
            wanted = dict(arg.removeprefix("label=").split("=", 1) for arg in args[5::2])
            names = [c["Name"].lstrip("/") for c in self.containers.values()
                     if all(c["Config"]["Labels"].get(k) == v for k, v in wanted.items())]
            return CommandResult(0, "".join(n + "\n" for n in names).encode(), b"")
        if verb == "ps":
            assert args == ["ps", "--all", "--no-trunc", "--quiet", "--filter",
                            f"label={LABEL_SERVICE}"], args
            ids = [cid for cid, c in self.containers.items()
                   if LABEL_SERVICE in c["Config"]["Labels"]]
            return CommandResult(0, "".join(i + "\n" for i in ids).encode(), b"")
        if verb == "inspect":
            ids = args[2:]
            unknown = [i for i in ids if i not in self.containers]
            known = [i for i in ids if i in self.containers]
            for cid in known:
                self._tick_health(cid)
            found = json.dumps([self.containers[i] for i in known]).encode()
            if unknown:  # as docker does: the others on stdout, exit 1
                return CommandResult(1, found, f"Error: No such container: {unknown[0]}\n"
                                     .encode())
            return CommandResult(0, found, b"")
        if verb == "stop":
            assert args[1] == "-t" and args[2].isdigit(), args
            for cid in args[3:]:
                if cid not in self.deaf:
                    self.set_running(cid, False)
            return CommandResult(0, "".join(i + "\n" for i in args[3:]).encode(), b"")
        if verb == "start":
            for cid in args[1:]:
                if cid not in self.broken:
                    self.set_running(cid, True)
            return CommandResult(0, "".join(i + "\n" for i in args[1:]).encode(), b"")
        if verb == "rm":
            assert args[:3] == ["rm", "--force", "--volumes"], args
            for name in args[3:]:
                found = [cid for cid, c in self.containers.items()
                         if cid == name or c["Name"] == "/" + name]
                for cid in found:
                    del self.containers[cid]
            return CommandResult(0, b"", b"")
        if verb == "exec":
            key = tuple(args[1:])
            if key in self.exec_results:
                return self.exec_results[key]
            return CommandResult(127, b"", (
                f"OCI runtime exec failed: exec failed: unable to start container process: "
                f"exec: \"{args[2]}\": executable file not found in $PATH: unknown\n").encode())
        raise AssertionError(f"unexpected docker call: {args}")

    def set_running(self, cid: str, running: bool) -> None:
        state = self.containers[cid]["State"]
        state["Running"] = running
        state["Status"] = "running" if running else "exited"
        if not running:
            state["FinishedAt"] = self.now()
        else:
            state["StartedAt"] = self.now()
        if "Health" in state:
            state["Health"]["Status"] = "starting" if running else "unhealthy"
            self._countdown[cid] = self._healthy_after[cid]

    def _tick_health(self, cid: str) -> None:
        health = self.containers[cid]["State"].get("Health")
        if not health or health["Status"] != "starting":
            return
        if self._countdown[cid] <= 0:
            health["Status"] = "healthy"
        else:
            self._countdown[cid] -= 1


@pytest.fixture
def fake_docker() -> FakeDockerCli:
    return FakeDockerCli()


@pytest.fixture
def docker(fake_docker: FakeDockerCli) -> Docker:
    return Docker(runner=fake_docker)


def make_sqlite(path: Path, rows: int = 3) -> None:
    """A small tracker-like database: a `torrents` table with `rows` rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash TEXT)")
        connection.executemany("INSERT INTO torrents (info_hash) VALUES (?)",
                               [(f"{n:040x}",) for n in range(rows)])
    connection.close()


TRACKER_TOML = """\
[core.database]
driver = "{driver}"
path = "{path}"
"""


@dataclass
class Stack:
    """A deployer-shaped compose directory with a SQLite tracker database on disk."""

    compose_dir: Path
    fake: FakeDockerCli

    @property
    def lib(self) -> Path:
        return self.compose_dir / "storage/tracker/lib"

    @property
    def etc(self) -> Path:
        return self.compose_dir / "storage/tracker/etc"

    @property
    def db_path(self) -> Path:
        return self.lib / "database/sqlite3.db"

    @property
    def docker(self) -> Docker:
        return Docker(runner=self.fake)

    def settings(self, **overrides) -> DeploymentConfig:
        return DeploymentConfig(compose_dir=self.compose_dir, **overrides)

    def write_toml(self, driver: str = "sqlite3", path: str = CONTAINER_DB_PATH,
                   name: str = "tracker.toml") -> Path:
        target = self.etc / name
        target.write_text(TRACKER_TOML.format(driver=driver, path=path))
        return target

    def write_env(self, text: str) -> None:
        (self.compose_dir / ".env").write_text(text)

    def add_tracker(self, name: str = "compose-tracker-1", env: dict | None = None,
                    mounts: list[tuple[str, str]] | None = None, **options) -> str:
        if env is None:
            env = {ENV_TOML_PATH: f"{CONTAINER_ETC}/tracker.toml"}
        if mounts is None:
            mounts = [(str(self.lib), CONTAINER_LIB), (str(self.etc), CONTAINER_ETC)]
        return self.fake.add(name, working_dir=str(self.compose_dir), env=env, mounts=mounts,
                             **options)


@pytest.fixture
def stack(tmp_path: Path, fake_docker: FakeDockerCli) -> Stack:
    compose_dir = tmp_path / "compose"
    (compose_dir / "storage/tracker/etc").mkdir(parents=True)
    (compose_dir / "docker-compose.yml").write_text("services: {}\n")
    result = Stack(compose_dir, fake_docker)
    make_sqlite(result.db_path)
    result.write_toml()
    return result


@pytest.fixture(autouse=True)
def _restore_logging():
    """cli.main() replaces the root logger's handlers; put them back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _run_state_in_tmp(tmp_path, monkeypatch):
    """A run's state goes where systemd's StateDirectory= would put it: here, a test's own."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state-directory"))


@pytest.fixture
def fake_cli_docker(monkeypatch, fake_docker):
    """cli.dispatch builds Docker(dry_run=...); give it the fake runner."""
    from torrust_maint import cli

    monkeypatch.setattr(cli, "Docker",
                        lambda dry_run=False: Docker(runner=fake_docker, dry_run=dry_run))
    return fake_docker


@pytest.fixture(autouse=True)
def _cpu_priority_restored():
    """A backup run in-process lowers the calling thread's priority (nice 10 for the export):
    put it back, so that no test runs slower or sees another's priority."""
    import os

    before = os.getpriority(os.PRIO_PROCESS, 0)
    yield
    if os.getpriority(os.PRIO_PROCESS, 0) != before:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, before)
        except PermissionError:
            pass
