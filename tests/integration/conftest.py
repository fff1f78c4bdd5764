"""Integration fixtures: a real Docker engine, the locally built stand-in tracker image,
and a deployer-shaped stack per test. `make test` provisions all of it first."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.testbed import stack as testbed
from torrust_maint.compress import compressed_writer, open_decompressed

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
WORK_ROOT = Path(os.environ.get("TORRUST_MAINT_IT_ROOT", "/tmp/torrust-maint-it"))


@pytest.fixture(scope="session", autouse=True)
def docker_engine():
    """Fail (never skip) when the test bed is missing: `make test` provisions it."""
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        pytest.fail("no Docker engine answers; run `make testbed` (tests/testbed/provision.sh)")
    image = subprocess.run(["docker", "image", "inspect", testbed.TRACKER_IMAGE],
                           capture_output=True, text=True)
    if image.returncode != 0:
        pytest.fail(f"image {testbed.TRACKER_IMAGE} missing; run tests/testbed/build-images.sh")


@pytest.fixture
def make_stack(request):
    """Factory: a running stand-in tracker stack in a fresh compose_dir, removed afterwards."""
    created = []

    def factory(**settings) -> testbed.TrackerStack:
        digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
        name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:32]
        name = f"{name}-{digest}-{len(created)}"
        root = WORK_ROOT / name
        tracker = testbed.TrackerStack(root / "opt/torrust", f"tm-it-{name}", **settings)
        tracker.down()
        tracker.remove_files()
        tracker.create()
        tracker.up()
        created.append(tracker)
        return tracker

    yield factory
    for tracker in created:
        tracker.down()
        tracker.remove_files()


def run_cli(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real command line, as the operator would, with Debian's python3."""
    return subprocess.run([PYTHON, "-m", "torrust_maint", "--config", str(config), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def write_config(tracker: testbed.TrackerStack, extra: str = "",
                 deployment_extra: str = "") -> Path:
    path = tracker.compose_dir.parent / "torrust-maint.toml"
    path.write_text(tracker.config_toml(extra=extra, deployment_extra=deployment_extra))
    return path


def list_sets(config: Path) -> list[dict]:
    done = run_cli(config, "list", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def decompress(artifact: dict, target: Path) -> Path:
    """Decompress an artifact with the stock zstd/gzip tool, as an operator would."""
    tool = {"zstd": ["zstd", "-q", "-d", "-c"], "gzip": ["gzip", "-d", "-c"]}[
        artifact["compression"]]
    with open(target, "wb") as out:
        subprocess.run([*tool, artifact["path"]], stdout=out, check=True)
    return target


def backup_state(database_file: Path) -> tuple[int, dict]:
    """(N, table contents) of a restored backup file."""
    sys.path.insert(0, str(REPO / "tests/testbed"))
    from standin_tracker import read_state

    connection = sqlite3.connect(database_file)
    try:
        return read_state(connection)
    finally:
        connection.close()


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every path below directory with (size, mtime_ns): a fingerprint to prove nothing changed."""
    found = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        found[str(path.relative_to(directory))] = (info.st_size, info.st_mtime_ns)
    return found


COPIED_SET_ID = "20000101T000000Z"  # older than any real set


def copy_with_dump(source: dict, directory: Path, rewrite: Callable[[bytes], bytes], *,
                   fresh_verdict: bool = False) -> str:
    """A copy of a listed set whose database dump is rewrite(dump), recompressed, with the
    manifest's size and sha256 fixed: the artifact check passes and only the data can tell.
    fresh_verdict: the original's verification is not carried over. Its id."""
    target = directory / COPIED_SET_ID
    shutil.copytree(source["path"], target)
    manifest_path = target / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(a for a in manifest["artifacts"] if a["name"] == "database")
    with open_decompressed(target / entry["path"], entry["compression"]) as stream:
        dump = stream.read()
    rewritten = rewrite(dump)
    assert rewritten != dump, "the rewrite changed nothing"
    (target / entry["path"]).unlink()
    with compressed_writer(target, "database", "database.sql", entry["compression"]) as (
            stream, written):
        stream.write(rewritten)
    assert written.path == entry["path"]
    entry.update(written.to_manifest())
    manifest["id"] = COPIED_SET_ID
    if fresh_verdict:
        manifest["verification"] = None
        manifest["verification_attempt"] = None
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return COPIED_SET_ID
