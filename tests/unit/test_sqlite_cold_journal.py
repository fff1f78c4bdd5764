"""engines/sqlite: a -journal without its magic (a writer killed before it made the journal
hot) is ignored by SQLite; the snapshot export must not fail on it.

Found by the system test: the stand-in tracker, SIGKILLed by `docker stop` mid-transaction,
sometimes left such a journal, and the backup failed with "SQLite left -journal".
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from torrust_maint.engines import sqlite as engine

ROWS = 50


def make_db(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("CREATE TABLE torrents (id INTEGER PRIMARY KEY, payload BLOB)")
    connection.executemany("INSERT INTO torrents (payload) VALUES (?)",
                           [(os.urandom(64),) for _ in range(ROWS)])
    connection.close()


def export_rows(db: Path, staging: Path) -> tuple[engine.SqliteSnapshot, int]:
    staging.mkdir()
    snapshot = engine.snapshot(db, staging)
    exported = snapshot.export()
    connection = sqlite3.connect(exported)
    try:
        return snapshot, connection.execute("SELECT count(*) FROM torrents").fetchone()[0]
    finally:
        connection.close()


def test_cold_journal_is_dropped_and_the_export_succeeds(tmp_path):
    db = tmp_path / "sqlite3.db"
    make_db(db)
    # What SQLite writes before the journal is hot: a header whose magic is still zero.
    header = bytes(8) + bytes.fromhex("000000008845a3c6000000040000020000001000")
    Path(f"{db}-journal").write_bytes(header + os.urandom(4096))
    snapshot, rows = export_rows(db, tmp_path / "staging")
    assert rows == ROWS
    assert snapshot.side_files == ["-journal"]
    assert not Path(f"{snapshot.path}-journal").exists()


def test_a_hot_journal_is_not_mistaken_for_a_cold_one(tmp_path):
    journal = tmp_path / "x.db-journal"
    journal.write_bytes(engine.JOURNAL_MAGIC + bytes(100))
    engine._drop_cold_journal(tmp_path / "x.db")
    assert journal.exists()


def test_no_journal_is_fine(tmp_path):
    engine._drop_cold_journal(tmp_path / "x.db")
