"""safefs: root never follows a symlink (or opens a FIFO) where another user can write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from torrust_maint import safefs
from torrust_maint.errors import MaintError


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(b"untouched")
    os.chmod(path, 0o600)
    return path


def test_unsafe_path_is_an_operator_error():
    assert issubclass(safefs.UnsafePath, MaintError)


def test_check_regular(tmp_path, victim):
    assert safefs.check_regular(tmp_path / "missing") is None
    assert safefs.check_regular(victim).st_size == len(b"untouched")
    (tmp_path / "link").symlink_to(victim)
    os.mkfifo(tmp_path / "fifo")
    for name, kind in [("link", "a symbolic link"), ("fifo", "a FIFO"), (".", "a directory")]:
        with pytest.raises(safefs.UnsafePath, match=f"is {kind}, not a regular file"):
            safefs.check_regular(tmp_path / name)


def test_check_regular_relative_to_a_directory_names_the_shown_path(tmp_path, victim):
    (tmp_path / "link").symlink_to(victim)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(safefs.UnsafePath, match="^/shown/link is a symbolic link"):
            safefs.check_regular("link", dir_fd=fd, shown="/shown/link")
    finally:
        os.close(fd)


def test_open_nofollow_refuses_symlinks_and_special_files(tmp_path, victim):
    (tmp_path / "link").symlink_to(victim)
    (tmp_path / "dangling").symlink_to(tmp_path / "would-be-created")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block without a writer
    for name, flags in [("link", os.O_RDWR | os.O_CREAT), ("dangling", os.O_RDWR | os.O_CREAT),
                        ("fifo", os.O_RDONLY), ("fifo", os.O_WRONLY)]:
        with pytest.raises(safefs.UnsafePath, match=f"^{tmp_path / name} is a"):
            safefs.open_nofollow(tmp_path / name, flags)
    with pytest.raises(safefs.UnsafePath, match="is a directory"):
        safefs.open_nofollow(tmp_path, os.O_RDWR)
    assert victim.read_bytes() == b"untouched"
    assert not (tmp_path / "would-be-created").exists()


def test_open_nofollow_opens_and_creates_regular_files(tmp_path, victim):
    with open(safefs.open_nofollow(victim), "rb") as handle:
        assert handle.read() == b"untouched"
    fd = safefs.open_nofollow(tmp_path / "new", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert os.get_blocking(fd)
        assert os.get_inheritable(fd) is False
    finally:
        os.close(fd)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o600
    with pytest.raises(FileNotFoundError):
        safefs.open_nofollow(tmp_path / "missing")


def test_create_exclusive_never_reuses_a_name(tmp_path, victim):
    (tmp_path / "dangling").symlink_to(tmp_path / "would-be-created")
    (tmp_path / "link").symlink_to(victim)
    for name in ("dangling", "link", "victim"):
        with pytest.raises(FileExistsError):
            safefs.create_exclusive(tmp_path / name)
    assert not (tmp_path / "would-be-created").exists()
    assert victim.read_bytes() == b"untouched"


def test_create_exclusive_sets_the_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        os.close(safefs.create_exclusive(tmp_path / "new", 0o644))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o644


def test_open_dir_beneath_refuses_a_symlinked_component(tmp_path):
    (tmp_path / "root/a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "root/a/b").symlink_to(tmp_path / "outside")
    for create in (False, True):
        with pytest.raises(safefs.UnsafePath, match=f"^{tmp_path}/root/a/b is a symbolic link, "
                                                    "not a directory"):
            safefs.open_dir_beneath(tmp_path / "root", "a/b/c", create=create)
    assert list((tmp_path / "outside").iterdir()) == []


def test_open_dir_beneath_refuses_a_file_component_and_dotdot(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(safefs.UnsafePath, match="file is a regular file, not a directory"):
        safefs.open_dir_beneath(tmp_path, "file/x")
    with pytest.raises(safefs.UnsafePath, match="'..' in a path"):
        safefs.open_dir_beneath(tmp_path, "a/../../x", create=True)
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_open_dir_beneath_creates_and_follows_the_trusted_root(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "root-link").symlink_to(tmp_path / "real")
    fd = safefs.open_dir_beneath(tmp_path / "root-link", "x/y", create=True, mode=0o750)
    try:
        os.close(os.open("made-here", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    assert (tmp_path / "real/x/y/made-here").is_file()
    with pytest.raises(FileNotFoundError):
        safefs.open_dir_beneath(tmp_path, "missing")


def test_open_dir_beneath_an_absolute_path_from_the_root(tmp_path):
    fd = safefs.open_dir_beneath("/", tmp_path)
    try:
        assert os.fstat(fd).st_ino == tmp_path.stat().st_ino
    finally:
        os.close(fd)


def test_open_path_nofollow_refuses_symlinks_and_keeps_posix_locks(tmp_path, victim):
    import fcntl

    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(safefs.UnsafePath, match="link is a symbolic link"):
        safefs.open_path_nofollow(tmp_path / "link")
    holder = os.open(victim, os.O_RDWR)
    try:
        fcntl.lockf(holder, fcntl.LOCK_SH)
        fd = safefs.open_path_nofollow(victim)
        os.chmod(safefs.fd_path(fd), 0o640)
        os.close(fd)  # an ordinary fd's close would release the lock held through `holder`
        child = os.fork()
        if child == 0:  # pragma: no cover - the child: may it take an exclusive lock?
            other = os.open(victim, os.O_RDWR)
            try:
                fcntl.lockf(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os._exit(1)
            except OSError:
                os._exit(0)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the lock was released"
    finally:
        os.close(holder)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o640
