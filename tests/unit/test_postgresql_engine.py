"""The PostgreSQL engine's own logic: schema renames of a dump, client logins, error verdicts,
bounded statements. The real server, pg_dump and psql are in tests/integration."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from torrust_maint.deployment import PostgresqlDatabase
from torrust_maint.docker import Container, Docker, inherited
from torrust_maint.engines import postgresql
from torrust_maint.errors import (
    DockerError,
    MaintError,
    VerificationFailed,
    VerificationInconclusive,
)

PASSWORD = "s3cr3t pass'word"

# Shaped like pg_dump 15's plain output of the tracker's schema (trimmed).
DUMP = b"""\
--
-- PostgreSQL database dump
--
SELECT pg_catalog.set_config('search_path', '', false);
--
-- Name: public; Type: SCHEMA; Schema: -; Owner: -
--
CREATE SCHEMA public;
COMMENT ON SCHEMA public IS 'standard public schema';
CREATE TABLE public.torrents (
    id integer NOT NULL,
    info_hash character varying(40) NOT NULL
);
CREATE SEQUENCE public.torrents_id_seq
    AS integer
    START WITH 1;
ALTER SEQUENCE public.torrents_id_seq OWNED BY public.torrents.id;
ALTER TABLE ONLY public.torrents ALTER COLUMN id SET DEFAULT nextval('public.torrents_id_seq'::regclass);
COPY public.torrents (id, info_hash) FROM stdin;
1\tpublic.torrents
2\tnot_public.x
\\.
SELECT pg_catalog.setval('public.torrents_id_seq', 2, true);
ALTER TABLE ONLY public.torrents
    ADD CONSTRAINT torrents_pkey PRIMARY KEY (id);
--
-- PostgreSQL database dump complete
--
"""


def renamed(data: bytes, source: str, target: str, keep_create: bool,
            chunk: int = 7) -> bytes:
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(postgresql.rename_schema(pieces, source, target, keep_create))


def test_rename_moves_every_qualified_name_and_leaves_the_data_alone():
    out = renamed(DUMP, "public", "torrust_maint_new", keep_create=False)
    assert b"CREATE TABLE torrust_maint_new.torrents (" in out
    assert b"nextval('torrust_maint_new.torrents_id_seq'::regclass)" in out
    assert b"OWNED BY torrust_maint_new.torrents.id;" in out
    assert b"COPY torrust_maint_new.torrents (id, info_hash) FROM stdin;" in out
    assert b"1\tpublic.torrents\n2\tnot_public.x\n\\.\n" in out  # COPY data untouched
    assert b"setval('torrust_maint_new.torrents_id_seq', 2, true)" in out
    assert b"ALTER TABLE ONLY torrust_maint_new.torrents\n" in out
    assert b"CREATE SCHEMA" not in out and b"COMMENT ON SCHEMA" not in out
    assert b" public." not in out.replace(b"1\tpublic.torrents", b"")


@pytest.mark.parametrize("chunk", [1, 3, 64, 100000])
def test_rename_does_not_depend_on_chunk_boundaries(chunk):
    assert renamed(DUMP, "public", "x", False, chunk) == renamed(DUMP, "public", "x", False, 5)


def test_rename_back_to_public_keeps_the_create_line():
    aside = renamed(DUMP, "public", "torrust_maint_old", keep_create=True)
    assert b"CREATE SCHEMA torrust_maint_old;" in aside
    assert renamed(aside, "torrust_maint_old", "public", keep_create=True) == DUMP


@pytest.mark.parametrize("line", [
    b"CREATE FUNCTION public.f() RETURNS integer",
    b"CREATE OR REPLACE VIEW public.v AS",
    b"CREATE TRIGGER t BEFORE INSERT ON public.torrents",
    b"CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;",
])
def test_rename_refuses_what_a_schema_rename_cannot_carry(line):
    with pytest.raises(MaintError, match="not supported; nothing live was changed"):
        renamed(DUMP + line + b"\n", "public", "torrust_maint_new", keep_create=False)


def database() -> PostgresqlDatabase:
    container = Container(id="pgid", name="compose-postgres-1", service="postgres",
                          project="torrust", working_dir="/srv/torrust", running=True,
                          status="running", health="healthy", image="postgres:17",
                          networks={"compose_default": "172.20.0.4"})
    return PostgresqlDatabase(container=container, host="172.20.0.4", port=5432,
                              database="torrust_tracker", user="torrust", password=PASSWORD,
                              credentials_origin=".env")


def test_client_env_holds_the_password_only_for_a_password_login():
    socket_login, password_login, tcp_login = postgresql.LOGINS
    assert "PGPASSWORD" not in postgresql.client_env(database(), socket_login)
    env = postgresql.client_env(database(), password_login)
    assert env["PGPASSWORD"] == PASSWORD and "PGHOST" not in env
    assert postgresql.client_env(database(), tcp_login)["PGHOST"] == "127.0.0.1"
    assert inherited(env) == [arg for name in env for arg in ("--env", name)]
    assert not any(PASSWORD in arg for arg in inherited(env))


class RecordingDocker(Docker):
    """Records each docker exec's argv and environment; fails the first `failures` logins."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures, self.calls = failures, []

    def exec_output(self, container_id, argv, timeout=60, env=None):
        self.calls.append((argv, dict(env or {})))
        if len(self.calls) <= self.failures:
            raise DockerError(f"docker exec failed: psql: error: password {PASSWORD} rejected")
        return b"1\n"


def test_client_login_tries_no_password_first_and_never_puts_it_on_argv():
    docker = RecordingDocker(failures=1)
    login = postgresql.client_login(docker, database())
    assert login == postgresql.ClientLogin(password=True, tcp=False)
    assert [("PGPASSWORD" in env) for _, env in docker.calls] == [False, True]
    assert not any(PASSWORD in arg for argv, _ in docker.calls for arg in argv)


def test_client_login_failure_names_each_way_and_hides_the_password():
    with pytest.raises(MaintError) as caught:
        postgresql.client_login(RecordingDocker(failures=3), database())
    message = str(caught.value)
    assert "cannot log in as 'torrust'" in message
    assert "local socket, no password" in message and "TCP 127.0.0.1" in message
    assert PASSWORD not in message


@pytest.mark.parametrize("stderr,verdict", [
    ('psql:<stdin>:12: ERROR:  syntax error at or near "CRATE"', VerificationFailed),
    ("psql:<stdin>:40: ERROR:  could not extend file: No space left on device",
     VerificationInconclusive),
    ("psql: error: connection to server on socket failed", VerificationInconclusive),
    ("Error response from daemon: container is not running", VerificationInconclusive),
])
def test_import_errors_tell_a_bad_dump_from_a_failed_check(stderr, verdict):
    assert type(postgresql.import_error(stderr)) is verdict


def test_compare_summary_checks_rows_checksums_and_migrations():
    expected = {"tables": {"torrents": 2}, "table_checksums": {"torrents": 7},
                "sqlx_migrations": [1, 2]}
    postgresql.compare_summary({"torrents": 2}, {"torrents": 7}, [1, 2], expected)
    with pytest.raises(VerificationFailed, match="checksums differ for table"):
        postgresql.compare_summary({"torrents": 2}, {"torrents": 8}, [1, 2], expected)
    with pytest.raises(VerificationFailed, match="_sqlx_migrations holds versions"):
        postgresql.compare_summary({"torrents": 2}, {"torrents": 7}, [1], expected)


class SocketConnection:
    """What bounded() needs of a connection: its socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


def test_bounded_cuts_a_statement_that_never_returns():
    ours, server = socket.socketpair()
    try:
        connection = SocketConnection(ours)
        started = time.monotonic()
        with pytest.raises(MaintError, match="did not answer within 0.3 s"):
            postgresql.bounded(connection, 0.3, "snapshot", lambda: ours.recv(1) or
                               (_ for _ in ()).throw(ConnectionError("cut")))
        assert time.monotonic() - started < 3
    finally:
        ours.close()
        server.close()


def test_bounded_returns_the_answer_in_time():
    ours, server = socket.socketpair()
    try:
        threading.Timer(0.1, lambda: server.sendall(b"x")).start()
        assert postgresql.bounded(SocketConnection(ours), 5, "snapshot",
                                  lambda: ours.recv(1)) == b"x"
    finally:
        ours.close()
        server.close()
