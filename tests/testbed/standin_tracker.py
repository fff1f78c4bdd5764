#!/usr/bin/env python3
"""A stand-in for the Torrust Tracker: the tracker's schema, continuous writes, a health endpoint.

Every transaction i is deterministic (see ``apply_transaction``), so a copy of the database
taken at any consistent point holds exactly transactions 1..N, N being the value of the
``torrents_downloads_total`` metric; ``expected_state(N)`` says what the tables must then hold.
On startup it prints ``standin: startup seq=N``: after a maintenance window that is the last
transaction committed before the stop.

Environment: the tracker's own TORRUST_TRACKER_CONFIG_* variables, plus
STANDIN_JOURNAL_MODE (delete|wal|keep: whatever mode the file has, as the real tracker, which
sets none), STANDIN_WAL_AUTOCHECKPOINT (pages; 0 = never),
STANDIN_IGNORE_SIGTERM (1 = only SIGKILL stops it), STANDIN_INTERVAL_MS (pause between writes),
STANDIN_LATENCY_LOG (a file: one line per commit, "<wall clock ns> <commit duration ns>", for
the benchmarks' write latency).
With driver postgresql it checks or makes the schema as the v4 tracker's sqlx migrations do,
exiting 101 (the tracker's panic) when the recorded migrations do not match.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
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

# Torrust Tracker v4's PostgreSQL schema, made by sqlx migrations recorded in _sqlx_migrations.
POSTGRESQL_TABLES = ("whitelist", "torrents", "keys", "torrent_aggregate_metrics")

POSTGRESQL_SCHEMA = (
    "CREATE TABLE whitelist (id SERIAL PRIMARY KEY, info_hash VARCHAR(40) NOT NULL UNIQUE)",
    "CREATE TABLE torrents (id SERIAL PRIMARY KEY, info_hash VARCHAR(40) NOT NULL UNIQUE,"
    " completed BIGINT DEFAULT 0 NOT NULL)",
    "CREATE TABLE keys (id SERIAL PRIMARY KEY, key VARCHAR(32) NOT NULL UNIQUE,"
    " valid_until BIGINT)",
    "CREATE TABLE torrent_aggregate_metrics (id SERIAL PRIMARY KEY,"
    " metric_name VARCHAR(50) NOT NULL UNIQUE, value BIGINT DEFAULT 0 NOT NULL)",
    "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,"
    " installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL,"
    " checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
)

# (version, description) of the tracker's PostgreSQL migrations, as sqlx names them.
POSTGRESQL_MIGRATIONS = (
    (20240730183000, "torrust tracker create all tables"),
    (20240730183500, "torrust tracker keys valid until nullable"),
    (20250527093000, "torrust tracker new torrent aggregate metrics table"),
    (20260409120000, "torrust tracker widen download counters"),
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


def state_queries(driver: str = "sqlite3") -> dict[str, str]:
    """STATE_QUERIES in a driver's dialect: PostgreSQL has no backtick quoting."""
    if driver == "postgresql":
        return {table: query.replace("`", "") for table, query in STATE_QUERIES.items()}
    return dict(STATE_QUERIES)


def connection_driver(connection) -> str:
    """The driver name (sqlite3, mysql, postgresql) of a DB-API connection, by its module."""
    module = type(connection).__module__
    if module.startswith("psycopg"):
        return "postgresql"
    return "mysql" if module.startswith("pymysql") else "sqlite3"


def read_seq(connection, driver: str) -> int:
    """N alone (the metric), without reading the tables: startup stays as fast at 4 GiB as the
    real tracker's."""
    cursor = connection.cursor()
    cursor.execute(state_queries(driver)["torrent_aggregate_metrics"])
    return int(dict(cursor.fetchall()).get(METRIC, 0))


def read_state(connection, driver: str | None = None) -> tuple[int, dict[str, list[tuple]]]:
    """(N, table contents) of a database written by the stand-in (DB-API connection); the
    driver is guessed from the connection when not given."""
    cursor = connection.cursor()
    state = {}
    for table, query in state_queries(driver or connection_driver(connection)).items():
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
        self.latency_log = environ.get("STANDIN_LATENCY_LOG") or None


def open_sqlite(settings: Settings):
    import sqlite3

    os.makedirs(os.path.dirname(settings.path), exist_ok=True)
    connection = sqlite3.connect(settings.path, isolation_level=None, timeout=30)
    if settings.journal_mode != "keep":
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


class MigrationError(Exception):
    """The database's recorded migrations do not match the tracker's (sqlx refuses to start)."""


def migration_checksum(version: int) -> bytes:
    """sqlx's checksum of a migration, SHA-384 of its text (here a fixed text per version)."""
    description = dict(POSTGRESQL_MIGRATIONS)[version]
    return hashlib.sha384(f"-- {version}_{description.replace(' ', '_')}.sql\n".encode()).digest()


def postgresql_tables(cursor) -> set[str]:
    """The tables of the connection's current schema."""
    cursor.execute("SELECT table_name FROM information_schema.tables"
                   " WHERE table_schema = current_schema()")
    return {row[0] for row in cursor.fetchall()}


def check_migrations(cursor) -> None:
    """Every migration applied, successfully, with the checksum the tracker expects."""
    cursor.execute("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
    applied = {version: (success, bytes(checksum)) for version, success, checksum in cursor}
    expected = {version for version, _ in POSTGRESQL_MIGRATIONS}
    if set(applied) != expected:
        raise MigrationError(f"applied migrations {sorted(applied)}, expected {sorted(expected)}")
    for version, (success, checksum) in applied.items():
        if not success:
            raise MigrationError(f"migration {version} is partially applied")
        if checksum != migration_checksum(version):
            raise MigrationError(f"migration {version} was previously applied but has been"
                                 " modified (checksum mismatch)")


def migrate_postgresql(connection) -> None:
    """What the v4 tracker does at startup: create the schema of an empty database in one
    transaction, or check the recorded migrations; anything else is a MigrationError."""
    cursor = connection.cursor()
    tables = postgresql_tables(cursor)
    if "_sqlx_migrations" in tables:
        check_migrations(cursor)
        return
    if tables & set(POSTGRESQL_TABLES):
        raise MigrationError(f"tables {sorted(tables & set(POSTGRESQL_TABLES))} exist"
                             " without _sqlx_migrations")
    cursor.execute("BEGIN")
    for statement in POSTGRESQL_SCHEMA:
        cursor.execute(statement)
    for version, description in POSTGRESQL_MIGRATIONS:
        cursor.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum,"
                       " execution_time) VALUES (%s, %s, TRUE, %s, 0)",
                       (version, description, migration_checksum(version)))
    cursor.execute("COMMIT")


def postgresql_params(url: str) -> dict:
    """psycopg.connect's arguments for a postgresql://user:pass@host:port/db URL."""
    parts = urllib.parse.urlsplit(url)
    return {"host": parts.hostname, "port": parts.port or 5432,
            "user": urllib.parse.unquote(parts.username or ""),
            "password": urllib.parse.unquote(parts.password or ""),
            "dbname": urllib.parse.unquote(parts.path.lstrip("/"))}


def open_postgresql(settings: Settings):
    """A connection (autocommit) once the server answers, within about 60 s; migrated."""
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            connection = psycopg.connect(**postgresql_params(settings.path), autocommit=True,
                                         connect_timeout=5)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    migrate_postgresql(connection)
    return connection


def to_postgresql(sql: str) -> str:
    """A statement in SQLite's dialect for PostgreSQL: %s placeholders, no backticks, and a bare
    column on the right of ON CONFLICT's SET qualified by its table (else it is ambiguous)."""
    sql = sql.replace("?", "%s").replace("`", "")
    head, conflict, tail = sql.partition(" ON CONFLICT")
    if not conflict:
        return sql
    table = head.split()[2]  # INSERT INTO <table>
    return head + conflict + re.sub(r"= (\w+)$", rf"= {table}.\1", tail)


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


def open_database(settings: Settings):
    """(connection, dialect translation) for the configured driver."""
    if settings.driver == "mysql":
        return open_mysql(settings), to_mysql
    if settings.driver == "postgresql":
        return open_postgresql(settings), to_postgresql
    return open_sqlite(settings), str  # the statements are written in SQLite's dialect


def run(environ: dict[str, str]) -> int:
    settings = Settings(environ)
    stopping = threading.Event()
    if settings.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    try:
        connection, dialect = open_database(settings)
    except MigrationError as error:
        print(f"standin: migration error: {error}", file=sys.stderr, flush=True)
        return 101  # the tracker panics: it does not start
    cursor = connection.cursor()
    seq = read_seq(connection, settings.driver)
    print(f"standin: startup seq={seq} driver={settings.driver}", flush=True)
    serve_health()

    latency = open(settings.latency_log, "a", buffering=1 << 16) if settings.latency_log \
        else None
    while not stopping.is_set():
        seq += 1
        began = time.monotonic_ns()
        cursor.execute("BEGIN")
        for sql, params in transaction_statements(seq):
            cursor.execute(dialect(sql), params)
        cursor.execute("COMMIT")
        if latency is not None:
            latency.write(f"{time.time_ns()} {time.monotonic_ns() - began}\n")
            if seq % 100 == 0:
                latency.flush()
        if seq % 1000 == 0:
            print(f"standin: committed seq={seq}", flush=True)
        if settings.interval:
            time.sleep(settings.interval)
    if latency is not None:
        latency.close()
    connection.close()
    print(f"standin: stopped seq={seq}", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--health"]:
        sys.exit(health_check())
    sys.exit(run(dict(os.environ)))
