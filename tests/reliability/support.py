"""Helpers of the reliability suite: a backup run with the fault hook armed, a watch on the
tracker container, leak checks, fingerprints of sets, percentiles.

The fault hook (torrust_maint/notify.py, ``_fault_pause``) pauses a run at the phase whose
status text contains TORRUST_MAINT_FAULT_PAUSE, writes that text to TORRUST_MAINT_FAULT_LOG
and waits until TORRUST_MAINT_FAULT_RELEASE exists (at most TORRUST_MAINT_FAULT_SECONDS).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
MARKER = ".torrust-maint-window.json"
LOCK = ".torrust-maint.lock"
SET_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
TEMP_PREFIXES = (".tmp-torrust-maint-", ".torrust-maint-verify-")
THROWAWAY_LABEL = "org.torrust-maint.throwaway"

# The status texts torrust_maint announces at each phase (notify.status).
PHASES = {
    "stop": "maintenance window: stopping tracker",
    "snapshot": "maintenance window: snapshot",
    "restart": "maintenance window: starting tracker",
    "export": "exporting the database",
    "verify": "verifying ",
    "prune": "pruning",
}
# Before the window, after discovery and the preflight checks.
AFTER_DISCOVERY = "archiving config files"


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1,
               what: str = "condition") -> object:
    """Poll `predicate` until it is truthy; its value, or AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def parse_docker_time(text: str) -> float:
    """Docker's RFC 3339 time with nanoseconds, as a Unix time (0.0 for "never")."""
    head, _, rest = text.rstrip("Z").partition(".")
    digits = (rest + "000000")[:6]
    moment = dt.datetime.fromisoformat(f"{head}.{digits}").replace(tzinfo=dt.UTC)
    return 0.0 if moment.year < 2000 else moment.timestamp()


def container_state(name: str) -> dict | None:
    done = docker("container", "inspect", name, check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout)[0]["State"]


def container_id(name: str) -> str:
    return docker("container", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def tracker_ready(name: str) -> bool:
    state = container_state(name) or {}
    return bool(state.get("Running")) and state.get("Health", {}).get("Status") == "healthy"


# -- processes ----------------------------------------------------------------------------

def _cmdlines() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            found[int(entry)] = raw.decode(errors="replace").rstrip("\0").split("\0")
    return found


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def guardians(config: Path) -> list[int]:
    """Live `torrust_maint ... recover --guardian` processes started for this config."""
    return [pid for pid, argv in _cmdlines().items()
            if "torrust_maint" in argv and "--guardian" in argv and str(config) in argv
            and _alive(pid)]


def processes_with(*needles: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains every needle."""
    return [(pid, " ".join(argv)) for pid, argv in _cmdlines().items()
            if all(any(n in a for a in argv) for n in needles) and _alive(pid)]


def children_of(pid: int) -> list[tuple[int, str]]:
    """Processes (zombies too) whose parent is pid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append((int(entry), f"[{fields[0]}] {cmd.strip()}"))
    return found


def open_fds() -> dict[int, str]:
    """This process's file descriptors and what they point to (without listdir's own)."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # listdir's own descriptor, closed by now
            continue
        if not target.startswith("/proc/"):
            found[int(name)] = target
    return found


def wait_for_writes(tracker, at_least: int, timeout: float = 30) -> None:
    """tracker.wait_for_writes, but every SQLite connection closed at once.

    Python 3.11's sqlite3.Connection sits in a reference cycle with its statement cache and
    `with connect()` does not close it: until the garbage collector runs, this process keeps
    a connection to the live database. SQLite shares one shm mapping and its locks per file
    among a process's connections, so an in-process backup's WAL snapshot would then depend on
    that stale connection's locks. The real command line has no such connection."""
    if tracker.driver != "sqlite3":
        tracker.wait_for_writes(at_least, timeout)
        return
    import contextlib
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{tracker.db_host_path}?mode=ro",
                                                    uri=True, timeout=5)) as connection:
                row = connection.execute(
                    "SELECT value FROM torrent_aggregate_metrics WHERE metric_name = ?",
                    ("torrents_downloads_total",)).fetchone()
            if row and row[0] >= at_least:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the stand-in did not reach {at_least} transactions")


# -- a backup run with the fault hook armed -----------------------------------------------

class FaultRun:
    """`python3 -m torrust_maint --config C backup` (as run_cli does), paused at a phase.

    stdout and stderr are read by threads: the guardian inherits stderr and may write to it
    after our process is gone.
    """

    def __init__(self, config: Path, workdir: Path, pause: str | None, *,
                 seconds: float = 120, released: bool = False, args: tuple[str, ...] = ("backup",),
                 extra_env: dict[str, str] | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.fault_log = workdir / "fault.log"
        self.release_file = workdir / "fault.release"
        self.fault_log.unlink(missing_ok=True)
        self.release_file.unlink(missing_ok=True)
        if released:
            self.release_file.touch()
        env = {**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})}
        for name in ("NOTIFY_SOCKET", "JOURNAL_STREAM"):
            env.pop(name, None)
        if pause:
            env.update({"TORRUST_MAINT_FAULT_PAUSE": pause,
                        "TORRUST_MAINT_FAULT_LOG": str(self.fault_log),
                        "TORRUST_MAINT_FAULT_RELEASE": str(self.release_file),
                        "TORRUST_MAINT_FAULT_SECONDS": str(seconds)})
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [PYTHON, "-m", "torrust_maint", "--config", str(config), *args], cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            text=True, errors="replace")
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._drain, args=(pipe, sink), daemon=True)
                         for pipe, sink in ((self.process.stdout, self.out),
                                            (self.process.stderr, self.err))]
        for reader in self._readers:
            reader.start()
        self.signal_time: float | None = None  # time.time() of the signal

    @staticmethod
    def _drain(pipe, sink: list[str]) -> None:
        for line in pipe:
            sink.append(line)
        pipe.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def output(self) -> str:
        return f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"

    def wait_for_pause(self, timeout: float = 120) -> str:
        """Wait until the run reached the paused phase; the status text it wrote."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.fault_log.exists():
                text = self.fault_log.read_text()
                if text.endswith("\n"):
                    return text.splitlines()[0]
            if self.process.poll() is not None:
                time.sleep(0.3)  # let the readers catch the last lines
                raise AssertionError(f"the run exited ({self.process.returncode}) before the "
                                     f"paused phase\n{self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"the run did not reach the paused phase in {timeout} s\n"
                             f"{self.output()}")

    def send(self, signum: int) -> float:
        self.signal_time = time.time()
        os.kill(self.process.pid, signum)
        return self.signal_time

    def release(self) -> None:
        self.release_file.touch()

    def wait(self, timeout: float = 300) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the run did not end within {timeout} s\n{self.output()}") from None
        self._readers[0].join(10)  # stdout is ours alone; stderr may stay with a guardian
        time.sleep(0.1)
        return code

    def finish_reading(self, timeout: float = 30) -> None:
        """Wait until nobody (a guardian) holds our stderr any more."""
        self._readers[1].join(timeout)

    def error_lines(self) -> list[str]:
        return [line.rstrip("\n") for line in self.err
                if line.startswith("torrust-maint: error:")
                or line.startswith("torrust-maint: internal error")]

    def kill_if_running(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- watching the tracker -----------------------------------------------------------------

class TrackerWatch:
    """Samples `docker inspect` of a container every `interval` s in a thread: when it was
    running, and when it was healthy."""

    def __init__(self, name: str, interval: float = 0.1):
        self.name = name
        self.interval = interval
        self.samples: list[tuple[float, bool, str]] = []  # (time.time(), running, health)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TrackerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            done = subprocess.run(
                ["docker", "container", "inspect", "--format",
                 "{{.State.Running}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                 self.name], capture_output=True, text=True)
            now = time.time()
            if done.returncode == 0:
                running, _, health = done.stdout.strip().partition(" ")
                self.samples.append((now, running == "true", health))
            else:  # no such container (between a recreate's remove and create)
                self.samples.append((now, False, ""))
            self._stop.wait(self.interval)

    def back_after(self, moment: float) -> float | None:
        """Seconds from `moment` until the tracker ran again after its last stop since then:
        0.0 if it never stopped after `moment`, None if it is not running at the end.

        docker's StartedAt refines the sampled time (the samples miss stops shorter than
        their interval)."""
        after = [s for s in self.samples if s[0] >= moment]
        if not after or not after[-1][1]:
            return None
        state = container_state(self.name) or {}
        started = parse_docker_time(state.get("StartedAt", "0001-01-01T00:00:00Z"))
        if started > moment:  # its last start: exact
            return round(started - moment, 3)
        last_down = max((i for i, s in enumerate(after) if not s[1]), default=None)
        return 0.0 if last_down is None else round(after[last_down + 1][0] - moment, 3)

    def healthy_after(self, moment: float) -> float | None:
        """Seconds from `moment` until the first sample, after the last unhealthy or stopped
        one, that saw it running and healthy."""
        after = [s for s in self.samples if s[0] >= moment]
        if not after or not (after[-1][1] and after[-1][2] == "healthy"):
            return None
        last_bad = max((i for i, s in enumerate(after) if not (s[1] and s[2] == "healthy")),
                       default=None)
        return 0.0 if last_bad is None else round(after[last_bad + 1][0] - moment, 3)


# -- the backup directory -----------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_sets(directory: Path) -> dict[str, dict[str, str]]:
    """Every file of every set directory: {set id: {relative path: sha256}}."""
    found: dict[str, dict[str, str]] = {}
    if not directory.is_dir():
        return found
    for entry in sorted(directory.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and SET_NAME.match(entry.name):
            found[entry.name] = {str(p.relative_to(entry)): sha256_file(p)
                                 for p in sorted(entry.rglob("*")) if p.is_file()}
    return found


def temp_leftovers(directory: Path) -> list[str]:
    """Staging directories, verify scratch directories and *.tmp files below directory."""
    if not directory.is_dir():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.name.startswith(TEMP_PREFIXES) or p.name.endswith(".tmp"))


def lock_is_free(directory: Path) -> bool:
    path = directory / LOCK
    if not path.exists():
        return True
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def throwaway_containers(directory: Path) -> list[str]:
    out = docker("ps", "--all", "--format", "{{.Names}}", "--filter", f"label={THROWAWAY_LABEL}",
                 "--filter", f"label=org.torrust-maint.backup-directory={directory}").stdout
    return out.split()


def project_containers(project: str) -> set[str]:
    out = docker("ps", "--all", "--format", "{{.Names}}",
                 "--filter", f"label=com.docker.compose.project={project}").stdout
    return set(out.split())


def project_networks(project: str) -> set[str]:
    out = docker("network", "ls", "--format", "{{.Name}}",
                 "--filter", f"label=com.docker.compose.project={project}").stdout
    return set(out.split())


def dump_processes_in(container: str) -> list[str]:
    """mariadb-dump/mysqldump processes inside a container (docker top)."""
    done = docker("top", container, "-eo", "pid,args", check=False)
    return [line for line in done.stdout.splitlines()[1:]
            if "mariadb-dump" in line or "mysqldump" in line]


def pg_dump_processes_in(container: str) -> list[str]:
    """pg_dump processes inside a container (docker top)."""
    done = docker("top", container, "-eo", "pid,args", check=False)
    return [line for line in done.stdout.splitlines()[1:] if "pg_dump" in line]


def our_pg_connections(tracker) -> list[tuple]:
    """Connections torrust-maint opened (psycopg and the client tools name themselves)."""
    connection = tracker.postgres_connect()
    try:
        return list(connection.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE application_name = "
            "'torrust-maint' AND pid <> pg_backend_pid()").fetchall())
    finally:
        connection.close()


def db_user_connections(tracker) -> list[tuple]:
    """Connections of the deployment's database user (the tracker holds one)."""
    connection = tracker.mysql_connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, host, command, info FROM information_schema.processlist "
                           "WHERE user = 'db_user'")
            return list(cursor.fetchall())
    finally:
        connection.close()


@dataclass
class StackBaseline:
    """The containers and networks a stack has when nothing runs but the stack itself."""

    project: str
    containers: set[str]
    networks: set[str]

    @classmethod
    def of(cls, tracker) -> StackBaseline:
        return cls(tracker.project, project_containers(tracker.project),
                   project_networks(tracker.project))


@dataclass
class ProcessBaseline:
    """Threads, file descriptors and child processes of this (the test) process."""

    threads: set[int] = field(default_factory=lambda: {t.ident for t in threading.enumerate()})
    fds: dict[int, str] = field(default_factory=open_fds)
    children: set[int] = field(default_factory=lambda: {p for p, _ in children_of(os.getpid())})


def leaks(tracker, directory: Path, config: Path, stack: StackBaseline,
          process: ProcessBaseline | None = None) -> list[str]:
    """Everything a finished run may have left behind; [] when nothing."""
    found = []
    containers = project_containers(stack.project)
    if containers != stack.containers:
        found.append(f"containers of project {stack.project}: {sorted(containers)}, "
                     f"expected {sorted(stack.containers)}")
    networks = project_networks(stack.project)
    if networks != stack.networks:
        found.append(f"networks of project {stack.project}: {sorted(networks)}, "
                     f"expected {sorted(stack.networks)}")
    throwaways = throwaway_containers(directory)
    if throwaways:
        found.append(f"throwaway containers: {throwaways}")
    temporary = temp_leftovers(directory)
    if temporary:
        found.append(f"temporary files: {temporary}")
    if (directory / MARKER).exists():
        found.append(f"window marker {directory / MARKER} still there")
    if not lock_is_free(directory):
        found.append(f"lock {directory / LOCK} still held")
    running_guardians = guardians(config)
    if running_guardians:
        found.append(f"guardian processes still alive: {running_guardians}")
    if tracker.driver == "mysql":
        dumps = dump_processes_in(tracker.mysql_container_name)
        if dumps:
            found.append(f"dump processes in {tracker.mysql_container_name}: {dumps}")
        clients = processes_with("--defaults-extra-file=/dev/stdin")
        mine = container_id(tracker.mysql_container_name)
        clients = [c for c in clients if mine in c[1]]
        if clients:
            found.append(f"docker exec dump clients still running: {clients}")
        connections = db_user_connections(tracker)
        if len(connections) != 1:  # the tracker's own
            found.append(f"db_user connections (the tracker holds one): {connections}")
    if tracker.driver == "postgresql":
        dumps = pg_dump_processes_in(tracker.postgres_container_name)
        if dumps:
            found.append(f"pg_dump processes in {tracker.postgres_container_name}: {dumps}")
        deadline = time.monotonic() + 5  # a backend leaves pg_stat_activity just after its
        while (connections := our_pg_connections(tracker)) and time.monotonic() < deadline:
            time.sleep(0.1)  # client closed the connection: give it that moment
        if connections:
            found.append(f"torrust-maint connections still open: {connections}")
    if process is not None:
        threads = [t for t in threading.enumerate() if t.ident not in process.threads]
        if threads:
            found.append(f"threads: {threads} (threading.active_count() "
                         f"{threading.active_count()}, baseline {len(process.threads)})")
        fds = {fd: target for fd, target in open_fds().items()
               if process.fds.get(fd) != target}
        if fds:
            found.append(f"file descriptors not open before: {fds} "
                         f"(baseline {len(process.fds)}: {process.fds})")
        children = [c for c in children_of(os.getpid()) if c[0] not in process.children]
        if children:
            found.append(f"child processes: {children}")
    return found


def assert_no_leaks(tracker, directory: Path, config: Path, stack: StackBaseline,
                    process: ProcessBaseline | None = None, settle: float = 30) -> None:
    """No leaks, allowing `settle` seconds for things that end asynchronously (a guardian
    finishing, the server noticing a closed connection)."""
    deadline = time.monotonic() + settle
    while True:
        found = leaks(tracker, directory, config, stack, process)
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    assert not found, "leaked:\n  " + "\n  ".join(found)


# -- numbers ------------------------------------------------------------------------------

def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def downtime_figures(values: list[float]) -> dict:
    return {"windows": len(values), "p50": percentile(values, 0.50),
            "p95": percentile(values, 0.95), "max": max(values),
            "mean": round(sum(values) / len(values), 3)}


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
