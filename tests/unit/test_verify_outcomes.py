"""verify: a verdict on the data (passed, failed) versus a check that reached none."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.unit.conftest import make_sqlite
from torrust_maint import catalog, cli
from torrust_maint.actions import prune
from torrust_maint.actions import verify as verify_action
from torrust_maint.compress import compressed_writer
from torrust_maint.config import (
    CONFIG_ENV_VAR,
    BackupConfig,
    Config,
    DeploymentConfig,
    RetentionConfig,
)
from torrust_maint.docker import Docker
from torrust_maint.engines import mysql as mysql_engine
from torrust_maint.engines import sqlite as sqlite_engine
from torrust_maint.errors import (
    DockerError,
    Interrupted,
    VerificationFailed,
    VerificationInconclusive,
)

PREFIX = "torrust-maint: error: "
NO_IMAGE = ("docker run failed: Unable to find image 'mariadb:gone' locally; "
            "pull access denied for mariadb")


@pytest.fixture(autouse=True)
def _no_config_from_the_environment(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)


def make_set(directory: Path, set_id: str, created_at: str, *, rows: int = 3,
             recorded_rows: int | None = None, verification: str | None = "passed",
             payload: bytes | None = None) -> catalog.BackupSet:
    """A complete SQLite set whose artifact really restores (unless payload replaces it)."""
    directory.mkdir(exist_ok=True)
    staged = catalog.StagedSet(directory, set_id)
    source = directory.parent / f"{set_id}.sqlite3"
    make_sqlite(source, rows=rows)
    if payload is None:
        with compressed_writer(staged.path, "database", "database.sqlite3", "zstd") as (
                stream, artifact):
            stream.write(source.read_bytes())
        entry = artifact.to_manifest()
    else:  # bytes whose checksum matches the manifest, whatever they are
        (staged.path / "database.sqlite3.zst").write_bytes(payload)
        entry = {"name": "database", "path": "database.sqlite3.zst", "size": len(payload),
                 "sha256": hashlib.sha256(payload).hexdigest(), "compression": "zstd"}
    manifest = {"format": 1, "tool": "torrust-maint", "id": set_id, "created_at": created_at,
                "complete": True, "artifacts": [entry],
                "database": {"driver": "sqlite3", "tables": {
                    "torrents": rows if recorded_rows is None else recorded_rows}}}
    if verification:
        manifest["verification"] = {"verified_at": created_at, "outcome": verification,
                                    "duration_seconds": 0.1, "problems": []}
    staged.commit(manifest)
    return next(s for s in catalog.list_sets(directory) if s.id == set_id)


def manifest_of(backup_set: catalog.BackupSet) -> dict:
    return json.loads((backup_set.path / catalog.MANIFEST).read_text())


def engine_fails_with(monkeypatch, error: BaseException) -> None:
    """The throwaway restore raises `error` (as `docker run` or the disk would)."""

    def verify(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(sqlite_engine, "verify", verify)


# -- verify_set: outcomes and what each records ------------------------------------------------

def test_a_set_that_restores_as_recorded_passes(tmp_path):
    backup_set = make_set(tmp_path / "backups", "20260301T030000Z", "2026-03-01T03:00:00Z",
                          verification=None)

    outcome = verify_action.verify_set(backup_set, Docker(), tmp_path / "backups")

    assert (outcome.result, outcome.problems) == ("passed", [])
    assert outcome.details == {"checked": ["torrents"]}
    assert manifest_of(backup_set)["verification"]["outcome"] == "passed"


@pytest.mark.parametrize("error", [DockerError(NO_IMAGE),
                                   VerificationInconclusive("importing the dump failed: x"),
                                   OSError(errno.ENOSPC, "No space left on device")])
@pytest.mark.parametrize("before", ["passed", "failed", None])
def test_an_inconclusive_check_keeps_the_verdict_and_records_the_attempt(
        tmp_path, monkeypatch, error, before):
    backup_set = make_set(tmp_path / "backups", "20260301T030000Z", "2026-03-01T03:00:00Z",
                          verification=before)
    verdict = manifest_of(backup_set).get("verification")
    engine_fails_with(monkeypatch, error)

    outcome = verify_action.verify_set(backup_set, Docker(), tmp_path / "backups")

    assert outcome.result == "inconclusive"
    manifest = manifest_of(backup_set)
    assert manifest.get("verification") == verdict
    attempt = manifest["verification_attempt"]
    assert attempt["outcome"] == "inconclusive"
    assert str(error) in attempt["error"]
    reread = next(s for s in catalog.list_sets(tmp_path / "backups"))
    assert reread.verification == (before or "unverified")
    assert reread.verification_attempt == attempt


def test_an_interrupted_check_records_nothing(tmp_path, monkeypatch):
    backup_set = make_set(tmp_path / "backups", "20260301T030000Z", "2026-03-01T03:00:00Z")
    before = (backup_set.path / catalog.MANIFEST).read_bytes()
    engine_fails_with(monkeypatch, Interrupted(signal.SIGTERM))

    with pytest.raises(Interrupted):
        verify_action.verify_set(backup_set, Docker(), tmp_path / "backups")

    assert (backup_set.path / catalog.MANIFEST).read_bytes() == before


@pytest.mark.parametrize("changes, message", [
    ({"recorded_rows": 4}, "row counts differ: table torrents: 3 rows, manifest says 4"),
    ({"payload": b"this is not zstd"}, "does not decompress"),
])
def test_data_that_does_not_restore_as_recorded_fails(tmp_path, changes, message):
    backup_set = make_set(tmp_path / "backups", "20260301T030000Z", "2026-03-01T03:00:00Z",
                          **changes)

    outcome = verify_action.verify_set(backup_set, Docker(), tmp_path / "backups")

    assert outcome.result == "failed"
    assert message in outcome.problems[0]
    assert manifest_of(backup_set)["verification"]["outcome"] == "failed"


def test_a_verdict_replaces_an_earlier_inconclusive_attempt(tmp_path, monkeypatch):
    backup_set = make_set(tmp_path / "backups", "20260301T030000Z", "2026-03-01T03:00:00Z",
                          verification=None)
    with monkeypatch.context() as patch:
        engine_fails_with(patch, DockerError(NO_IMAGE))
        verify_action.verify_set(backup_set, Docker(), tmp_path / "backups")
    assert "verification_attempt" in manifest_of(backup_set)

    outcome = verify_action.verify_set(backup_set, Docker(), tmp_path / "backups")

    assert outcome.result == "passed"
    assert "verification_attempt" not in manifest_of(backup_set)


def test_an_inconclusive_check_of_an_old_set_makes_prune_delete_nothing(tmp_path, monkeypatch):
    # Issue 8: a `docker run` hiccup during the weekly check of a good old set.
    directory = tmp_path / "backups"
    old = make_set(directory, "20260115T030000Z", "2026-01-15T03:00:00Z")
    make_set(directory, "20260301T030000Z", "2026-03-01T03:00:00Z")
    config = Config(path=tmp_path / "torrust-maint.toml",
                    deployment=DeploymentConfig(compose_dir=tmp_path),
                    backup=BackupConfig(directory=directory),
                    retention=RetentionConfig(keep_last=1, keep_daily=0, keep_weekly=0,
                                              keep_monthly=6))
    engine_fails_with(monkeypatch, DockerError(NO_IMAGE))

    verify_action.verify_set(old, Docker(), directory)
    chosen, _ = prune.decision(config)

    assert chosen.delete == []
    assert chosen.keep[old.id] == ["keep_monthly"]


# -- the command line: exit codes and messages ---------------------------------------------

def error_lines(err: str) -> list[str]:
    return [line[len(PREFIX):] for line in err.splitlines() if line.startswith(PREFIX)]


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "torrust-maint.toml"
    path.write_text(f'[deployment]\ncompose_dir = "{tmp_path}"\n\n'
                    f'[state]\ndirectory = "{tmp_path / "state"}"\n\n'
                    f'[backup]\ndirectory = "{tmp_path / "backups"}"\n{extra}')
    return path


def test_verify_of_a_check_that_could_not_run_says_so_and_exits_1(tmp_path, monkeypatch,
                                                                   capsys):
    make_set(tmp_path / "backups", "20260301T030000Z", "2026-03-01T03:00:00Z")
    engine_fails_with(monkeypatch, DockerError(NO_IMAGE))

    code = cli.main(["--config", str(write_config(tmp_path)), "verify"])

    out, err = capsys.readouterr()
    assert code == 1
    message = f"the restore check did not run: {NO_IMAGE}; this says nothing about the data"
    assert out.splitlines() == [f"20260301T030000Z: could not verify: {message}"]
    assert error_lines(err) == [f"could not verify 20260301T030000Z: {message}"]
    assert "FAILED" not in err


def test_verify_json_reports_inconclusive(tmp_path, monkeypatch, capsys):
    make_set(tmp_path / "backups", "20260301T030000Z", "2026-03-01T03:00:00Z")
    engine_fails_with(monkeypatch, DockerError(NO_IMAGE))

    code = cli.main(["--config", str(write_config(tmp_path)), "verify", "--json"])

    assert code == 1
    [result] = json.loads(capsys.readouterr().out)
    assert result["outcome"] == "inconclusive"


def test_verify_of_a_failed_set_exits_1_naming_it(tmp_path, capsys):
    make_set(tmp_path / "backups", "20260301T030000Z", "2026-03-01T03:00:00Z",
             recorded_rows=9)

    code = cli.main(["--config", str(write_config(tmp_path)), "verify"])

    out, err = capsys.readouterr()
    assert code == 1
    assert "20260301T030000Z: FAILED: 20260301T030000Z: restore check failed: row counts " \
           "differ" in out
    assert error_lines(err) == ["verification failed for 20260301T030000Z"]


def test_a_backup_whose_verification_could_not_run_fails_and_prunes_nothing(
        tmp_path, monkeypatch, capsys, stack, fake_docker):
    monkeypatch.setattr(cli, "Docker",
                        lambda dry_run=False: Docker(runner=fake_docker, dry_run=dry_run))
    stack.add_tracker()
    directory = tmp_path / "backups"
    doomed = make_set(directory, "20260101T030000Z", "2026-01-01T03:00:00Z")
    make_set(directory, "20260102T030000Z", "2026-01-02T03:00:00Z")
    config = tmp_path / "torrust-maint.toml"
    config.write_text(f'[deployment]\ncompose_dir = "{stack.compose_dir}"\n\n'
                      f'[backup]\ndirectory = "{directory}"\n\n[retention]\nkeep_last = 1\n'
                      "keep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n")
    engine_fails_with(monkeypatch, DockerError(NO_IMAGE))

    code = cli.main(["--config", str(config), "backup"])

    _, err = capsys.readouterr()
    assert code == 1
    assert "was written but could not be verified" in err
    assert "this says nothing about the data" in err
    sets = catalog.list_sets(directory)
    assert doomed.id in [s.id for s in sets]  # a prune would have deleted it
    assert len(sets) == 3 and sets[-1].verification == "unverified"
    assert sets[-1].verification_attempt["outcome"] == "inconclusive"


# -- MySQL: what the client's error says about the dump -------------------------------------

class ExitingClient:
    """Stands in for `docker exec -i <container> mariadb ...`: reads stdin, prints stderr."""

    def __init__(self, stderr: str, code: int = 1):
        self.stderr, self.code = stderr, code

    def exec_stream(self, _container, _argv) -> subprocess.Popen:
        script = f"cat >/dev/null; printf '%s\\n' \"$0\" >&2; exit {self.code}"
        return subprocess.Popen(["sh", "-c", script, self.stderr], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("stderr, kind", [
    ("ERROR 1064 (42000) at line 7: You have an error in your SQL syntax", VerificationFailed),
    ("ERROR 1146 (42S02) at line 30: Table 'torrust_maint_verify.x' doesn't exist",
     VerificationFailed),
    ("ERROR 2013 (HY000) at line 412: Lost connection to server during query",
     VerificationInconclusive),
    ("ERROR 1114 (HY000) at line 90: The table 'torrents' is full", VerificationInconclusive),
    ("ERROR 2002 (HY000): Can't connect to local server through socket",
     VerificationInconclusive),
    ("Error response from daemon: container abc is not running", VerificationInconclusive),
    ("", VerificationInconclusive),
])
def test_import_tells_a_rejected_dump_from_a_broken_import(stderr, kind):
    with pytest.raises((VerificationFailed, VerificationInconclusive)) as caught:
        mysql_engine.import_dump(ExitingClient(stderr), "c", "mariadb", "/tmp/x.cnf", "db",
                                 io.BytesIO(b"CREATE TABLE t (id INT);\n"))
    assert type(caught.value) is kind
    assert str(caught.value).startswith("importing the dump failed: ")
    assert stderr in str(caught.value)


def test_import_that_succeeds_raises_nothing():
    mysql_engine.import_dump(ExitingClient("", code=0), "c", "mariadb", "/tmp/x.cnf", "db",
                             io.BytesIO(b"SELECT 1;\n"))


def test_throwaway_containers_left_by_a_killed_run_are_removed(tmp_path, fake_docker):
    """Defect: a SIGKILL while the MySQL verify container ran left it there for good."""
    from torrust_maint.docker import Docker
    from torrust_maint.engines import mysql

    ours = fake_docker.add("torrust-maint-verify-0a1b2c", working_dir="", service=None)
    theirs = fake_docker.add("torrust-maint-verify-ffffff", working_dir="", service=None)
    for cid, owner in ((ours, tmp_path), (theirs, tmp_path / "other")):
        fake_docker.containers[cid]["Config"]["Labels"] = {
            mysql.THROWAWAY_LABEL: "verify", mysql.OWNER_LABEL: str(owner)}
    removed = mysql.remove_leftover_throwaways(Docker(runner=fake_docker), tmp_path)
    assert removed == ["torrust-maint-verify-0a1b2c"]
    assert list(fake_docker.containers) == [theirs]  # another backup directory's: untouched


def test_scratch_directories_left_by_a_killed_verification_are_removed(tmp_path, fake_docker):
    from torrust_maint.actions import verify
    from torrust_maint.docker import Docker

    left = tmp_path / (verify.SCRATCH_PREFIX + "ur_sfkbl")
    left.mkdir()
    (left / "verify.sqlite3").write_bytes(b"half")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-outside"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("keep")
    (tmp_path / (verify.SCRATCH_PREFIX + "link")).symlink_to(elsewhere)
    verify.remove_leftovers(Docker(runner=fake_docker), tmp_path)
    assert not left.exists()
    assert (elsewhere / "keep").read_text() == "keep"  # a symlink is never followed
    assert (tmp_path / (verify.SCRATCH_PREFIX + "link")).is_symlink()
