"""MySQL/MariaDB: a consistent snapshot opened inside the window, dumped after it.

Before the window the dump tool shipped in the database container (``mariadb-dump`` or
``mysqldump``) is started through ``docker exec`` and left blocked reading its option file
(user and password) from stdin; a pymysql connection to the container's address is opened
too. Inside the window, with the tracker stopped, the connection starts a consistent-snapshot
transaction and stdin is closed: the dump connects and starts its own single transaction.
Both read views see the same state, the one committed before the stop; the tracker is started
again and the dump streams from its snapshot while the tracker serves, so the downtime does
not grow with the database. The pymysql snapshot gives the manifest's per-table row counts
and checksums of exactly the dumped state.

A shell starts the tool after printing a line on stderr: the window opens only once that line
arrived (the process runs). docker exec sends stdout and stderr over one stream, and stderr
can lag behind; so while open() waits for the tool's progress line it also reads stdout, and
more stdout than a dump's header proves the snapshot open as well. Both waits are bounded.

In [window] mode "online" the tracker is not stopped, and its commits would fall between the
two read views. So open() first holds its writes: LOCK TABLES <table> READ on every base table
(a connection each, opened before), both transactions start, UNLOCK TABLES. The tracker's
reads go on; its writes wait those milliseconds (the manifest's writes_held_seconds).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

import pymysql

from torrust_maint import notify
from torrust_maint.compress import CHUNK, read_chunks
from torrust_maint.deployment import MysqlDatabase
from torrust_maint.docker import Docker
from torrust_maint.engines import containers
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

DUMP_TOOLS = ("mariadb-dump", "mysqldump")
DUMP_OPTIONS = (
    "--single-transaction",  # one consistent snapshot (InnoDB), no table locks
    "--routines",
    "--triggers",
    "--events",
    "--no-tablespaces",  # needs no PROCESS privilege: the deployer's user gets a clean dump
    "--hex-blob",  # binary-safe
    "--default-character-set=utf8mb4",
    "--verbose",  # progress on stderr: tells us when the snapshot is established
)
ORACLE_ONLY_OPTIONS = ("--set-gtid-purged=OFF",)  # mysqldump 8.x; mariadb-dump lacks it
SNAPSHOT_TIMEOUT = 15  # default of [deployment] snapshot_timeout: the longest wait in the window
POLL_SECONDS = 0.05  # how often a wait in the window looks for a held-back signal
# The dump's header, written before its transaction starts, is a few hundred bytes: more stdout
# than this proves that the transaction is open even while its stderr lags behind.
HEADER_LIMIT = 64 * 1024
READY_LINE = "torrust-maint: dump tool started, reading its option file"
# Reports on stderr, before the window, that the exec'd process runs; then becomes the tool.
STARTER = f'echo "{READY_LINE}" >&2 && exec "$@"'
OPTION_LINE_LIMIT = 4000  # the option-file reader's line buffer is 4096 bytes
OPTION_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t",
                                "\r": "\\r", "\b": "\\b"})
STDERR_DRAIN_TIMEOUT = 10  # after the exit: the reader's last lines may still be in the pipe
TRAILER = b"-- Dump completed"
# MariaDB >= 10.5.25/10.6.18/10.11.8 starts dumps with this line, which MySQL 8's client
# rejects ("Unknown command '\-'"); without it the dump imports into both.
SANDBOX_LINE = re.compile(rb"\A/\*M!999999\\- enable the sandbox mode \*/ ?\r?\n")
FILE_STEM = "database.sql"


def option_file(user: str, password: str) -> bytes:
    """A [client] option file; values quoted and escaped as MySQL option files expect.

    Refuses (MaintError) a value no option file can carry: a NUL, or a line too long."""
    lines = [b"[client]"]
    for name, value in (("user", user), ("password", password)):
        if "\0" in value:
            raise MaintError(f"the MySQL {name} holds a NUL character, which MySQL's client "
                             "tools cannot read from an option file")
        lines.append(f'{name}="{value.translate(OPTION_ESCAPES)}"'.encode())
        if len(lines[-1]) > OPTION_LINE_LIMIT:
            raise MaintError(f"the MySQL {name} is too long for an option file line "
                             f"({len(lines[-1])} bytes escaped, at most {OPTION_LINE_LIMIT})")
    return b"\n".join(lines) + b"\n"


# Client and server error codes of a server that is not up: can't connect (2002, 2003), gone
# away or lost (2006, 2013), shutdown in progress (1053).
NOT_ANSWERING = (2002, 2003, 2006, 2013, 1053)
PREFLIGHT_TIMEOUT = 30  # seconds a server (a paused container) may take to answer before the window


@contextlib.contextmanager
def answers_within(connection: pymysql.connections.Connection,
                   seconds: float | None) -> Iterator[None]:
    """Bound every read and write of the connection to `seconds` (None: unbounded), e.g. the
    in-window statements to snapshot_timeout and the long row-count scans after it to none.
    pymysql applies its read/write timeouts per socket operation; it has no public setter."""
    previous = (connection._read_timeout, connection._write_timeout)
    connection._read_timeout = connection._write_timeout = seconds
    try:
        yield
    finally:
        connection._read_timeout, connection._write_timeout = previous


@contextlib.contextmanager
def server_errors(what: str) -> Iterator[None]:
    """A MySQL error (lost connection, a timeout, a server restarted) as one clear MaintError
    naming what we were doing; never a traceback, never the password."""
    try:
        yield
    except pymysql.err.Error as error:
        raise MaintError(f"MySQL {what} failed: {error.args[-1] if error.args else error}"
                         ) from None


def connect(database: MysqlDatabase) -> pymysql.connections.Connection:
    """A connection to the database container's address; errors never show the password.

    The password goes as UTF-8 bytes, as the client tools send it (pymysql's own is latin-1)."""
    try:
        return pymysql.connect(host=database.host, port=database.port, user=database.user,
                               password=database.password.encode(), database=database.database,
                               charset="utf8mb4", connect_timeout=10, autocommit=True,
                               read_timeout=PREFLIGHT_TIMEOUT, write_timeout=PREFLIGHT_TIMEOUT)
    except pymysql.err.MySQLError as error:
        # Not answering, or starting up / shutting down: a restart may be under way.
        down = error.args and error.args[0] in NOT_ANSWERING
        raise (DatabaseNotReady if down else MaintError)(
            f"cannot connect to MySQL at {database.host}:{database.port} as {database.user!r} "
            f"(credentials from {database.credentials_origin}): {error.args[-1]}") from None


def dump_tool(docker: Docker, database: MysqlDatabase) -> tuple[str, str]:
    """The dump tool the database container ships, and its version line."""
    for tool in DUMP_TOOLS:
        try:
            version = docker.exec_output(database.container.id, [tool, "--version"])
        except DockerError:
            continue
        return tool, version.decode(errors="replace").strip()
    raise MaintError(f"database container {database.container.name} has neither "
                     f"{' nor '.join(DUMP_TOOLS)}")


@dataclass
class MysqlSnapshot:
    """An open consistent snapshot: the dump process and our own read view of the same state."""

    database: MysqlDatabase
    process: subprocess.Popen
    connection: pymysql.connections.Connection
    tool: str
    tool_version: str
    server_version: str
    timeout: float = SNAPSHOT_TIMEOUT
    stderr_lines: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    snapshot_open: threading.Event = field(default_factory=threading.Event)
    stderr_ended: threading.Event = field(default_factory=threading.Event)
    head: bytearray = field(default_factory=bytearray, repr=False)
    table_rows: dict[str, int] = field(default_factory=dict)
    table_checksums: dict[str, int] = field(default_factory=dict)
    sandbox_line_removed: bool = False
    ready_seen: bool = False
    stderr_reader: threading.Thread | None = field(default=None, repr=False)
    head_reader: threading.Thread | None = field(default=None, repr=False)
    # Only these tables (physical name -> name in the set), e.g. a restore's tables set aside.
    tables: dict[str, str] | None = None
    # [window] mode "online": one connection per base table, to hold the tracker's writes
    # while both read views open (see hold_writes).
    lock_connections: dict[str, pymysql.connections.Connection] | None = field(
        default=None, repr=False)
    writes_held_seconds: float | None = None

    def _read_stderr(self) -> None:
        """Collect the tool's stderr; mark the starter's line and the line after "Starting
        transaction" (the snapshot is open); at the end, stop every wait."""
        in_transaction = False
        assert self.process.stderr is not None
        try:
            for raw in self.process.stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                if line == READY_LINE and not self.ready_seen:
                    self.ready_seen = True
                    self.started.set()
                    continue
                self.stderr_lines.append(line)
                if in_transaction:
                    self.snapshot_open.set()
                in_transaction = in_transaction or line.startswith("-- Starting transaction")
        except (OSError, ValueError):
            pass  # closed under us by close(): the process is gone
        finally:
            self.stderr_ended.set()
            self.started.set()
            self.snapshot_open.set()

    def _read_head(self) -> None:
        """Read the dump's first bytes while open() waits. docker exec sends stdout and stderr
        over one stream: unread stdout (a full pipe) would hold back the stderr line awaited."""
        stdout = cast(io.BufferedReader, self.process.stdout)  # Popen: a buffered pipe
        try:
            while len(self.head) <= HEADER_LIMIT:
                chunk = stdout.read1(HEADER_LIMIT)
                if not chunk:
                    return
                self.head.extend(chunk)
            self.snapshot_open.set()  # past the header: the dump's transaction is open
        except (OSError, ValueError):
            pass  # closed under us by close(): the process is gone

    def start_reading(self) -> None:
        """Read stderr from the start: the starter's line, then the tool's progress."""
        self.stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.stderr_reader.start()

    def wait_started(self) -> None:
        """Before the window: until the exec'd process reports that it runs (bounded)."""
        self._wait(self.started, self.timeout, "did not start", "the tracker was not stopped")
        if not self.ready_seen or self._failed():
            self.close()
            raise MaintError(f"{self.tool} could not be started in container "
                             f"{self.database.container.name}: "
                             f"{self.problems() or 'no message'}; the tracker was not stopped")

    def open(self, timeout: float | None = None) -> MysqlSnapshot:
        """Inside the window: start both snapshot transactions and wait until they are open,
        at most `timeout` seconds ([deployment] snapshot_timeout). Online (the tracker runs),
        its writes are held meanwhile: both read views then see the same state."""
        seconds = self.timeout if timeout is None else timeout
        if self.lock_connections is None:
            return self._open(seconds)
        deadline = time.monotonic() + seconds
        held_since = self._hold_writes(deadline)
        try:
            return self._open(round(max(0.5, deadline - time.monotonic()), 1))
        finally:
            release_writes(self.lock_connections)
            self.writes_held_seconds = round(time.monotonic() - held_since, 6)

    def _hold_writes(self, deadline: float) -> float:
        """hold_writes, as one clear MaintError (everything released) if it fails; the
        monotonic time since which the writes are held."""
        assert self.lock_connections is not None
        try:
            return hold_writes(self.lock_connections, deadline)
        except pymysql.err.Error as error:
            self.close()
            raise MaintError(lock_problem(self.database, error)) from None
        except BaseException:
            self.close()
            raise

    def _open(self, seconds: float) -> MysqlSnapshot:
        """Start both snapshot transactions and wait until they are open (`seconds`)."""
        try:
            with server_errors(f"snapshot (bounded by [deployment] snapshot_timeout, "
                               f"{seconds:g} s)"), answers_within(self.connection, seconds):
                with self.connection.cursor() as cursor:
                    cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        except MaintError:
            self.close()
            raise
        self.head_reader = threading.Thread(target=self._read_head, daemon=True)
        self.head_reader.start()
        assert self.process.stdin is not None
        self.process.stdin.close()  # the dump reads its option file to EOF, then connects
        after = "the tracker is started again" if self.lock_connections is None else \
            "the tracker kept running"
        self._wait(self.snapshot_open, seconds, "did not open its snapshot", after)
        if self._failed():
            self.close()
            raise MaintError(f"{self.tool} did not open its snapshot: "
                             f"{self.problems() or 'exit ' + str(self.process.poll())}")
        return self

    def _failed(self) -> bool:
        """Whether the tool ended with an error. Only once its stderr ended: then its exit is
        near (bounded by the timeout all the same)."""
        if not self.stderr_ended.is_set():
            return False
        try:
            return self.process.wait(timeout=self.timeout) != 0
        except subprocess.TimeoutExpired:
            return False

    def _wait(self, event: threading.Event, seconds: float, what: str, after: str) -> None:
        """Wait for `event` at most `seconds`, polling for a held-back signal; on a signal or
        the timeout, stop the tool and raise."""
        deadline = time.monotonic() + seconds
        while not event.wait(POLL_SECONDS):
            signum = pending_signal()
            if signum is not None:
                self.close()
                raise Interrupted(signum)
            if time.monotonic() >= deadline:
                self.close()
                raise MaintError(self._timeout_message(what, seconds, after))

    def _timeout_message(self, what: str, seconds: float, after: str) -> str:
        """What did not happen in time, the tool's last word, and what happens now."""
        last = next((line for line in reversed(self.stderr_lines) if line), "")
        progress = f"its last progress line: {last!r}" if last else "it printed nothing"
        return (f"{self.tool} {what} within {seconds:g} s ([deployment] snapshot_timeout; "
                f"{progress}); it was killed and {after}: this run made no backup")

    def abort(self) -> None:
        """The window was never opened."""
        self.close()

    def problems(self) -> str:
        """stderr lines that are not the tool's own verbose progress: warnings or errors."""
        return "; ".join(line for line in self.stderr_lines if line and not line.startswith("--"))

    def export_to(self, stream, progress: Callable[[int], None] | None = None) -> None:
        """Stream the dump into `stream` while our own read view counts and checksums the
        same snapshot (in parallel: the two scans take about as long), then check both."""
        counting = BackgroundCall(self._count_rows)
        # On an error the scan is not waited for: close() ends the connection under it.
        self._stream_dump(stream, progress)
        counting.result()

    def _stream_dump(self, stream, progress: Callable[[int], None] | None) -> None:
        """Stream the dump into `stream`, then check that it is complete and clean."""
        assert self.process.stdout is not None
        total, tail = 0, b""
        if self.head_reader is not None:  # it stops past the header or at the end of stdout
            self.head_reader.join()
        head = bytes(self.head) + self.process.stdout.read(CHUNK)
        stripped = SANDBOX_LINE.sub(b"", head, count=1)
        self.sandbox_line_removed = stripped != head
        chunks = _chunks(stripped, self.process.stdout)
        if self.tables is not None:
            names = self.tables
            chunks = rename_tables(chunks, lambda name: names.get(name, name))
        for chunk in chunks:
            stream.write(chunk)
            total += len(chunk)
            tail = (tail + chunk)[-256:]
            if progress:
                progress(total)
        returncode = self.process.wait()
        if self.stderr_reader is not None:  # its last lines (the error, a warning) count too
            self.stderr_reader.join(STDERR_DRAIN_TIMEOUT)
        problems = self.problems()
        if returncode != 0:
            raise MaintError(f"{self.tool} failed (exit {returncode}): {problems or 'no message'}")
        if problems:
            raise MaintError(f"{self.tool} reported problems: {problems}")
        if TRAILER not in tail:
            raise MaintError(f"the dump from {self.tool} is truncated (no '-- Dump completed')")

    def _count_rows(self) -> None:
        """Row counts and order-independent checksums per table, in our snapshot (after the
        window: a scan of a large table may take minutes, so reads are not bounded)."""
        with server_errors("row counts and checksums of the snapshot"), \
                answers_within(self.connection, None), self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE' ORDER BY table_name", (self.database.database,))
            tables = [row[0] for row in cursor.fetchall()]
            if self.tables is not None:
                tables = [table for table in tables if table in self.tables]
            else:
                tables = [table for table in tables if not table.startswith(RESTORE_PREFIXES)]
            for table in tables:
                cursor.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (self.database.database, table))
                columns = [quote_name(row[0]) for row in cursor.fetchall()]
                cursor.execute(f"SELECT COUNT(*), {checksum_expression(columns)} "
                               f"FROM {quote_name(table)}")
                count, checksum = cursor.fetchone()
                name = self.tables[table] if self.tables is not None else table
                self.table_rows[name] = int(count)
                self.table_checksums[name] = int(checksum or 0)
            cursor.execute("COMMIT")

    def manifest(self) -> dict:
        return {
            "database": self.database.database,
            "container": self.database.container.name,
            "image": self.database.container.image,
            "server_version": self.server_version,
            "dump_tool": self.tool,
            "dump_tool_version": self.tool_version,
            "dump_options": list(self._options()),
            "tables": self.table_rows,
            "table_checksums": self.table_checksums,
            "checksum_method": CHECKSUM_METHOD,
            "sandbox_line_removed": self.sandbox_line_removed,
            **({"writes_held_seconds": self.writes_held_seconds}
               if self.writes_held_seconds is not None else {}),
        }

    def _options(self) -> tuple[str, ...]:
        return dump_options(self.tool, self.tool_version)

    def close(self) -> None:
        """Release the dump process and the connections, whatever state they are in."""
        containers.release(self.process)
        for connection in [self.connection, *(self.lock_connections or {}).values()]:
            try:
                connection.close()
            except pymysql.err.Error:
                pass


# -- [window] mode "online": the tracker's writes held while both read views open ------------

LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT
LOCK_WAIT_SECONDS = 1  # lock_wait_timeout of each table's LOCK TABLES (MySQL counts seconds)


def lock_connections(database: MysqlDatabase,
                     tables: list[str]) -> dict[str, pymysql.connections.Connection]:
    """Before the snapshot: a logged-in connection per base table, whose lock waits end
    after LOCK_WAIT_SECONDS."""
    connections: dict[str, pymysql.connections.Connection] = {}
    try:
        for table in tables:
            connections[table] = connect(database)
            with server_errors("preflight (lock_wait_timeout)"), \
                    connections[table].cursor() as cursor:
                cursor.execute("SET SESSION lock_wait_timeout = %s", (LOCK_WAIT_SECONDS,))
    except BaseException:
        for connection in connections.values():
            connection.close()
        raise
    return connections


def hold_writes(connections: dict[str, pymysql.connections.Connection],
                deadline: float) -> float:
    """LOCK TABLES <table> READ on each table's own connection in turn: once all are granted
    no transaction that writes them is open, nor can one start (reads go on). The time
    (monotonic) they were all granted.

    One table per connection: a session never waits while holding, so MySQL's deadlock
    detector never picks the tracker's transaction as a victim. A writer holding one table
    and waiting for one we hold is a wait no detector sees: after LOCK_WAIT_SECONDS every
    lock is released (the writer goes on) and tried again, until `deadline`.
    """
    while True:
        try:
            for table, connection in connections.items():
                with answers_within(connection, LOCK_WAIT_SECONDS + 5), \
                        connection.cursor() as cursor:
                    cursor.execute(f"LOCK TABLES {quote_name(table)} READ")
            return time.monotonic()
        except pymysql.err.OperationalError as error:
            release_writes(connections)
            if error.args[0] != LOCK_WAIT_TIMEOUT or time.monotonic() >= deadline:
                raise
        signum = pending_signal()
        if signum is not None:
            raise Interrupted(signum)


def release_writes(connections: dict[str, pymysql.connections.Connection]) -> None:
    """UNLOCK TABLES on every lock connection (one that fails is closed: that releases it)."""
    for connection in connections.values():
        try:
            with answers_within(connection, PREFLIGHT_TIMEOUT), connection.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")
        except pymysql.err.Error:
            with contextlib.suppress(pymysql.err.Error):
                connection.close()


# The current user's own grants (global, then on databases matching ours): information_schema
# lists a user's rows only, the grantee formatted as 'user'@'host'.
LOCK_TABLES_GRANTED = (
    "SELECT COUNT(*) FROM (SELECT grantee FROM information_schema.USER_PRIVILEGES "
    "WHERE privilege_type = 'LOCK TABLES' UNION ALL SELECT grantee FROM "
    "information_schema.SCHEMA_PRIVILEGES WHERE privilege_type = 'LOCK TABLES' AND "
    "%s LIKE table_schema) AS granted WHERE grantee = CONCAT(\"'\", "
    "SUBSTRING_INDEX(CURRENT_USER(), '@', 1), \"'@'\", "
    "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), \"'\")")


def lock_tables_problem(connection: pymysql.connections.Connection,
                        database: MysqlDatabase) -> str | None:
    """For `check` in [window] mode "online": why the user could not hold the tracker's
    writes (no LOCK TABLES privilege on the database), None when it can. Asked of the
    server's grant tables, never by locking the tracker's tables."""
    with server_errors("reading the user's privileges"), connection.cursor() as cursor:
        cursor.execute(LOCK_TABLES_GRANTED, (database.database,))
        granted = cursor.fetchone()[0]
    if granted:
        return None
    return (f"[window] mode = \"online\" holds the tracker's writes with LOCK TABLES ... READ "
            f"while the snapshot opens, and MySQL user {database.user!r} has no LOCK TABLES "
            f"privilege on `{database.database}`: grant it (GRANT LOCK TABLES ON "
            f"`{database.database}`.* TO the user), or set [window] mode = \"stop\"")


def lock_problem(database: MysqlDatabase, error: pymysql.err.Error) -> str:
    """Why the tracker's writes could not be held for an online snapshot, and the way out."""
    code = error.args[0] if error.args else None
    text = error.args[-1] if error.args else error
    if code in (1044, 1142):  # access denied to the database, to the table
        return (f"[window] mode = \"online\" holds the tracker's writes with LOCK TABLES ... "
                f"READ while the snapshot opens, and MySQL user {database.user!r} may not: "
                f"{text}; grant it LOCK TABLES on `{database.database}`, or set [window] "
                "mode = \"stop\"; the tracker was not stopped, no set was written")
    if code == LOCK_WAIT_TIMEOUT:
        return ("[window] mode = \"online\": the tracker's writes could not be held within "
                "[deployment] snapshot_timeout (a transaction kept a table busy); no set was "
                "written, run the backup again")
    return f"MySQL holding the tracker's writes for the online snapshot failed: {text}"


class BackgroundCall:
    """A function run in a thread now; result() re-raises what it raised, in the caller."""

    def __init__(self, function: Callable[[], None]):
        self._error: BaseException | None = None
        self._function = function
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._function()
        except BaseException as error:  # noqa: BLE001 -- handed to the caller by result()
            self._error = error

    def result(self) -> None:
        """Wait for the function to return; raise what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def _chunks(first: bytes, rest):
    """The first chunk (already read), then the rest of the stream."""
    if first:
        yield first
    while chunk := rest.read(CHUNK):
        yield chunk


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def checksum_expression(columns: list[str]) -> str:
    """An order-independent checksum of all rows: each row's columns QUOTE()d (NULL stays
    apart from 'NULL', a comma inside a value from the separator), the first 60 bits of its
    MD5, summed (exact DECIMAL: a duplicated row adds, never cancels)."""
    row = ", ".join(f"QUOTE({c})" for c in columns)
    return f"SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', {row})), 15), 16, 10) AS UNSIGNED))"


def legacy_checksum_expression(columns: list[str]) -> str:
    """The checksum of sets written before CHECKSUM_METHOD (ambiguous: duplicate rows cancel,
    ('a#b', 'c') equals ('a', 'b#c')); kept to verify those sets."""
    nulls = ", ".join(f"ISNULL({c})" for c in columns)
    return (f"BIT_XOR(CAST(CRC32(CONCAT_WS('#', {', '.join(columns)}, CONCAT({nulls}))) "
            "AS UNSIGNED))")


CHECKSUM_METHOD = "SUM(CONV(LEFT(MD5(CONCAT_WS(',', QUOTE(column)...)), 15), 16, 10))"
LEGACY_CHECKSUM_METHOD = "BIT_XOR(CRC32(CONCAT_WS('#', columns..., null flags)))"
CHECKSUMS = {CHECKSUM_METHOD: checksum_expression,
             LEGACY_CHECKSUM_METHOD: legacy_checksum_expression}


def checksum_for(expected: dict) -> Callable[[list[str]], str]:
    """The checksum a set's manifest records in checksum_method (the legacy one if none)."""
    method = expected.get("checksum_method", LEGACY_CHECKSUM_METHOD)
    if method not in CHECKSUMS:
        raise VerificationInconclusive(f"the set's checksum_method {method!r} is unknown to "
                                       "this version of torrust-maint")
    return CHECKSUMS[method]


def dump_options(tool: str, version: str) -> tuple[str, ...]:
    oracle = tool == "mysqldump" and "mariadb" not in version.lower()
    return DUMP_OPTIONS + (ORACLE_ONLY_OPTIONS if oracle else ())


def prepare(docker: Docker, database: MysqlDatabase, staging_dir=None,
            live_handle_ok: bool = True, timeout: float = SNAPSHOT_TIMEOUT,
            tables: dict[str, str] | None = None, online: bool = False) -> MysqlSnapshot:
    """Before the window: the option file can be written, the connection works, the dump tool
    exists and runs in the container, blocked on its option file. Every wait is bounded by
    `timeout` ([deployment] snapshot_timeout), the wait in open() too. With `tables` (physical
    name -> name in the set) only those are dumped and counted, under their names in the set.
    `online`: open() holds the running tracker's writes (a connection per table)."""
    options = option_file(database.user, database.password)
    connection = connect(database)
    locks = None
    try:
        with server_errors("preflight (SELECT VERSION())"), connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            server_version = cursor.fetchone()[0]
        with server_errors("listing the tables"):
            every_table = base_tables(connection, database.database)
        restore_tables = [t for t in every_table if t.startswith(RESTORE_PREFIXES)]
        tool, version = dump_tool(docker, database)
        if online:
            locks = lock_connections(database, every_table)
    except BaseException:
        connection.close()
        for opened in (locks or {}).values():
            opened.close()
        raise
    argv = ["sh", "-c", STARTER, "sh", tool, "--defaults-extra-file=/dev/stdin",
            *dump_options(tool, version),
            # A restore's tables (shadow, or set aside until its safety set is verified) are
            # never part of a backup.
            *(f"--ignore-table={database.database}.{t}" for t in restore_tables
              if tables is None),
            database.database, *(tables or {})]
    try:
        process = docker.exec_stream(database.container.id, argv)
    except BaseException:
        for opened in [connection, *(locks or {}).values()]:
            opened.close()
        raise
    snapshot = MysqlSnapshot(database=database, tables=tables, process=process,
                             connection=connection, tool=tool,
                             tool_version=re.sub(r"\s+", " ", version),
                             server_version=server_version, timeout=timeout,
                             lock_connections=locks)
    try:
        snapshot.start_reading()
        _send_options(snapshot, options)
        snapshot.wait_started()
    except BaseException:  # a signal too: the caller never gets the snapshot to abort it
        snapshot.close()
        raise
    return snapshot


def _send_options(snapshot: MysqlSnapshot, options: bytes) -> None:
    """Write the option file to the tool's stdin; stdin stays open until open() closes it."""
    assert snapshot.process.stdin is not None
    try:
        snapshot.process.stdin.write(options)
        snapshot.process.stdin.flush()
    except BrokenPipeError:
        pass  # it ended already: wait_started() reports why


VERIFY_DATABASE = "torrust_maint_verify"
THROWAWAY_LABEL = "org.torrust-maint.throwaway"
OWNER_LABEL = "org.torrust-maint.backup-directory"


def remove_leftover_throwaways(docker: Docker, directory) -> list[str]:
    """Remove throwaway containers a killed run of this backup directory left behind (the
    caller holds its run lock, so none of them is in use); their names."""
    names = docker.labelled_containers({THROWAWAY_LABEL: "verify", OWNER_LABEL: str(directory)})
    for name in names:
        log.warning("removing throwaway container %s, left by an interrupted run", name)
        try:
            docker.remove(name)
        except DockerError as error:
            log.warning("could not remove throwaway container %s: %s", name, error)
    return names
CLIENTS = (("mariadb", "mariadb-admin"), ("mysql", "mysqladmin"))
READY_TIMEOUT = 180
# The client's report of a statement the server rejected: "ERROR 1064 (42000) at line 7: ...".
# Codes from 2000 are the client's own (lost connection, ...); these server codes are a full
# disk or memory (1021, 1037, 1038, 1041, 1114): neither says anything about the dump.
SQL_ERROR = re.compile(r"^ERROR (\d+)(?: \(\w+\))? at line \d+", re.MULTILINE)
RESOURCE_ERRORS = frozenset({1021, 1037, 1038, 1041, 1114})


def client_tools(docker: Docker, container: str) -> tuple[str, str]:
    """The SQL client and admin tool a container ships (MariaDB's or MySQL's names)."""
    for client, admin in CLIENTS:
        try:
            docker.exec_output(container, [client, "--version"])
            return client, admin
        except DockerError:
            continue
    raise MaintError(f"container {container} has neither mariadb nor mysql client")


def wait_until_serving(docker: Docker, container: str, admin: str) -> None:
    """Until the server answers on TCP (the image's init server listens only on its socket)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            docker.exec_output(container, [admin, "--protocol=tcp", "--host=127.0.0.1",
                                           "--connect-timeout=2", "ping"], timeout=30)
            return
        except DockerError as error:
            last = str(error)
        time.sleep(0.5)
    raise MaintError(f"throwaway database {container} did not start: {last}")


def import_dump(docker: Docker, container: str, client: str, option_path: str,
                database: str, source, progress=None) -> None:
    """Pipe a dump into the container's client; fail with its stderr."""
    process = docker.exec_stream(container, [client, f"--defaults-extra-file={option_path}",
                                             database])
    assert process.stdin is not None
    try:
        total = 0
        while chunk := source.read(CHUNK):
            process.stdin.write(chunk)
            total += len(chunk)
            if progress:
                progress(total)
        process.stdin.close()
    except BrokenPipeError:
        pass  # the client stopped reading: its exit status and stderr say why
    except BaseException:  # the source failed (a refused dump, a signal): no half import runs on
        process.kill()
        process.communicate()
        raise
    process.stdin = None  # closed: communicate() must not flush it
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise import_error(stderr.decode(errors="replace").strip())


def import_error(stderr: str) -> MaintError:
    """VerificationFailed when the server rejected the dump's SQL (a verdict on the dump);
    VerificationInconclusive for anything else (docker, a lost connection, a full disk)."""
    message = f"importing the dump failed: {stderr or 'no message'}"
    found = SQL_ERROR.search(stderr)
    if found and int(found.group(1)) < 2000 and int(found.group(1)) not in RESOURCE_ERRORS:
        return VerificationFailed(message)
    return VerificationInconclusive(message)


def query(docker: Docker, container: str, client: str, option_path: str, database: str,
          sql: str) -> list[list[str]]:
    """Rows of a query run through the container's client (tab-separated batch output)."""
    out = docker.exec_output(container, [client, f"--defaults-extra-file={option_path}",
                                         "--batch", "--skip-column-names", database, "-e", sql])
    return [line.split("\t") for line in out.decode().splitlines()]


def table_summary(run_query, checksum: Callable[[list[str]], str] = checksum_expression,
                  tables: dict[str, str] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Row counts and checksums of every base table (or of `tables`: name in the set ->
    table to read), with the same SQL as at backup time (`checksum`: the set's)."""
    if tables is None:
        tables = {row[0]: row[0] for row in run_query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name")}
    counts, checksums = {}, {}
    for name, table in tables.items():
        columns = [quote_name(row[0]) for row in run_query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
            f"AND table_name = '{table.replace(chr(39), chr(39) * 2)}' "
            "ORDER BY ordinal_position")]
        [[count, value]] = run_query(f"SELECT COUNT(*), {checksum(columns)} "
                                     f"FROM {quote_name(table)}")
        counts[name] = int(count)
        checksums[name] = int(value) if value not in ("NULL", "") else 0
    return counts, checksums


def compare_summary(counts, checksums, expected: dict) -> None:
    from torrust_maint.engines.sqlite import compare_counts, expected_counts

    compare_counts(counts, expected_counts(expected))
    differ = [table for table, value in sorted(expected.get("table_checksums", {}).items())
              if checksums.get(table) != value]
    if differ:
        raise VerificationFailed(f"checksums differ for table(s) {', '.join(differ)}")


def verify(docker: Docker, artifact, compression: str, expected: dict, scratch=None,
           size: int | None = None) -> dict:
    """Import the dump into a throwaway container of the deployment's database image (no
    network, removed afterwards even on failure) and compare counts and checksums (`size`:
    the manifest's uncompressed size, for the progress)."""
    from torrust_maint.compress import open_decompressed

    image = expected.get("image")
    if not image:
        raise MaintError("the manifest does not name the database image to verify with")
    checksum = checksum_for(expected)
    name = f"torrust-maint-verify-{secrets.token_hex(6)}"
    password = secrets.token_urlsafe(24)
    owner = str(scratch.parent) if scratch is not None else ""
    docker.run_detached(["--name", name, "--network", "none",
                         "--label", f"{THROWAWAY_LABEL}=verify",
                         "--label", f"{OWNER_LABEL}={owner}",
                         "--env", f"MYSQL_DATABASE={VERIFY_DATABASE}", image],
                        secret_env={"MYSQL_ROOT_PASSWORD": password})
    try:
        client, admin = client_tools(docker, name)
        wait_until_serving(docker, name, admin)
        docker.copy_file_into(name, "/tmp", "torrust-maint.cnf", option_file("root", password))
        option_path = "/tmp/torrust-maint.cnf"
        with open_decompressed(artifact, compression) as source, \
                Progress(f"verify: importing the dump ({compression})", size) as progress:
            import_dump(docker, name, client, option_path, VERIFY_DATABASE, source, progress)
        counts, checksums = table_summary(
            lambda sql: query(docker, name, client, option_path, VERIFY_DATABASE, sql), checksum)
    finally:
        containers.remove_throwaway(docker, name)
    compare_summary(counts, checksums, expected)
    return {"tables": counts, "table_checksums": checksums, "image": image}


NEW_PREFIX = "torrust_maint_new_"  # a restore's shadow tables, imported while the tracker serves
OLD_PREFIX = "torrust_maint_old_"  # the tables a restore set aside: the state from before it
RESTORE_PREFIXES = (NEW_PREFIX, OLD_PREFIX)
NAME_LIMIT = 64  # MySQL's identifier length
# Statements of a dump that name a table, at the start of a line (mysqldump and mariadb-dump).
TABLE_STATEMENT = re.compile(
    rb"^(DROP TABLE IF EXISTS |CREATE TABLE |LOCK TABLES |INSERT INTO |/\*!40000 ALTER TABLE )"
    rb"`((?:[^`]|``)+)`")
# What shadow tables cannot hold: names that stay global in the schema (constraints, triggers)
# or objects that refer to tables by name (views, routines, events). The tracker has none.
UNSUPPORTED = re.compile(
    rb"^\s*(CONSTRAINT |DELIMITER |/\*!50001 |/\*!50003 CREATE|/\*!50106 CREATE"
    rb"|CREATE (?:ALGORITHM|DEFINER|VIEW|TRIGGER|PROCEDURE|FUNCTION|EVENT))")


def rename_tables(chunks: Iterable[bytes], rename: Callable[[str], str],
                  seen: set[str] | None = None) -> Iterator[bytes]:
    """A dump's bytes with every table named in its statements renamed; MaintError on what
    shadow tables cannot hold (foreign keys, triggers, views, routines, events)."""
    pending = b""
    for chunk in chunks:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield b"".join(_renamed_line(line, rename, seen) + b"\n" for line in lines)
    if pending:
        yield _renamed_line(pending, rename, seen)


def _renamed_line(line: bytes, rename: Callable[[str], str], seen: set[str] | None) -> bytes:
    found = TABLE_STATEMENT.match(line)
    if found:
        name = found.group(2).replace(b"``", b"`").decode()
        if seen is not None:
            seen.add(name)
        return found.group(1) + quote_name(rename(name)).encode() + line[found.end():]
    if UNSUPPORTED.match(line):
        what = UNSUPPORTED.match(line).group(1).decode().strip()  # type: ignore[union-attr]
        raise MaintError(f"the set's dump holds {what!r} (a foreign key, trigger, view, routine "
                         "or event): restoring it through shadow tables is not supported; "
                         "nothing live was changed")
    return line


class ChunkReader:
    """A read(size) stream over an iterator of byte chunks (for import_dump)."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.buffer = chunks, bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        if size < 0:
            size = len(self.buffer)
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out


def base_tables(connection, database: str) -> list[str]:
    """The database's base tables, by name."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = %s AND table_type = 'BASE TABLE' "
                       "ORDER BY table_name", (database,))
        return [row[0] for row in cursor.fetchall()]


def _drop(connection, tables: list[str]) -> None:
    if tables:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS " + ", ".join(quote_name(t) for t in tables))


@dataclass
class MysqlSwap:
    """A restore's shadow tables in the live database, swapped in by one RENAME TABLE."""

    docker: Docker
    database: MysqlDatabase
    tables: list[str]  # the set's tables
    timeout: float = SNAPSHOT_TIMEOUT
    old_tables: list[str] = field(default_factory=list)  # live tables set aside (their names)
    connection: pymysql.connections.Connection | None = field(default=None, repr=False)

    def _connection(self) -> pymysql.connections.Connection:
        """The connection, opened again if a timeout or an error closed it."""
        if self.connection is None or not self.connection.open:
            self.connection = connect(self.database)
        return self.connection

    def record(self) -> dict:
        return {"database": self.database.database, "tables": self.tables,
                "old_tables": [OLD_PREFIX + t for t in self.old_tables]}

    @classmethod
    def from_record(cls, docker: Docker, database: MysqlDatabase, data: dict,
                    timeout: float = SNAPSHOT_TIMEOUT) -> MysqlSwap:
        old = [str(t)[len(OLD_PREFIX):] for t in data.get("old_tables", [])]
        return cls(docker, database, [str(t) for t in data.get("tables", [])], timeout, old)

    def plan(self) -> list[str]:
        """Inside the window, before the swap: the live tables it sets aside."""
        with server_errors("listing the live tables"), \
                answers_within(self._connection(), self.timeout):
            live = base_tables(self._connection(), self.database.database)
        self.old_tables = [t for t in live if not t.startswith((NEW_PREFIX, OLD_PREFIX))]
        return self.old_tables

    def apply(self) -> None:
        """Inside the window: one atomic RENAME TABLE sets the live tables aside and the shadow
        tables in; bounded by snapshot_timeout (lock_wait_timeout too)."""
        pairs = [(t, OLD_PREFIX + t) for t in self.old_tables]
        pairs += [(NEW_PREFIX + t, t) for t in self.tables]
        connection = self._connection()
        with server_errors("swapping the restored tables in (RENAME TABLE)"), \
                answers_within(connection, self.timeout), connection.cursor() as cursor:
            cursor.execute("SET SESSION lock_wait_timeout = %s", (max(1, int(self.timeout)),))
            cursor.execute("RENAME TABLE " + ", ".join(
                f"{quote_name(a)} TO {quote_name(b)}" for a, b in pairs))

    def applied(self) -> bool:
        """Whether the swap happened (RENAME TABLE is atomic: all or nothing)."""
        connection = self._connection()
        with server_errors("looking for the restore's tables"), \
                answers_within(connection, self.timeout):
            live = set(base_tables(connection, self.database.database))
        return not any(NEW_PREFIX + t in live for t in self.tables) and \
            all(OLD_PREFIX + t in live for t in self.old_tables)

    def undo(self) -> None:
        """Put the tables from before back (the restored ones return to their shadow names)."""
        if not self.applied():
            return
        pairs = [(t, NEW_PREFIX + t) for t in self.tables]
        pairs += [(OLD_PREFIX + t, t) for t in self.old_tables]
        connection = self._connection()
        with server_errors("putting the tables from before back (RENAME TABLE)"), \
                answers_within(connection, self.timeout), connection.cursor() as cursor:
            cursor.execute("RENAME TABLE " + ", ".join(
                f"{quote_name(a)} TO {quote_name(b)}" for a, b in pairs))

    def remove_incoming(self) -> None:
        """Drop the shadow tables of a restore that did not happen."""
        with server_errors("dropping the restore's shadow tables"):
            connection = self._connection()
            live = base_tables(connection, self.database.database)
            _drop(connection, [t for t in live if t.startswith(NEW_PREFIX)])

    def aside_tables(self) -> list[str]:
        return [OLD_PREFIX + t for t in self.old_tables]

    def remove_aside(self) -> None:
        """Once a verified safety set holds them: drop the tables set aside."""
        with server_errors("dropping the tables set aside by the restore"):
            _drop(self._connection(), self.aside_tables())

    def pre_restore_snapshot(self) -> MysqlSnapshot:
        """After the window: a dump of the tables set aside, under their own names."""
        snapshot = prepare(self.docker, self.database, timeout=self.timeout,
                           tables={OLD_PREFIX + t: t for t in self.old_tables})
        return snapshot.open()

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except pymysql.err.Error:
                pass
            self.connection = None


def shadow_room(docker: Docker, database: MysqlDatabase) -> tuple[int | None, int]:
    """Free bytes in the server's data directory (None when its `df` cannot tell) and the
    bytes the database's tables hold now (what the safety set will dump)."""
    connection = connect(database)
    try:
        with server_errors("measuring the database"), connection.cursor() as cursor:
            cursor.execute("SELECT @@datadir, (SELECT COALESCE(SUM(data_length + index_length), "
                           "0) FROM information_schema.tables WHERE table_schema = %s)",
                           (database.database,))
            datadir, current = cursor.fetchone()
    finally:
        connection.close()
    return containers.free_bytes(docker, database.container, str(datadir)), int(current)


def stage_restore(docker: Docker, database: MysqlDatabase, artifact, compression: str,
                  expected: dict, timeout: float = SNAPSHOT_TIMEOUT,
                  size: int | None = None) -> MysqlSwap:
    """While the tracker serves: import the set's dump into shadow tables (NEW_PREFIX) of the
    live database as the tracker's user, and compare their counts and checksums with the
    manifest. Nothing live changes; on any failure the shadow tables are dropped."""
    from torrust_maint.compress import open_decompressed

    checksum = checksum_for(expected)
    wanted = sorted(expected.get("tables", {}))
    too_long = [t for t in wanted if len(OLD_PREFIX + t) > NAME_LIMIT]
    if too_long:
        raise MaintError(f"table name(s) {', '.join(too_long)} too long for a shadow table "
                         f"({NAME_LIMIT - len(OLD_PREFIX)} characters at most)")
    swap = MysqlSwap(docker, database, wanted, timeout)
    connection = swap._connection()
    try:
        with server_errors("listing the live tables"):
            live = base_tables(connection, database.database)
        held = [t for t in live if t.startswith(OLD_PREFIX)]
        if held:
            raise MaintError(f"tables {', '.join(held)} hold the state from before an earlier "
                             "restore: `torrust-maint restore --finish` secures them first")
        with server_errors("dropping leftover shadow tables"):
            _drop(connection, [t for t in live if t.startswith(NEW_PREFIX)])
        client, _ = client_tools(docker, database.container.id)
        option_name = f"torrust-maint-{secrets.token_hex(6)}.cnf"
        docker.copy_file_into(database.container.id, "/tmp", option_name,
                              option_file(database.user, database.password))
        seen: set[str] = set()
        try:
            with open_decompressed(artifact, compression) as source, Progress(
                    f"restore: importing the dump into shadow tables ({compression})",
                    size) as progress:
                renamed = rename_tables(read_chunks(source), lambda t: NEW_PREFIX + t, seen)
                import_dump(docker, database.container.id, client, f"/tmp/{option_name}",
                            database.database, ChunkReader(renamed), progress)
        finally:
            docker.exec_output(database.container.id, ["rm", "-f", f"/tmp/{option_name}"])
        notify.status("restore: shadow tables imported, checking them")

        def run_query(sql: str) -> list[list[str]]:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return [[str(value) if value is not None else "NULL" for value in row]
                        for row in cursor.fetchall()]

        with server_errors("counting the rows of the shadow tables"), \
                answers_within(connection, None):
            counts, checksums = table_summary(run_query, checksum,
                                              {t: NEW_PREFIX + t for t in sorted(seen)})
        compare_summary(counts, checksums, expected)
    except BaseException:
        try:
            swap.remove_incoming()
        except MaintError as error:
            log.warning("could not drop the shadow tables: %s", error)
        swap.close()
        raise
    return swap
