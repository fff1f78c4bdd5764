"""engines.mysql: option file, dump tool and options, the snapshot and the dump's checks.

No MySQL server here: the dump process and the pymysql connection are fakes that record
what they were asked, in order.
"""

from __future__ import annotations

import configparser
import io
import queue
import signal
import threading
import time
import urllib.parse

import pymysql
import pytest

from torrust_maint.deployment import ENV_DB_PATH, MysqlDatabase, parse_mysql_dsn
from torrust_maint.docker import Container
from torrust_maint.engines import mysql
from torrust_maint.engines.mysql import (
    CHECKSUM_METHOD,
    DUMP_OPTIONS,
    HEADER_LIMIT,
    LEGACY_CHECKSUM_METHOD,
    READY_LINE,
    SANDBOX_LINE,
    STARTER,
    MysqlSnapshot,
    checksum_expression,
    checksum_for,
    dump_options,
    dump_tool,
    legacy_checksum_expression,
    option_file,
    quote_name,
    table_summary,
)
from torrust_maint.errors import ConfigError, Interrupted, MaintError, VerificationInconclusive

DB_ID = "d" * 64
PASSWORD = "Pw-S3cret"  # noqa: S105 - a test value


def database(password: str = PASSWORD) -> MysqlDatabase:
    container = Container(id=DB_ID, name="compose-mysql-1", service="mysql", project="compose",
                          working_dir="/srv/compose", running=True, status="running",
                          health=None, image="mariadb:11.4",
                          networks={"compose_default": "172.20.0.3"})
    return MysqlDatabase(container=container, host="172.20.0.3", port=3306,
                         database="torrust_tracker", user="db_user", password=password,
                         credentials_origin="/srv/compose/.env")


# -- option file -----------------------------------------------------------------------------

def test_option_file_exact_bytes():
    assert option_file("db_user", 'a"b\\c') == (
        b'[client]\nuser="db_user"\npassword="a\\"b\\\\c"\n')


def test_option_file_backslash_before_quote_is_escaped_separately():
    # `\"` must become `\\\"` (an escaped backslash, then an escaped quote), not `\\"`.
    assert option_file("u", '\\"') == b'[client]\nuser="u"\npassword="\\\\\\""\n'


def test_option_file_escapes_line_breaks_and_control_characters():
    # A raw line break would end the option's line: the reader would see a truncated password.
    assert option_file("u", "a\nb\tc\rd\be") == \
        b'[client]\nuser="u"\npassword="a\\nb\\tc\\rd\\be"\n'


def test_option_file_refuses_a_nul():
    with pytest.raises(MaintError) as caught:
        option_file("u", "a\0b")
    assert str(caught.value) == ("the MySQL password holds a NUL character, which MySQL's "
                                 "client tools cannot read from an option file")


def test_option_file_refuses_a_line_too_long_for_the_reader():
    option_file("u", "x" * (mysql.OPTION_LINE_LIMIT - len('password=""')))
    with pytest.raises(MaintError, match="too long for an option file line") as caught:
        option_file("u", "\n" * 2000)  # 4000 bytes escaped
    assert "\n" * 2 not in str(caught.value)


def mysql_option_value(raw: str) -> str:
    """A value as MySQL's option-file reader (mysys my_default) reads it: the end-of-line
    comment removed outside quotes, surrounding quotes stripped, escapes resolved."""
    quote, escape, end = "", False, len(raw)
    for index, char in enumerate(raw):
        if char in "'\"" and not escape:
            if not quote:
                quote = char
            elif quote == char:
                quote = ""
        if not quote and char == "#":
            end = index
            break
        escape = bool(quote) and char == "\\" and not escape
    value = raw[:end].strip()
    if len(value) >= 2 and value[0] in "'\"" and value[0] == value[-1]:
        value = value[1:-1]
    out, index = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "s": " ", '"': '"', "'": "'",
               "\\": "\\"}
    while index < len(value):
        if value[index] == "\\" and index < len(value) - 1:
            index += 1
            out.append(escapes.get(value[index], "\\" + value[index]))
        else:
            out.append(value[index])
        index += 1
    return "".join(out)


@pytest.mark.parametrize("user,password", [
    ("db_user", PASSWORD),
    ('we"ird', 'p"a\\ss#w\'o rd;x'),
    ("u", "\\"),
    ("u", '"'),
    ("u", "  spaced  "),
    ("u", "ends with backslash\\"),
    ("u", '\\\\"\\n'),
    ("u", "line\nbreak\ttab\rreturn\bbackspace"),
    ("u", "".join(chr(code) for code in range(0x20, 0x7F)) + "\n"),  # every printable, a newline
    ("u", "\n"),
    ("u", ""),
    ("u", "#no comment"),
    ("u", "'single' \"double\""),
    ("tr@ck'er", "ümlaut"),
])
def test_option_file_reads_back_as_mysql_reads_it(tmp_path, user, password):
    path = tmp_path / "client.cnf"
    path.write_bytes(option_file(user, password))
    parser = configparser.RawConfigParser(inline_comment_prefixes=None, strict=True)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    assert parser.sections() == ["client"]
    assert mysql_option_value(parser["client"]["user"]) == user
    assert mysql_option_value(parser["client"]["password"]) == password


# -- hostile passwords in the tracker's DSN ----------------------------------------------------

PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F))  # every printable ASCII character
DEPLOYER_ENCODES = ":@/#?%+ "  # the deployer percent-encodes only these
ORIGIN = "tracker container compose-tracker-1 environment"


def deployer_encoded(password: str) -> str:
    return "".join(urllib.parse.quote(char, safe="") if char in DEPLOYER_ENCODES else char
                   for char in password)


def dsn_with(password_in_url: str) -> str:
    return f"mysql://db_user:{password_in_url}@mysql:3306/torrust_tracker"


@pytest.mark.parametrize("password,in_url", [
    (PRINTABLE, deployer_encoded(PRINTABLE)),
    (PRINTABLE + "\n\tü", urllib.parse.quote(PRINTABLE + "\n\tü", safe="")),
    # Raw (not encoded): read as the tracker's URL parser reads it, the last '@' ends it.
    ("p@ss:w\"o'r\\d[x]{y}|^`~$!&*()=;,<> +%zz%", "p@ss:w\"o'r\\d[x]{y}|^`~$!&*()=;,<> +%zz%"),
    ("a[b", "a[b"),  # urlsplit alone raises "Invalid IPv6 URL" on this
    ("100%", "100%"),
    ("", ""),
])
def test_dsn_passwords_are_read_as_the_tracker_reads_them(password, in_url):
    parsed = parse_mysql_dsn(dsn_with(in_url), ORIGIN)
    assert parsed == {"user": "db_user", "password": password, "host": "mysql", "port": 3306,
                      "database": "torrust_tracker"}


@pytest.mark.parametrize("in_url,problem", [
    ("Sekr3t/Pw", "has an '@' after its host: a '/', '?' or '#' in the user or password must "
                  "be percent-encoded (%2F, %3F, %23)"),
    ("Sekr3t?Pw", "has an '@' after its host"),
    ("Sekr3t#Pw", "has an '@' after its host"),
    ("Sekr3t" + deployer_encoded(PRINTABLE + "\n"),  # the deployer leaves a line break raw
     "holds a control character such as a line break, which URL parsers drop: "
     "percent-encode it (a line break is %0A, a tab %09)"),
    ("Sekr3t\tPw", "holds a control character"),
    ("Sekr3t\rPw", "holds a control character"),
    ("Sekr3t%00Pw", "the user, password or database holds a NUL (%00)"),
    ("Sekr3t%FFPw", "the user, password or database is not UTF-8 once percent-decoded"),
])
def test_dsn_passwords_it_cannot_read_are_refused_by_name(in_url, problem):
    with pytest.raises(ConfigError) as caught:
        parse_mysql_dsn(dsn_with(in_url), ORIGIN)
    message = str(caught.value)
    assert message.startswith(f"{ORIGIN}: {ENV_DB_PATH}") and problem in message
    assert "Sekr3t" not in message  # no part of the password, encoded or not


# -- the MariaDB sandbox line ----------------------------------------------------------------

SANDBOX = b"/*M!999999\\- enable the sandbox mode */"
BODY = b"-- MariaDB dump 10.19-11.4.2-MariaDB, for debian-linux-gnu (x86_64)\n--\n"


@pytest.mark.parametrize("line", [SANDBOX + b" \n", SANDBOX + b"\n", SANDBOX + b" \r\n",
                                  SANDBOX + b"\r\n"])
def test_sandbox_line_is_stripped(line):
    assert SANDBOX_LINE.sub(b"", line + BODY, count=1) == BODY


@pytest.mark.parametrize("dump", [
    BODY,
    BODY + SANDBOX + b" \n",  # the same text, but not first
    b"\n" + SANDBOX + b" \n" + BODY,  # not on the first line
    SANDBOX + b" -- more\n" + BODY,  # more on that line
    SANDBOX + b"  \n" + BODY,  # two spaces
    b"/*M!999999 enable the sandbox mode */\n" + BODY,  # no backslash
    b"/*M!100101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n" + BODY,
    SANDBOX,  # no line end
])
def test_other_dumps_are_unchanged(dump):
    assert SANDBOX_LINE.sub(b"", dump, count=1) == dump


def test_only_the_first_sandbox_line_is_stripped():
    dump = SANDBOX + b" \n" + SANDBOX + b" \n" + BODY
    assert SANDBOX_LINE.sub(b"", dump, count=1) == SANDBOX + b" \n" + BODY


# -- SQL helpers -----------------------------------------------------------------------------

def test_quote_name_doubles_backticks():
    assert quote_name("torrents") == "`torrents`"
    assert quote_name("we`ird``name") == "`we``ird````name`"


def test_checksum_expression():
    assert checksum_expression(["`id`", "`info_hash`"]) == (
        "SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', QUOTE(`id`), QUOTE(`info_hash`))), 15), 16, 10) "
        "AS UNSIGNED))")


def test_checksum_expression_one_column():
    assert checksum_expression(["`k`"]) == (
        "SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', QUOTE(`k`))), 15), 16, 10) AS UNSIGNED))")


def test_legacy_checksum_expression_is_the_one_old_sets_recorded():
    assert legacy_checksum_expression(["`id`", "`info_hash`"]) == (
        "BIT_XOR(CAST(CRC32(CONCAT_WS('#', `id`, `info_hash`, "
        "CONCAT(ISNULL(`id`), ISNULL(`info_hash`)))) AS UNSIGNED))")
    assert LEGACY_CHECKSUM_METHOD == "BIT_XOR(CRC32(CONCAT_WS('#', columns..., null flags)))"


@pytest.mark.parametrize("manifest,expression", [
    ({"checksum_method": CHECKSUM_METHOD}, checksum_expression),
    ({"checksum_method": LEGACY_CHECKSUM_METHOD}, legacy_checksum_expression),
    ({}, legacy_checksum_expression),
])
def test_checksum_for_follows_the_manifest(manifest, expression):
    assert checksum_for(manifest) is expression


def test_checksum_for_an_unknown_method_is_inconclusive():
    with pytest.raises(VerificationInconclusive, match="'CRC64' is unknown"):
        checksum_for({"checksum_method": "CRC64"})


def test_table_summary_uses_the_sets_checksum():
    asked = []

    def run_query(sql):
        asked.append(sql)
        if "information_schema.tables" in sql:
            return [["t"]]
        if "information_schema.columns" in sql:
            return [["a"]]
        return [["2", "NULL" if "BIT_XOR" in sql else "77"]]

    assert table_summary(run_query, legacy_checksum_expression) == ({"t": 2}, {"t": 0})
    assert table_summary(run_query) == ({"t": 2}, {"t": 77})
    assert asked[2] == f"SELECT COUNT(*), {legacy_checksum_expression(['`a`'])} FROM `t`"
    assert asked[5] == f"SELECT COUNT(*), {checksum_expression(['`a`'])} FROM `t`"


# -- dump tool and options -------------------------------------------------------------------

ORACLE_VERSION = "mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)"
MARIADB_DUMP_VERSION = ("mariadb-dump from 11.4.2-MariaDB, client 10.19 "
                        "for debian-linux-gnu (x86_64)")
MARIADB_MYSQLDUMP_VERSION = ("mysqldump  Ver 10.19 Distrib 10.6.16-MariaDB, "
                             "for debian-linux-gnu (x86_64)")


def test_dump_options_for_oracle_mysqldump():
    assert dump_options("mysqldump", ORACLE_VERSION) == DUMP_OPTIONS + ("--set-gtid-purged=OFF",)


@pytest.mark.parametrize("tool,version", [
    ("mariadb-dump", MARIADB_DUMP_VERSION),
    ("mysqldump", MARIADB_MYSQLDUMP_VERSION),  # MariaDB's mysqldump symlink
    ("mysqldump", "mysqldump from 11.4.2-mariadb, client 10.19"),
])
def test_dump_options_for_mariadb(tool, version):
    options = dump_options(tool, version)
    assert options == DUMP_OPTIONS
    assert "--set-gtid-purged=OFF" not in options


def test_dump_options_are_the_consistent_ones():
    assert DUMP_OPTIONS[0] == "--single-transaction"
    assert "--verbose" in DUMP_OPTIONS  # open() depends on the progress lines


def test_dump_tool_prefers_mariadb_dump(docker, fake_docker):
    fake_docker.on_exec(DB_ID, ["mariadb-dump", "--version"], MARIADB_DUMP_VERSION.encode() + b"\n")
    fake_docker.on_exec(DB_ID, ["mysqldump", "--version"], MARIADB_MYSQLDUMP_VERSION.encode())
    assert dump_tool(docker, database()) == ("mariadb-dump", MARIADB_DUMP_VERSION)
    assert fake_docker.calls == [["docker", "exec", DB_ID, "mariadb-dump", "--version"]]


def test_dump_tool_falls_back_to_mysqldump(docker, fake_docker):
    fake_docker.on_exec(DB_ID, ["mysqldump", "--version"], ORACLE_VERSION.encode() + b"\n")
    assert dump_tool(docker, database()) == ("mysqldump", ORACLE_VERSION)
    assert fake_docker.calls == [["docker", "exec", DB_ID, "mariadb-dump", "--version"],
                                 ["docker", "exec", DB_ID, "mysqldump", "--version"]]


def test_dump_tool_missing_names_the_container(docker, fake_docker):
    fake_docker.on_exec(DB_ID, ["mariadb-dump", "--version"], returncode=126, stderr=b"denied")
    with pytest.raises(MaintError) as caught:
        dump_tool(docker, database())
    assert str(caught.value) == \
        "database container compose-mysql-1 has neither mariadb-dump nor mysqldump"
    assert len(fake_docker.calls_to("exec")) == 2


# -- fakes: the dump process and the connection ----------------------------------------------

class FakeStdin:
    def __init__(self, events: list[str]):
        self.events = events
        self.data = b""
        self.closed = False
        self.closed_event = threading.Event()

    def write(self, data: bytes) -> int:
        assert not self.closed
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.events.append("stdin closed")
        self.closed = True
        self.closed_event.set()


class FakeProcess:
    """A `docker exec` of the dump tool: canned stdout and stderr, an exit code."""

    def __init__(self, stdout: bytes = b"", stderr=b"", returncode: int = 0,
                 exited: bool = False, events: list[str] | None = None):
        self.events = events if events is not None else []
        self.stdin = FakeStdin(self.events)
        self.stdout = io.BytesIO(stdout)
        self.stderr = io.BytesIO(stderr) if isinstance(stderr, bytes) else stderr
        self.exit_code = returncode
        self.returncode = returncode if exited else None
        self.killed = False

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        self.events.append("wait")
        self.returncode = self.exit_code
        return self.returncode

    def kill(self):
        self.events.append("kill")
        self.killed = True
        self.exit_code = -9


class FakeCursor:
    def __init__(self, connection: FakeConnection):
        self.connection = connection
        self.result: list[tuple] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql: str, params=None) -> None:
        self.connection.timeouts_seen.append(self.connection._read_timeout)
        self.connection.events.append(sql)
        self.connection.executed.append((sql, params))
        self.result = self.connection.answer(sql, params)

    def fetchall(self):
        return list(self.result)

    def fetchone(self):
        return self.result[0]


class FakeConnection:
    """Answers the information_schema and count queries from `tables`:
    name -> (columns, count, checksum)."""

    def __init__(self, tables: dict | None = None, events: list[str] | None = None):
        self.tables = tables or {}
        self.events = events if events is not None else []
        self.executed: list[tuple[str, object]] = []
        self.closed = False
        self._read_timeout: float | None = 30  # as connect() sets them
        self._write_timeout: float | None = 30
        self.timeouts_seen: list[float | None] = []  # the read timeout of each statement

    def cursor(self):
        return FakeCursor(self)

    def answer(self, sql: str, params):
        if "information_schema.tables" in sql:
            assert params == ("torrust_tracker",)
            return [(name,) for name in sorted(self.tables)]
        if "information_schema.columns" in sql:
            assert params[0] == "torrust_tracker"
            return [(column,) for column in self.tables[params[1]][0]]
        if sql.startswith("SELECT COUNT(*)"):
            for name, (_, count, checksum) in self.tables.items():
                if sql.endswith(f" FROM {quote_name(name)}"):
                    return [(count, checksum)]
            raise AssertionError(f"count of an unknown table: {sql}")
        return []

    def close(self) -> None:
        self.events.append("connection closed")
        self.closed = True


TABLES = {
    "torrents": (["id", "info_hash", "completed"], 3, 3735928559),
    "keys": (["id", "key", "valid_until"], 0, None),
    "we`ird": (["a`b"], 1, 42),
}


def snapshot_of(process: FakeProcess, connection: FakeConnection | None = None,
                tool: str = "mariadb-dump", version: str = MARIADB_DUMP_VERSION,
                timeout: float = mysql.SNAPSHOT_TIMEOUT) -> MysqlSnapshot:
    return MysqlSnapshot(database=database(), process=process,
                         connection=connection or FakeConnection(TABLES), tool=tool,
                         tool_version=version, server_version="11.4.2-MariaDB-ubu2404",
                         timeout=timeout)


VERBOSE = (b"-- Connecting to localhost...\n-- Starting transaction...\n"
           b"-- Retrieving table structure for table torrents...\n"
           b"-- Sending SELECT query...\n-- Retrieving rows...\n"
           b"-- Disconnecting from localhost...\n")
TRAILER = b"-- Dump completed on 2024-06-01 12:00:00\n"
DUMP_BODY = (b"-- MariaDB dump 10.19-11.4.2-MariaDB, for debian-linux-gnu (x86_64)\n"
             b"CREATE TABLE `torrents` (`id` int NOT NULL);\n"
             b"INSERT INTO `torrents` VALUES (1),(2),(3);\n")


def export(snapshot: MysqlSnapshot, progress=None) -> bytes:
    snapshot._read_stderr()  # what open()'s reader thread does
    out = io.BytesIO()
    snapshot.export_to(out, progress)
    return out.getvalue()


# -- export ----------------------------------------------------------------------------------

def test_complete_dump_with_the_sandbox_line():
    connection = FakeConnection(TABLES)
    snapshot = snapshot_of(FakeProcess(SANDBOX + b" \n" + DUMP_BODY + TRAILER, VERBOSE),
                           connection)
    seen = []
    assert export(snapshot, seen.append) == DUMP_BODY + TRAILER
    assert seen == [len(DUMP_BODY + TRAILER)]
    assert snapshot.sandbox_line_removed is True
    assert snapshot.table_rows == {"keys": 0, "torrents": 3, "we`ird": 1}
    assert snapshot.table_checksums == {"keys": 0, "torrents": 3735928559, "we`ird": 42}
    counts = [sql for sql, _ in connection.executed if sql.startswith("SELECT COUNT(*)")]
    assert counts == [
        "SELECT COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', QUOTE(`id`), QUOTE(`key`), "
        "QUOTE(`valid_until`))), 15), 16, 10) AS UNSIGNED)) FROM `keys`",
        "SELECT COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', QUOTE(`id`), QUOTE(`info_hash`), "
        "QUOTE(`completed`))), 15), 16, 10) AS UNSIGNED)) FROM `torrents`",
        "SELECT COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', QUOTE(`a``b`))), 15), 16, 10) "
        "AS UNSIGNED)) FROM `we``ird`",
    ]
    assert connection.executed[-1] == ("COMMIT", None)
    manifest = snapshot.manifest()
    assert manifest["checksum_method"] == CHECKSUM_METHOD
    assert manifest["sandbox_line_removed"] is True
    assert manifest["tables"] == {"keys": 0, "torrents": 3, "we`ird": 1}
    assert manifest["table_checksums"]["torrents"] == 3735928559
    assert (manifest["database"], manifest["container"], manifest["image"]) == \
        ("torrust_tracker", "compose-mysql-1", "mariadb:11.4")
    assert manifest["dump_tool"] == "mariadb-dump"
    assert manifest["dump_options"] == list(DUMP_OPTIONS)


def test_complete_dump_without_the_sandbox_line():
    snapshot = snapshot_of(FakeProcess(DUMP_BODY + TRAILER, VERBOSE), tool="mysqldump",
                           version=ORACLE_VERSION)
    assert export(snapshot) == DUMP_BODY + TRAILER
    assert snapshot.sandbox_line_removed is False
    assert snapshot.manifest()["sandbox_line_removed"] is False
    assert snapshot.manifest()["dump_options"][-1] == "--set-gtid-purged=OFF"
    assert snapshot.table_rows["torrents"] == 3


def test_large_dump_streams_in_chunks_and_keeps_later_sandbox_text():
    filler = b"INSERT INTO `torrents` VALUES ('" + b"x" * 1000 + b"');\n"
    later = b"-- " + SANDBOX + b" \n"
    body = DUMP_BODY + filler * 1500 + later + filler * 1500
    seen = []
    snapshot = snapshot_of(FakeProcess(SANDBOX + b"\n" + body + TRAILER, VERBOSE))
    assert export(snapshot, seen.append) == body + TRAILER
    assert len(seen) == 3  # 1 MiB chunks
    assert seen[-1] == len(body + TRAILER)
    assert seen == sorted(seen)


class StuckConnection(FakeConnection):
    """A row-count scan that does not return until released (a huge table)."""

    def __init__(self, tables: dict):
        super().__init__(tables)
        self.scanning = threading.Event()
        self.release = threading.Event()

    def answer(self, sql: str, params):
        if sql.startswith("SELECT COUNT(*)"):
            self.scanning.set()
            self.release.wait(30)
        return super().answer(sql, params)


def test_missing_trailer_is_a_truncated_dump_without_waiting_for_the_counts():
    connection = StuckConnection(TABLES)
    snapshot = snapshot_of(FakeProcess(SANDBOX + b" \n" + DUMP_BODY, VERBOSE), connection)
    try:
        with pytest.raises(MaintError) as caught:
            export(snapshot)
        assert connection.scanning.is_set()  # the counts ran beside the dump
        assert not connection.release.is_set()
    finally:
        connection.release.set()
    assert str(caught.value) == \
        "the dump from mariadb-dump is truncated (no '-- Dump completed')"


def test_counts_run_beside_the_dump_and_their_failure_fails_the_export():
    class FailingCount(FakeConnection):
        def answer(self, sql: str, params):
            if sql.startswith("SELECT COUNT(*)"):
                raise pymysql.err.OperationalError(2013, "Lost connection to server")
            return super().answer(sql, params)

    failing = FailingCount(TABLES)
    snapshot = snapshot_of(FakeProcess(SANDBOX + b" \n" + DUMP_BODY + TRAILER, VERBOSE),
                           failing)
    with pytest.raises(MaintError) as caught:
        export(snapshot)
    assert str(caught.value) == ("MySQL row counts and checksums of the snapshot failed: "
                                 "Lost connection to server")


def test_trailer_only_in_the_middle_is_a_truncated_dump():
    body = DUMP_BODY + TRAILER + b"INSERT INTO `torrents` VALUES (4);\n" * 20
    with pytest.raises(MaintError, match="is truncated"):
        export(snapshot_of(FakeProcess(body, VERBOSE)))


def test_non_zero_exit_fails_with_the_tools_message():
    stderr = (b"-- Connecting to localhost...\n-- Starting transaction...\n"
              b"mariadb-dump: Got error: 2013: \"Lost connection to server during query\" "
              b"when dumping table `torrents` at row: 1024\n")
    connection = FakeConnection(TABLES)
    snapshot = snapshot_of(FakeProcess(DUMP_BODY, stderr, returncode=2), connection)
    with pytest.raises(MaintError) as caught:
        export(snapshot)
    assert str(caught.value) == (
        "mariadb-dump failed (exit 2): mariadb-dump: Got error: 2013: \"Lost connection to "
        "server during query\" when dumping table `torrents` at row: 1024")


def test_non_zero_exit_without_a_message():
    with pytest.raises(MaintError) as caught:
        export(snapshot_of(FakeProcess(DUMP_BODY + TRAILER, VERBOSE, returncode=3)))
    assert str(caught.value) == "mariadb-dump failed (exit 3): no message"


def test_a_warning_fails_a_complete_dump():
    stderr = VERBOSE + b"Warning: column statistics not supported by the server.\n"
    connection = FakeConnection(TABLES)
    snapshot = snapshot_of(FakeProcess(DUMP_BODY + TRAILER, stderr), connection)
    with pytest.raises(MaintError) as caught:
        export(snapshot)
    assert str(caught.value) == ("mariadb-dump reported problems: Warning: column statistics "
                                 "not supported by the server.")


def test_verbose_lines_and_blank_lines_are_not_problems():
    snapshot = snapshot_of(FakeProcess(DUMP_BODY + TRAILER, VERBOSE + b"\n"))
    export(snapshot)
    assert snapshot.problems() == ""
    assert snapshot.stderr_lines[1] == "-- Starting transaction..."


# -- open ------------------------------------------------------------------------------------

class ScriptedStderr:
    """The dump's stderr, one line at a time as the test releases them. The starter's line
    comes first (with `ready`; an Event: once it is set); like the real tool, it then says
    nothing before its option file (stdin) is closed."""

    def __init__(self, stdin: FakeStdin, ready: bool | threading.Event = True):
        self.stdin = stdin
        self.ready = ready
        self.lines: queue.Queue = queue.Queue()
        self.asked = 0
        self.condition = threading.Condition()
        self.closed = False

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.ready:
            if isinstance(self.ready, threading.Event):
                assert self.ready.wait(10)
            self.ready = False
            return READY_LINE.encode() + b"\n"
        deadline = time.monotonic() + 10
        while not self.stdin.closed_event.wait(0.01):
            if self.closed:  # the snapshot was closed (killed) before its stdin: nothing more
                raise StopIteration
            assert time.monotonic() < deadline, "the dump reads its option file to EOF first"
        with self.condition:
            self.asked += 1
            self.condition.notify_all()
        line = self.lines.get(timeout=10)
        if line is None:
            raise StopIteration
        return line

    def wait_until_asked(self, count: int) -> None:
        """Until the reader has handled every line before the `count`th."""
        with self.condition:
            assert self.condition.wait_for(lambda: self.asked >= count, timeout=5)

    def close(self) -> None:
        self.closed = True

    def finish(self) -> None:
        """End of the test: the reader thread ends, whatever it was waiting for."""
        self.lines.put(None)
        self.close()


def start_open(snapshot: MysqlSnapshot):
    """open() in a thread, its stderr read from the start as prepare() does."""
    outcome: dict = {}
    snapshot.start_reading()

    def run():
        try:
            outcome["result"] = snapshot.open()
        except MaintError as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_open_waits_for_the_line_after_starting_transaction():
    events: list[str] = []
    process = FakeProcess(events=events)
    process.stderr = stderr = ScriptedStderr(process.stdin)
    connection = FakeConnection(TABLES, events)
    snapshot = snapshot_of(process, connection)
    thread, outcome = start_open(snapshot)
    try:
        stderr.lines.put(b"-- Connecting to 172.20.0.3...\n")
        stderr.lines.put(b"-- Starting transaction...\n")
        stderr.wait_until_asked(3)  # both lines handled
        assert not snapshot.snapshot_open.is_set()
        assert thread.is_alive()
        assert events == ["SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                          "START TRANSACTION WITH CONSISTENT SNAPSHOT", "stdin closed"]

        stderr.lines.put(b"-- Retrieving table structure for table torrents...\n")
        thread.join(5)
        assert not thread.is_alive()
        assert outcome == {"result": snapshot}
        assert snapshot.snapshot_open.is_set()
        assert snapshot.stderr_lines == ["-- Connecting to 172.20.0.3...",
                                         "-- Starting transaction...",
                                         "-- Retrieving table structure for table torrents..."]
        # Our read view was open before the dump could even read its credentials to the end.
        assert events == ["SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                          "START TRANSACTION WITH CONSISTENT SNAPSHOT", "stdin closed"]
        assert not process.killed and not connection.closed
    finally:
        stderr.finish()


def test_open_fails_when_the_dump_exits_before_its_snapshot():
    events: list[str] = []
    stderr = (READY_LINE.encode() + b"\n-- Connecting to 172.20.0.3...\n"
              b"mariadb-dump: Got error: 1045: \"Access denied for user 'db_user'@'172.20.0.2' "
              b"(using password: YES)\" when trying to connect\n")
    process = FakeProcess(stderr=stderr, returncode=2, exited=True, events=events)
    connection = FakeConnection(TABLES, events)
    snapshot = snapshot_of(process, connection)
    snapshot.start_reading()
    with pytest.raises(MaintError) as caught:
        snapshot.open()
    assert str(caught.value) == (
        "mariadb-dump did not open its snapshot: mariadb-dump: Got error: 1045: \"Access denied "
        "for user 'db_user'@'172.20.0.2' (using password: YES)\" when trying to connect")
    assert connection.closed
    assert process.stdout.closed and process.stderr.closed
    assert not process.killed  # it had ended already


def test_open_times_out_and_kills_the_dump():
    events: list[str] = []
    process = FakeProcess(events=events)
    process.stderr = stderr = ScriptedStderr(process.stdin)
    connection = FakeConnection(TABLES, events)
    snapshot = snapshot_of(process, connection, timeout=0.3)
    snapshot.start_reading()
    stderr.lines.put(b"-- Connecting to 172.20.0.3...\n")
    began = time.monotonic()
    try:
        with pytest.raises(MaintError) as caught:
            snapshot.open()
    finally:
        stderr.finish()
    assert 0.3 <= time.monotonic() - began < 2
    assert str(caught.value) == (
        "mariadb-dump did not open its snapshot within 0.3 s ([deployment] snapshot_timeout; "
        "its last progress line: '-- Connecting to 172.20.0.3...'); it was killed and the "
        "tracker is started again: this run made no backup")
    assert process.killed
    assert events[-3:] == ["kill", "wait", "connection closed"]
    assert process.stdout.closed and stderr.closed


def test_open_uses_the_timeout_it_is_given():
    process = FakeProcess()
    process.stderr = stderr = ScriptedStderr(process.stdin)
    snapshot = snapshot_of(process, timeout=30)
    snapshot.start_reading()
    began = time.monotonic()
    try:
        with pytest.raises(MaintError, match=r"within 0\.2 s .* it printed nothing"):
            snapshot.open(timeout=0.2)
    finally:
        stderr.finish()
    assert time.monotonic() - began < 2


def test_open_gives_up_at_once_on_a_held_back_signal(monkeypatch):
    polls = []

    def pending_signal():
        polls.append(time.monotonic())
        return signal.SIGTERM if len(polls) >= 2 else None

    monkeypatch.setattr(mysql, "pending_signal", pending_signal)
    events: list[str] = []
    process = FakeProcess(events=events)
    process.stderr = stderr = ScriptedStderr(process.stdin)
    connection = FakeConnection(TABLES, events)
    snapshot = snapshot_of(process, connection, timeout=30)
    snapshot.start_reading()
    began = time.monotonic()
    try:
        with pytest.raises(Interrupted) as caught:
            snapshot.open()
    finally:
        stderr.finish()
    assert caught.value.signum == signal.SIGTERM
    assert time.monotonic() - began < 1  # polled every 50 ms, not after the 30 s
    assert process.killed and connection.closed


def test_stdout_past_the_header_proves_the_snapshot_while_stderr_lags():
    # docker exec sends both streams over one connection: the tool's progress lines can
    # arrive after its first rows. Rows past the header exist only once its transaction is.
    body = DUMP_BODY + b"INSERT INTO `torrents` VALUES (1);\n" * (HEADER_LIMIT // 20)
    process = FakeProcess(stdout=body + TRAILER)
    process.stderr = stderr = ScriptedStderr(process.stdin)
    snapshot = snapshot_of(process, timeout=30)
    thread, outcome = start_open(snapshot)
    thread.join(5)
    try:
        assert outcome == {"result": snapshot}
        assert snapshot.stderr_lines == []  # nothing from stderr yet
        assert HEADER_LIMIT < len(snapshot.head) <= 2 * HEADER_LIMIT + 1
    finally:
        for line in VERBOSE.splitlines(keepends=True):
            stderr.lines.put(line)
        stderr.lines.put(None)
    out = io.BytesIO()
    snapshot.export_to(out)
    assert out.getvalue() == body + TRAILER  # the bytes read while waiting come first, once


def test_a_small_dump_that_ended_opens_from_its_progress_lines():
    process = FakeProcess(stdout=DUMP_BODY + TRAILER, stderr=READY_LINE.encode() + b"\n" + VERBOSE,
                          exited=True)
    snapshot = snapshot_of(process)
    snapshot.start_reading()
    assert snapshot.open() is snapshot
    out = io.BytesIO()
    snapshot.export_to(out)
    assert out.getvalue() == DUMP_BODY + TRAILER


# -- prepare ---------------------------------------------------------------------------------

def test_prepare_feeds_the_credentials_through_stdin(monkeypatch, docker, fake_docker):
    connection = FakeConnection(TABLES)
    connection.answer = lambda sql, params: [("11.4.2-MariaDB-ubu2404",)]
    monkeypatch.setattr(mysql, "connect", lambda db: connection)
    fake_docker.on_exec(DB_ID, ["mariadb-dump", "--version"], MARIADB_DUMP_VERSION.encode() + b"\n")
    started = []
    process = FakeProcess()
    process.stderr = stderr = ScriptedStderr(process.stdin)

    def exec_stream(container_id, argv):
        started.append((container_id, argv))
        return process

    monkeypatch.setattr(docker, "exec_stream", exec_stream)
    try:
        snapshot = mysql.prepare(docker, database('s"e\\cret'), timeout=7)
    finally:
        stderr.finish()
    assert started == [(DB_ID, ["sh", "-c", STARTER, "sh", "mariadb-dump",
                                "--defaults-extra-file=/dev/stdin", *DUMP_OPTIONS,
                                "torrust_tracker"])]
    assert process.stdin.data == b'[client]\nuser="db_user"\npassword="s\\"e\\\\cret"\n'
    assert not process.stdin.closed  # closed inside the window, by open()
    assert snapshot.ready_seen and snapshot.timeout == 7
    assert (snapshot.tool, snapshot.tool_version, snapshot.server_version) == \
        ("mariadb-dump", MARIADB_DUMP_VERSION, "11.4.2-MariaDB-ubu2404")
    assert [sql for sql, _ in connection.executed] == [
        "SELECT VERSION()",
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND "
        "table_type = 'BASE TABLE' ORDER BY table_name"]  # a restore's tables are left out


def test_the_starter_reports_then_becomes_the_tool():
    # The real shell: the line on stderr, then exec (same process, argv passed unchanged).
    import subprocess

    done = subprocess.run(["sh", "-c", STARTER, "sh", "printf", "%s|", "a b", "$HOME", "'"],
                          capture_output=True, text=True, check=True)
    assert done.stderr == READY_LINE + "\n"
    assert done.stdout == "a b|$HOME|'|"


def prepare_with(monkeypatch, docker, fake_docker, process, timeout=5):
    """mysql.prepare() against `process` as the exec'd starter; its connection is returned."""
    connection = FakeConnection(TABLES)
    connection.answer = lambda sql, params: [("11.4.2-MariaDB-ubu2404",)]
    monkeypatch.setattr(mysql, "connect", lambda db: connection)
    fake_docker.on_exec(DB_ID, ["mariadb-dump", "--version"], MARIADB_DUMP_VERSION.encode())
    monkeypatch.setattr(docker, "exec_stream", lambda container_id, argv: process)
    return connection, lambda: mysql.prepare(docker, database(), timeout=timeout)


def test_prepare_waits_until_the_tool_runs(monkeypatch, docker, fake_docker):
    process = FakeProcess()
    runs = threading.Event()
    process.stderr = stderr = ScriptedStderr(process.stdin, ready=runs)
    _, prepare = prepare_with(monkeypatch, docker, fake_docker, process)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=prepare()), daemon=True)
    thread.start()
    try:
        time.sleep(0.2)
        assert thread.is_alive() and outcome == {}  # no window before the tool runs
        runs.set()
        thread.join(5)
        assert outcome["result"].ready_seen
    finally:
        stderr.finish()


def test_prepare_fails_before_the_window_when_the_tool_cannot_start(monkeypatch, docker,
                                                                    fake_docker):
    process = FakeProcess(stderr=b'OCI runtime exec failed: exec: "sh": executable file not '
                                 b'found in $PATH: unknown\n', returncode=126, exited=True)
    connection, prepare = prepare_with(monkeypatch, docker, fake_docker, process)
    with pytest.raises(MaintError) as caught:
        prepare()
    assert str(caught.value) == (
        'mariadb-dump could not be started in container compose-mysql-1: OCI runtime exec '
        'failed: exec: "sh": executable file not found in $PATH: unknown; the tracker was not '
        'stopped')
    assert connection.closed and process.stderr.closed


def test_prepare_gives_up_when_the_tool_does_not_start(monkeypatch, docker, fake_docker):
    process = FakeProcess()
    process.stderr = stderr = ScriptedStderr(process.stdin, ready=False)
    connection, prepare = prepare_with(monkeypatch, docker, fake_docker, process, timeout=0.2)
    began = time.monotonic()
    try:
        with pytest.raises(MaintError) as caught:
            prepare()
    finally:
        stderr.finish()
    assert time.monotonic() - began < 2
    assert str(caught.value) == (
        "mariadb-dump did not start within 0.2 s ([deployment] snapshot_timeout; it printed "
        "nothing); it was killed and the tracker was not stopped: this run made no backup")
    assert process.killed and connection.closed


def test_prepare_refuses_an_unwritable_password_before_connecting(monkeypatch, docker):
    monkeypatch.setattr(mysql, "connect", lambda db: pytest.fail("connected"))
    with pytest.raises(MaintError, match="holds a NUL character"):
        mysql.prepare(docker, database("a\0b"))


def test_connect_sends_the_password_as_utf8(monkeypatch):
    seen = {}
    monkeypatch.setattr(mysql.pymysql, "connect", lambda **kwargs: seen.update(kwargs))
    mysql.connect(database("pässwörd"))
    assert seen["password"] == "pässwörd".encode()  # as the option file sends it


class LateStderrProcess(FakeProcess):
    """The tool's last stderr lines reach our reader only after the exit is seen: on a real
    pipe the reader thread may not have been scheduled yet when wait() returns."""

    def __init__(self, last_lines: list[bytes], **options):
        super().__init__(**options)
        self.stderr = ScriptedStderr(self.stdin)
        self.last_lines = last_lines

    def wait(self, timeout=None):
        def deliver():
            for line in self.last_lines:
                self.stderr.lines.put(line)
            self.stderr.lines.put(None)

        if self.returncode is None:
            threading.Timer(0.2, deliver).start()
        return super().wait(timeout)


def opened(process: LateStderrProcess) -> MysqlSnapshot:
    snapshot = snapshot_of(process)
    snapshot.start_reading()
    for line in VERBOSE.splitlines(keepends=True)[:3]:
        process.stderr.lines.put(line)
    assert snapshot.open() is snapshot
    return snapshot


def test_a_warning_written_just_before_exit_is_not_missed():
    process = LateStderrProcess([b"Warning: column statistics not supported by the server.\n"],
                                stdout=DUMP_BODY + TRAILER)
    snapshot = opened(process)
    with pytest.raises(MaintError) as caught:
        snapshot.export_to(io.BytesIO())
    assert str(caught.value) == ("mariadb-dump reported problems: Warning: column statistics "
                                 "not supported by the server.")


def test_the_error_written_just_before_a_failed_exit_is_reported():
    process = LateStderrProcess([b"mariadb-dump: Got error: 2013: Lost connection\n"],
                                stdout=DUMP_BODY, returncode=2)
    snapshot = opened(process)
    with pytest.raises(MaintError) as caught:
        snapshot.export_to(io.BytesIO())
    assert str(caught.value) == \
        "mariadb-dump failed (exit 2): mariadb-dump: Got error: 2013: Lost connection"


def test_in_window_statements_are_bounded_by_snapshot_timeout_and_scans_are_not():
    """A paused or hung server must not keep the tracker down: the two statements inside the
    window read with snapshot_timeout; the row-count scans after it may take long."""
    process = FakeProcess(stdout=DUMP_BODY + TRAILER, stderr=READY_LINE.encode() + b"\n"
                          + VERBOSE, exited=True)
    connection = FakeConnection(TABLES)
    snapshot = snapshot_of(process, connection)
    snapshot.start_reading()
    snapshot.open(timeout=7)
    assert connection.timeouts_seen == [7, 7]
    assert (connection._read_timeout, connection._write_timeout) == (30, 30)  # restored
    snapshot.export_to(io.BytesIO())
    assert set(connection.timeouts_seen[2:]) == {None}


def test_a_lost_server_inside_the_window_is_one_clear_error():
    """Defect: a MySQL container restarted in the window gave an internal error
    (pymysql OperationalError 2013) instead of a message."""
    import pymysql

    process = FakeProcess(stdout=DUMP_BODY + TRAILER, stderr=READY_LINE.encode() + b"\n"
                          + VERBOSE, exited=True)
    connection = FakeConnection(TABLES)

    def lost(sql, params):
        raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")

    connection.answer = lost
    snapshot = snapshot_of(process, connection)
    snapshot.start_reading()
    with pytest.raises(MaintError, match=r"MySQL snapshot \(bounded by \[deployment\] "
                                         r"snapshot_timeout, 7 s\) failed: Lost connection"):
        snapshot.open(timeout=7)
    assert connection.closed
