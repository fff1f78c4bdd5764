"""System test fixtures: the .deb installed in Debian 12 and 13 systemd "host" containers.

Each host container runs systemd as PID 1 (see ../shared/reference/test-machines.md), has the
outer Docker engine's socket, and sees the test-bed deployment at the same path as the engine
does. Missing prerequisites fail the tests (never skip): `make test-system` provides them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.system import apt_repo
from tests.testbed import stack as testbed

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
HOST_IMAGE = "torrust-maint-test/host-{distro}:latest"
ROOT = Path("/srv/torrust-maint-st")  # not /tmp: the unit has PrivateTmp=yes
DISTROS = ("bookworm", "trixie")
TIMINGS: list[tuple[str, str, float]] = []


def timing(distro: str, what: str, seconds: float) -> None:
    TIMINGS.append((distro, what, seconds))


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("system test measurements")
    for distro, what, value in TIMINGS:
        terminalreporter.write_line(f"{distro:9} {what:55} {value:8.2f}")


def run(argv: list[str], *, check: bool = True, timeout: float = 300,
        input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check,
                          input=input)


@pytest.fixture(scope="session")
def deb() -> Path:
    """The package `make deb` built (fail, not skip, when it is missing)."""
    found = sorted(DIST.glob("torrust-maint_*_all.deb"), key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.fail(f"no {DIST}/torrust-maint_*_all.deb: run `make deb` (or make test-system)")
    return found[-1]


PREVIOUS_RELEASE = DIST / "previous-release"


def previous_release_commit(tag: str) -> str:
    """The commit the previous release must be built from: its tag's, or, in a clone without
    tags, the Makefile's PREVIOUS_RELEASE_COMMIT (which `make` passes in the environment)."""
    tagged = run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet",
                  f"refs/tags/{tag}^{{commit}}"], check=False).stdout.strip()
    if tagged:
        return tagged
    named = os.environ.get("PREVIOUS_RELEASE_COMMIT", "")
    if not named:
        found = re.search(r"^PREVIOUS_RELEASE_COMMIT \?= *(\S+)",
                          (REPO / "Makefile").read_text(), re.MULTILINE)
        named = found.group(1) if found else ""
    return named


@pytest.fixture(scope="session")
def previous_deb() -> Path:
    """The previous release's package, built from its git tag by `make previous-release`."""
    hint = "run `make previous-release` (make test-system does)"
    found = sorted(PREVIOUS_RELEASE.glob("torrust-maint_*_all.deb"))
    if len(found) != 1 or not (PREVIOUS_RELEASE / "COMMIT").exists():
        pytest.fail(f"no previous release in {PREVIOUS_RELEASE}: {hint}")
    tag = (PREVIOUS_RELEASE / "TAG").read_text().strip()
    expected = previous_release_commit(tag)
    if expected != (PREVIOUS_RELEASE / "COMMIT").read_text().strip():
        pytest.fail(f"{found[0].name} was not built from {tag} ({expected or 'unknown'}): "
                    f"{hint}")
    return found[0]


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory):
    """A throwaway repository signing key (no passphrase) in a temporary GNUPGHOME."""
    key = apt_repo.generate_key(tmp_path_factory.mktemp("gnupg"), "torrust-maint-test")
    yield key
    apt_repo.stop_agent(key)


@pytest.fixture(scope="session")
def engine() -> None:
    if run(["docker", "info"], check=False).returncode != 0:
        pytest.fail("no Docker engine answers; run `make testbed` (tests/testbed/provision.sh)")
    for image in (testbed.TRACKER_IMAGE, *(HOST_IMAGE.format(distro=d) for d in DISTROS)):
        if run(["docker", "image", "inspect", image], check=False).returncode != 0:
            pytest.fail(f"image {image} missing; run tests/testbed/build-images.sh and "
                        "tests/testbed/build-host-images.sh (make test-system does)")


@dataclass
class Host:
    """A running systemd host container with the package's deployment beside it."""

    distro: str
    name: str
    stack: testbed.TrackerStack
    deb: Path
    facts: dict = field(default_factory=dict)

    @property
    def backup_dir(self) -> Path:
        return self.stack.compose_dir / "storage/backup"

    def run(self, *argv: str, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess:
        interactive = ["--interactive"] if input is not None else []
        done = run(["docker", "exec", *interactive, "--env", "DEBIAN_FRONTEND=noninteractive",
                    self.name, *argv], check=False, timeout=timeout, input=input)
        if check and done.returncode != 0:
            context = ""
            if argv[0] == "systemctl":
                context = run(["docker", "exec", self.name, "journalctl", "--no-pager",
                               "--lines", "80"], check=False).stdout
            raise AssertionError(f"{' '.join(argv)} in {self.name} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}\n{context}")
        return done

    def write(self, path: str, text: str) -> None:
        self.run("mkdir", "-p", str(Path(path).parent))
        self.run("tee", path, input=text)

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "--property", prop, "--value", unit).stdout.strip()

    def journal(self, *matches: str, unit: str = "torrust-backup.service") -> list[dict]:
        args = ["journalctl", "--no-pager", "--output", "json"]
        if unit:
            args += ["--unit", unit]
        out = self.run(*args, *matches).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for(self, what: str, predicate, timeout: float = 60, every: float = 0.1):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.distro}: timed out after {timeout} s: {what}")
            time.sleep(every)


@contextlib.contextmanager
def compose_project(name: str):
    """Our own compose project name: every deployer-shaped directory is named `torrust`, and
    other test runs on this engine must not see (or recreate) our containers, nor we theirs."""
    old = os.environ.get("COMPOSE_PROJECT_NAME")
    os.environ["COMPOSE_PROJECT_NAME"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["COMPOSE_PROJECT_NAME"]
        else:
            os.environ["COMPOSE_PROJECT_NAME"] = old


def start_host(name: str, distro: str, deployment_root: Path) -> None:
    run(["docker", "rm", "--force", name], check=False)
    # --network host: like a real host, the unit reaches containers' addresses on every
    # compose network (a MySQL container's), and IPAddressAllow= applies to real traffic.
    run(["docker", "run", "--detach", "--name", name, "--network", "host",
         "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
         "--cgroupns=host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
         "--tmpfs", "/run", "--tmpfs", "/run/lock", "--env", "container=docker",
         "--volume", "/var/run/docker.sock:/var/run/docker.sock",
         "--volume", f"{DIST}:/mnt/dist:ro",
         "--volume", f"{deployment_root}:{deployment_root}",
         HOST_IMAGE.format(distro=distro), "/lib/systemd/systemd"])
    # Docker's --tmpfs /run is a private mount, where a real host's /run is shared: systemd
    # prepares a unit's credentials (LoadCredential=) in a mount namespace of its own and
    # moves them under /run/credentials, which reaches the unit only through a shared /run
    # (seen in 252 and 257: otherwise the unit starts with an empty credentials directory).
    run(["docker", "exec", name, "mount", "--make-rshared", "/run"])


@pytest.fixture(scope="module", params=DISTROS)
def host(request, engine, deb) -> Host:
    """One systemd host per Debian release, with a running stand-in tracker deployment.

    The stand-in ignores SIGTERM, so each `docker stop` lasts the configured stop_timeout:
    a window long enough to SIGKILL torrust-maint inside it.
    """
    distro = request.param
    root = ROOT / distro
    name = f"tm-st-host-{distro}"
    tracker = testbed.TrackerStack(root / "opt/torrust", f"tm-st-{distro}-tracker",
                                   ignore_sigterm=True)
    with compose_project(f"tm-st-{distro}"):
        tracker.down()
        tracker.remove_files()
        tracker.create()
        tracker.up()
    started = time.monotonic()
    start_host(name, distro, root)
    machine = Host(distro, name, tracker, deb)
    state = machine.wait_for(
        "systemctl is-system-running",
        lambda: machine.run("systemctl", "is-system-running", check=False).stdout.strip()
        in ("running", "degraded"), timeout=60)
    assert state
    timing(distro, "host container boot (s)", time.monotonic() - started)
    yield machine
    run(["docker", "rm", "--force", name], check=False)
    with compose_project(f"tm-st-{distro}"):
        tracker.down()
    shutil.rmtree(root, ignore_errors=True)
