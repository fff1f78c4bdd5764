"""catalog: staging and atomic commit, listing, set ids and deletion of sets."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from torrust_maint import catalog
from torrust_maint.catalog import (
    MANIFEST,
    STAGING_PREFIX,
    StagedSet,
    delete_set,
    list_sets,
    set_id_for,
)
from torrust_maint.errors import MaintError

UTC = dt.UTC


def manifest_for(set_id: str, created_at: str, artifacts: list[str] = ()) -> dict:
    return {
        "format": 1,
        "tool": "torrust-maint",
        "id": set_id,
        "created_at": created_at,
        "complete": True,
        "artifacts": [{"name": name, "path": name, "size": 1} for name in artifacts],
    }


def make_set(directory: Path, set_id: str, created_at: str,
             artifacts: tuple[str, ...] = ("database.sqlite3.zst",), **changes) -> Path:
    staged = StagedSet(directory, set_id)
    for name in artifacts:
        (staged.path / name).write_bytes(b"artifact " + name.encode())
    manifest = manifest_for(set_id, created_at, list(artifacts))
    manifest.update(changes)
    return staged.commit(manifest)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def by_id(directory: Path) -> dict[str, catalog.BackupSet]:
    return {s.id: s for s in list_sets(directory)}


# -- staging and commit ----------------------------------------------------------------------

def test_commit_renames_the_staging_directory_into_place(tmp_path):
    staged = StagedSet(tmp_path, "20261126T030000Z")
    assert staged.path.name == STAGING_PREFIX + "20261126T030000Z"
    assert mode_of(staged.path) == 0o700
    (staged.path / "database.sqlite3.zst").write_bytes(b"data")
    manifest = manifest_for("20261126T030000Z", "2026-11-26T03:00:00.000000Z",
                            ["database.sqlite3.zst"])

    final = staged.commit(manifest)

    assert final == tmp_path / "20261126T030000Z"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261126T030000Z"]
    assert not staged.path.exists()
    assert mode_of(final) == 0o700
    assert mode_of(final / MANIFEST) == 0o600
    assert json.loads((final / MANIFEST).read_text()) == manifest
    assert (final / "database.sqlite3.zst").read_bytes() == b"data"


def test_staging_directory_is_private_even_with_a_lax_umask(tmp_path):
    old = os.umask(0)
    try:
        final = make_set(tmp_path, "20261126T030000Z", "2026-11-26T03:00:00Z")
    finally:
        os.umask(old)
    assert mode_of(final) == 0o700
    assert mode_of(final / MANIFEST) == 0o600


def test_discard_removes_the_staging_directory(tmp_path):
    staged = StagedSet(tmp_path, "20261126T030000Z")
    (staged.path / "partial.zst").write_bytes(b"x")
    staged.discard()
    assert list(tmp_path.iterdir()) == []


# -- listing ---------------------------------------------------------------------------------

def test_list_sets_of_a_missing_directory_is_empty(tmp_path):
    assert list_sets(tmp_path / "missing") == []


def test_complete_sets_are_listed_oldest_first(tmp_path):
    make_set(tmp_path, "20260302T000000Z", "2026-03-02T00:00:00.000000Z")
    make_set(tmp_path, "20260301T000000Z", "2026-03-01T00:00:00.000000Z")
    # A name sorting first but created last: listing follows created_at, not the name.
    make_set(tmp_path, "20260101T000000Z", "2026-03-03T00:00:00.000000Z")
    sets = list_sets(tmp_path)
    assert [s.id for s in sets] == ["20260301T000000Z", "20260302T000000Z", "20260101T000000Z"]
    assert all(s.complete and s.problem == "" for s in sets)
    assert sets[0].created_at == dt.datetime(2026, 3, 1, tzinfo=UTC)


def test_staging_leftovers_are_incomplete_and_unrelated_entries_ignored(tmp_path):
    make_set(tmp_path, "20260301T000000Z", "2026-03-01T00:00:00Z")
    leftover = tmp_path / (STAGING_PREFIX + "20260302T000000Z")
    leftover.mkdir()
    (leftover / "database.sqlite3.zst").write_bytes(b"half")
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "notes.txt").write_text("not a set")
    (tmp_path / "20260303T000000Z.tar").write_text("a file with a set-like name")
    (tmp_path / ".torrust-maint.lock").write_text("")
    os.symlink(tmp_path / "20260301T000000Z", tmp_path / "20260304T000000Z")

    sets = by_id(tmp_path)

    assert set(sets) == {"20260301T000000Z", "20260302T000000Z"}
    unfinished = sets["20260302T000000Z"]
    assert not unfinished.complete
    assert unfinished.path == leftover
    assert unfinished.problem.startswith("unfinished")
    assert unfinished.created_at is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no manifest.json"),
        (b"{not json", "unreadable manifest.json"),
        (b"\xff\xfe garbage", "unreadable manifest.json"),
        (b"[1, 2]", "manifest.json was not written by torrust-maint"),
        (json.dumps({"tool": "borg", "id": "20260305T000000Z", "complete": True}).encode(),
         "manifest.json was not written by torrust-maint"),
        (json.dumps(dict(manifest_for("20260305T000000Z", "2026-03-05T00:00:00Z"),
                         format=2)).encode(),
         "manifest format 2 is not 1"),
        (json.dumps(manifest_for("20260101T000000Z", "2026-03-05T00:00:00Z")).encode(),
         "manifest id '20260101T000000Z' does not match"),
    ],
)
def test_sets_with_unusable_manifests_are_incomplete(tmp_path, content, problem):
    set_dir = tmp_path / "20260305T000000Z"
    set_dir.mkdir()
    if content is not None:
        (set_dir / MANIFEST).write_bytes(content)
    (found,) = list_sets(tmp_path)
    assert found.id == "20260305T000000Z"
    assert not found.complete
    assert found.manifest is None
    assert found.problem.startswith(problem)


def test_manifest_not_marked_complete_is_incomplete(tmp_path):
    make_set(tmp_path, "20260305T000000Z", "2026-03-05T00:00:00Z", complete=False)
    (found,) = list_sets(tmp_path)
    assert found.manifest is not None and not found.complete


@pytest.mark.parametrize("created_at", [5, None, "yesterday", ["2026"]])
def test_garbled_creation_time_means_no_creation_time(tmp_path, created_at):
    make_set(tmp_path, "20260301T000000Z", "2026-03-01T00:00:00Z")
    final = make_set(tmp_path, "20260305T000000Z", "2026-03-05T00:00:00Z")
    manifest = json.loads((final / MANIFEST).read_text())
    manifest["created_at"] = created_at
    (final / MANIFEST).write_text(json.dumps(manifest))
    sets = list_sets(tmp_path)
    assert [s.id for s in sets] == ["20260301T000000Z", "20260305T000000Z"]  # undated last
    assert sets[1].created_at is None


def test_to_json_gives_artifact_paths_inside_the_set(tmp_path):
    final = make_set(tmp_path, "20260305T000000Z", "2026-03-05T00:00:00Z",
                     artifacts=("database.sqlite3.zst", "config.tar.zst"))
    (found,) = list_sets(tmp_path)
    data = found.to_json()
    assert data["id"] == "20260305T000000Z" and data["complete"] is True
    assert data["problem"] is None
    assert [a["path"] for a in data["artifacts"]] == [str(final / "database.sqlite3.zst"),
                                                       str(final / "config.tar.zst")]


# -- set ids ---------------------------------------------------------------------------------

def test_set_id_is_the_utc_time(tmp_path):
    moment = dt.datetime(2026, 11, 26, 4, 0, 0, 999999,
                         tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert set_id_for(moment, tmp_path) == "20261126T030000Z"
    assert catalog.SET_NAME.match(set_id_for(moment, tmp_path))


def test_set_id_gets_a_suffix_when_taken(tmp_path):
    moment = dt.datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC)
    (tmp_path / "20261126T030000Z").mkdir()
    assert set_id_for(moment, tmp_path) == "20261126T030000Z-1"
    (tmp_path / (STAGING_PREFIX + "20261126T030000Z-1")).mkdir()
    assert set_id_for(moment, tmp_path) == "20261126T030000Z-2"
    assert catalog.SET_NAME.match("20261126T030000Z-2")


def test_rfc3339_round_trip():
    moment = dt.datetime(2026, 11, 26, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    text = catalog.rfc3339(moment)
    assert text == "2026-11-26T03:05:06.000007Z"
    assert catalog.parse_rfc3339(text) == moment


# -- deletion --------------------------------------------------------------------------------

def test_delete_set_removes_manifest_artifacts_and_directory(tmp_path):
    final = make_set(tmp_path, "20260301T000000Z", "2026-03-01T00:00:00Z",
                     artifacts=("database.sqlite3.zst", "config.tar.zst"))
    (found,) = list_sets(tmp_path)
    assert delete_set(found) == []
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_delete_set_leaves_and_reports_files_it_did_not_create(tmp_path):
    final = make_set(tmp_path, "20260301T000000Z", "2026-03-01T00:00:00Z",
                     artifacts=("database.sqlite3.zst", "config.tar.zst"))
    (final / "operator-notes.txt").write_text("keep me")
    (final / "extra").mkdir()
    (found,) = list_sets(tmp_path)

    assert delete_set(found) == ["extra", "operator-notes.txt"]

    assert sorted(p.name for p in final.iterdir()) == ["extra", "operator-notes.txt"]
    assert (final / "operator-notes.txt").read_text() == "keep me"
    # what is left is no longer a complete set
    (again,) = list_sets(tmp_path)
    assert not again.complete and again.problem == "no manifest.json"


def test_delete_set_refuses_an_unfinished_set(tmp_path):
    leftover = tmp_path / (STAGING_PREFIX + "20260302T000000Z")
    leftover.mkdir()
    (leftover / "database.sqlite3.zst").write_bytes(b"half")
    (found,) = list_sets(tmp_path)
    with pytest.raises(MaintError, match="refusing to delete .*not a complete torrust-maint set"):
        delete_set(found)
    assert (leftover / "database.sqlite3.zst").read_bytes() == b"half"


def test_delete_set_refuses_a_foreign_set(tmp_path):
    set_dir = tmp_path / "20260305T000000Z"
    set_dir.mkdir()
    (set_dir / MANIFEST).write_text(json.dumps({"tool": "borg", "complete": True}))
    (found,) = list_sets(tmp_path)
    with pytest.raises(MaintError, match=f"refusing to delete {set_dir}"):
        delete_set(found)
    assert (set_dir / MANIFEST).exists()


def test_ensure_directory_creates_a_private_directory(tmp_path):
    target = tmp_path / "a" / "backups"
    catalog.ensure_directory(target)
    assert target.is_dir() and mode_of(target) == 0o700


def test_ensure_directory_failure_names_the_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MaintError, match=r"^\[backup\] directory: cannot create .*/file/backups"):
        catalog.ensure_directory(blocker / "backups")
