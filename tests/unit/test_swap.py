"""FileSwap: the live file and its -wal/-journal set aside, the checked file renamed in; undone
from any point of apply, never through a symlink, never over an existing name."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from torrust_maint import swap as swap_module
from torrust_maint.errors import MaintError
from torrust_maint.safefs import UnsafePath
from torrust_maint.swap import FileSwap

NAME = "sqlite3.db"
INCOMING = NAME + ".torrust-maint-restore"
ASIDE = NAME + ".torrust-maint-pre-restore-R1"
CHECKPOINTED_ROWS = 5  # in the main file
WAL_ROWS = 7  # committed, but only in the -wal
OLD_ROWS = CHECKPOINTED_ROWS + WAL_ROWS
INCOMING_ROWS = 9
# A stand-in for a rollback journal left beside the database (its magic, then zeroes).
JOURNAL = bytes.fromhex("d9d505f920a163d7") + bytes(504)
SHM = NAME + "-shm"
VICTIM_TEXT = b"root's file outside the directory: must stay as it is\n"


# -- helpers --------------------------------------------------------------------------------

def insert(connection: sqlite3.Connection, first: int, count: int) -> None:
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO torrents (id, info_hash) VALUES (?, ?)",
                           [(n, f"{n:040x}") for n in range(first, first + count)])
    connection.execute("COMMIT")


def old_database(directory: Path, journal: bool = True) -> None:
    """The live state before a restore: a WAL database whose last WAL_ROWS committed rows exist
    only in its -wal (the files copied while the writer holds them), its -shm, a -journal."""
    directory.mkdir(parents=True, exist_ok=True)
    writer_dir = directory.parent / f"{directory.name}-writer"
    writer_dir.mkdir()
    db = writer_dir / NAME
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode=wal").fetchone() == ("wal",)
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash TEXT)")
        insert(writer, 0, CHECKPOINTED_ROWS)
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        insert(writer, CHECKPOINTED_ROWS, WAL_ROWS)
        for suffix in ("", "-wal", "-shm"):
            shutil.copyfile(f"{db}{suffix}", directory / f"{NAME}{suffix}")
    finally:
        writer.close()
    if journal:
        (directory / f"{NAME}-journal").write_bytes(JOURNAL)
    assert (directory / f"{NAME}-wal").stat().st_size > 0


def incoming_database(directory: Path) -> int:
    """The restored database written beside the live one; its inode."""
    path = directory / INCOMING
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, info_hash TEXT)")
        connection.executemany("INSERT INTO torrents (info_hash) VALUES (?)",
                               [(f"{n:040x}",) for n in range(INCOMING_ROWS)])
    connection.close()
    return path.stat().st_ino


def make_swap(directory: Path, incoming_ino: int) -> FileSwap:
    """As sqlite_engine.stage_restore makes it."""
    return FileSwap(directory=str(directory), name=NAME, incoming=INCOMING, aside=ASIDE,
                    incoming_ino=incoming_ino, companions=("-wal", "-journal"), stale=("-shm",))


@pytest.fixture
def live(tmp_path: Path) -> Path:
    directory = tmp_path / "lib" / "database"
    old_database(directory)
    return directory


@pytest.fixture
def swap(live: Path) -> FileSwap:
    return make_swap(live, incoming_database(live))


def state(directory: Path) -> dict[str, tuple]:
    """Every name in the directory: its inode and what it is (a digest, a link target...)."""
    found = {}
    for entry in os.scandir(directory):
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(info.st_mode):
            what = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
        elif stat.S_ISLNK(info.st_mode):
            what = "symlink to " + os.readlink(entry.path)
        else:
            what = stat.filemode(info.st_mode)
        found[entry.name] = (info.st_ino, what)
    return found


def without_shm(found: dict[str, tuple]) -> dict[str, tuple]:
    return {name: value for name, value in found.items() if name != SHM}


def rows(directory: Path, name: str, scratch: Path) -> int:
    """The rows a reader sees in `name` with its -wal, read from copies (a connection on the
    files themselves would checkpoint them, or treat the -journal as hot)."""
    scratch.mkdir()
    shutil.copyfile(directory / name, scratch / "copy.db")
    if (directory / f"{name}-wal").exists():
        shutil.copyfile(directory / f"{name}-wal", scratch / "copy.db-wal")
    connection = sqlite3.connect(scratch / "copy.db")
    try:
        return connection.execute("SELECT count(*) FROM torrents").fetchone()[0]
    finally:
        connection.close()
        shutil.rmtree(scratch)


def crash_after(monkeypatch, renames: int) -> list[tuple[str, str]]:
    """os.rename works `renames` times, then fails as a crash would cut apply short."""
    real = os.rename
    done: list[tuple[str, str]] = []

    def rename(source, target, *args, **kwargs):
        if len(done) == renames:
            raise OSError(errno.EIO, "simulated crash")
        real(source, target, *args, **kwargs)
        done.append((source, target))

    monkeypatch.setattr(swap_module.os, "rename", rename)
    return done


def make_victim(path: Path) -> Path:
    path.write_bytes(VICTIM_TEXT)
    return path


def assert_untouched(victim: Path) -> None:
    assert victim.read_bytes() == VICTIM_TEXT
    assert not victim.is_symlink()


# -- the fixture is what it claims ----------------------------------------------------------

def test_the_old_state_has_committed_rows_only_in_its_wal(live, tmp_path):
    assert rows(live, NAME, tmp_path / "scratch") == OLD_ROWS
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(live / NAME, alone / NAME)
    assert rows(alone, NAME, tmp_path / "scratch") == CHECKPOINTED_ROWS


# -- apply ----------------------------------------------------------------------------------

def test_apply_puts_the_incoming_inode_live_and_the_old_files_aside(swap, live, tmp_path):
    before = state(live)
    swap.check_ready()
    assert not swap.applied()

    swap.apply()

    after = state(live)
    assert after[NAME] == before[INCOMING]
    assert os.lstat(live / NAME).st_ino == swap.incoming_ino
    assert after[ASIDE] == before[NAME]
    assert after[ASIDE + "-wal"] == before[NAME + "-wal"]
    assert after[ASIDE + "-journal"] == before[NAME + "-journal"]
    assert set(after) == {NAME, ASIDE, ASIDE + "-wal", ASIDE + "-journal"}  # -shm removed
    assert swap.applied()
    assert swap.aside_paths() == [live / ASIDE, live / (ASIDE + "-wal"),
                                  live / (ASIDE + "-journal")]
    assert rows(live, NAME, tmp_path / "scratch") == INCOMING_ROWS
    assert rows(live, ASIDE, tmp_path / "scratch") == OLD_ROWS  # with its -wal


def test_apply_without_a_journal_moves_what_is_there(tmp_path):
    live = tmp_path / "lib"
    old_database(live, journal=False)
    swap = make_swap(live, incoming_database(live))
    before = state(live)
    swap.check_ready()
    swap.apply()
    after = state(live)
    assert set(after) == {NAME, ASIDE, ASIDE + "-wal"}
    assert after[NAME] == before[INCOMING] and after[ASIDE] == before[NAME]
    assert swap.aside_paths() == [live / ASIDE, live / (ASIDE + "-wal")]


# -- undo from every point of apply ---------------------------------------------------------

POINTS = [(True, n) for n in range(5)] + [(False, n) for n in range(4)]


@pytest.mark.parametrize(("journal", "renames"), POINTS,
                         ids=[f"{'wal+journal' if j else 'wal'}-after-{n}" for j, n in POINTS])
def test_undo_from_every_point_of_apply_puts_the_old_state_back(tmp_path, monkeypatch,
                                                                journal, renames):
    """apply renames the companions, then the file aside, then the incoming file in: cut
    short after each rename (and once complete), undo puts the state from before back."""
    live = tmp_path / "lib"
    old_database(live, journal=journal)
    swap = make_swap(live, incoming_database(live))
    total = 4 if journal else 3
    before = state(live)
    swap.check_ready()

    with monkeypatch.context() as patched:
        done = crash_after(patched, renames)
        if renames < total:
            with pytest.raises(OSError, match="simulated crash"):
                swap.apply()
        else:
            swap.apply()
    assert len(done) == renames
    assert swap.applied() == (renames == total)

    swap.undo()

    after = state(live)
    assert without_shm(after) == without_shm(before)  # every name holds its inode again
    if SHM in after:  # only removed once the file itself was aside
        assert after[SHM] == before[SHM]
    assert not any(name.startswith(ASIDE) for name in after)
    assert not swap.applied()
    assert os.lstat(live / INCOMING).st_ino == swap.incoming_ino
    assert rows(live, NAME, tmp_path / "scratch") == OLD_ROWS  # the WAL's rows too
    assert rows(live, INCOMING, tmp_path / "scratch") == INCOMING_ROWS

    swap.undo()  # idempotent: a second undo changes nothing
    assert state(live) == after


def test_undo_after_a_crash_at_the_stale_shm(swap, live, monkeypatch, tmp_path):
    before = state(live)

    def unlink(*args, **kwargs):
        raise OSError(errno.EIO, "simulated crash")

    with monkeypatch.context() as patched:
        patched.setattr(swap_module.os, "unlink", unlink)
        with pytest.raises(OSError, match="simulated crash"):
            swap.apply()
    assert NAME not in state(live)  # the live name is empty at this point

    swap.undo()

    assert state(live) == before
    assert rows(live, NAME, tmp_path / "scratch") == OLD_ROWS


def test_undo_after_a_full_apply_restores_the_old_state(swap, live, tmp_path):
    before = state(live)
    swap.apply()
    swap.undo()
    once = state(live)
    assert once == without_shm(before)
    assert rows(live, NAME, tmp_path / "scratch") == OLD_ROWS
    swap.undo()
    swap.undo()
    assert state(live) == once


def test_apply_again_after_an_undo(swap, live, tmp_path):
    """A restore retried after its swap was undone swaps the same checked file in."""
    before = state(live)
    swap.apply()
    swap.undo()
    swap.check_ready()
    swap.apply()
    assert state(live)[NAME] == before[INCOMING]
    assert rows(live, ASIDE, tmp_path / "scratch") == OLD_ROWS


def test_undo_never_moves_the_state_from_before_over_a_new_live_file(swap, live, monkeypatch):
    """Cut short with the live name empty, then a tracker created a fresh database there:
    undo refuses rather than overwrite it, and keeps the state from before aside."""
    with monkeypatch.context() as patched:
        crash_after(patched, 3)
        with pytest.raises(OSError):
            swap.apply()
    (live / NAME).write_bytes(b"a fresh database the tracker created")
    aside = state(live)[ASIDE]

    with pytest.raises(MaintError, match=f"cannot move {live / ASIDE} to {live / NAME}: "
                                         "that name is taken"):
        swap.undo()

    assert state(live)[ASIDE] == aside
    assert (live / NAME).read_bytes() == b"a fresh database the tracker created"


def test_undo_does_not_take_a_symlink_to_the_incoming_file_for_it(swap, live):
    """undo tells the incoming file by its inode, from lstat: a symlink is not it."""
    swap.apply()
    os.rename(live / NAME, live / "elsewhere")
    (live / NAME).symlink_to(live / "elsewhere")
    with pytest.raises(MaintError, match="that name is taken"):
        swap.undo()
    assert (live / NAME).is_symlink()
    assert not (live / INCOMING).exists()


# -- check_ready ----------------------------------------------------------------------------

def test_check_ready_refuses_an_incoming_file_with_another_inode(swap, live):
    shutil.copyfile(live / INCOMING, live / "copy")
    os.replace(live / "copy", live / INCOMING)  # the same bytes, another file
    before = state(live)
    with pytest.raises(MaintError, match=f"^{live / INCOMING} is not the file this restore "
                                         "wrote: refusing to swap it in"):
        swap.check_ready()
    assert state(live) == before


def test_check_ready_refuses_a_missing_incoming_file(swap, live):
    (live / INCOMING).unlink()
    with pytest.raises(MaintError, match="is not the file this restore wrote"):
        swap.check_ready()


def test_check_ready_refuses_a_symlink_at_the_incoming_name(swap, live, tmp_path):
    victim = make_victim(tmp_path / "victim")
    os.rename(live / INCOMING, live / "moved")
    (live / INCOMING).symlink_to(victim)
    with pytest.raises(MaintError, match="is not the file this restore wrote"):
        swap.check_ready()
    assert_untouched(victim)


@pytest.mark.parametrize("suffix", ["", "-wal", "-journal"])
def test_check_ready_refuses_a_taken_aside_name(swap, live, suffix):
    (live / (ASIDE + suffix)).write_bytes(b"an earlier restore's")
    with pytest.raises(MaintError, match=f"^{live / (ASIDE + suffix)} exists: an earlier "
                                         "restore's state from before is still there"):
        swap.check_ready()


@pytest.mark.parametrize("suffix", ["", "-wal", "-journal"])
def test_check_ready_refuses_a_symlink_at_an_aside_name(swap, live, tmp_path, suffix):
    victim = make_victim(tmp_path / "victim")
    (live / (ASIDE + suffix)).symlink_to(victim)
    with pytest.raises(MaintError, match="exists: an earlier restore's state"):
        swap.check_ready()
    assert_untouched(victim)


def test_check_ready_refuses_a_dangling_symlink_at_the_aside_name(swap, live, tmp_path):
    (live / ASIDE).symlink_to(tmp_path / "not-there")
    with pytest.raises(MaintError, match="exists"):
        swap.check_ready()
    assert not (tmp_path / "not-there").exists()


# -- _move ----------------------------------------------------------------------------------

@pytest.fixture
def dir_fd(tmp_path: Path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_move_never_renames_over_an_existing_name(tmp_path, dir_fd):
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    with pytest.raises(MaintError, match=f"cannot move {tmp_path / 'a'} to {tmp_path / 'b'}: "
                                         "that name is taken"):
        swap_module._move(dir_fd, "a", "b", str(tmp_path))
    assert (tmp_path / "a").read_bytes() == b"a" and (tmp_path / "b").read_bytes() == b"b"


def test_move_never_renames_over_a_dangling_symlink(tmp_path, dir_fd):
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").symlink_to(tmp_path / "nowhere")
    with pytest.raises(MaintError, match="that name is taken"):
        swap_module._move(dir_fd, "a", "b", str(tmp_path))
    assert (tmp_path / "b").is_symlink() and not (tmp_path / "nowhere").exists()


def test_move_of_a_missing_name_does_nothing(tmp_path, dir_fd):
    (tmp_path / "b").write_bytes(b"b")
    assert swap_module._move(dir_fd, "a", "b", str(tmp_path)) is False
    assert swap_module._move(dir_fd, "a", "c", str(tmp_path)) is False
    assert sorted(os.listdir(tmp_path)) == ["b"]


def test_move_moves_a_symlink_itself(tmp_path, dir_fd):
    victim = make_victim(tmp_path / "victim")
    (tmp_path / "a").symlink_to(victim)
    assert swap_module._move(dir_fd, "a", "b", str(tmp_path)) is True
    assert os.readlink(tmp_path / "b") == str(victim)
    assert_untouched(victim)


# -- symlinks planted by whoever can write the directory ------------------------------------

@pytest.mark.parametrize("suffix", ["", "-wal", "-journal"])
def test_apply_never_follows_a_symlink_at_an_aside_name(swap, live, tmp_path, suffix):
    """Planted after check_ready: apply stops at it, the victim outside is untouched."""
    swap.check_ready()
    victim = make_victim(tmp_path / "victim")
    (live / (ASIDE + suffix)).symlink_to(victim)
    with pytest.raises(MaintError, match=f"{live / (ASIDE + suffix)}: that name is taken"):
        swap.apply()
    assert_untouched(victim)
    assert (live / (ASIDE + suffix)).is_symlink()
    assert os.lstat(live / NAME).st_ino != swap.incoming_ino


def test_symlinked_side_files_are_moved_or_removed_never_followed(swap, live, tmp_path):
    wal_victim = make_victim(tmp_path / "wal-victim")
    shm_victim = make_victim(tmp_path / "shm-victim")
    (live / (NAME + "-wal")).unlink()
    (live / (NAME + "-wal")).symlink_to(wal_victim)
    (live / SHM).unlink()
    (live / SHM).symlink_to(shm_victim)

    swap.apply()

    assert os.readlink(live / (ASIDE + "-wal")) == str(wal_victim)
    assert not os.path.lexists(live / SHM)
    assert_untouched(wal_victim)
    assert_untouched(shm_victim)

    swap.undo()
    assert os.readlink(live / (NAME + "-wal")) == str(wal_victim)
    swap.remove_incoming()
    assert_untouched(wal_victim)


def test_a_symlinked_directory_component_is_refused(tmp_path):
    real = tmp_path / "real"
    old_database(real)
    inode = incoming_database(real)
    (tmp_path / "link").symlink_to(real)
    before = state(real)
    swap = make_swap(tmp_path / "link", inode)
    for step in (swap.check_ready, swap.apply, swap.applied, swap.undo, swap.remove_incoming,
                 swap.remove_aside, swap.aside_paths):
        with pytest.raises(UnsafePath):
            step()
    assert state(real) == before


# -- remove_incoming ------------------------------------------------------------------------

def test_remove_incoming_removes_only_our_file(swap, live):
    swap.remove_incoming()
    assert not (live / INCOMING).exists()
    swap.remove_incoming()  # nothing there: nothing to do


def test_remove_incoming_leaves_a_file_whose_inode_differs(swap, live):
    os.rename(live / INCOMING, live / "moved")  # kept: its inode number is not reused
    (live / INCOMING).write_bytes(b"someone else's")
    swap.remove_incoming()
    assert (live / INCOMING).read_bytes() == b"someone else's"


def test_remove_incoming_leaves_a_symlink_and_its_target(swap, live, tmp_path):
    victim = make_victim(tmp_path / "victim")
    os.rename(live / INCOMING, live / "moved")
    (live / INCOMING).symlink_to(victim)
    swap.remove_incoming()
    assert (live / INCOMING).is_symlink()
    assert_untouched(victim)


def test_remove_incoming_never_removes_the_swapped_in_file(swap, live):
    swap.apply()
    swap.remove_incoming()
    assert os.lstat(live / NAME).st_ino == swap.incoming_ino


# -- remove_aside ---------------------------------------------------------------------------

def test_remove_aside_removes_the_state_set_aside_and_nothing_live(swap, live):
    swap.apply()
    live_state = state(live)[NAME]
    swap.remove_aside()
    assert state(live) == {NAME: live_state}
    assert swap.aside_paths() == []
    swap.remove_aside()  # again: nothing left, nothing to do


def test_remove_aside_unlinks_a_symlink_without_following_it(swap, live, tmp_path):
    swap.apply()
    victim = make_victim(tmp_path / "victim")
    (live / (ASIDE + "-wal")).unlink()
    (live / (ASIDE + "-wal")).symlink_to(victim)
    swap.remove_aside()
    assert not os.path.lexists(live / (ASIDE + "-wal"))
    assert_untouched(victim)


def test_remove_aside_leaves_what_is_not_a_plain_file(swap, live):
    (live / ASIDE).mkdir()
    (live / ASIDE / "inside").write_bytes(b"kept")
    os.mkfifo(live / (ASIDE + "-wal"))
    (live / (ASIDE + "-journal")).write_bytes(b"plain")
    swap.remove_aside()
    assert (live / ASIDE / "inside").read_bytes() == b"kept"
    assert stat.S_ISFIFO(os.lstat(live / (ASIDE + "-wal")).st_mode)
    assert not (live / (ASIDE + "-journal")).exists()


# -- the record's form ----------------------------------------------------------------------

def test_json_round_trip(swap):
    assert FileSwap.from_json(swap.to_json()) == swap
    minimal = {"directory": "/d", "name": "f", "incoming": "f.in", "aside": "f.old",
               "incoming_ino": "12"}
    assert FileSwap.from_json(minimal) == FileSwap("/d", "f", "f.in", "f.old", 12)
