"""Hostile backup directories: corrupt or foreign manifests, stray files and symlinks.

`list`, `list --json`, `verify --all`, `prune --dry-run` and `prune` run through cli.main()
over a backup directory holding genuine sets and every kind of garbage: manifests that are
not JSON, JSON of the wrong shape, every field of the wrong type, artifact paths leading
out of the set, symlinks where sets, manifests and artifacts should be, a FIFO manifest,
a huge manifest, names that are not UTF-8. None may crash or hang, and afterwards every
stray, foreign or corrupt file (and every symlink's target) is still there, byte for byte.
Only genuine sets of ours are pruned, and only their own plain files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import signal
import stat
from pathlib import Path

import pytest

from torrust_maint import catalog, cli
from torrust_maint.actions import listing
from torrust_maint.catalog import MANIFEST, STAGING_PREFIX, BackupSet, delete_set, list_sets
from torrust_maint.compress import compressed_writer
from torrust_maint.config import CONFIG_ENV_VAR
from torrust_maint.docker import Docker
from torrust_maint.errors import MaintError

from .conftest import make_sqlite

GENUINE = ("20260101T030000Z", "20260102T030000Z", "20260103T030000Z")
OLD = "2025-01-01T00:00:00.000000Z"


# -- building a hostile backup directory -----------------------------------------------------

def genuine_set(directory: Path, set_id: str, scratch: Path) -> Path:
    """A real set: a zstd SQLite database whose row counts verify, verified once already."""
    database = scratch / f"{set_id}.sqlite3"
    make_sqlite(database, rows=4)
    staged = catalog.StagedSet(directory, set_id)
    with compressed_writer(staged.path, "database", "database.sqlite3", "zstd") as (out, art):
        out.write(database.read_bytes())
    day = set_id[6:8]
    return staged.commit({
        "format": 1, "tool": "torrust-maint", "tool_version": "0", "id": set_id,
        "created_at": f"2026-01-{day}T03:00:00.000000Z", "complete": True,
        "database": {"driver": "sqlite3", "tables": {"torrents": 4}},
        "artifacts": [art.to_manifest()], "downtime_seconds": 0.5, "phases": {},
        "warnings": [], "verification": {"outcome": "passed"},
    })


def manifest(set_id: str, **changes) -> dict:
    """A complete, verified, old manifest of ours listing database.sqlite3.zst."""
    data = {"format": 1, "tool": "torrust-maint", "id": set_id, "created_at": OLD,
            "complete": True, "database": {"driver": "sqlite3", "tables": {"torrents": 1}},
            "artifacts": [{"name": "database", "path": "database.sqlite3.zst", "size": 8,
                           "sha256": "0" * 64, "compression": "zstd"}],
            "downtime_seconds": 1.0, "verification": {"outcome": "passed"}}
    data.update(changes)
    return data


def artifact(**changes) -> dict:
    """The artifact entry of manifest(), changed."""
    return dict(manifest("x")["artifacts"][0], **changes)


# Each a set of ours in every respect but one: read as one, prune could delete it.
GARBLED = {
    "created_at is a number": {"created_at": 1767236400},
    "created_at is null": {"created_at": None},
    "artifacts is a string": {"artifacts": "database.sqlite3.zst"},
    "artifacts are strings": {"artifacts": ["database.sqlite3.zst"]},
    "artifact without a path": {"artifacts": [{"name": "database", "size": 8}]},
    "artifact path is a number": {"artifacts": [artifact(path=5)]},
    "artifact path leads up": {"artifacts": [artifact(path="../stray.txt")]},
    "artifact path is ..": {"artifacts": [artifact(path="..")]},
    "artifact path is absolute": {"artifacts": [artifact(path="/etc/hostname")]},
    "artifact path outside": {"artifacts": [artifact(path="../../outside/precious.txt")]},
    "artifact path is the manifest": {"artifacts": [artifact(path="manifest.json")]},
    "artifact path has a newline": {"artifacts": [artifact(path="a\nb")]},
    "artifact size is a string": {"artifacts": [artifact(size="8")]},
    "artifact size is negative": {"artifacts": [artifact(size=-1)]},
    "artifact size is true": {"artifacts": [artifact(size=True)]},
    "artifact compression is a list": {"artifacts": [artifact(compression=["zstd"])]},
    "artifact listed twice": {"artifacts": [artifact(), artifact()]},
    "database is a list": {"database": ["sqlite3"]},
    "database is a string": {"database": "sqlite3"},
    "downtime is a string": {"downtime_seconds": "fast"},
    "downtime is true": {"downtime_seconds": True},
    "phases is a list": {"phases": [1, 2]},
    "warnings is a string": {"warnings": "none"},
    "tool_version is a number": {"tool_version": 1.5},
    "format is true": {"format": True},
    "format is 1.0": {"format": 1.0},
    "id is a number": {"id": 20250101},
    "complete is a string": {"complete": "yes"},
    "complete but no artifacts": {"artifacts": None},
}


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def corrupt_sets(backups: Path, outside: Path) -> None:
    """Set-named directories whose manifests are garbage, each beside an artifact-like file."""
    raw = {
        "not json": b"{not json", "empty": b"", "a list": b"[1, 2]", "a string": b'"x"',
        "not UTF-8": b"\xff\xfe{}", "NaN": json.dumps(manifest("X", downtime_seconds=float(
            "nan"))).encode(), "1e999": json.dumps(manifest("X")).replace(
            '"downtime_seconds": 1.0', '"downtime_seconds": 1e999').encode(),
        "nested too deeply": b"[" * 200000 + b"]" * 200000,
        "foreign tool": json.dumps({"tool": "borg", "complete": True, "artifacts": [
            {"path": "database.sqlite3.zst"}]}).encode(),
        "huge and foreign": b'{"tool": "restic", "pad": "' + b"x" * (17 << 20) + b'"}',
    }
    number = 0
    for label, content in raw.items():
        set_dir = backups / f"202501{number // 24 + 1:02d}T{number % 24:02d}0000Z"
        number += 1
        write_bytes(set_dir / MANIFEST, content)
        write_bytes(set_dir / "database.sqlite3.zst", label.encode())
    for label, changes in GARBLED.items():
        set_id = f"202502{number // 24 + 1:02d}T{number % 24:02d}0000Z"
        number += 1
        data = manifest(set_id, **copy.deepcopy(changes))
        if data.get("artifacts") is None:
            del data["artifacts"]
        write_bytes(backups / set_id / MANIFEST, json.dumps(data).encode())
        write_bytes(backups / set_id / "database.sqlite3.zst", label.encode())


def symlinked_sets(backups: Path, outside: Path) -> None:
    """Symlinks where sets, manifests, artifacts and staging directories should be."""
    elsewhere = outside / "20250301T000000Z"
    write_bytes(elsewhere / MANIFEST, json.dumps(manifest("20250301T000000Z")).encode())
    write_bytes(elsewhere / "database.sqlite3.zst", b"elsewhere")
    os.symlink(elsewhere, backups / "20250301T000000Z")  # a set that is a symlink

    linked = backups / "20250302T000000Z"  # manifest.json is a symlink to a valid manifest
    write_bytes(outside / "linked-manifest.json",
                json.dumps(manifest("20250302T000000Z")).encode())
    write_bytes(linked / "database.sqlite3.zst", b"beside a linked manifest")
    os.symlink(outside / "linked-manifest.json", linked / MANIFEST)

    by_link = backups / "20250303T000000Z"  # an artifact that is a symlink out of the set
    write_bytes(by_link / MANIFEST, json.dumps(manifest("20250303T000000Z")).encode())
    write_bytes(outside / "precious.txt", b"precious")
    os.symlink(outside / "precious.txt", by_link / "database.sqlite3.zst")

    as_dir = backups / "20250304T000000Z"  # an artifact that is a directory
    write_bytes(as_dir / MANIFEST, json.dumps(manifest("20250304T000000Z")).encode())
    write_bytes(as_dir / "database.sqlite3.zst" / "inside", b"in a directory")

    fifo = backups / "20250305T000000Z"  # a FIFO manifest: reading it would wait forever
    fifo.mkdir()
    os.mkfifo(fifo / MANIFEST)
    write_bytes(fifo / "database.sqlite3.zst", b"beside a fifo")

    write_bytes(outside / "staging-target" / "kept.txt", b"behind a staging symlink")
    os.symlink(outside / "staging-target", backups / (STAGING_PREFIX + "20250306T000000Z"))
    write_bytes(backups / (STAGING_PREFIX + "20250307T000000Z"), b"a staging-named file")
    write_bytes(backups / "20250308T000000Z", b"a set-named file")
    os.symlink(outside / "precious.txt", backups / "20250309T000000Z")


def stray_entries(backups: Path, outside: Path) -> None:
    """Odd names and leftovers around the sets."""
    write_bytes(backups / "stray.txt", b"a stray file")
    write_bytes(backups / "lost+found" / "x", b"fsck")
    write_bytes(backups / os.fsdecode(b"\xff\xfe-not-utf8"), b"not UTF-8 name")
    write_bytes(backups / "20250310T000000Z" / os.fsdecode(b"caf\xe9"), b"no manifest here")
    os.symlink("/nonexistent/dangling", backups / "dangling")
    unfinished = backups / (STAGING_PREFIX + os.fsdecode(b"2025\xff"))
    write_bytes(unfinished / "half.zst", b"half")
    os.symlink(outside / "precious.txt", unfinished / "link-out")  # prune removes the link


def strangers_in_genuine_sets(backups: Path, outside: Path) -> None:
    """Files torrust-maint did not write, inside a set it did: left when the set is pruned."""
    first = backups / GENUINE[0]
    write_bytes(first / "operator-notes.txt", b"keep me")
    write_bytes(first / "extra" / "deep.txt", b"keep me too")
    write_bytes(first / os.fsdecode(b"notes-\xff"), b"odd name")
    os.symlink(outside / "precious.txt", first / "link-out")
    os.mkfifo(first / "fifo")


def hostile_backups(root: Path) -> tuple[Path, Path]:
    """(backup directory, a directory outside it that symlinks point into)."""
    backups, outside = root / "backups", root / "outside"
    backups.mkdir(mode=0o700)
    outside.mkdir()
    for set_id in GENUINE:
        genuine_set(backups, set_id, root / "scratch")
    corrupt_sets(backups, outside)
    symlinked_sets(backups, outside)
    stray_entries(backups, outside)
    strangers_in_genuine_sets(backups, outside)
    return backups, outside


# -- proving nothing changed ---------------------------------------------------------------

def fingerprint(root: Path) -> dict[bytes, tuple]:
    """Every entry below root (symlinks not followed): its kind and its content or target."""
    found: dict[bytes, tuple] = {}
    for top, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs + files:
            path = os.path.join(top, name)
            info = os.lstat(path)
            key = os.path.relpath(path, os.fsencode(root))
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("symlink", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    found[key] = ("file", hashlib.sha256(handle.read()).hexdigest())
            else:
                found[key] = (stat.S_IFMT(info.st_mode),)
    return found


def ours(key: bytes) -> bool:
    """What torrust-maint may change: genuine sets' own files, unfinished staging
    directories (prune removes them) and its lock."""
    parts = key.split(b"/")
    if parts[0] in {s.encode() for s in GENUINE}:
        return len(parts) == 1 or parts[1:] in ([b"manifest.json"], [b"database.sqlite3.zst"])
    if parts[0].startswith(STAGING_PREFIX.encode()) and parts[0] != (
            STAGING_PREFIX + "20250306T000000Z").encode() and parts[0] != (
            STAGING_PREFIX + "20250307T000000Z").encode():
        return True
    return parts[0] == b".torrust-maint.lock"


# -- the commands ----------------------------------------------------------------------------

class Hung(BaseException):
    """Raised by SIGALRM: no `except OSError` or `except Exception` can swallow it."""


@pytest.fixture(autouse=True)
def _no_hang(monkeypatch, fake_docker):
    """A FIFO read would block forever: fail after 60 s instead. Docker records, refuses."""
    def timeout(signum, frame):
        raise Hung("hung: a read blocked for 60 s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setattr(cli, "Docker",
                        lambda dry_run=False: Docker(runner=fake_docker, dry_run=dry_run))
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def write_config(root: Path, backups: Path, extra: str = "") -> Path:
    """Keep one set by retention (keep_last = 1): prune has genuine sets to delete."""
    path = root / "torrust-maint.toml"
    path.write_text(f'[deployment]\ncompose_dir = "{root}/compose"\n'
                    f'[state]\ndirectory = "{root}/state"\n'
                    f'[backup]\ndirectory = "{backups}"\n'
                    "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\n"
                    f"keep_monthly = 0\n{extra}")
    return path


def run(capsys, config: Path, *argv: str) -> tuple[int, str, str]:
    """cli.main in this process; no crash, no traceback, no logging error, whatever the code."""
    code = cli.main(["--config", str(config), *argv])
    for handler in logging.getLogger().handlers:
        handler.close()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert "Logging error" not in err, err
    return code, out, err


def strict_json(text: str):
    """JSON as a strict reader takes it: no NaN, no Infinity."""
    def refuse(name):
        raise ValueError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


def test_hostile_backup_directory_survives_every_command(tmp_path, capsys, fake_docker):
    backups, outside = hostile_backups(tmp_path)
    config = write_config(tmp_path, backups)
    before_backups, before_outside = fingerprint(backups), fingerprint(outside)

    code, out, _ = run(capsys, config, "list")
    assert code == 0
    lines = out.splitlines()
    assert all(line.isprintable() for line in lines)
    assert sum("complete, passed" in line for line in lines) == len(GENUINE)
    code, out, _ = run(capsys, config, "list", "--json")
    listed = {s["id"]: s for s in strict_json(out)}
    assert code == 0 and {s for s in listed if listed[s]["complete"]} == set(GENUINE)

    code, out, err = run(capsys, config, "verify", "--all")
    assert code == 1 and "verification failed for " in err
    for set_id in GENUINE:
        assert f"{set_id}: verified" in out

    code, out, _ = run(capsys, config, "prune", "--dry-run")
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("would delete")] == [
        f"would delete {GENUINE[0]}", f"would delete {GENUINE[1]}"]
    assert fingerprint(outside) == before_outside

    code, out, _ = run(capsys, config, "prune")
    assert code == 0 and "pruned 2 set(s)" in out

    code, out, _ = run(capsys, config, "list", "--json")
    assert code == 0 and [s["id"] for s in strict_json(out) if s["complete"]] == [GENUINE[2]]
    after = fingerprint(backups)
    assert {k: v for k, v in before_backups.items() if not ours(k)} == \
           {k: v for k, v in after.items() if not ours(k)}
    assert fingerprint(outside) == before_outside
    assert not (backups / GENUINE[1]).exists()
    assert sorted(os.listdir(os.fsencode(backups / GENUINE[0]))) == sorted(
        [b"operator-notes.txt", b"extra", b"notes-\xff", b"link-out", b"fifo"])
    # SQLite sets need no Docker; verify only looks for throwaway containers a killed run left
    assert [argv[1] for argv in fake_docker.calls] == ["ps"]


def test_every_garbled_manifest_is_an_incomplete_set(tmp_path):
    backups, outside = tmp_path / "backups", tmp_path / "outside"
    backups.mkdir()
    outside.mkdir()
    corrupt_sets(backups, outside)
    found = list_sets(backups)
    assert len(found) == len(GARBLED) + 10
    for backup_set in found:
        assert not backup_set.complete and backup_set.manifest is None, backup_set.id
        assert backup_set.problem and backup_set.problem.isprintable()
        with pytest.raises(MaintError, match="refusing to delete"):
            delete_set(backup_set)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"created_at": 5}, "manifest field 'created_at' is a number, not a string"),
    ({"database": []}, "manifest field 'database' is an array, not an object"),
    ({"downtime_seconds": True}, "manifest field 'downtime_seconds' is a boolean, not a number "
                                 "or null"),
    ({"artifacts": [artifact(path="../x")]},
     "artifact path '../x' is not a file name inside the set"),
    ({"artifacts": [artifact(path="/etc/passwd")]},
     "artifact path '/etc/passwd' is not a file name inside the set"),
    ({"artifacts": [artifact(size="8")]}, "artifact 'database.sqlite3.zst': size '8' is not a "
                                          "byte count"),
    ({"artifacts": [7]}, "an artifact entry is a number, not an object"),
    ({"artifacts": [artifact(), artifact()]}, "manifest lists an artifact twice"),
    ({"format": True}, "manifest format True is not 1"),
])
def test_read_manifest_names_the_wrong_field(tmp_path, changes, problem):
    (tmp_path / MANIFEST).write_text(json.dumps(manifest("x", **changes)))
    assert catalog.read_manifest(tmp_path) == (None, problem)


@pytest.mark.parametrize(("make", "problem"), [
    (lambda d: os.mkfifo(d / MANIFEST), "unreadable manifest.json: it is not a regular file"),
    (lambda d: os.symlink("/etc/hostname", d / MANIFEST),
     "unreadable manifest.json: it is a symbolic link"),
    (lambda d: (d / MANIFEST).write_bytes(b" " * (16 << 20) + b"{}"),
     f"unreadable manifest.json: larger than {16 << 20} bytes"),
    (lambda d: (d / MANIFEST).write_bytes(b"[" * 100000 + b"]" * 100000),
     "unreadable manifest.json: nested too deeply"),
    (lambda d: (d / MANIFEST).write_text('{"tool": "torrust-maint", "x": NaN}'),
     "unreadable manifest.json: NaN is not JSON"),
])
def test_read_manifest_refuses_what_is_no_manifest_file(tmp_path, make, problem):
    make(tmp_path)
    assert catalog.read_manifest(tmp_path) == (None, problem)


def test_a_symlinked_artifact_makes_the_set_incomplete(tmp_path):
    (tmp_path / "outside.bin").write_bytes(b"outside")
    set_dir = tmp_path / "20250101T000000Z"
    set_dir.mkdir()
    (set_dir / MANIFEST).write_text(json.dumps(manifest("20250101T000000Z")))
    os.symlink(tmp_path / "outside.bin", set_dir / "database.sqlite3.zst")
    (found,) = list_sets(tmp_path)
    assert found.problem == "artifact 'database.sqlite3.zst' is a symbolic link"


def test_staging_leftover_with_an_undecodable_name_gets_a_printable_id(tmp_path):
    (tmp_path / (STAGING_PREFIX + os.fsdecode(b"2025\xff\x1b"))).mkdir()
    (found,) = list_sets(tmp_path)
    assert found.id == "2025\\udcff\\x1b"
    assert "\\udcff" in listing.row(found) and listing.row(found).isprintable()


def test_only_real_directories_are_sets(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / MANIFEST).write_text(json.dumps(manifest("20250101T000000Z")))
    backups = tmp_path / "backups"
    backups.mkdir()
    os.symlink(target, backups / "20250101T000000Z")
    os.symlink(target, backups / (STAGING_PREFIX + "20250102T000000Z"))
    (backups / "20250103T000000Z").write_text("a file")
    assert list_sets(backups) == []
    assert list_sets(backups / "20250103T000000Z") == []  # a file as the directory


# -- delete_set against a set that turned hostile after it was listed --------------------------

def listed_set(tmp_path: Path, *names: str) -> BackupSet:
    """A complete set of ours listing `names`, each written as a plain file."""
    set_dir = tmp_path / "backups" / "20250101T000000Z"
    set_dir.mkdir(parents=True)
    for name in names:
        (set_dir / name).write_bytes(name.encode())
    data = manifest("20250101T000000Z", artifacts=[artifact(path=n, size=len(n)) for n in names])
    (set_dir / MANIFEST).write_text(json.dumps(data))
    (found,) = list_sets(set_dir.parent)
    assert found.complete, found.problem
    return found


def test_delete_set_leaves_an_artifact_that_became_a_symlink(tmp_path):
    found = listed_set(tmp_path, "database.sqlite3.zst", "config.tar.zst")
    precious = tmp_path / "precious.txt"
    precious.write_text("precious")
    (found.path / "config.tar.zst").unlink()
    os.symlink(precious, found.path / "config.tar.zst")
    assert delete_set(found) == ["config.tar.zst"]
    assert os.readlink(found.path / "config.tar.zst") == str(precious)
    assert precious.read_text() == "precious"
    assert not (found.path / "database.sqlite3.zst").exists()


def test_delete_set_leaves_an_artifact_that_became_a_directory(tmp_path):
    found = listed_set(tmp_path, "database.sqlite3.zst")
    (found.path / "database.sqlite3.zst").unlink()
    (found.path / "database.sqlite3.zst").mkdir()
    assert delete_set(found) == ["database.sqlite3.zst"]


def test_delete_set_refuses_a_set_directory_swapped_for_a_symlink(tmp_path):
    found = listed_set(tmp_path, "database.sqlite3.zst")
    moved = tmp_path / "moved"
    found.path.rename(moved)
    os.symlink(moved, found.path)
    with pytest.raises(MaintError, match="refusing to delete"):
        delete_set(found)
    assert sorted(os.listdir(moved)) == ["database.sqlite3.zst", MANIFEST]


def test_delete_set_refuses_a_manifest_swapped_for_a_symlink(tmp_path):
    found = listed_set(tmp_path, "database.sqlite3.zst")
    elsewhere = tmp_path / "elsewhere.json"
    (found.path / MANIFEST).rename(elsewhere)
    os.symlink(elsewhere, found.path / MANIFEST)
    with pytest.raises(MaintError, match="manifest.json is no longer a plain file"):
        delete_set(found)
    assert (found.path / "database.sqlite3.zst").exists() and elsewhere.exists()


def test_delete_set_never_follows_artifact_paths_out_of_the_set(tmp_path):
    """A manifest whose artifact path leads out of the set is no manifest of a set: the set is
    incomplete and never deleted; handed over anyway, only plain names inside are unlinked.
    (Replaces the test of this name in test_catalog.py, which expected it to be deleted.)"""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    found = listed_set(tmp_path, "database.sqlite3.zst")
    data = json.loads((found.path / MANIFEST).read_text())
    data["artifacts"] += [artifact(path=p) for p in ("../../outside.txt", str(outside), "..")]
    (found.path / MANIFEST).write_text(json.dumps(data))
    (again,) = list_sets(found.path.parent)
    assert not again.complete and "is not a file name inside the set" in again.problem
    with pytest.raises(MaintError, match="refusing to delete"):
        delete_set(again)
    assert delete_set(BackupSet(found.id, found.path, data)) == []
    assert outside.read_text() == "precious"


# -- listing whatever a BackupSet holds -------------------------------------------------------

EVERY_FIELD_WRONG = {
    "format": 1, "tool": "torrust-maint", "id": "20250101T000000Z", "complete": True,
    "created_at": 5, "tool_version": ["x"], "database": "sqlite3", "artifacts": [
        "x", 5, None, {"path": 5}, {"path": "/etc/passwd", "size": "big"},
        {"path": "../x", "size": 1}, {"name": "database", "path": "ok.zst", "size": "7"}],
    "downtime_seconds": "fast", "phases": [], "warnings": "none", "verification": 5,
}


def test_to_json_and_the_table_take_any_manifest(tmp_path):
    backup_set = BackupSet("20250101T000000Z", tmp_path, copy.deepcopy(EVERY_FIELD_WRONG))
    data = backup_set.to_json()
    assert (data["created_at"], data["tool_version"], data["database"]) == (None, None, {})
    assert (data["downtime_seconds"], data["phases"], data["warnings"]) == (None, {}, [])
    assert [a["path"] for a in data["artifacts"]] == [str(tmp_path / "ok.zst")]
    json.dumps(data, allow_nan=False)
    assert listing.row(backup_set).split()[:5] == ["20250101T000000Z", "-", "-", "0", "-"]


def test_undecodable_names_reach_the_log_file_escaped(tmp_path, capsys):
    """verify and prune log the paths they look at; one that is not UTF-8 must not make the
    [logging] file handler print a "--- Logging error ---" traceback."""
    backups = tmp_path / "backups"
    write_bytes(backups / (STAGING_PREFIX + os.fsdecode(b"2025\xff")) / "half.zst", b"half")
    log_file = tmp_path / "log" / "torrust-maint.log"
    config = write_config(tmp_path, backups, f'[logging]\nfile = "{log_file}"\n')
    assert run(capsys, config, "verify", "--all")[0] == 1
    assert run(capsys, config, "prune")[0] == 0
    assert "2025\\udcff" in log_file.read_text()
