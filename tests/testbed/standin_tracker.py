#!/usr/bin/env python3
"""A stand-in for the Torrust Tracker: the tracker's schema, continuous writes, a health endpoint.

Every transaction i is deterministic (see ``apply_transaction``), so a copy of the database
taken at any consistent point holds exactly transactions 1..N, N being the value of the
``torrents_downloads_total`` metric; ``expected_state(N)`` says what the tables must then hold.
On startup it prints ``standin: startup seq=N``: after a maintenance window that is the last
transaction committed before the stop.

Environment: the tracker's own TORRUST_TRACKER_CONFIG_* variables, plus
STANDIN_JOURNAL_MODE (delete|wal), STANDIN_WAL_AUTOCHECKPOINT (pages; 0 = never),
STANDIN_IGNORE_SIGTERM (1 = only SIGKILL stops it), STANDIN_INTERVAL_MS (pause between writes).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import signal
import sys
import threading
import time
import tomllib
import urllib.parse

METRIC = "torrents_downloads_total"
HEALTH_PORT = 1313

SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS whitelist (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " info_hash TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS torrents (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " info_hash TEXT NOT NULL UNIQUE, completed INTEGER DEFAULT 0 NOT NULL)",
    "CREATE TABLE IF NOT EXISTS torrent_aggregate_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " metric_name TEXT NOT NULL UNIQUE, value INTEGER DEFAULT 0 NOT NULL)",
    "CREATE TABLE IF NOT EXISTS keys (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " key TEXT NOT NULL UNIQUE, valid_until INTEGER)",
)


MYSQL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS whitelist (id integer PRIMARY KEY AUTO_INCREMENT,"
    " info_hash VARCHAR(40) NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS torrents (id integer PRIMARY KEY AUTO_INCREMENT,"
    " info_hash VARCHAR(40) NOT NULL UNIQUE, completed INTEGER DEFAULT 0 NOT NULL)",
    "CREATE TABLE IF NOT EXISTS torrent_aggregate_metrics (id integer PRIMARY KEY AUTO_INCREMENT,"
    " metric_name VARCHAR(50) NOT NULL UNIQUE, value INTEGER DEFAULT 0 NOT NULL)",
    "CREATE TABLE IF NOT EXISTS `keys` (id integer PRIMARY KEY AUTO_INCREMENT,"
    " `key` VARCHAR(32) NOT NULL UNIQUE, valid_until INT(10))",
)


def info_hash(i: int) -> str:
    """The info_hash transaction i announces: 40 lowercase hex characters."""
    return hashlib.sha1(f"torrent-{i}".encode()).hexdigest()


def key_for(i: int) -> str:
    return hashlib.sha256(f"key-{i}".encode()).hexdigest()[:32]


def transaction_statements(i: int) -> list[tuple[str, tuple]]:
    """The statements of transaction i (SQLite dialect, ``?`` placeholders)."""
    statements = [
        ("INSERT INTO torrents (info_hash, completed) VALUES (?, 0)"
         " ON CONFLICT(info_hash) DO UPDATE SET completed = completed", (info_hash(i),)),
        ("UPDATE torrents SET completed = completed + 1 WHERE info_hash = ?",
         (info_hash(max(1, i // 2)),)),
        ("INSERT INTO torrent_aggregate_metrics (metric_name, value) VALUES (?, ?)"
         " ON CONFLICT(metric_name) DO UPDATE SET value = excluded.value", (METRIC, i)),
    ]
    if i % 10 == 0:
        statements.append(("INSERT INTO whitelist (info_hash) VALUES (?)", (info_hash(i),)))
    if i % 25 == 0:
        statements.append(("INSERT INTO `keys` (`key`, valid_until) VALUES (?, ?)",
                           (key_for(i), 1_700_000_000 + i)))
    return statements


def expected_state(n: int) -> dict[str, list[tuple]]:
    """Table contents (without ids, sorted) after transactions 1..n."""
    completed: dict[str, int] = {}
    for i in range(1, n + 1):
        completed.setdefault(info_hash(i), 0)
        completed[info_hash(max(1, i // 2))] += 1
    return {
        "torrents": sorted(completed.items()),
        "torrent_aggregate_metrics": [(METRIC, n)] if n else [],
        "whitelist": sorted((info_hash(i),) for i in range(10, n + 1, 10)),
        "keys": sorted((key_for(i), 1_700_000_000 + i) for i in range(25, n + 1, 25)),
    }


STATE_QUERIES = {
    "torrents": "SELECT info_hash, completed FROM torrents",
    "torrent_aggregate_metrics": "SELECT metric_name, value FROM torrent_aggregate_metrics",
    "whitelist": "SELECT info_hash FROM whitelist",
    "keys": "SELECT `key`, valid_until FROM `keys`",
}


def read_state(connection) -> tuple[int, dict[str, list[tuple]]]:
    """(N, table contents) of a database written by the stand-in (DB-API connection)."""
    cursor = connection.cursor()
    state = {}
    for table, query in STATE_QUERIES.items():
        cursor.execute(query)
        state[table] = sorted(tuple(row) for row in cursor.fetchall())
    metrics = dict(state["torrent_aggregate_metrics"])
    return int(metrics.get(METRIC, 0)), state


# -- the running tracker --------------------------------------------------------------------

class Settings:
    def __init__(self, environ: dict[str, str]):
        toml_path = environ.get("TORRUST_TRACKER_CONFIG_TOML_PATH",
                                "/etc/torrust/tracker/tracker.toml")
        with open(toml_path, "rb") as handle:
            database = tomllib.load(handle).get("core", {}).get("database", {})
        prefix = "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__"
        self.driver = environ.get(prefix + "DRIVER", database.get("driver", "sqlite3"))
        self.path = environ.get(prefix + "PATH", database.get("path", ""))
        self.journal_mode = environ.get("STANDIN_JOURNAL_MODE", "delete")
        self.wal_autocheckpoint = environ.get("STANDIN_WAL_AUTOCHECKPOINT")
        self.ignore_sigterm = environ.get("STANDIN_IGNORE_SIGTERM") == "1"
        self.interval = int(environ.get("STANDIN_INTERVAL_MS", "5")) / 1000


def open_sqlite(settings: Settings):
    import sqlite3

    os.makedirs(os.path.dirname(settings.path), exist_ok=True)
    connection = sqlite3.connect(settings.path, isolation_level=None, timeout=30)
    connection.execute(f"PRAGMA journal_mode={settings.journal_mode}")
    if settings.wal_autocheckpoint is not None:
        connection.execute(f"PRAGMA wal_autocheckpoint={int(settings.wal_autocheckpoint)}")
    for statement in SQLITE_SCHEMA:
        connection.execute(statement)
    return connection


def open_mysql(settings: Settings):
    import pymysql

    url = urllib.parse.urlsplit(settings.path)
    for attempt in range(120):
        try:
            connection = pymysql.connect(
                host=url.hostname, port=url.port or 3306,
                user=urllib.parse.unquote(url.username or ""),
                password=urllib.parse.unquote(url.password or ""),
                database=url.path.lstrip("/"), autocommit=True, charset="utf8mb4")
            break
        except pymysql.err.OperationalError:
            if attempt == 119:
                raise
            time.sleep(0.5)
    with connection.cursor() as cursor:
        for statement in MYSQL_SCHEMA:
            cursor.execute(statement)
    return connection


def to_mysql(sql: str) -> str:
    sql = sql.replace("?", "%s").replace(" keys ", " `keys` ")
    if "ON CONFLICT" in sql:
        head, _, tail = sql.partition(" ON CONFLICT")
        update = tail.split("DO UPDATE SET", 1)[1].replace("excluded.value", "VALUES(value)")
        sql = f"{head} ON DUPLICATE KEY UPDATE{update}"
    return sql


class HealthHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        ok = self.path == "/health_check"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b'{"status":"Ok"}' if ok else b"")

    def log_message(self, *args):
        pass


def serve_health() -> None:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", HEALTH_PORT), HealthHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def health_check() -> int:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/health_check", timeout=2):
            return 0
    except OSError:
        return 1


def run(environ: dict[str, str]) -> int:
    settings = Settings(environ)
    stopping = threading.Event()
    if settings.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    if settings.driver == "mysql":
        connection = open_mysql(settings)
        dialect = to_mysql
    else:
        connection = open_sqlite(settings)
        dialect = str  # the statements are written in SQLite's dialect
    cursor = connection.cursor()
    seq, _ = read_state(connection)
    print(f"standin: startup seq={seq} driver={settings.driver}", flush=True)
    serve_health()

    while not stopping.is_set():
        seq += 1
        cursor.execute("BEGIN")
        for sql, params in transaction_statements(seq):
            cursor.execute(dialect(sql), params)
        cursor.execute("COMMIT")
        if seq % 1000 == 0:
            print(f"standin: committed seq={seq}", flush=True)
        if settings.interval:
            time.sleep(settings.interval)
    connection.close()
    print(f"standin: stopped seq={seq}", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--health"]:
        sys.exit(health_check())
    sys.exit(run(dict(os.environ)))
