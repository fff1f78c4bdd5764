"""PostgreSQL (Torrust Tracker v4): an exported snapshot opened inside the window, dumped after it.

Before the window a psycopg connection to the container's address logs in as the tracker's
user, and the container's own ``psql`` proves how its ``pg_dump`` will log in: over the local
socket with no password where the server trusts it (the official image does), else with the
password handed over by the docker CLI's environment (``--env PGPASSWORD``), never argv.
Inside the window, with the tracker stopped, the connection starts a ``REPEATABLE READ``
transaction and exports its snapshot (``pg_export_snapshot()``): two statements whatever the
size. The tracker is started again and ``pg_dump --snapshot=<id>`` streams exactly that state
from the database container while the tracker serves; our transaction, still open, then
counts and checksums each table of the same snapshot for the manifest.

Dumps are plain SQL of schema ``public``. A restore loads a set into the shadow schema
``torrust_maint_new`` while the tracker serves and swaps it in by two ``ALTER SCHEMA ...
RENAME`` in one transaction; the schema from before stays as ``torrust_maint_old`` until a
verified safety set holds it. Tables, sequences (their ``setval``) and ``_sqlx_migrations``
move together, so the v4 tracker starts on the restored state without a migration error.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.sql

from torrust_maint import notify
from torrust_maint.compress import read_chunks
from torrust_maint.deployment import PostgresqlDatabase
from torrust_maint.docker import Docker
from torrust_maint.engines import containers
from torrust_maint.engines.mysql import OWNER_LABEL, THROWAWAY_LABEL
from torrust_maint.errors import (
    DatabaseNotReady,
    DockerError,
    Interrupted,
    MaintError,
    VerificationFailed,
    VerificationInconclusive,
)
from torrust_maint.progress import Progress
from torrust_maint.window import pending_signal

log = logging.getLogger(__name__)

FILE_STEM = "database.sql"
SCHEMA = "public"  # the tracker's tables; the only schema a set holds
NEW_SCHEMA = "torrust_maint_new"  # a restore's shadow schema, loaded while the tracker serves
OLD_SCHEMA = "torrust_maint_old"  # the schema a restore set aside: the state from before it
SNAPSHOT_TIMEOUT = 15  # default of [deployment] snapshot_timeout
PREFLIGHT_TIMEOUT = 30  # seconds a server may take to answer before the window
POLL_SECONDS = 0.05  # how often a bounded wait looks for a held-back signal
def dump_options(schema: str = SCHEMA) -> tuple[str, ...]:
    """pg_dump's options for one schema: plain SQL, without owners and grants."""
    return ("--format=plain", f"--schema={schema}", "--no-owner", "--no-privileges")


DUMP_OPTIONS = dump_options()
TRAILER = b"-- PostgreSQL database dump complete"
STDERR_DRAIN_TIMEOUT = 10
# Text forms that do not depend on the server's or the session's settings: the same rows give
# the same checksums on the live server, in a throwaway one and after a restore.
# No server-wide timeout may end our snapshot transaction while pg_dump streams, nor a long
# count.
SESSION_SETTINGS = ("-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres "
                    "-c extra_float_digits=3 -c bytea_output=hex -c statement_timeout=0 "
                    "-c idle_in_transaction_session_timeout=0")
CHECKSUM_METHOD = "SUM(('x' || LEFT(MD5(row::text), 15))::bit(60)::bigint)"
# SQLSTATE classes of a server that is not answering yet: cannot connect now (57P03
# starting up, 57P01 admin shutdown).
NOT_ANSWERING = ("57P01", "57P02", "57P03", "08001", "08006")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- connections ----------------------------------------------------------------------------

def _redacted(message: str, password: str) -> str:
    return message.replace(password, "***") if password else message


def connect(database: PostgresqlDatabase) -> psycopg.Connection:
    """A connection to the database container's address as the tracker's user, with the
    session settings the checksums need; errors never show the password."""
    try:
        connection = psycopg.connect(
            host=database.host, port=database.port, user=database.user,
            password=database.password, dbname=database.database, connect_timeout=10,
            autocommit=True, options=SESSION_SETTINGS, application_name="torrust-maint")
    except psycopg.Error as error:
        message = _redacted(str(error).strip(), database.password)
        down = getattr(error, "sqlstate", None) in NOT_ANSWERING or \
            "connection refused" in message.lower() or "starting up" in message.lower()
        raise (DatabaseNotReady if down else MaintError)(
            f"cannot connect to PostgreSQL at {database.host}:{database.port} as "
            f"{database.user!r} (credentials from {database.credentials_origin}): {message}"
        ) from None
    return connection


def _sever(connection: psycopg.Connection) -> None:
    """Shut the connection's socket down under a statement that does not return (a paused
    server): the statement then fails at once."""
    try:
        with socket.socket(fileno=os.dup(connection.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass


def bounded(connection: psycopg.Connection, seconds: float, what: str,
            action: Callable[[], Any]) -> Any:
    """Run `action` (statements on `connection`) at most `seconds`, looking for a held-back
    signal meanwhile; on either, the connection is cut and the action fails."""
    outcome: list[Any] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(action())
        except BaseException as error:  # noqa: BLE001 -- handed to the waiting thread
            failure.append(error)
        finally:
            done.set()

    threading.Thread(target=work, daemon=True).start()
    deadline = time.monotonic() + seconds
    while not done.wait(POLL_SECONDS):
        signum = pending_signal()
        if signum is not None or time.monotonic() >= deadline:
            _sever(connection)
            done.wait(5)
            if signum is not None:
                raise Interrupted(signum)
            raise MaintError(f"PostgreSQL {what} did not answer within {seconds:g} s")
    if failure:
        error = failure[0]
        if isinstance(error, psycopg.Error):
            raise MaintError(f"PostgreSQL {what} failed: {str(error).strip()}") from None
        raise error
    return outcome[0]


def _rows(connection: psycopg.Connection, sql: str, params: tuple = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)  # type: ignore[arg-type]  # built from quoted names
        return list(cursor.fetchall())


# -- the container's client tools -----------------------------------------------------------

@dataclass(frozen=True)
class ClientLogin:
    """How the container's client tools log in as the tracker's user: the local socket, with
    or without the password (inherited from the docker CLI's environment), or TCP."""

    password: bool
    tcp: bool

    def describe(self) -> str:
        where = "TCP 127.0.0.1" if self.tcp else "local socket"
        return f"{where}, {'password from the environment' if self.password else 'no password'}"


LOGINS = (ClientLogin(password=False, tcp=False), ClientLogin(password=True, tcp=False),
          ClientLogin(password=True, tcp=True))


def client_env(database: PostgresqlDatabase, login: ClientLogin) -> dict[str, str]:
    """The libpq environment of a client tool in the container; docker exec takes each value
    from its own environment (``--env NAME``): no name, database or password on argv."""
    env = {"PGUSER": database.user, "PGDATABASE": database.database,
           "PGOPTIONS": SESSION_SETTINGS, "PGCONNECT_TIMEOUT": "10",
           "PGAPPNAME": "torrust-maint"}
    if login.password:
        env["PGPASSWORD"] = database.password
    if login.tcp:
        env.update(PGHOST="127.0.0.1", PGPORT=str(database.port))
    return env


def client_login(docker: Docker, database: PostgresqlDatabase) -> ClientLogin:
    """The first way the container's psql logs in (no password first); MaintError naming
    each failure when none works."""
    failures = []
    for login in LOGINS:
        try:
            docker.exec_output(database.container.id, ["psql", "-X", "-w", "-A", "-t", "-c",
                                                       "SELECT 1"],
                               env=client_env(database, login), timeout=PREFLIGHT_TIMEOUT)
            return login
        except DockerError as error:
            failures.append(f"{login.describe()}: "
                            f"{_redacted(str(error), database.password)}")
    raise MaintError(f"the client tools in database container {database.container.name} "
                     f"cannot log in as {database.user!r}: " + "; ".join(failures))


def dump_tool(docker: Docker, database: PostgresqlDatabase) -> str:
    """The version line of the container's pg_dump."""
    try:
        out = docker.exec_output(database.container.id, ["pg_dump", "--version"])
    except DockerError as error:
        raise MaintError(f"database container {database.container.name} has no working "
                         f"pg_dump: {error}") from None
    return out.decode(errors="replace").strip()


# -- dumps ----------------------------------------------------------------------------------

COPY_START = re.compile(rb"^COPY .* FROM stdin;\s*$")
# What a schema rename cannot carry: code and objects that name tables inside their bodies or
# live outside the schema. The tracker has none of them.
UNSUPPORTED = re.compile(
    rb"^(CREATE (?:OR REPLACE )?(?:FUNCTION|PROCEDURE|TRIGGER|CONSTRAINT TRIGGER|VIEW|"
    rb"MATERIALIZED VIEW|RULE|POLICY|EXTENSION|TYPE|DOMAIN|AGGREGATE|EVENT TRIGGER|"
    rb"PUBLICATION|SUBSCRIPTION))\b")


def rename_schema(chunks: Iterable[bytes], source: str, target: str,
                  keep_create: bool) -> Iterator[bytes]:
    """A plain dump of schema `source` as one of schema `target`: every qualified name outside
    the COPY data renamed, the data untouched. Its ``CREATE SCHEMA``/``COMMENT ON SCHEMA``
    lines are dropped unless `keep_create`. MaintError on what a rename cannot carry."""
    qualified = re.compile(rb"(?<![\w$\"])" + re.escape(source.encode()) + rb"\.(?=[\w\"])")
    create = re.compile(rb"^(CREATE SCHEMA |COMMENT ON SCHEMA )" + re.escape(source.encode())
                        + rb"\b")
    replacement = target.encode() + b"."
    in_copy = False
    pending = b""

    def line_out(line: bytes) -> bytes:
        nonlocal in_copy
        if in_copy:
            in_copy = line.rstrip(b"\r") != b"\\."
            return line + b"\n"
        found = UNSUPPORTED.match(line)
        if found:
            raise MaintError(f"the set's dump holds {found.group(1).decode()!r}: restoring it "
                             "through a shadow schema is not supported; nothing live was "
                             "changed")
        if create.match(line):
            if not keep_create:
                return b""
            line = create.sub(lambda m: m.group(1) + target.encode(), line)
        in_copy = bool(COPY_START.match(line))
        return qualified.sub(replacement, line) + b"\n"

    for chunk in chunks:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield b"".join(line_out(line) for line in lines)
    if pending:
        yield line_out(pending).rstrip(b"\n")


def table_summary(run_query: Callable[[str], list[tuple]], schema: str
                  ) -> tuple[dict[str, int], dict[str, int], list[int]]:
    """Row counts and checksums of every table of `schema`, and the versions in its
    `_sqlx_migrations` (empty where there is none)."""
    literal = "'" + schema.replace("'", "''") + "'"
    tables = [str(row[0]) for row in run_query(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        f"ON n.oid = c.relnamespace WHERE n.nspname = {literal} AND c.relkind IN ('r', 'p') "
        "ORDER BY c.relname COLLATE \"C\"")]
    counts, checksums = {}, {}
    for table in tables:
        [(count, checksum)] = run_query(
            "SELECT count(*), coalesce(sum(('x' || left(md5(torrust_maint_row::text), 15))"
            f"::bit(60)::bigint), 0) FROM {quote_ident(schema)}.{quote_ident(table)} "
            "AS torrust_maint_row")
        counts[table], checksums[table] = int(count), int(checksum)
    versions = []
    if "_sqlx_migrations" in tables:
        versions = [int(row[0]) for row in run_query(
            f"SELECT version FROM {quote_ident(schema)}._sqlx_migrations ORDER BY version")]
    return counts, checksums, versions


def compare_summary(counts: dict[str, int], checksums: dict[str, int], versions: list[int],
                    expected: dict) -> None:
    """VerificationFailed when the tables, their rows or the migrations differ from the set's
    manifest."""
    from torrust_maint.engines.sqlite import compare_counts

    compare_counts(counts, expected.get("tables", {}))
    differ = [table for table, value in sorted(expected.get("table_checksums", {}).items())
              if checksums.get(table) != value]
    if differ:
        raise VerificationFailed(f"checksums differ for table(s) {', '.join(differ)}")
    wanted = expected.get("sqlx_migrations")
    if wanted is not None and versions != wanted:
        raise VerificationFailed(f"_sqlx_migrations holds versions {versions}, the set "
                                 f"recorded {wanted}")


def other_schemas(connection: psycopg.Connection) -> list[str]:
    """Schemas beside `public` (and ours) that hold tables: a set does not hold them."""
    return [str(row[0]) for row in _rows(
        connection,
        "SELECT DISTINCT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN "
        "('pg_catalog', 'information_schema', %s, %s, %s) AND n.nspname NOT LIKE 'pg\\_%%' "
        "ORDER BY 1", (SCHEMA, NEW_SCHEMA, OLD_SCHEMA))]


def restore_problems(connection: psycopg.Connection) -> list[str]:
    """What would keep a restore from swapping schemas as this user: it must own schema
    public (PostgreSQL 15+: be the database's owner) and may create schemas."""
    [(owns, creates)] = _rows(
        connection,
        "SELECT pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE'), "
        "pg_catalog.has_database_privilege(current_database(), 'CREATE') "
        "FROM pg_catalog.pg_namespace n WHERE n.nspname = %s", (SCHEMA,))
    problems = []
    if not owns:
        problems.append(f"user does not own schema {SCHEMA} (make it the database's owner, "
                        f"or ALTER SCHEMA {SCHEMA} OWNER TO it)")
    if not creates:
        problems.append("user may not create schemas in the database (GRANT CREATE ON "
                        "DATABASE ... TO it)")
    return problems


@dataclass
class PostgresqlSnapshot:
    """Before the window: a logged-in connection and a proven dump login. open() exports the
    snapshot; export_to() dumps it."""

    docker: Docker
    database: PostgresqlDatabase
    connection: psycopg.Connection
    login: ClientLogin
    tool_version: str
    server_version: str
    timeout: float = SNAPSHOT_TIMEOUT
    schema: str = SCHEMA  # the schema dumped (a restore's set-aside schema), named public
    snapshot_id: str = ""
    warnings: list[str] = field(default_factory=list)
    table_rows: dict[str, int] = field(default_factory=dict)
    table_checksums: dict[str, int] = field(default_factory=dict)
    sqlx_versions: list[int] = field(default_factory=list)
    process: subprocess.Popen | None = field(default=None, repr=False)

    def open(self, timeout: float | None = None) -> PostgresqlSnapshot:
        """Inside the window: a REPEATABLE READ transaction and its exported snapshot, at most
        `timeout` seconds ([deployment] snapshot_timeout)."""
        seconds = self.timeout if timeout is None else timeout

        def export() -> str:
            with self.connection.cursor() as cursor:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cursor.execute("SELECT pg_catalog.pg_export_snapshot()")
                row = cursor.fetchone()
            assert row is not None
            return str(row[0])

        try:
            self.snapshot_id = bounded(self.connection, seconds,
                                       "snapshot (bounded by [deployment] snapshot_timeout)",
                                       export)
        except BaseException:
            self.close()
            raise
        return self

    def abort(self) -> None:
        """The window was never opened, or failed."""
        self.close()

    def export_to(self, stream, progress: Callable[[int], None] | None = None) -> None:
        """Stream pg_dump of the exported snapshot into `stream` (named schema public), check
        it complete, then count and checksum the same snapshot."""
        argv = ["pg_dump", f"--snapshot={self.snapshot_id}", *dump_options(self.schema)]
        process = self.process = self.docker.exec_stream(
            self.database.container.id, argv, env=client_env(self.database, self.login))
        assert process.stdin and process.stdout and process.stderr
        process.stdin.close()
        errors: list[bytes] = []
        stderr = process.stderr
        reader = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
        reader.start()
        chunks = read_chunks(process.stdout)
        if self.schema != SCHEMA:
            chunks = rename_schema(chunks, self.schema, SCHEMA, keep_create=True)
        total, tail = 0, b""
        for chunk in chunks:
            stream.write(chunk)
            total += len(chunk)
            tail = (tail + chunk)[-512:]
            if progress:
                progress(total)
        returncode = process.wait()
        reader.join(STDERR_DRAIN_TIMEOUT)
        message = _redacted(b"".join(errors).decode(errors="replace").strip(),
                            self.database.password)
        if returncode != 0:
            raise MaintError(f"pg_dump failed (exit {returncode}): {message or 'no message'}")
        if message:
            log.warning("pg_dump: %s", message)
            self.warnings.append(f"pg_dump: {message}")
        if TRAILER not in tail:
            raise MaintError("the dump from pg_dump is truncated (no "
                             f"'{TRAILER.decode()}')")
        self._summarise()

    def _summarise(self) -> None:
        """Counts, checksums and migrations of our snapshot (after the window: a scan of a
        large table may take minutes, so it is not bounded), then end the transaction."""
        try:
            counts, checksums, versions = table_summary(
                lambda sql: _rows(self.connection, sql), self.schema)
            self.connection.execute("COMMIT")
        except psycopg.Error as error:
            raise MaintError(f"PostgreSQL row counts and checksums of the snapshot failed: "
                             f"{str(error).strip()}") from None
        self.table_rows, self.table_checksums, self.sqlx_versions = counts, checksums, versions

    def manifest(self) -> dict:
        return {
            "database": self.database.database,
            "schema": SCHEMA,
            "container": self.database.container.name,
            "image": self.database.container.image,
            "server_version": self.server_version,
            "dump_tool": "pg_dump",
            "dump_tool_version": self.tool_version,
            "dump_options": list(DUMP_OPTIONS),
            "dump_login": self.login.describe(),
            "snapshot_method": "exported snapshot (pg_export_snapshot) + pg_dump --snapshot",
            "tables": self.table_rows,
            "table_checksums": self.table_checksums,
            "checksum_method": CHECKSUM_METHOD,
            "sqlx_migrations": self.sqlx_versions,
            "warnings": self.warnings,
        }

    def close(self) -> None:
        """Release the dump process and the connection, whatever state they are in."""
        containers.release(self.process)
        try:
            self.connection.close()
        except psycopg.Error:
            pass


def prepare(docker: Docker, database: PostgresqlDatabase, staging_dir=None,
            live_handle_ok: bool = True, timeout: float = SNAPSHOT_TIMEOUT,
            schema: str = SCHEMA, online: bool = False) -> PostgresqlSnapshot:
    """Before the window: log in, read the server's version, find the container's pg_dump and
    prove how it logs in. Nothing here waits unbounded. `online` ([window] mode) changes
    nothing: an exported snapshot is one state whoever writes meanwhile."""
    connection = connect(database)
    try:
        server_version = bounded(connection, PREFLIGHT_TIMEOUT, "preflight (SHOW server_version)",
                                 lambda: _rows(connection, "SHOW server_version")[0][0])
        others = bounded(connection, PREFLIGHT_TIMEOUT, "preflight (listing the schemas)",
                         lambda: other_schemas(connection))
        tool_version = dump_tool(docker, database)
        login = client_login(docker, database)
    except BaseException:
        connection.close()
        raise
    snapshot = PostgresqlSnapshot(docker=docker, database=database, connection=connection,
                                  login=login, tool_version=tool_version,
                                  server_version=str(server_version), timeout=timeout,
                                  schema=schema)
    if others and schema == SCHEMA:
        snapshot.warnings.append(f"schema(s) {', '.join(others)} hold tables that are not in "
                                 "the set (it holds schema public, the tracker's)")
        log.warning(snapshot.warnings[-1])
    return snapshot


# -- import through the container's psql -----------------------------------------------------

SQL_ERROR = re.compile(r"^(?:psql:[^\n]*?)?ERROR:\s", re.MULTILINE)
RESOURCE_WORDS = ("could not extend file", "no space left", "out of memory",
                  "could not connect", "connection to server", "terminating connection",
                  "server closed the connection")


def import_sql(docker: Docker, container: str, env: dict[str, str], chunks: Iterable[bytes],
               progress=None) -> None:
    """Pipe SQL into the container's psql in one transaction, stopping at the first error;
    VerificationFailed when the server rejected the SQL, VerificationInconclusive for anything
    else (docker, a lost connection, a full disk)."""
    process = docker.exec_stream(container, ["psql", "-X", "-w", "-q", "--set=ON_ERROR_STOP=1",
                                             "--single-transaction", "--file=-"], env=env)
    assert process.stdin is not None and process.stdout is not None
    output: list[bytes] = []
    readers = [threading.Thread(target=lambda pipe=pipe: output.append(pipe.read()),
                                daemon=True) for pipe in (process.stdout, process.stderr)]
    for reader in readers:
        reader.start()
    try:
        total = 0
        for chunk in chunks:
            process.stdin.write(chunk)
            total += len(chunk)
            if progress:
                progress(total)
        process.stdin.close()
    except BrokenPipeError:
        pass  # psql stopped reading: its exit status and stderr say why
    except BaseException:  # the source failed (a refused dump, a signal): nothing half done
        process.kill()
        process.wait()
        raise
    returncode = process.wait()
    for reader in readers:
        reader.join(STDERR_DRAIN_TIMEOUT)
    if returncode != 0:
        message = b"".join(output).decode(errors="replace").strip()
        raise import_error(_redacted(message, env.get("PGPASSWORD", "")))


def import_error(message: str) -> MaintError:
    """A verdict on the dump only when the server rejected its SQL."""
    text = f"importing the dump failed: {message or 'no message'}"
    if SQL_ERROR.search(message) and not any(w in message.lower() for w in RESOURCE_WORDS):
        return VerificationFailed(text)
    return VerificationInconclusive(text)


def psql_rows(docker: Docker, container: str, env: dict[str, str], sql: str) -> list[tuple]:
    """Rows of one query through the container's psql (unaligned, tab-separated)."""
    out = docker.exec_output(container, ["psql", "-X", "-w", "-A", "-t", "-F", "\t",
                                         "--set=ON_ERROR_STOP=1", "-c", sql], env=env,
                             timeout=None)
    return [tuple(line.split("\t")) for line in out.decode().splitlines() if line]


# -- verify ---------------------------------------------------------------------------------

VERIFY_DATABASE = "torrust_maint_verify"
READY_TIMEOUT = 180


def _throwaway_env(password: str) -> dict[str, str]:
    return {"PGUSER": "postgres", "PGDATABASE": VERIFY_DATABASE, "PGPASSWORD": password,
            "PGOPTIONS": SESSION_SETTINGS}


def wait_until_serving(docker: Docker, container: str) -> None:
    """Until the server answers on TCP: the image's init server listens only on its socket."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        try:
            docker.exec_output(container, ["pg_isready", "-q", "-h", "127.0.0.1"], timeout=30)
            return
        except DockerError as error:
            last = str(error)
        signum = pending_signal()
        if signum is not None:
            raise Interrupted(signum)
        time.sleep(0.3)
    raise VerificationInconclusive(f"throwaway database {container} did not start: {last}")


def verify(docker: Docker, artifact, compression: str, expected: dict, scratch=None,
           size: int | None = None) -> dict:
    """Load the dump into a throwaway container of the deployment's image (no network,
    removed afterwards even on failure) and compare counts, checksums and migrations."""
    from torrust_maint.compress import open_decompressed

    image = expected.get("image")
    if not image:
        raise MaintError("the manifest does not name the database image to verify with")
    if expected.get("checksum_method", CHECKSUM_METHOD) != CHECKSUM_METHOD:
        raise VerificationInconclusive(f"the set's checksum_method "
                                       f"{expected.get('checksum_method')!r} is unknown to "
                                       "this version of torrust-maint")
    name = f"torrust-maint-verify-{secrets.token_hex(6)}"
    password = secrets.token_urlsafe(24)
    owner = str(scratch.parent) if scratch is not None else ""
    docker.run_detached(["--name", name, "--network", "none",
                         "--label", f"{THROWAWAY_LABEL}=verify",
                         "--label", f"{OWNER_LABEL}={owner}",
                         "--env", f"POSTGRES_DB={VERIFY_DATABASE}",
                         "--env", "POSTGRES_USER=postgres", image],
                        secret_env={"POSTGRES_PASSWORD": password})
    try:
        wait_until_serving(docker, name)
        env = _throwaway_env(password)
        with open_decompressed(artifact, compression) as source, \
                Progress(f"verify: loading the dump ({compression})", size) as progress:
            import_sql(docker, name, env, rename_schema(read_chunks(source), SCHEMA, SCHEMA,
                                                        keep_create=False), progress)
        try:
            counts, checksums, versions = table_summary(
                lambda sql: psql_rows(docker, name, env, sql), SCHEMA)
        except DockerError as error:
            raise VerificationInconclusive(f"counting the loaded rows failed: {error}") from None
    finally:
        containers.remove_throwaway(docker, name)
    compare_summary(counts, checksums, versions, expected)
    return {"tables": counts, "image": image}


# -- restore --------------------------------------------------------------------------------

def _schemas(connection: psycopg.Connection) -> set[str]:
    return {str(row[0]) for row in _rows(
        connection, "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname IN (%s, %s, %s)",
        (SCHEMA, NEW_SCHEMA, OLD_SCHEMA))}


@dataclass
class PostgresqlSwap:
    """A restore's shadow schema in the live database, swapped in by two renames in one
    transaction."""

    docker: Docker
    database: PostgresqlDatabase
    tables: list[str]  # the set's tables
    timeout: float = SNAPSHOT_TIMEOUT
    old_tables: list[str] = field(default_factory=list)  # the live tables it sets aside
    connection: psycopg.Connection | None = field(default=None, repr=False)

    def _connection(self) -> psycopg.Connection:
        """The connection, opened again if a timeout or an error closed it."""
        if self.connection is None or self.connection.closed:
            self.connection = connect(self.database)
        return self.connection

    def _bounded(self, what: str, action: Callable[[psycopg.Connection], Any],
                 seconds: float | None = None) -> Any:
        connection = self._connection()
        try:
            return bounded(connection, self.timeout if seconds is None else seconds, what,
                           lambda: action(connection))
        except MaintError:
            self.close()  # cut or failed: a later call connects afresh
            raise

    def record(self) -> dict:
        return {"database": self.database.database, "tables": self.tables,
                "old_tables": self.aside_tables()}

    @classmethod
    def from_record(cls, docker: Docker, database: PostgresqlDatabase, data: dict,
                    timeout: float = SNAPSHOT_TIMEOUT) -> PostgresqlSwap:
        prefix = f"{OLD_SCHEMA}."
        return cls(docker, database, [str(t) for t in data.get("tables", [])], timeout,
                   [str(t)[len(prefix):] for t in data.get("old_tables", [])])

    def plan(self) -> list[str]:
        """Inside the window, before the swap: the live tables it sets aside."""
        literal = SCHEMA
        rows = self._bounded("listing the live tables", lambda c: _rows(
            c, "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p') "
            "ORDER BY 1", (literal,)))
        self.old_tables = [str(row[0]) for row in rows]
        return self.old_tables

    def apply(self) -> None:
        """Inside the window: the live schema aside and the shadow schema in, atomically;
        bounded by snapshot_timeout (lock_timeout too)."""
        milliseconds = max(1000, int(self.timeout * 1000))

        def swap(connection: psycopg.Connection) -> None:
            with connection.transaction():
                connection.execute(f"SET LOCAL lock_timeout = {milliseconds}")
                connection.execute(f"ALTER SCHEMA {SCHEMA} RENAME TO {OLD_SCHEMA}")
                connection.execute(f"ALTER SCHEMA {NEW_SCHEMA} RENAME TO {SCHEMA}")

        self._bounded("swapping the restored schema in (ALTER SCHEMA ... RENAME)", swap)

    def applied(self) -> bool:
        """Whether the swap happened (one transaction: all or nothing)."""
        present = self._bounded("looking for the restore's schemas", _schemas)
        return NEW_SCHEMA not in present and OLD_SCHEMA in present and SCHEMA in present

    def undo(self) -> None:
        """Put the schema from before back (the restored one returns to its shadow name)."""
        if not self.applied():
            return

        def back(connection: psycopg.Connection) -> None:
            with connection.transaction():
                connection.execute(f"ALTER SCHEMA {SCHEMA} RENAME TO {NEW_SCHEMA}")
                connection.execute(f"ALTER SCHEMA {OLD_SCHEMA} RENAME TO {SCHEMA}")

        self._bounded("putting the schema from before back (ALTER SCHEMA ... RENAME)", back)

    def remove_incoming(self) -> None:
        """Drop the shadow schema of a restore that did not happen."""
        self._bounded("dropping the restore's shadow schema", lambda c: c.execute(
            f"DROP SCHEMA IF EXISTS {NEW_SCHEMA} CASCADE"), seconds=PREFLIGHT_TIMEOUT)

    def aside_tables(self) -> list[str]:
        return [f"{OLD_SCHEMA}.{t}" for t in self.old_tables]

    def remove_aside(self) -> None:
        """Once a verified safety set holds it: drop the schema set aside."""
        self._bounded("dropping the schema set aside by the restore", lambda c: c.execute(
            f"DROP SCHEMA IF EXISTS {OLD_SCHEMA} CASCADE"), seconds=PREFLIGHT_TIMEOUT)

    def pre_restore_snapshot(self) -> PostgresqlSnapshot:
        """After the window: a snapshot of the schema set aside, dumped as schema public."""
        snapshot = prepare(self.docker, self.database, timeout=self.timeout, schema=OLD_SCHEMA)
        return snapshot.open()

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except psycopg.Error:
                pass
            self.connection = None


def shadow_room(docker: Docker, database: PostgresqlDatabase) -> tuple[int | None, int]:
    """Free bytes in the server's data directory (None when its `df` cannot tell) and the
    bytes the tracker's schema holds now (what the safety set will dump)."""
    connection = connect(database)
    try:
        [(datadir, current)] = bounded(connection, PREFLIGHT_TIMEOUT, "measuring the database",
                                       lambda: _rows(connection, (
                                           "SELECT current_setting('data_directory'), "
                                           "coalesce(sum(pg_total_relation_size(c.oid)), 0) "
                                           "FROM pg_catalog.pg_class c JOIN "
                                           "pg_catalog.pg_namespace n ON n.oid = "
                                           "c.relnamespace WHERE n.nspname = %s AND "
                                           "c.relkind IN ('r', 'p')"), (SCHEMA,)))
    except MaintError as error:
        if "permission denied" not in str(error) and "must be superuser" not in str(error):
            raise
        datadir, current = None, 0  # data_directory is for superusers and pg_read_all_settings
    finally:
        connection.close()
    if datadir is None:
        return None, int(current)
    return containers.free_bytes(docker, database.container, str(datadir)), int(current)


def stage_restore(docker: Docker, database: PostgresqlDatabase, artifact, compression: str,
                  expected: dict, timeout: float = SNAPSHOT_TIMEOUT,
                  size: int | None = None) -> PostgresqlSwap:
    """While the tracker serves: load the set's dump into the shadow schema of the live
    database as the tracker's user, in one transaction, and compare its counts, checksums and
    migrations with the manifest. Nothing live changes; on any failure it is dropped."""
    from torrust_maint.compress import open_decompressed

    if expected.get("checksum_method", CHECKSUM_METHOD) != CHECKSUM_METHOD:
        raise MaintError(f"the set's checksum_method {expected.get('checksum_method')!r} is "
                         "unknown to this version of torrust-maint")
    swap = PostgresqlSwap(docker, database, sorted(expected.get("tables", {})), timeout)
    try:
        refused = swap._bounded("checking the user's privileges", restore_problems,
                                seconds=PREFLIGHT_TIMEOUT)
        if refused:
            raise MaintError(f"a restore swaps schemas as {database.user!r}, but the "
                             + "; ".join(refused) + "; nothing live was changed")
        present = swap._bounded("listing the schemas", _schemas, seconds=PREFLIGHT_TIMEOUT)
        if OLD_SCHEMA in present:
            raise MaintError(f"schema {OLD_SCHEMA} holds the state from before an earlier "
                             "restore: `torrust-maint restore --finish` secures it first")
        swap.remove_incoming()
        login = client_login(docker, database)
        # PUBLIC may use it, as it may use the public schema PostgreSQL creates.
        header = (f"CREATE SCHEMA {NEW_SCHEMA};\n"
                  f"GRANT USAGE ON SCHEMA {NEW_SCHEMA} TO PUBLIC;\n").encode()
        with open_decompressed(artifact, compression) as source, Progress(
                f"restore: loading the dump into schema {NEW_SCHEMA} ({compression})",
                size) as progress:
            chunks = rename_schema(read_chunks(source), SCHEMA, NEW_SCHEMA,
                                   keep_create=False)
            import_sql(docker, database.container.id, client_env(database, login),
                       _prefixed(header, chunks), progress)
        notify.status(f"restore: schema {NEW_SCHEMA} loaded, checking it")
        connection = swap._connection()
        take_over_public(connection)
        try:
            counts, checksums, versions = table_summary(lambda sql: _rows(connection, sql),
                                                        NEW_SCHEMA)
        except psycopg.Error as error:
            raise MaintError(f"counting the rows of schema {NEW_SCHEMA} failed: "
                             f"{str(error).strip()}") from None
        compare_summary(counts, checksums, versions, expected)
    except BaseException:
        try:
            swap.remove_incoming()
        except MaintError as error:
            log.warning("could not drop the shadow schema: %s", error)
        swap.close()
        raise
    return swap


def take_over_public(connection: psycopg.Connection) -> None:
    """Give the shadow schema the owner and comment of the live `public` (PostgreSQL 15+:
    pg_database_owner, "standard public schema"), so a swap changes no schema metadata. Where
    the user may not hand it over, it keeps it (it owns what it restored) and says so."""
    [(owner, comment)] = _rows(
        connection, "SELECT n.nspowner::regrole::text, "
                    "pg_catalog.obj_description(n.oid, 'pg_namespace') "
                    "FROM pg_catalog.pg_namespace n WHERE n.nspname = %s", (SCHEMA,))
    try:
        connection.execute(psycopg.sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(
            psycopg.sql.Identifier(NEW_SCHEMA), psycopg.sql.SQL(owner)))
        if comment is not None:
            connection.execute(psycopg.sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                psycopg.sql.Identifier(NEW_SCHEMA), psycopg.sql.Literal(comment)))
    except psycopg.Error as error:
        log.warning("the restored schema keeps its owner (the tracker's user), not %s: %s",
                    owner, str(error).strip())


def _prefixed(first: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from chunks

