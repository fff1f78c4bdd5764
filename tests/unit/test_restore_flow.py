"""The restore flow around the swap: its durable record, recovery rolling an interrupted swap
back before the tracker starts, the renamed MySQL dump, swap_in's undo on any error, the room
check, and the dry-run plan."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from torrust_maint import catalog, recovery, restore_record
from torrust_maint.actions import restore as restore_action
from torrust_maint.config import BackupConfig, Config, DeploymentConfig
from torrust_maint.deployment import Deployment, MysqlDatabase, SqliteDatabase
from torrust_maint.docker import Container
from torrust_maint.engines import mysql as mysql_engine
from torrust_maint.errors import MaintError
from torrust_maint.recovery import container_records
from torrust_maint.swap import FileSwap

START_TIMEOUT = 30
RESTORE_ID = "20260301T030000Z"
VICTIM_TEXT = b"root's file outside: must stay as it is\n"
OLD_DB, OLD_WAL, NEW_DB = b"the database before", b"its -wal", b"the restored database"
OLD_TOML, NEW_TOML = b'[core]\nold = true\n', b'[core]\nnew = true\n'


# -- helpers --------------------------------------------------------------------------------

def make_victim(path: Path) -> Path:
    path.write_bytes(VICTIM_TEXT)
    return path


def assert_untouched(victim: Path) -> None:
    assert victim.read_bytes() == VICTIM_TEXT and not victim.is_symlink()


def staged_file(directory: Path, name: str, old: bytes | None, new: bytes,
                companions: dict[str, bytes] | None = None) -> FileSwap:
    """A live file (and companions) with its replacement written beside it, as a restore
    stages one; the swap that puts it in place."""
    directory.mkdir(parents=True, exist_ok=True)
    if old is not None:
        (directory / name).write_bytes(old)
    for suffix, data in (companions or {}).items():
        (directory / f"{name}{suffix}").write_bytes(data)
    incoming = directory / f"{name}.torrust-maint-restore"
    incoming.write_bytes(new)
    return FileSwap(directory=str(directory), name=name, incoming=incoming.name,
                    aside=f"{name}.torrust-maint-pre-restore-{RESTORE_ID}",
                    incoming_ino=incoming.stat().st_ino, companions=tuple(companions or ()),
                    existed=old is not None)


def database_swap(tmp_path: Path) -> FileSwap:
    return staged_file(tmp_path / "lib/database", "sqlite3.db", OLD_DB, NEW_DB,
                       {"-wal": OLD_WAL})


def config_swap(tmp_path: Path) -> FileSwap:
    return staged_file(tmp_path / "etc", "tracker.toml", OLD_TOML, NEW_TOML)


def contents(swap: FileSwap) -> dict[str, bytes]:
    """What every name of the swap's directory holds."""
    directory = Path(swap.directory)
    return {entry.name: entry.read_bytes() for entry in sorted(directory.iterdir())}


def is_old(swap: FileSwap, old: bytes) -> bool:
    """The state from before is live and the restored file waits under its name."""
    names = contents(swap)
    return names.get(swap.name) == old and swap.incoming in names \
        and not any(name.startswith(swap.aside) for name in names)


def new_record(phase: str = restore_record.PREPARED, files: list[FileSwap] = (),
               **extra) -> dict:
    return {"id": RESTORE_ID, "restore_of": "20260201T030000Z", "driver": "sqlite3",
            "started_at": "2026-03-01T03:00:00.000000Z", "phase": phase,
            "files": [swap.to_json() for swap in files], "mysql": {}, "safety_set": None,
            "containers": [], **extra}


def crash_after(monkeypatch, renames: int) -> None:
    """os.rename works `renames` times, then fails as a kill would cut apply short."""
    real, done = os.rename, []

    def rename(*args, **kwargs):
        if len(done) == renames:
            raise OSError(errno.EIO, "simulated crash")
        real(*args, **kwargs)
        done.append(args)

    monkeypatch.setattr(os, "rename", rename)


def cut_short(swap: FileSwap, renames: int) -> None:
    with pytest.MonkeyPatch.context() as patched:
        crash_after(patched, renames)
        with pytest.raises(OSError, match="simulated crash"):
            swap.apply()


@pytest.fixture
def records(tmp_path: Path) -> Path:
    path = tmp_path / "backups"
    path.mkdir()
    return path


# -- restore_record -------------------------------------------------------------------------

def test_record_round_trip_with_mode_0600(records, tmp_path):
    swaps = [database_swap(tmp_path), config_swap(tmp_path)]
    record = new_record(files=swaps)
    restore_record.write(records, dict(record))
    found = restore_record.read(records)
    assert found == json.loads(json.dumps({**record, "format": restore_record.RECORD_FORMAT}))
    assert restore_record.file_swaps(found) == swaps
    path = records / restore_record.RECORD_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in records.iterdir()) == [restore_record.RECORD_NAME]


def test_record_mode_is_0600_whatever_the_umask(records):
    previous = os.umask(0o000)
    try:
        restore_record.write(records, new_record())
    finally:
        os.umask(previous)
    assert stat.S_IMODE((records / restore_record.RECORD_NAME).stat().st_mode) == 0o600


def test_no_record_reads_as_none_and_clear_is_idempotent(records):
    assert restore_record.read(records) is None
    restore_record.write(records, new_record())
    restore_record.clear(records)
    restore_record.clear(records)
    assert restore_record.read(records) is None


def test_a_symlink_at_the_record_path_reads_as_unreadable(records, tmp_path):
    """Regression (was a bug): read() catches OSError and ValueError, but open_nofollow refuses a symlink (or a
    FIFO, a directory) with safefs.UnsafePath, a MaintError: it escapes read(), so `status`
    and `list` fail instead of reporting the record as unreadable, as read() promises."""
    victim = make_victim(tmp_path / "victim")
    path = records / restore_record.RECORD_NAME
    path.symlink_to(victim)

    found = restore_record.read(records)

    assert found is not None and found["phase"] == "unreadable"
    assert found["error"].startswith(f"{path}: ")
    assert_untouched(victim)


def test_a_symlink_at_the_record_path_is_never_written_through(records, tmp_path):
    victim = make_victim(tmp_path / "victim")
    path = records / restore_record.RECORD_NAME
    path.symlink_to(victim)

    restore_record.write(records, new_record())

    assert_untouched(victim)
    assert not path.is_symlink()  # the rename replaced the link itself
    assert restore_record.read(records)["phase"] == restore_record.PREPARED

    path.unlink()
    path.symlink_to(victim)
    restore_record.clear(records)
    assert_untouched(victim)
    assert not os.path.lexists(path)


def test_a_symlink_at_the_temporary_record_is_not_followed(records, tmp_path):
    victim = make_victim(tmp_path / "victim")
    (records / (restore_record.RECORD_NAME + ".tmp")).symlink_to(victim)
    restore_record.write(records, new_record())
    assert_untouched(victim)
    assert restore_record.read(records)["phase"] == restore_record.PREPARED


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"format": 99, "phase": "swapped"}',
                                  '{"phase": "swapped"}'])
def test_a_record_not_of_ours_is_unreadable(records, text):
    (records / restore_record.RECORD_NAME).write_text(text)
    found = restore_record.read(records)
    assert found is not None and found["phase"] == "unreadable"
    assert str(records / restore_record.RECORD_NAME) in found["error"]


@pytest.mark.parametrize("phase", [restore_record.PREPARED, restore_record.SWAPPED])
def test_roll_back_acts_only_in_phase_swapping(records, tmp_path, phase):
    swap = database_swap(tmp_path)
    swap.apply()
    restore_record.write(records, new_record(phase, [swap]))
    before = contents(swap)
    assert restore_record.roll_back(records) is False
    assert contents(swap) == before
    assert restore_record.read(records)["phase"] == phase


def test_roll_back_without_a_record_does_nothing(records):
    assert restore_record.roll_back(records) is False
    assert list(records.iterdir()) == []


def test_roll_back_leaves_an_unreadable_record_as_it_is(records):
    (records / restore_record.RECORD_NAME).write_text("{not json")
    restore_record.roll_back(records)
    assert (records / restore_record.RECORD_NAME).read_text() == "{not json"


ROLL_BACK_POINTS = {
    "database-cut-after-1": lambda db, toml: cut_short(db, 1),
    "database-cut-after-2": lambda db, toml: cut_short(db, 2),
    "config-cut-after-0": lambda db, toml: (db.apply(), cut_short(toml, 0)),
    "config-cut-after-1": lambda db, toml: (db.apply(), cut_short(toml, 1)),
    "both-swapped": lambda db, toml: (db.apply(), toml.apply()),
}


@pytest.mark.parametrize("point", ROLL_BACK_POINTS)
def test_roll_back_undoes_every_file_swap_and_records_prepared(records, tmp_path, point):
    db, toml = database_swap(tmp_path), config_swap(tmp_path)
    restore_record.write(records, new_record(restore_record.SWAPPING, [db, toml]))
    ROLL_BACK_POINTS[point](db, toml)

    assert restore_record.roll_back(records) is True

    assert is_old(db, OLD_DB) and contents(db)["sqlite3.db-wal"] == OLD_WAL
    assert is_old(toml, OLD_TOML)
    assert restore_record.read(records)["phase"] == restore_record.PREPARED
    assert restore_record.roll_back(records) is False  # once: now prepared


def aside_of(swap: FileSwap) -> list[str]:
    return [str(Path(swap.directory) / (swap.aside + suffix))
            for suffix in ("", *swap.companions)]


def test_describe_swapped_names_where_the_state_from_before_is(records, tmp_path):
    db, toml = database_swap(tmp_path), config_swap(tmp_path)
    db.apply()
    toml.apply()
    text = restore_record.describe(new_record(restore_record.SWAPPED, [db, toml]))
    assert text == (
        "restore of set 20260201T030000Z (started 2026-03-01T03:00:00.000000Z): the state "
        f"from before it is kept in {', '.join(aside_of(db) + aside_of(toml))}; no safety set "
        "holds it yet; `torrust-maint restore --finish` secures it")
    with_safety = new_record(restore_record.SWAPPED, [db, toml], safety_set="20260301T030001Z")
    assert "; safety set 20260301T030001Z is not verified yet; `torrust-maint restore " \
           "--finish` secures it" in restore_record.describe(with_safety)


def test_describe_swapped_mysql_names_the_tables_set_aside():
    record = new_record(restore_record.SWAPPED, driver="mysql",
                        mysql={"old_tables": ["torrust_maint_old_torrents",
                                              "torrust_maint_old_keys"]})
    text = restore_record.describe(record)
    assert "kept in table torrust_maint_old_torrents, table torrust_maint_old_keys; " in text
    assert text.endswith("`torrust-maint restore --finish` secures it")


def test_describe_swapped_with_nothing_aside_says_so(tmp_path):
    swap = database_swap(tmp_path)  # never applied: no aside file exists
    text = restore_record.describe(new_record(restore_record.SWAPPED, [swap]))
    assert "kept in nowhere (lost?)" in text


def test_describe_prepared_and_unreadable():
    assert restore_record.describe(new_record()) == (
        "restore of set 20260201T030000Z (started 2026-03-01T03:00:00.000000Z) was "
        "interrupted before its swap: nothing live changed; `torrust-maint restore --finish` "
        "cleans up")
    unreadable = {"phase": "unreadable", "error": "/b/.torrust-maint-restore.json: boom"}
    assert restore_record.describe(unreadable) == (
        "restore record unreadable (/b/.torrust-maint-restore.json: boom): inspect it by hand")


def test_describe_swapping_does_not_claim_nothing_live_changed(tmp_path):
    """Regression (was a bug): a record left in phase swapping (killed mid-swap, not yet rolled back) is
    described as "interrupted before its swap: nothing live changed", while the live file
    may be set aside (the live name even empty). status and list show this line."""
    swap = database_swap(tmp_path)
    cut_short(swap, 2)  # -wal and the database aside, the live name empty
    text = restore_record.describe(new_record(restore_record.SWAPPING, [swap]))
    assert "nothing live changed" not in text
    assert all(path in text for path in aside_of(swap))


# -- recovery rolls the swap back before it starts the tracker ------------------------------

def stopped_tracker(fake_docker, docker):
    cid = fake_docker.add("compose-tracker-1", working_dir="/srv/tracker")
    fake_docker.set_running(cid, False)
    return cid, docker.inspect([cid])[0]


def settled_marker(directory: Path, container) -> recovery.WindowMarker:
    """A marker whose window opened long enough ago that no `docker stop` can still land."""
    path = recovery.write_marker(directory, [container], 4)
    data = json.loads(path.read_text())
    opened = catalog.utc_now() - dt.timedelta(seconds=4 + recovery.STOP_GRACE + 0.5)
    data["opened_at"] = catalog.rfc3339(opened)
    path.write_text(json.dumps(data))
    marker = recovery.WindowMarker.read(directory)
    assert marker is not None
    return marker


def watch(monkeypatch, fake_docker, what: Callable[[], object]) -> list:
    """The order of roll_back and `docker start`, with what was live at each start."""
    events: list = []
    real_roll_back, real_do = restore_record.roll_back, fake_docker._do

    def roll_back(directory):
        events.append("roll_back")
        return real_roll_back(directory)

    def do(verb, args):
        if verb == "start":
            events.append(("start", what()))
        return real_do(verb, args)

    monkeypatch.setattr(restore_record, "roll_back", roll_back)
    monkeypatch.setattr(fake_docker, "_do", do)
    return events


@pytest.mark.parametrize("renames", [0, 1, 2, 3], ids=lambda n: f"after-{n}-renames")
def test_recovery_rolls_the_swap_back_before_it_starts_the_tracker(
        records, tmp_path, fake_docker, docker, monkeypatch, renames):
    swap = database_swap(tmp_path)
    restore_record.write(records, new_record(restore_record.SWAPPING, [swap]))
    if renames < 3:  # -wal aside, the database aside, the restored one in
        cut_short(swap, renames)  # killed inside the window, mid-swap
    else:
        swap.apply()  # killed before it recorded swapped
    cid, container = stopped_tracker(fake_docker, docker)
    marker = settled_marker(records, container)
    live = Path(swap.directory) / swap.name
    events = watch(monkeypatch, fake_docker,
                   lambda: live.read_bytes() if live.exists() else None)
    lines: list[str] = []

    recovery._recover_marker(marker, records, docker, START_TIMEOUT, lines.append)

    assert events == ["roll_back", ("start", OLD_DB)]
    assert fake_docker.running(cid)
    assert is_old(swap, OLD_DB) and contents(swap)["sqlite3.db-wal"] == OLD_WAL
    assert restore_record.read(records)["phase"] == restore_record.PREPARED
    assert recovery.WindowMarker.read(records) is None
    assert lines == ["recovered: started compose-tracker-1 again"]


def test_recovery_starts_nothing_when_the_roll_back_fails(records, tmp_path, fake_docker,
                                                          docker, monkeypatch):
    """A new file at the live name (the state from before cannot go back over it): the
    tracker is not started on a half-swapped database; the marker and the record stay."""
    swap = database_swap(tmp_path)
    restore_record.write(records, new_record(restore_record.SWAPPING, [swap]))
    cut_short(swap, 2)
    (Path(swap.directory) / swap.name).write_bytes(b"created meanwhile")
    cid, container = stopped_tracker(fake_docker, docker)
    marker = settled_marker(records, container)
    events = watch(monkeypatch, fake_docker, lambda: None)

    with pytest.raises(MaintError, match="that name is taken"):
        recovery._recover_marker(marker, records, docker, START_TIMEOUT, lambda _: None)

    assert events == ["roll_back"]
    assert fake_docker.calls_to("start") == [] and not fake_docker.running(cid)
    assert recovery.WindowMarker.read(records) is not None
    assert restore_record.read(records)["phase"] == restore_record.SWAPPING
    assert contents(swap)[swap.aside] == OLD_DB


def test_recovery_of_a_window_without_a_restore_only_starts_the_tracker(
        records, fake_docker, docker, monkeypatch):
    cid, container = stopped_tracker(fake_docker, docker)
    marker = settled_marker(records, container)
    events = watch(monkeypatch, fake_docker, lambda: None)
    recovery._recover_marker(marker, records, docker, START_TIMEOUT, lambda _: None)
    assert events == ["roll_back", ("start", None)]
    assert fake_docker.running(cid)


# -- rename_tables over real dump output ----------------------------------------------------

MYSQLDUMP_84 = b"""\
-- MySQL dump 10.13  Distrib 8.4.3, for Linux (x86_64)
--
-- Host: 172.18.0.2    Database: torrust_tracker
-- ------------------------------------------------------
-- Server version\t8.4.3

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;
/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;
/*!50503 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;
/*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;

--
-- Table structure for table `keys`
--

DROP TABLE IF EXISTS `keys`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!50503 SET character_set_client = utf8mb4 */;
CREATE TABLE `keys` (
  `id` int NOT NULL AUTO_INCREMENT,
  `key` varchar(32) NOT NULL,
  `valid_until` int DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `key` (`key`)
) ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `keys`
--

LOCK TABLES `keys` WRITE;
/*!40000 ALTER TABLE `keys` DISABLE KEYS */;
INSERT INTO `keys` VALUES (1,'CONSTRAINT `x` FOREIGN KEY',NULL),(2,'\\nCREATE TRIGGER t BEFORE INSERT ON `keys`\\nDELIMITER ;;',1700000000);
/*!40000 ALTER TABLE `keys` ENABLE KEYS */;
UNLOCK TABLES;

--
-- Table structure for table `a``b`
--

DROP TABLE IF EXISTS `a``b`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!50503 SET character_set_client = utf8mb4 */;
CREATE TABLE `a``b` (
  `id` int NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `a``b`
--

LOCK TABLES `a``b` WRITE;
/*!40000 ALTER TABLE `a``b` DISABLE KEYS */;
INSERT INTO `a``b` VALUES (7);
/*!40000 ALTER TABLE `a``b` ENABLE KEYS */;
UNLOCK TABLES;

--
-- Dumping events for database 'torrust_tracker'
--

--
-- Dumping routines for database 'torrust_tracker'
--
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;

-- Dump completed on 2026-03-01  3:00:01
"""

MYSQLDUMP_84_RENAMED = [  # (line before, line after): every other line is left as it is
    (b"DROP TABLE IF EXISTS `keys`;", b"DROP TABLE IF EXISTS `torrust_maint_new_keys`;"),
    (b"CREATE TABLE `keys` (", b"CREATE TABLE `torrust_maint_new_keys` ("),
    (b"LOCK TABLES `keys` WRITE;", b"LOCK TABLES `torrust_maint_new_keys` WRITE;"),
    (b"/*!40000 ALTER TABLE `keys` DISABLE KEYS */;",
     b"/*!40000 ALTER TABLE `torrust_maint_new_keys` DISABLE KEYS */;"),
    (b"INSERT INTO `keys` VALUES (1,'CONSTRAINT `x` FOREIGN KEY',NULL),(2,'\\nCREATE TRIGGER t "
     b"BEFORE INSERT ON `keys`\\nDELIMITER ;;',1700000000);",
     b"INSERT INTO `torrust_maint_new_keys` VALUES (1,'CONSTRAINT `x` FOREIGN KEY',NULL),"
     b"(2,'\\nCREATE TRIGGER t BEFORE INSERT ON `keys`\\nDELIMITER ;;',1700000000);"),
    (b"/*!40000 ALTER TABLE `keys` ENABLE KEYS */;",
     b"/*!40000 ALTER TABLE `torrust_maint_new_keys` ENABLE KEYS */;"),
    (b"DROP TABLE IF EXISTS `a``b`;", b"DROP TABLE IF EXISTS `torrust_maint_new_a``b`;"),
    (b"CREATE TABLE `a``b` (", b"CREATE TABLE `torrust_maint_new_a``b` ("),
    (b"LOCK TABLES `a``b` WRITE;", b"LOCK TABLES `torrust_maint_new_a``b` WRITE;"),
    (b"/*!40000 ALTER TABLE `a``b` DISABLE KEYS */;",
     b"/*!40000 ALTER TABLE `torrust_maint_new_a``b` DISABLE KEYS */;"),
    (b"INSERT INTO `a``b` VALUES (7);", b"INSERT INTO `torrust_maint_new_a``b` VALUES (7);"),
    (b"/*!40000 ALTER TABLE `a``b` ENABLE KEYS */;",
     b"/*!40000 ALTER TABLE `torrust_maint_new_a``b` ENABLE KEYS */;"),
]

# mariadb-dump 11.x: an extended INSERT spreads its rows over lines of their own.
MARIADB_DUMP_11 = b"""\
-- MariaDB dump 10.19-11.4.4-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: 172.18.0.3    Database: torrust_tracker
-- ------------------------------------------------------
-- Server version\t11.4.4-MariaDB-ubu2404

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;
/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;
/*!40101 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;
/*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */;

--
-- Table structure for table `torrents`
--

DROP TABLE IF EXISTS `torrents`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `torrents` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `info_hash` varchar(40) NOT NULL,
  `completed` int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `info_hash` (`info_hash`)
) ENGINE=InnoDB AUTO_INCREMENT=4 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_uca1400_ai_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `torrents`
--

LOCK TABLES `torrents` WRITE;
/*!40000 ALTER TABLE `torrents` DISABLE KEYS */;
INSERT INTO `torrents` VALUES
(1,'CONSTRAINT `fk` FOREIGN KEY (`id`) REFERENCES `keys`',0),
(2,'CREATE TRIGGER `t` BEFORE INSERT ON `torrents` FOR EACH ROW',3),
(3,'/*!50003 CREATE*/ DELIMITER ;;',5);
/*!40000 ALTER TABLE `torrents` ENABLE KEYS */;
UNLOCK TABLES;
commit;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
/*M!100616 SET NOTE_VERBOSITY=@OLD_NOTE_VERBOSITY */;

-- Dump completed on 2026-03-01  3:00:01
"""

MARIADB_DUMP_11_RENAMED = [
    (b"DROP TABLE IF EXISTS `torrents`;", b"DROP TABLE IF EXISTS `torrust_maint_new_torrents`;"),
    (b"CREATE TABLE `torrents` (", b"CREATE TABLE `torrust_maint_new_torrents` ("),
    (b"LOCK TABLES `torrents` WRITE;", b"LOCK TABLES `torrust_maint_new_torrents` WRITE;"),
    (b"/*!40000 ALTER TABLE `torrents` DISABLE KEYS */;",
     b"/*!40000 ALTER TABLE `torrust_maint_new_torrents` DISABLE KEYS */;"),
    (b"INSERT INTO `torrents` VALUES", b"INSERT INTO `torrust_maint_new_torrents` VALUES"),
    (b"/*!40000 ALTER TABLE `torrents` ENABLE KEYS */;",
     b"/*!40000 ALTER TABLE `torrust_maint_new_torrents` ENABLE KEYS */;"),
]


def shadow(name: str) -> str:
    return mysql_engine.NEW_PREFIX + name


def renamed(chunks, seen: set[str] | None = None) -> bytes:
    return b"".join(mysql_engine.rename_tables(chunks, shadow, seen))


def changed_lines(before: bytes, after: bytes) -> list[tuple[bytes, bytes]]:
    old, new = before.split(b"\n"), after.split(b"\n")
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


@pytest.mark.parametrize(("dump", "expected", "tables"), [
    (MYSQLDUMP_84, MYSQLDUMP_84_RENAMED, {"keys", "a`b"}),
    (MARIADB_DUMP_11, MARIADB_DUMP_11_RENAMED, {"torrents"}),
], ids=["mysqldump-8.4", "mariadb-dump-11"])
def test_rename_tables_renames_the_statements_and_nothing_else(dump, expected, tables):
    seen: set[str] = set()
    out = renamed([dump], seen)
    assert changed_lines(dump, out) == expected
    assert seen == tables


@pytest.mark.parametrize("dump", [MYSQLDUMP_84, MARIADB_DUMP_11],
                         ids=["mysqldump-8.4", "mariadb-dump-11"])
def test_rename_tables_over_any_chunk_boundaries(dump):
    whole = renamed([dump])
    assert renamed(dump[i:i + 1] for i in range(len(dump))) == whole  # 1-byte chunks
    for cut in range(0, len(dump) + 1, 7):
        assert renamed([dump[:cut], b"", dump[cut:]]) == whole
    unterminated = dump + b"INSERT INTO `keys` VALUES (9,'x',NULL);"
    tail = b"INSERT INTO `torrust_maint_new_keys` VALUES (9,'x',NULL);"
    assert renamed(unterminated[i:i + 1] for i in range(len(unterminated))) == whole + tail


def test_a_backtick_in_a_table_name_round_trips():
    out = renamed([b"CREATE TABLE `a``b``` (\n"], seen := set())
    assert out == b"CREATE TABLE `torrust_maint_new_a``b``` (\n"
    assert seen == {"a`b`"}


VIEW_8_4 = b"""\
--
-- Temporary view structure for view `v`
--

DROP TABLE IF EXISTS `v`;
/*!50001 DROP VIEW IF EXISTS `v`*/;
SET @saved_cs_client     = @@character_set_client;
/*!50503 SET character_set_client = utf8mb4 */;
/*!50001 CREATE VIEW `v` AS SELECT
 1 AS `id`*/;
SET character_set_client = @saved_cs_client;
"""

TRIGGER_8_4 = b"""\
/*!50003 SET @saved_cs_client      = @@character_set_client */ ;
/*!50003 SET @saved_cs_results     = @@character_set_results */ ;
/*!50003 SET @saved_col_connection = @@collation_connection */ ;
/*!50003 CREATE*/ /*!50017 DEFINER=`torrust`@`%`*/ /*!50003 TRIGGER `t_bi` BEFORE INSERT ON \
`torrents` FOR EACH ROW SET NEW.completed = 0 */;
"""


@pytest.mark.parametrize(("text", "what"), [
    (b"CREATE TABLE `peers` (\n  `id` int NOT NULL,\n  `torrent_id` int NOT NULL,\n"
     b"  CONSTRAINT `peers_ibfk_1` FOREIGN KEY (`torrent_id`) REFERENCES `torrents` (`id`)\n"
     b") ENGINE=InnoDB;\n", "CONSTRAINT"),
    (b"DELIMITER ;;\n", "DELIMITER"),
    (VIEW_8_4, "/*!50001"),
    (TRIGGER_8_4, "/*!50003 CREATE"),
    (b"/*!50106 CREATE*/ /*!50117 DEFINER=`torrust`@`%`*/ /*!50106 EVENT `purge` ON SCHEDULE "
     b"EVERY 1 DAY STARTS '2026-03-01 03:00:00' ON COMPLETION NOT PRESERVE ENABLE DO "
     b"DELETE FROM `keys` WHERE valid_until < UNIX_TIMESTAMP() */ ;;\n", "/*!50106 CREATE"),
    (b"CREATE DEFINER=`root`@`localhost` PROCEDURE `p`()\n", "CREATE DEFINER"),
], ids=["constraint", "delimiter", "view", "trigger", "event", "routine"])
def test_rename_tables_refuses_what_shadow_tables_cannot_hold(text, what):
    with pytest.raises(MaintError, match=re.escape(f"the set's dump holds {what!r}") +
                       ".*nothing live was changed"):
        renamed([MYSQLDUMP_84, text])
    with pytest.raises(MaintError, match=re.escape(repr(what))):
        renamed(text[i:i + 1] for i in range(len(text)))  # split anywhere too


def test_chunk_reader_reads_as_a_stream_does():
    reader = mysql_engine.ChunkReader(iter([b"ab", b"", b"cde", b"f"]))
    assert reader.read(0) == b""
    assert reader.read(1) == b"a"
    assert reader.read(3) == b"bcd"
    assert reader.read(10) == b"ef"  # short at the end
    assert reader.read(10) == b""
    assert reader.read() == b""
    assert mysql_engine.ChunkReader(iter([b"ab", b"cd"])).read() == b"abcd"
    assert mysql_engine.ChunkReader(iter([b"ab", b"cd"])).read(-1) == b"abcd"
    assert mysql_engine.ChunkReader(iter([])).read(5) == b""


def test_chunk_reader_pulls_only_the_chunks_it_needs():
    pulled: list[bytes] = []

    def chunks():
        for chunk in (b"abc", b"def", b"ghi"):
            pulled.append(chunk)
            yield chunk

    reader = mysql_engine.ChunkReader(chunks())
    assert reader.read(2) == b"ab" and pulled == [b"abc"]
    assert reader.read(2) == b"cd" and pulled == [b"abc", b"def"]


def test_chunk_reader_over_renamed_chunks_gives_the_whole_dump():
    dump = MARIADB_DUMP_11
    reader = mysql_engine.ChunkReader(mysql_engine.rename_tables(
        (dump[i:i + 5] for i in range(0, len(dump), 5)), shadow))
    out = b""
    while chunk := reader.read(64):
        assert len(chunk) <= 64
        out += chunk
    assert out == renamed([dump])


def test_table_summary_reads_the_shadow_tables_under_the_sets_names():
    queries: list[str] = []

    def run_query(sql: str) -> list[list[str]]:
        queries.append(sql)
        if "information_schema.columns" in sql:
            return [["id"], ["info_hash"]]
        return [["3", "12345"]]

    counts, checksums = mysql_engine.table_summary(
        run_query, tables={"torrents": shadow("torrents"), "o'k": shadow("o'k")})
    assert counts == {"torrents": 3, "o'k": 3}
    assert checksums == {"torrents": 12345, "o'k": 12345}
    assert "table_name = 'torrust_maint_new_torrents'" in queries[0]
    assert queries[1].endswith("FROM `torrust_maint_new_torrents`")
    assert "table_name = 'torrust_maint_new_o''k'" in queries[2]
    assert not any("information_schema.tables" in sql for sql in queries)


# -- swap_in --------------------------------------------------------------------------------

class FakeMysqlSwap(mysql_engine.MysqlSwap):
    """The MySQL swap at its boundary: what was asked of it, and a chosen failure."""

    def __init__(self, apply_error: BaseException | None = None,
                 undo_error: BaseException | None = None):
        super().__init__(docker=None, database=None, tables=["torrents"])
        self.apply_error, self.undo_error = apply_error, undo_error
        self.calls: list[str] = []
        self.swapped = False

    def plan(self) -> list[str]:
        self.calls.append("plan")
        self.old_tables = ["torrents"]
        return self.old_tables

    def record(self) -> dict:
        return {"database": "torrust_tracker", "tables": self.tables,
                "old_tables": self.aside_tables()}

    def apply(self) -> None:
        self.calls.append("apply")
        if self.apply_error is not None:
            raise self.apply_error
        self.swapped = True

    def applied(self) -> bool:
        return self.swapped

    def undo(self) -> None:
        self.calls.append("undo")
        if self.undo_error is not None:
            raise self.undo_error
        self.swapped = False

    def remove_incoming(self) -> None:
        self.calls.append("remove_incoming")

    def close(self) -> None:
        self.calls.append("close")


def test_swap_in_records_swapped(records, tmp_path):
    db, toml = database_swap(tmp_path), config_swap(tmp_path)
    record = new_record(files=[db, toml])
    before = catalog.utc_now()

    swapped_at = restore_action.swap_in(records, record, db, [toml])

    assert before <= swapped_at <= catalog.utc_now()
    assert record["phase"] == restore_record.SWAPPED
    assert restore_record.read(records)["phase"] == restore_record.SWAPPED
    assert db.applied() and toml.applied()
    assert contents(db)["sqlite3.db"] == NEW_DB and contents(toml)["tracker.toml"] == NEW_TOML


def test_swap_in_checks_every_swap_before_it_records_or_moves_anything(records, tmp_path):
    db, toml = database_swap(tmp_path), config_swap(tmp_path)
    (Path(toml.directory) / toml.aside).write_bytes(b"an earlier restore's")
    before = contents(db), contents(toml)
    with pytest.raises(MaintError, match="exists: an earlier restore's state"):
        restore_action.swap_in(records, new_record(files=[db, toml]), db, [toml])
    assert (contents(db), contents(toml)) == before
    assert restore_record.read(records) is None


@pytest.mark.parametrize("partial", [False, True], ids=["before-any-rename", "after-one"])
def test_a_failure_of_the_second_swap_undoes_the_first(records, tmp_path, monkeypatch,
                                                       partial):
    db, toml = database_swap(tmp_path), config_swap(tmp_path)
    real_apply = toml.apply

    def failing_apply():
        with pytest.MonkeyPatch.context() as patched:
            crash_after(patched, 1 if partial else 0)  # the file aside, not the new one in
            real_apply()

    monkeypatch.setattr(toml, "apply", failing_apply)
    record = new_record(files=[db, toml])

    with pytest.raises(OSError, match="simulated crash"):
        restore_action.swap_in(records, record, db, [toml])

    assert record["phase"] == restore_record.PREPARED
    assert is_old(db, OLD_DB) and contents(db)["sqlite3.db-wal"] == OLD_WAL
    assert is_old(toml, OLD_TOML)
    # Undone, the record on disk says so at once: a recovery meanwhile has nothing to undo.
    assert restore_record.read(records)["phase"] == restore_record.PREPARED
    assert restore_record.roll_back(records) is False
    assert is_old(db, OLD_DB) and is_old(toml, OLD_TOML)


def test_a_failed_table_swap_undoes_the_file_swaps(records, tmp_path):
    toml = config_swap(tmp_path)
    tables = FakeMysqlSwap(apply_error=MaintError("MySQL swapping the restored tables in "
                                                  "(RENAME TABLE) failed: Lock wait timeout"))
    record = new_record(files=[toml], driver="mysql")

    with pytest.raises(MaintError, match="Lock wait timeout"):
        restore_action.swap_in(records, record, tables, [toml])

    assert tables.calls == ["plan", "apply", "undo"]
    assert is_old(toml, OLD_TOML)
    assert record["phase"] == restore_record.PREPARED
    assert record["mysql"]["old_tables"] == ["torrust_maint_old_torrents"]
    assert restore_record.read(records)["mysql"]["old_tables"] == ["torrust_maint_old_torrents"]


LOST = "MySQL putting the tables from before back (RENAME TABLE) failed: Lost connection"


def test_file_swaps_are_undone_even_when_undoing_the_table_swap_fails(records, tmp_path):
    """Regression (was a bug): swap_in undoes the MySQL swap first; when that undo raises (the connection that
    timed out in apply is gone: pymysql closed it), the config file swaps are never undone:
    the restored config stays live over the database from before, under no record (below)."""
    toml = config_swap(tmp_path)
    tables = FakeMysqlSwap(apply_error=MaintError("MySQL swapping the restored tables in "
                                                  "(RENAME TABLE) failed: timed out"),
                           undo_error=MaintError(LOST))

    with pytest.raises(MaintError):
        restore_action.swap_in(records, new_record(files=[toml], driver="mysql"), tables,
                               [toml])

    assert is_old(toml, OLD_TOML)


def mysql_run(tmp_path: Path, monkeypatch, tables: FakeMysqlSwap) -> tuple[Config, Deployment]:
    """_restore of a MySQL deployment with a stopped tracker (no window), at the boundary of
    the MySQL swap."""
    compose = tmp_path / "compose"
    compose.mkdir()
    config = Config(path=tmp_path / "torrust-maint.toml",
                    deployment=DeploymentConfig(compose_dir=compose),
                    backup=BackupConfig(directory=tmp_path / "backups"))
    container = Container(id="f" * 64, name="compose-mysql-1", service="mysql",
                          project="compose", working_dir=str(compose), running=True,
                          status="running", health=None)
    deployment = Deployment(compose_dir=compose, env={}, trackers=(), database=MysqlDatabase(
        container=container, host="172.18.0.3", port=3306, database="torrust_tracker",
        user="torrust", password="secret"))
    monkeypatch.setattr(restore_action, "stage_database", lambda *args: tables)
    monkeypatch.setattr(restore_action.backup_action, "archive_config", lambda *args: None)
    return config, deployment


def run_restore(config: Config, deployment: Deployment, docker) -> None:
    restore_action._restore(config, docker, deployment, SimpleNamespace(id="20260201T030000Z"),
                            False, True, lambda _line: None)


def test_a_failed_table_swap_that_was_undone_leaves_nothing(records, tmp_path, monkeypatch,
                                                            docker):
    tables = FakeMysqlSwap(apply_error=MaintError("RENAME TABLE failed: Lock wait timeout"))
    config, deployment = mysql_run(tmp_path, monkeypatch, tables)
    with pytest.raises(MaintError, match="Lock wait timeout"):
        run_restore(config, deployment, docker)
    assert tables.calls == ["plan", "apply", "undo", "remove_incoming", "close"]
    assert restore_record.read(records) is None
    assert list(records.iterdir()) == []  # no staging directory either


def test_the_record_stays_when_undoing_a_failed_swap_failed(records, tmp_path, monkeypatch,
                                                            docker):
    """Regression (was a bug): when swap_in's undo raises, the record still says swapping, yet _restore clears
    it (it clears whatever is not "swapped"): nothing then says where the tables from before
    are (RENAME TABLE may have happened after the client timed out), `restore --finish` finds
    no interrupted restore, and the next restore refuses because of torrust_maint_old_*
    tables. The record must stay for `recover`/`restore --finish` to settle it."""
    tables = FakeMysqlSwap(apply_error=MaintError("RENAME TABLE failed: timed out"),
                           undo_error=MaintError(LOST))
    config, deployment = mysql_run(tmp_path, monkeypatch, tables)
    with pytest.raises(MaintError):
        run_restore(config, deployment, docker)
    record = restore_record.read(records)
    assert record is not None and record["phase"] == restore_record.SWAPPING


# -- an interrupted swap, settled by the next run -------------------------------------------

def sqlite_deployment(tmp_path: Path, running: bool = False,
                      db: Path | None = None) -> Deployment:
    tracker = Container(id="a" * 64, name="compose-tracker-1", service="tracker",
                        project="compose", working_dir=str(tmp_path), running=running,
                        status="running" if running else "exited", health=None)
    host_path = db or tmp_path / "lib/database/sqlite3.db"
    return Deployment(compose_dir=tmp_path / "compose", env={}, trackers=(tracker,),
                      database=SqliteDatabase(container_path="/var/lib/torrust/tracker/"
                                              "database/sqlite3.db", host_path=host_path))


class TrackerDocker:
    """Docker as _settle_file_swapping asks it: the record's tracker, running or not."""

    def __init__(self, deployment: Deployment):
        self.trackers = list(deployment.trackers)

    def inspect_existing(self, ids: list[str]) -> list[Container]:
        return [c for c in self.trackers if c.id in ids]

    def compose_containers(self, working_dir: str) -> list[Container]:
        return self.trackers


def settle(records: Path, record: dict, deployment: Deployment) -> None:
    record["containers"] = container_records(list(deployment.trackers))
    restore_record.write(records, dict(record))
    restore_action._settle_file_swapping(records, record, TrackerDocker(deployment))


def test_settle_swapping_rolls_back_while_the_tracker_is_stopped(records, tmp_path):
    db = database_swap(tmp_path)
    record = new_record(restore_record.SWAPPING, [db])
    cut_short(db, 2)
    settle(records, record, sqlite_deployment(tmp_path))
    assert record["phase"] == restore_record.PREPARED
    assert restore_record.read(records)["phase"] == restore_record.PREPARED
    assert is_old(db, OLD_DB)


def test_settle_swapping_counts_a_complete_swap_under_a_running_tracker(records, tmp_path):
    db, toml = database_swap(tmp_path), config_swap(tmp_path)
    record = new_record(restore_record.SWAPPING, [db, toml])
    db.apply()
    toml.apply()
    settle(records, record, sqlite_deployment(tmp_path, running=True))
    assert restore_record.read(records)["phase"] == restore_record.SWAPPED
    assert contents(db)["sqlite3.db"] == NEW_DB


def test_settle_swapping_refuses_a_half_swap_under_a_running_tracker(records, tmp_path):
    db = database_swap(tmp_path)
    record = new_record(restore_record.SWAPPING, [db])
    cut_short(db, 2)
    before = contents(db)
    with pytest.raises(MaintError, match=r"\(compose-tracker-1\) was started since: stop it, "
                                         "then run `torrust-maint restore --finish`"):
        settle(records, record, sqlite_deployment(tmp_path, running=True))
    assert contents(db) == before
    assert restore_record.read(records)["phase"] == restore_record.SWAPPING


def killed_restore_of_a_stopped_tracker(stack, tmp_path: Path, renames: int):
    """A restore run while the tracker was stopped (so no window marker, no guardian, no
    recovery), killed (SIGKILL, power loss) after `renames` renames of its swap."""
    stack.add_tracker(running=False)
    backups = tmp_path / "backups"
    backups.mkdir()
    config = Config(path=tmp_path / "torrust-maint.toml", deployment=stack.settings(),
                    backup=BackupConfig(directory=backups))
    incoming = stack.db_path.with_name("sqlite3.db.torrust-maint-restore")
    incoming.write_bytes(NEW_DB)
    db = FileSwap(directory=str(stack.db_path.parent), name="sqlite3.db",
                  incoming=incoming.name, aside=f"sqlite3.db.torrust-maint-pre-restore-"
                  f"{RESTORE_ID}", incoming_ino=incoming.stat().st_ino,
                  companions=("-wal", "-journal"), stale=("-shm",))
    restore_record.write(backups, new_record(restore_record.SWAPPING, [db]))
    cut_short(db, renames)
    return config, backups


FINISHED = ["cleaned up after the restore of set 20260201T030000Z that was interrupted before "
            "its swap (nothing live had changed)"]


def test_finish_pending_cleans_up_a_restore_killed_before_its_first_rename(stack, tmp_path):
    before = stack.db_path.read_bytes()
    config, backups = killed_restore_of_a_stopped_tracker(stack, tmp_path, 0)
    lines: list[str] = []

    assert restore_action.finish_pending(config, stack.docker, lines.append) is True

    assert stack.db_path.read_bytes() == before
    assert sorted(p.name for p in stack.db_path.parent.iterdir()) == ["sqlite3.db"]
    assert restore_record.read(backups) is None
    assert lines == FINISHED


def test_finish_pending_undoes_a_swap_killed_with_the_database_aside(stack, tmp_path):
    """Regression (was a bug): finish_pending discovers the deployment before it rolls the swap back, and
    discover refuses a SQLite database whose file is missing, which it is while the database
    is set aside. With no window marker (the tracker was stopped) nothing else rolls it back:
    `restore --finish`, `restore` and `backup` all stop at "no file is there"."""
    before = stack.db_path.read_bytes()
    config, backups = killed_restore_of_a_stopped_tracker(stack, tmp_path, 1)
    assert not stack.db_path.exists()
    lines: list[str] = []

    assert restore_action.finish_pending(config, stack.docker, lines.append) is True

    assert stack.db_path.read_bytes() == before
    assert sorted(p.name for p in stack.db_path.parent.iterdir()) == ["sqlite3.db"]
    assert restore_record.read(backups) is None
    assert lines == FINISHED


# -- check_room -----------------------------------------------------------------------------

INCOMING_SIZE = 4_000_000
DB_SIZE, WAL_SIZE = 2_000_000, 1_000_000  # the safety set needs about 1.5 times the files


def room_setup(tmp_path: Path, backups_exist: bool = True):
    db = tmp_path / "lib/database/sqlite3.db"
    db.parent.mkdir(parents=True)
    for path, size in ((db, DB_SIZE), (Path(f"{db}-wal"), WAL_SIZE)):
        with open(path, "wb") as handle:
            handle.truncate(size)  # sparse: the sizes count, not the blocks
    backups = tmp_path / "backups"
    if backups_exist:
        backups.mkdir()
    config = Config(path=tmp_path / "torrust-maint.toml",
                    deployment=DeploymentConfig(compose_dir=tmp_path / "compose"),
                    backup=BackupConfig(directory=backups))
    target = SimpleNamespace(id="20260201T030000Z", path=tmp_path / "set", manifest={
        "created_at": "2026-02-01T03:00:00.000000Z", "database": {"driver": "sqlite3"},
        "artifacts": [{"name": "database", "path": "database.sqlite3.zst",
                       "compression": "zstd", "uncompressed_size": INCOMING_SIZE}]})
    return config, sqlite_deployment(tmp_path, db=db), target


def free_space(monkeypatch, free: dict[str, int] | int) -> list[str]:
    asked: list[str] = []

    def disk_usage(path):
        asked.append(str(path))
        room = free if isinstance(free, int) else free[str(path)]
        return SimpleNamespace(total=10 * room, used=9 * room, free=room)

    monkeypatch.setattr(restore_action.shutil, "disk_usage", disk_usage)
    return asked


SAFETY_NEED = (DB_SIZE + WAL_SIZE) * 3 // 2


def test_check_room_refuses_when_both_needs_on_one_device_do_not_fit(tmp_path, monkeypatch):
    config, deployment, target = room_setup(tmp_path)
    # Either need alone fits; together they do not: the needs on one device add up.
    free_space(monkeypatch, INCOMING_SIZE + SAFETY_NEED - 1)
    with pytest.raises(MaintError) as refused:
        restore_action.check_room(config, None, deployment, target)
    assert str(refused.value) == (
        f"not enough room: {deployment.database.host_path.parent} has 8.5 MB free, the restore "
        "needs 8.5 MB there (the restored database beside the live one: about 4.0 MB; the "
        "safety set of the current database ([backup] directory): about 4.5 MB); nothing was "
        "changed")


def test_check_room_passes_when_both_fit(tmp_path, monkeypatch):
    config, deployment, target = room_setup(tmp_path)
    asked = free_space(monkeypatch, INCOMING_SIZE + SAFETY_NEED)
    restore_action.check_room(config, None, deployment, target)
    assert len(asked) == 1  # one device: asked once, for both needs


def fake_devices(monkeypatch, backups: Path) -> None:
    """The backup directory on a device of its own."""
    real_stat = os.stat

    def device_of(path, *args, **kwargs):
        info = real_stat(path, *args, **kwargs)
        own = Path(path) == backups or backups in Path(path).parents
        return SimpleNamespace(st_dev=info.st_dev + 1 if own else info.st_dev)

    monkeypatch.setattr(restore_action, "os", SimpleNamespace(stat=device_of))


def test_check_room_on_two_devices_checks_each_need_where_it_is(tmp_path, monkeypatch):
    config, deployment, target = room_setup(tmp_path)
    fake_devices(monkeypatch, config.backup.directory)
    live_dir = str(deployment.database.host_path.parent)
    asked = free_space(monkeypatch, {live_dir: INCOMING_SIZE,
                                     str(config.backup.directory): SAFETY_NEED})
    restore_action.check_room(config, None, deployment, target)
    assert sorted(asked) == sorted([live_dir, str(config.backup.directory)])

    free_space(monkeypatch, {live_dir: INCOMING_SIZE,
                             str(config.backup.directory): SAFETY_NEED - 1})
    with pytest.raises(MaintError, match=re.escape(
            f"not enough room: {config.backup.directory} has 4.5 MB free, the restore needs "
            "4.5 MB there (the safety set of the current database ([backup] directory): about "
            "4.5 MB); nothing was changed")):
        restore_action.check_room(config, None, deployment, target)


def test_check_room_asks_the_nearest_existing_parent_of_a_missing_backup_directory(
        tmp_path, monkeypatch):
    config, deployment, target = room_setup(tmp_path, backups_exist=False)
    asked = free_space(monkeypatch, 1)
    with pytest.raises(MaintError, match="not enough room"):
        restore_action.check_room(config, None, deployment, target)
    assert not config.backup.directory.exists()
    assert asked == [str(deployment.database.host_path.parent)]  # same device as tmp_path


def test_check_room_for_mysql_asks_the_server_first(tmp_path, monkeypatch):
    config, _, target = room_setup(tmp_path)
    _, deployment = mysql_run(tmp_path, monkeypatch, FakeMysqlSwap())
    monkeypatch.setattr(mysql_engine, "shadow_room", lambda docker, database: (1_000_000, 10))
    free_space(monkeypatch, 10**12)
    with pytest.raises(MaintError, match=re.escape(
            "the database server has 1.0 MB free in its data directory, the restore's shadow "
            "copy needs about 4.0 MB (the set's dump); nothing was changed")):
        restore_action.check_room(config, None, deployment, target)
    monkeypatch.setattr(mysql_engine, "shadow_room", lambda docker, database: (None, 10))
    restore_action.check_room(config, None, deployment, target)  # df unknown: not refused


# -- print_plan -----------------------------------------------------------------------------

def test_print_plan_for_sqlite_names_every_rename(tmp_path):
    config, _, target = room_setup(tmp_path)
    deployment = sqlite_deployment(tmp_path, running=True,
                                   db=tmp_path / "lib/database/sqlite3.db")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    lines: list[str] = []

    restore_action.print_plan(config, deployment, target, True, False, lines.append)

    db = deployment.database.host_path
    assert lines[0] == "dry run: nothing will be changed"
    assert ("  would decompress the set's database to "
            f"{db}.torrust-maint-restore and run integrity_check and the row counts") in lines
    assert "window: would stop compose-tracker-1" in lines
    assert (f"  would rename {db} (and any -wal, -journal) to "
            "<name>.torrust-maint-pre-restore-<id>, remove -shm, and rename the restored file "
            "in") in lines
    assert ("  would rename the config files aside (<name>.torrust-maint-pre-restore-<id>) "
            "and the restored ones in") in lines
    assert "  would start compose-tracker-1 and wait until it is healthy" in lines
    assert (f"  would record the restore in {config.backup.directory}/"
            ".torrust-maint-restore.json") in lines
    assert lines.index("window: would stop compose-tracker-1") < lines.index(
        "  would start compose-tracker-1 and wait until it is healthy")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("no_start", "last"), [
    (False, "would start the tracker afterwards"),
    (True, "would leave the stopped tracker stopped (--no-start)")])
def test_print_plan_with_a_stopped_tracker(tmp_path, no_start, last):
    config, deployment, target = room_setup(tmp_path)
    lines: list[str] = []
    restore_action.print_plan(config, deployment, target, False, no_start, lines.append)
    assert "no window: the tracker is not running" in lines
    assert last in lines
    assert not any("config files" in line for line in lines)
