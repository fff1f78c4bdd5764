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
"""

from __future__ import annotations

import logging
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pymysql

from torrust_maint.compress import CHUNK
from torrust_maint.deployment import MysqlDatabase
from torrust_maint.docker import Docker
from torrust_maint.errors import DockerError, MaintError

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
SNAPSHOT_TIMEOUT = 60
STDERR_DRAIN_TIMEOUT = 10  # after the exit: the reader's last lines may still be in the pipe
TRAILER = b"-- Dump completed"
# MariaDB >= 10.5.25/10.6.18/10.11.8 starts dumps with this line, which MySQL 8's client
# rejects ("Unknown command '\-'"); without it the dump imports into both.
SANDBOX_LINE = re.compile(rb"\A/\*M!999999\\- enable the sandbox mode \*/ ?\r?\n")
FILE_STEM = "database.sql"


def option_file(user: str, password: str) -> bytes:
    """A [client] option file; values quoted and escaped as MySQL option files expect."""

    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"[client]\nuser={quote(user)}\npassword={quote(password)}\n".encode()


def connect(database: MysqlDatabase) -> pymysql.connections.Connection:
    """A connection to the database container's address; errors never show the password."""
    try:
        return pymysql.connect(host=database.host, port=database.port, user=database.user,
                               password=database.password, database=database.database,
                               charset="utf8mb4", connect_timeout=10, autocommit=True)
    except pymysql.err.MySQLError as error:
        raise MaintError(
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
    stderr_lines: list[str] = field(default_factory=list)
    snapshot_open: threading.Event = field(default_factory=threading.Event)
    table_rows: dict[str, int] = field(default_factory=dict)
    table_checksums: dict[str, int] = field(default_factory=dict)
    sandbox_line_removed: bool = False
    stderr_reader: threading.Thread | None = field(default=None, repr=False)

    def _read_stderr(self) -> None:
        started = False
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stderr_lines.append(line)
            if started:
                self.snapshot_open.set()  # the line after "Starting transaction": it is open
            if line.startswith("-- Starting transaction"):
                started = True
        self.snapshot_open.set()  # the process ended: stop waiting either way

    def open(self) -> MysqlSnapshot:
        """Inside the window: start both snapshot transactions and wait until they are open."""
        with self.connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        self.stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.stderr_reader.start()
        assert self.process.stdin is not None
        self.process.stdin.close()  # the dump reads its option file to EOF, then connects
        if not self.snapshot_open.wait(SNAPSHOT_TIMEOUT) or self.process.poll() not in (None, 0):
            self.close()
            reason = self.problems() or "timeout"
            raise MaintError(f"{self.tool} did not open its snapshot: {reason}")
        return self

    def abort(self) -> None:
        """The window was never opened."""
        self.close()

    def problems(self) -> str:
        """stderr lines that are not the tool's own verbose progress: warnings or errors."""
        return "; ".join(line for line in self.stderr_lines if line and not line.startswith("--"))

    def export_to(self, stream, progress: Callable[[int], None] | None = None) -> None:
        """Stream the dump into `stream`, then check that it is complete and clean."""
        assert self.process.stdout is not None
        total, tail = 0, b""
        head = self.process.stdout.read(CHUNK)
        stripped = SANDBOX_LINE.sub(b"", head, count=1)
        self.sandbox_line_removed = stripped != head
        for chunk in _chunks(stripped, self.process.stdout):
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
        self._count_rows()

    def _count_rows(self) -> None:
        """Row counts and order-independent checksums per table, in our snapshot."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE' ORDER BY table_name", (self.database.database,))
            tables = [row[0] for row in cursor.fetchall()]
            for table in tables:
                cursor.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (self.database.database, table))
                columns = [quote_name(row[0]) for row in cursor.fetchall()]
                cursor.execute(f"SELECT COUNT(*), {checksum_expression(columns)} "
                               f"FROM {quote_name(table)}")
                count, checksum = cursor.fetchone()
                self.table_rows[table] = int(count)
                self.table_checksums[table] = int(checksum or 0)
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
            "checksum_method": "BIT_XOR(CRC32(CONCAT_WS('#', columns..., null flags)))",
            "sandbox_line_removed": self.sandbox_line_removed,
        }

    def _options(self) -> tuple[str, ...]:
        return dump_options(self.tool, self.tool_version)

    def close(self) -> None:
        """Release the dump process and the connection, whatever state they are in."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe and not pipe.closed:
                pipe.close()
        try:
            self.connection.close()
        except pymysql.err.Error:
            pass


def _chunks(first: bytes, rest):
    """The first chunk (already read), then the rest of the stream."""
    if first:
        yield first
    while chunk := rest.read(CHUNK):
        yield chunk


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def checksum_expression(columns: list[str]) -> str:
    """An order-independent checksum of all rows that tells NULL from an empty string."""
    nulls = ", ".join(f"ISNULL({c})" for c in columns)
    return (f"BIT_XOR(CAST(CRC32(CONCAT_WS('#', {', '.join(columns)}, CONCAT({nulls}))) "
            "AS UNSIGNED))")


def dump_options(tool: str, version: str) -> tuple[str, ...]:
    oracle = tool == "mysqldump" and "mariadb" not in version.lower()
    return DUMP_OPTIONS + (ORACLE_ONLY_OPTIONS if oracle else ())


def prepare(docker: Docker, database: MysqlDatabase, staging_dir=None,
            live_handle_ok: bool = True) -> MysqlSnapshot:
    """Before the window: connect, find the dump tool, start it blocked on its option file."""
    connection = connect(database)
    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION()")
        server_version = cursor.fetchone()[0]
    tool, version = dump_tool(docker, database)
    argv = [tool, "--defaults-extra-file=/dev/stdin", *dump_options(tool, version),
            database.database]
    process = docker.exec_stream(database.container.id, argv)
    assert process.stdin is not None
    process.stdin.write(option_file(database.user, database.password))
    process.stdin.flush()
    return MysqlSnapshot(database=database, process=process, connection=connection, tool=tool,
                         tool_version=re.sub(r"\s+", " ", version), server_version=server_version)


VERIFY_DATABASE = "torrust_maint_verify"
CLIENTS = (("mariadb", "mariadb-admin"), ("mysql", "mysqladmin"))
READY_TIMEOUT = 180


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
    process.stdin = None  # closed: communicate() must not flush it
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise MaintError(f"importing the dump failed: {stderr.decode(errors='replace').strip()}")


def query(docker: Docker, container: str, client: str, option_path: str, database: str,
          sql: str) -> list[list[str]]:
    """Rows of a query run through the container's client (tab-separated batch output)."""
    out = docker.exec_output(container, [client, f"--defaults-extra-file={option_path}",
                                         "--batch", "--skip-column-names", database, "-e", sql])
    return [line.split("\t") for line in out.decode().splitlines()]


def table_summary(run_query) -> tuple[dict[str, int], dict[str, int]]:
    """Row counts and checksums of every base table, with the same SQL as at backup time."""
    tables = [row[0] for row in run_query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
        "AND table_type = 'BASE TABLE' ORDER BY table_name")]
    counts, checksums = {}, {}
    for table in tables:
        columns = [quote_name(row[0]) for row in run_query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
            f"AND table_name = '{table.replace(chr(39), chr(39) * 2)}' "
            "ORDER BY ordinal_position")]
        [[count, checksum]] = run_query(f"SELECT COUNT(*), {checksum_expression(columns)} "
                                        f"FROM {quote_name(table)}")
        counts[table] = int(count)
        checksums[table] = int(checksum) if checksum not in ("NULL", "") else 0
    return counts, checksums


def compare_summary(counts, checksums, expected: dict) -> None:
    from torrust_maint.engines.sqlite import compare_counts

    compare_counts(counts, expected.get("tables", {}))
    differ = [table for table, value in sorted(expected.get("table_checksums", {}).items())
              if checksums.get(table) != value]
    if differ:
        raise MaintError(f"checksums differ for table(s) {', '.join(differ)}")


def verify(docker: Docker, artifact, compression: str, expected: dict, scratch=None) -> dict:
    """Import the dump into a throwaway container of the deployment's database image (no
    network, removed afterwards even on failure) and compare counts and checksums."""
    from torrust_maint.compress import open_decompressed

    image = expected.get("image")
    if not image:
        raise MaintError("the manifest does not name the database image to verify with")
    name = f"torrust-maint-verify-{secrets.token_hex(6)}"
    password = secrets.token_urlsafe(24)
    owner = str(scratch.parent) if scratch is not None else ""
    docker.run_detached(["--name", name, "--network", "none",
                         "--label", "org.torrust-maint.throwaway=verify",
                         "--label", f"org.torrust-maint.backup-directory={owner}",
                         "--env", f"MYSQL_DATABASE={VERIFY_DATABASE}", image],
                        secret_env={"MYSQL_ROOT_PASSWORD": password})
    try:
        client, admin = client_tools(docker, name)
        wait_until_serving(docker, name, admin)
        docker.copy_file_into(name, "/tmp", "torrust-maint.cnf", option_file("root", password))
        option_path = "/tmp/torrust-maint.cnf"
        with open_decompressed(artifact, compression) as source:
            import_dump(docker, name, client, option_path, VERIFY_DATABASE, source)
        counts, checksums = table_summary(
            lambda sql: query(docker, name, client, option_path, VERIFY_DATABASE, sql))
    finally:
        try:
            docker.remove(name)
        except DockerError as error:
            log.warning("could not remove throwaway container %s: %s", name, error)
    compare_summary(counts, checksums, expected)
    return {"tables": counts, "image": image}


def restore(docker: Docker, database: MysqlDatabase, artifact, compression: str,
            expected: dict) -> dict:
    """Import the set's dump into the live database (tracker stopped) as the tracker's user,
    dropping tables the set does not have, then compare counts and checksums."""
    from torrust_maint.compress import open_decompressed

    connection = connect(database)
    try:
        wanted = set(expected.get("tables", {}))
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                           (database.database,))
            extra = sorted(row[0] for row in cursor.fetchall() if row[0] not in wanted)
            if extra:
                cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
                for table in extra:
                    cursor.execute(f"DROP TABLE {quote_name(table)}")
        client, _ = client_tools(docker, database.container.id)
        option_name = f"torrust-maint-{secrets.token_hex(6)}.cnf"
        docker.copy_file_into(database.container.id, "/tmp", option_name,
                              option_file(database.user, database.password))
        try:
            with open_decompressed(artifact, compression) as source:
                import_dump(docker, database.container.id, client, f"/tmp/{option_name}",
                            database.database, source)
        finally:
            docker.exec_output(database.container.id, ["rm", "-f", f"/tmp/{option_name}"])

        def run_query(sql: str) -> list[list[str]]:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return [[str(value) if value is not None else "NULL" for value in row]
                        for row in cursor.fetchall()]

        counts, checksums = table_summary(run_query)
    finally:
        connection.close()
    compare_summary(counts, checksums, expected)
    return {"tables": counts}
