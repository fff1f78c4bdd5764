"""Reliability suite (issue 8): soak windows and faults at every phase, against real
containers. `make test` runs the fast subset (`-m "not slow"`), `make test-reliability` all
of it with 50 soak windows per engine.

Measurements (soak downtimes, the time until the tracker runs again after each fault) are
written to TORRUST_MAINT_RELIABILITY_RESULTS (default build/reliability-results.json) and
printed at the end of the run; docs/reliability.md is filled from them
(`python3 -m tests.reliability.report`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (  # noqa: F401 -- fixtures
    WORK_ROOT,
    docker_engine,
    make_stack,
)
from tests.reliability.support import REPO

RESULTS_ENV = "TORRUST_MAINT_RELIABILITY_RESULTS"
SOAK_ENV = "TORRUST_MAINT_SOAK_WINDOWS"
RESULTS: dict = {"soak": {}, "faults": []}
_RECORD_KEY = pytest.StashKey[dict]()


def soak_windows() -> int:
    """Windows per engine: TORRUST_MAINT_SOAK_WINDOWS (make test-reliability: 50), else 3."""
    value = os.environ.get(SOAK_ENV, "").strip()
    return int(value) if value else 3


def results_path() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or REPO / "build/reliability-results.json")


def machine() -> dict:
    def out(argv):
        done = subprocess.run(argv, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    return {
        "cores": os.cpu_count(),
        "filesystem": out(["findmnt", "-no", "FSTYPE", "-T", "/tmp"]),
        "kernel": platform.release(),
        "docker": out(["docker", "version", "--format", "{{.Server.Version}}"]),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


@pytest.fixture
def record(request) -> dict:
    """This test's entry in the results file (the test's outcome is added afterwards)."""
    entry = {"test": request.node.nodeid.split("::", 1)[-1]}
    RESULTS["faults"].append(entry)
    request.node.stash[_RECORD_KEY] = entry
    return entry


@pytest.fixture
def soak_results() -> dict:
    return RESULTS["soak"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    entry = item.stash.get(_RECORD_KEY, None)
    if entry is not None and report.when == "call":
        entry["outcome"] = report.outcome
        if report.failed:
            message = str(call.excinfo.value) if call.excinfo else report.longreprtext
            entry["failure"] = message.strip().splitlines()[0][:300] if message else ""


def pytest_sessionfinish(session):
    if not (RESULTS["soak"] or RESULTS["faults"]):
        return
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), **RESULTS}
    path.write_text(json.dumps(data, indent=2) + "\n")
    RESULTS["written_to"] = str(path)


def pytest_terminal_summary(terminalreporter):
    if not (RESULTS["soak"] or RESULTS["faults"]):
        return
    terminalreporter.section("reliability measurements")
    for engine, figures in RESULTS["soak"].items():
        terminalreporter.write_line(
            f"soak {engine:16} {figures['windows']:3} windows  downtime p50 {figures['p50']:.3f} s"
            f"  p95 {figures['p95']:.3f} s  max {figures['max']:.3f} s")
    for entry in RESULTS["faults"]:
        back = entry.get("tracker_back_s")
        terminalreporter.write_line(
            f"{entry.get('outcome', '?'):7} {entry['test'][:70]:70} exit "
            f"{entry.get('exit_code', '-')!s:>4}  tracker back "
            f"{'-' if back is None else f'{back:.2f} s'}")
    if "written_to" in RESULTS:
        terminalreporter.write_line(f"results: {RESULTS['written_to']}")


@pytest.fixture(autouse=True)
def remove_leaked_throwaways(request):
    """After each test, remove throwaway containers made for its stacks' backup directories
    (a killed verification leaves one; the test has already judged that)."""
    yield
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:32]
    prefix = f"{WORK_ROOT / name}-{digest}-"
    found = subprocess.run(
        ["docker", "ps", "--all", "--filter", "label=org.torrust-maint.throwaway", "--format",
         '{{.ID}} {{.Label "org.torrust-maint.backup-directory"}}'],
        capture_output=True, text=True).stdout.splitlines()
    for line in found:
        container, _, directory = line.partition(" ")
        if directory.startswith(prefix):
            subprocess.run(["docker", "rm", "--force", container], capture_output=True)


@pytest.fixture
def quiet_root_logger():
    """In-process runs replace the root logger's handlers; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
