"""Hostile input through the real command line: `python3 -m torrust_maint` as a process.

A sample of the generated configurations of tests/unit/test_config_hostile.py (the unit test
runs all of them in-process), the hostile backup directory of test_catalog_hostile.py with a
real stdout (strict UTF-8, where an undecodable name would crash a careless print), and a
real deployment whose valid settings hold shell syntax: it is backed up, listed and verified
with that syntax taken literally, never run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import PYTHON, REPO
from tests.unit.test_catalog_hostile import GENUINE, fingerprint, hostile_backups, ours
from tests.unit.test_catalog_hostile import write_config as write_prune_config
from tests.unit.test_config_hostile import COMMANDS, Hostile, generate

SAMPLE_EVERY = 40  # about 25 of the ~1000 invalid cases, each through one command


def run_real(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real entry point with a strict UTF-8 locale, as under systemd."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("TORRUST_MAINT_CONFIG", "JOURNAL_STREAM")}
    env.update(PYTHONPATH=str(REPO), LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8:strict")
    return subprocess.run([PYTHON, "-m", "torrust_maint", "--config", str(config), *args],
                          cwd=REPO, capture_output=True, timeout=timeout, env=env)


def assert_no_crash(done: subprocess.CompletedProcess) -> tuple[str, str]:
    """stdout and stderr of a run that did not crash (whatever its exit code)."""
    out, err = done.stdout.decode(), done.stderr.decode()
    assert "Traceback" not in out + err, err
    assert "internal error" not in err and "Logging error" not in err, err
    return out, err


@pytest.fixture
def hostile(tmp_path: Path) -> Hostile:
    """A place for the cases, with a victim directory that `rm -rf` would remove."""
    place = Hostile(tmp_path)
    place.victim.mkdir()
    (place.victim / "precious").write_text("precious")
    return place


def test_a_sample_of_hostile_configs_as_real_processes(hostile):
    cases = generate(hostile)
    invalid = [c for c in cases if not c.valid][::SAMPLE_EVERY]
    odd_but_valid = [c for c in cases if c.valid][::10]
    assert len(invalid) >= 25
    for number, case in enumerate(invalid):
        path = case.write(hostile.root, number)
        done = run_real(path, *COMMANDS[number % len(COMMANDS)])
        _, err = assert_no_crash(done)
        assert done.returncode == 2, f"{case.name}: {err}"
        for expected in case.expect:
            assert expected.replace("{path}", str(path)) in err, f"{case.name}: {err}"
    for number, case in enumerate(odd_but_valid, start=len(invalid)):
        path = case.write(hostile.root, number)
        done = run_real(path, "check")
        _, err = assert_no_crash(done)
        assert done.returncode == 2 and "[deployment] compose_dir: " in err, err
        done = run_real(path, "list")
        assert (done.returncode, done.stderr) == (0, b"")
    hostile.assert_nothing_ran()


def test_hostile_backup_directory_as_real_processes(tmp_path):
    backups, outside = hostile_backups(tmp_path)
    config = write_prune_config(tmp_path, backups)
    before, before_outside = fingerprint(backups), fingerprint(outside)

    done = run_real(config, "list")
    out, _ = assert_no_crash(done)
    assert done.returncode == 0 and "2025\\udcff" in out
    done = run_real(config, "list", "--json")
    assert_no_crash(done)
    assert {s["id"] for s in json.loads(done.stdout) if s["complete"]} == set(GENUINE)
    done = run_real(config, "verify", "--all")
    _, err = assert_no_crash(done)
    assert done.returncode == 1 and "verification failed for " in err
    for args in (["prune", "--dry-run"], ["prune"], ["list"]):
        done = run_real(config, *args)
        assert_no_crash(done)
        assert done.returncode == 0, done.stderr

    after = fingerprint(backups)
    assert {k: v for k, v in before.items() if not ours(k)} == \
           {k: v for k, v in after.items() if not ours(k)}
    assert fingerprint(outside) == before_outside


def test_shell_syntax_in_valid_settings_is_taken_literally(make_stack, tmp_path):
    """A real deployment backed up into a directory named with shell syntax; tracker and
    database service names with it are refused before Docker is asked anything."""
    hostile = Hostile(tmp_path)
    hostile.victim.mkdir()
    (hostile.victim / "precious").write_text("precious")
    tracker = make_stack()
    backups = tmp_path / f"backups $(touch {hostile.canary}); rm -rf {hostile.victim}"
    log_file = tmp_path / "log" / f"`touch {hostile.canary}`.log"
    config = tmp_path / "odd.toml"
    config.write_text(tracker.config_toml(backup_dir=backups, extra=(
        f'[logging]\nfile = "{log_file}"\n')))

    done = run_real(config, "backup", timeout=300)
    out, err = assert_no_crash(done)
    assert done.returncode == 0, err
    done = run_real(config, "list", "--json")
    [backup_set] = json.loads(done.stdout)
    assert backup_set["complete"] and Path(backup_set["path"]).parent == backups
    done = run_real(config, "verify")
    assert done.returncode == 0, done.stderr
    assert log_file.is_file()

    missing_db = f"/var/lib/torrust/tracker/database/$(touch {hostile.canary}).db"
    for deployment_extra, named in [
        (f'sqlite_path = "{missing_db}"\n', "[deployment] sqlite_path: "),
        (f'tracker_services = ["tracker; touch {hostile.canary}"]\n',
         "[deployment] tracker_services: "),
        (f'database_service = "$(touch {hostile.canary})"\n', "[deployment] database_service: "),
    ]:
        config.write_text(tracker.config_toml(backup_dir=backups,
                                              deployment_extra=deployment_extra))
        done = run_real(config, "check")
        _, err = assert_no_crash(done)
        assert done.returncode == 2 and named in err, err
    hostile.assert_nothing_ran()
    tracker.wait_healthy(timeout=30)
