"""A verification that cannot run (Docker fails) is no verdict: it marks nothing, deletes
nothing (issue 8)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.integration.conftest import list_sets, run_cli
from tests.integration.test_verify_restore import backup, throwaway_containers

# A registry on a closed local port: `docker run` fails at once, without any network.
MISSING_IMAGE = "127.0.0.1:9/torrust-maint-test/no-such-image:gone"


def test_mysql_verify_that_cannot_start_its_container_is_inconclusive(make_stack):
    tracker = make_stack(driver="mysql")
    tracker.wait_for_writes(50)
    config = tracker.compose_dir.parent / "keep-two.toml"
    config.write_text(tracker.config_toml(extra=(
        "[retention]\nkeep_last = 2\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n")))
    older = backup(config)
    time.sleep(1.1)
    newer = backup(config)
    assert [older["verification"]["outcome"], newer["verification"]["outcome"]] == [
        "passed", "passed"]
    manifest_path = Path(older["path"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["database"]["image"] = MISSING_IMAGE
    manifest_path.write_text(json.dumps(manifest))

    done = run_cli(config, "verify", older["id"])

    assert done.returncode == 1
    assert f"{older['id']}: could not verify: the restore check did not run: docker run " \
           "failed" in done.stdout
    assert f"torrust-maint: error: could not verify {older['id']}: " in done.stderr
    assert "this says nothing about the data" in done.stderr
    assert "FAILED" not in done.stdout and "Traceback" not in done.stderr
    assert throwaway_containers(tracker) == []
    recorded = next(s for s in list_sets(config) if s["id"] == older["id"])
    assert recorded["verification"] == older["verification"]  # the verdict is untouched
    assert recorded["verification_attempt"]["outcome"] == "inconclusive"
    assert MISSING_IMAGE in recorded["verification_attempt"]["error"]

    pruned = run_cli(config, "prune")

    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines() == ["pruned 0 set(s)"]
    assert [s["id"] for s in list_sets(config)] == [older["id"], newer["id"]]
