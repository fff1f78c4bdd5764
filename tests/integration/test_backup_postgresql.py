"""PostgreSQL deployments (Torrust Tracker v4): a real window against the stand-in's compose
stack on the locally built postgres:15 and postgres:17 images.

The set holds exactly what was committed before the stop, loads into a fresh server of the
same version, restores exactly (tables, sequences and _sqlx_migrations), and its password is
never on a command line; rejected credentials and altered data are refused before the tracker
is touched."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from tests.integration.conftest import (
    REPO,
    copy_with_dump,
    decompress,
    list_sets,
    run_cli,
    write_config,
)
from tests.testbed.stack import POSTGRES_USER, POSTGRES_USER_PASSWORD
from torrust_maint.engines import postgresql as postgresql_engine

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import (  # noqa: E402
    POSTGRESQL_MIGRATIONS,
    POSTGRESQL_TABLES,
    expected_state,
    read_state,
)

RECORD = ".torrust-maint-restore.json"
ALL_TABLES = sorted([*POSTGRESQL_TABLES, "_sqlx_migrations"])
MIGRATION_VERSIONS = [version for version, _ in POSTGRESQL_MIGRATIONS]
TRAILER = b"-- PostgreSQL database dump complete"
ENCODED_PASSWORD = urllib.parse.quote(POSTGRES_USER_PASSWORD, safe="")
PG_HBA = "/var/lib/postgresql/data/pg_hba.conf"


# -- helpers ----------------------------------------------------------------------------------

def docker(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=True, **kwargs)


def container_id(name: str) -> str:
    return docker("container", "inspect", "--format", "{{.Id}}", name, text=True).stdout.strip()


def container_address(name: str) -> str:
    data = json.loads(docker("container", "inspect", name).stdout)[0]
    networks = data["NetworkSettings"]["Networks"]
    return next(net["IPAddress"] for net in networks.values() if net.get("IPAddress"))


class FreshServer:
    """A throwaway server of the stack's version to load a dump into, as an operator would.
    Started at once (it initialises while the stack comes up); ready() waits for it."""

    def __init__(self, name: str, version: int):
        self.name = name
        self.password = f"fresh-{os.getpid()}-pw"
        docker("rm", "--force", "--volumes", name, check=False)
        docker("run", "--detach", "--name", name, "--env", "POSTGRES_PASSWORD",
               f"postgres:{version}", env={**os.environ, "POSTGRES_PASSWORD": self.password})

    def ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if docker("exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1",
                      check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not come up: {docker('logs', self.name).stderr}")

    def load(self, dump: Path) -> None:
        """Drop the image's schema public (the dump makes its own), then run the dump."""
        self.ready()
        with open(dump, "rb") as source:
            done = subprocess.run(
                ["docker", "exec", "--interactive", self.name, "sh", "-c",
                 "{ echo 'DROP SCHEMA public CASCADE;'; cat; } | "
                 "psql -X -q -v ON_ERROR_STOP=1 --single-transaction -U postgres -d postgres"],
                stdin=source, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host=container_address(self.name), user="postgres",
                               password=self.password, dbname="postgres", connect_timeout=10,
                               options=postgresql_engine.SESSION_SETTINGS, autocommit=True)

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False)


@pytest.fixture
def fresh_server():
    """Factory: a fresh server of a version, removed afterwards."""
    made: list[FreshServer] = []

    def factory(version: int) -> FreshServer:
        server = FreshServer(f"tm-it-pgfresh-{os.getpid()}-{version}-{len(made)}", version)
        made.append(server)
        return server

    yield factory
    for server in made:
        server.remove()


def live_state(tracker) -> tuple[int, dict]:
    """(N, tables) of the live database, read in one snapshot."""
    connection = tracker.postgres_connect()
    try:
        connection.autocommit = False
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        return read_state(connection, "postgresql")
    finally:
        connection.close()


def schemas(tracker) -> set[str]:
    """The live database's own schemas (not the system's)."""
    connection = tracker.postgres_connect()
    try:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname <> 'information_schema'").fetchall()
    finally:
        connection.close()
    return {row[0] for row in rows}


def public_metadata(tracker) -> tuple:
    """Owner, comment and privileges of schema public."""
    connection = tracker.postgres_connect()
    try:
        return connection.execute(
            "SELECT nspowner::regrole::text, obj_description(oid, 'pg_namespace'), "
            "nspacl::text FROM pg_namespace WHERE nspname = 'public'").fetchone()
    finally:
        connection.close()


def stopped_seqs(tracker) -> list[int]:
    """The last seq each clean stop of the stand-in committed, in order."""
    return [int(n) for n in re.findall(r"standin: stopped seq=(\d+)", tracker.logs())]


def restart_count(tracker) -> int:
    """How often docker restarted the tracker container (after a crash)."""
    return int(docker("container", "inspect", "--format", "{{.RestartCount}}",
                      tracker.container_name, text=True).stdout)


def started_at(tracker) -> str:
    return tracker.state()["StartedAt"]


def database_artifact(entry: dict) -> dict:
    return next(a for a in entry["artifacts"] if a["name"] == "database")


def backup_directory(tracker) -> Path:
    return tracker.compose_dir / "storage/backup"


class CommandLines:
    """Every command line on the host (/proc/*/cmdline, what `ps` shows), sampled every
    10 ms while the block runs."""

    def __init__(self):
        self.seen: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                            argv = handle.read()
                    except OSError:  # gone meanwhile
                        continue
                    self.seen.add(argv.rstrip(b"\0").replace(b"\0", b" ").decode(
                        errors="replace"))
            self.samples += 1
            time.sleep(0.01)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def assert_no_password(*texts: str) -> None:
    for text in texts:
        assert POSTGRES_USER_PASSWORD not in text
        assert ENCODED_PASSWORD not in text and "p%25ss" not in text


def require_a_password_on_the_local_socket(tracker) -> None:
    """Make the server ask the container's client tools for a password on its socket."""
    container = tracker.postgres_container_name
    docker("exec", "--user", "postgres", container, "sed", "-i", "-E",
           r"s/^local(\s+)all(\s+)all(\s+)trust$/local all all scram-sha-256/", PG_HBA)
    rules = docker("exec", container, "cat", PG_HBA, text=True).stdout
    assert "local all all scram-sha-256" in rules, rules
    connection = tracker.postgres_connect()
    try:
        assert connection.execute("SELECT pg_reload_conf()").fetchone() == (True,)
    finally:
        connection.close()
    deadline = time.monotonic() + 15  # the reload is asynchronous: until it is in force
    while time.monotonic() < deadline:
        probe = docker("exec", "--env", f"PGUSER={POSTGRES_USER}", container, "psql", "-X",
                       "-w", "-d", "torrust_tracker", "-c", "SELECT 1", check=False, text=True)
        if probe.returncode != 0:
            assert "password" in probe.stderr, probe.stderr
            return
        time.sleep(0.1)
    raise AssertionError("the local socket still lets the tracker's user in without a password")


def alter_one_row(dump: bytes, table: str) -> tuple[bytes, bytes, bytes]:
    """The dump with the last column of the first row of `table`'s COPY data incremented;
    (dump, old row, new row)."""
    lines = dump.split(b"\n")
    start = next(i for i, line in enumerate(lines)
                 if line.startswith(f"COPY public.{table} ".encode())
                 and line.endswith(b"FROM stdin;"))
    row = lines[start + 1]
    assert row != b"\\.", f"table {table} has no rows in the dump"
    fields = row.split(b"\t")
    fields[-1] = str(int(fields[-1]) + 1).encode()
    lines[start + 1] = b"\t".join(fields)
    return b"\n".join(lines), row, lines[start + 1]


def tamper_copy(source: dict, directory: Path, table: str) -> str:
    """A copy of a set whose dump holds one altered value of `table` (same row count), its
    artifact checksums fixed: only the data can tell."""

    def alter(dump: bytes) -> bytes:
        altered, old_row, new_row = alter_one_row(dump, table)
        assert old_row != new_row
        return altered

    return copy_with_dump(source, directory, alter, fresh_verdict=True)


# -- a backup under continuous writes, loaded elsewhere, restored -----------------------------

@pytest.mark.parametrize("version", [15, 17])
def test_backup_holds_exactly_the_committed_state_and_restores_it(make_stack, fresh_server,
                                                                  tmp_path, version,
                                                                  record_property):
    fresh = fresh_server(version)  # initialises while the stack comes up
    tracker = make_stack(driver="postgresql", postgres_version=version)
    tracker.wait_for_writes(300)
    config = write_config(tracker)
    metadata = public_metadata(tracker)

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    [made] = list_sets(config)
    database = made["database"]
    assert made["complete"] is True
    assert database["driver"] == "postgresql"
    assert database["image"] == f"postgres:{version}"
    assert database["server_version"].startswith(f"{version}.")
    assert f"(PostgreSQL) {version}." in database["dump_tool_version"]
    assert database["dump_login"] == "local socket, no password"
    assert database["sqlx_migrations"] == MIGRATION_VERSIONS
    assert sorted(database["tables"]) == ALL_TABLES
    assert sorted(database["table_checksums"]) == ALL_TABLES
    assert made["verification"]["outcome"] == "passed"
    phases = made["phases"]
    record_property("downtime_seconds", made["downtime_seconds"])
    record_property("snapshot_seconds", phases["snapshot"])
    assert 0 < made["downtime_seconds"] < 60
    assert 0 <= phases["snapshot"] < 5, "the window holds only BEGIN and pg_export_snapshot()"
    assert phases["snapshot"] < made["downtime_seconds"]
    assert phases["export"] > 0  # pg_dump ran after the window

    artifact = database_artifact(made)
    assert artifact["path"].endswith("database.sql.zst")
    dump = decompress(artifact, tmp_path / "dump.sql")
    assert TRAILER in dump.read_bytes()[-512:]
    fresh.load(dump)
    connection = fresh.connect()
    try:
        n, state = read_state(connection, "postgresql")
        summary = postgresql_engine.table_summary(
            lambda sql: connection.execute(sql).fetchall(), "public")
    finally:
        connection.close()
    startups = tracker.startup_seqs()
    assert len(startups) == 2, tracker.logs()
    assert n > 300
    assert n == startups[-1], "the dump must hold exactly what was committed before the stop"
    assert stopped_seqs(tracker) == [n]
    assert state == expected_state(n)
    assert database["tables"] == {"_sqlx_migrations": 4, "torrents": n, "whitelist": n // 10,
                                  "keys": n // 25, "torrent_aggregate_metrics": 1}
    assert summary == (database["tables"], database["table_checksums"], MIGRATION_VERSIONS)

    # Restore while the tracker writes: it must start on exactly the set and carry on.
    tracker.wait_for_writes(n + 300)

    done = run_cli(config, "restore", made["id"], "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"restored set {made['id']}" in done.stdout
    assert tracker.startup_seqs() == [0, n, n], "the tracker must start on exactly the set"
    n_stop = stopped_seqs(tracker)[-1]
    assert n_stop >= n + 300
    # New rows take ids from the restored sequences: a stale one would crash the stand-in on a
    # duplicate id (and docker would restart it, printing another startup).
    tracker.wait_for_writes(n + 100)
    assert tracker.startup_seqs() == [0, n, n]
    assert restart_count(tracker) == 0 and tracker.running()
    assert schemas(tracker) == {"public"}, "no shadow or set-aside schema may stay"
    assert public_metadata(tracker) == metadata, "the swap changes no owner, comment or grant"
    assert not (backup_directory(tracker) / RECORD).exists()
    sets = list_sets(config)
    assert [s["id"] for s in sets][0] == made["id"] and len(sets) == 2
    safety = sets[-1]
    assert safety["kind"] == "safety" and safety["complete"]
    assert safety["verification"]["outcome"] == "passed"
    assert safety["pre_restore"] == {"restore_of": made["id"], "kind": "safety"}
    assert safety["database"]["tables"]["torrents"] == n_stop, \
        "the safety set holds the state at the restore's stop"
    assert safety["database"]["sqlx_migrations"] == MIGRATION_VERSIONS

    verified = run_cli(config, "verify", made["id"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{made['id']}: verified" in verified.stdout

    docker("stop", "--time", "10", tracker.container_name)
    assert not tracker.running()
    m = stopped_seqs(tracker)[-1]
    assert m >= n + 100
    assert live_state(tracker) == (m, expected_state(m))


# -- the password ------------------------------------------------------------------------------

def test_the_password_is_never_on_a_command_line_or_in_output(make_stack):
    tracker = make_stack(driver="postgresql", postgres_version=17)
    tracker.wait_for_writes(100)
    # The backups skip their verification (the restore checks the set it loads, and verifies
    # its safety set in a throwaway server): the test stays short.
    config = write_config(tracker, extra="[verify]\nafter_backup = false\n")
    server = container_id(tracker.postgres_container_name)
    runs = []

    with CommandLines() as watched:
        runs.append(run_cli(config, "-v", "backup"))
        assert runs[-1].returncode == 0, runs[-1].stderr
        [plain] = list_sets(config)
        require_a_password_on_the_local_socket(tracker)
        runs.append(run_cli(config, "-v", "backup"))
        assert runs[-1].returncode == 0, runs[-1].stderr
        forced = list_sets(config)[-1]
        runs.append(run_cli(config, "-v", "restore", forced["id"], "--yes"))
        assert runs[-1].returncode == 0, runs[-1].stdout + runs[-1].stderr

    assert plain["database"]["dump_login"] == "local socket, no password"
    assert forced["database"]["dump_login"] == "local socket, password from the environment"
    safety = list_sets(config)[-1]
    assert safety["kind"] == "safety"
    assert safety["database"]["dump_login"] == "local socket, password from the environment"
    assert safety["verification"]["outcome"] == "passed"
    # The watcher saw this stack's dumps (docker exec names the container by its id), the
    # password-path ones handing the password over by name only.
    ours = [c for c in watched.seen
            if server in c or tracker.postgres_container_name in c
            or "torrust-maint-verify-" in c]
    dumps = [c for c in ours if "pg_dump --snapshot=" in c and c.startswith("docker exec")]
    assert dumps, f"the watcher must have seen a dump's command line ({watched.samples} samples)"
    assert any("--env PGPASSWORD " in c for c in ours
               if c.startswith("docker exec") and server in c), \
        "the watcher must have seen a client tool of this stack given the password by name"
    assert not [c for c in ours if "PASSWORD=" in c], ours
    texts = [*watched.seen, json.dumps(list_sets(config))]
    for done in runs:
        texts += [done.stdout, done.stderr]
    for entry in list_sets(config):
        texts.append((Path(entry["path"]) / "manifest.json").read_text())
    assert_no_password(*texts)


# -- rejected credentials ----------------------------------------------------------------------

def test_rejected_credentials_fail_before_the_window(make_stack):
    # The tracker's connection is already open; only new logins see the changed password.
    tracker = make_stack(driver="postgresql", postgres_version=17)
    tracker.wait_for_writes(50)
    connection = tracker.postgres_connect()
    try:
        connection.execute(f"ALTER ROLE {POSTGRES_USER} PASSWORD 'changed-elsewhere'")
    finally:
        connection.close()
    config = write_config(tracker)
    started = started_at(tracker)
    startups = tracker.startup_seqs()
    directory = backup_directory(tracker)
    before = sorted(p.name for p in directory.iterdir()) if directory.exists() else []

    done = run_cli(config, "backup")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot connect to PostgreSQL" in done.stderr and f"'{POSTGRES_USER}'" in done.stderr
    assert f'password authentication failed for user "{POSTGRES_USER}"' in done.stderr
    assert "Traceback" not in done.stderr
    assert_no_password(done.stdout, done.stderr)
    assert started_at(tracker) == started, "the tracker must not have been stopped"
    assert tracker.startup_seqs() == startups and tracker.running()
    assert list_sets(config) == []
    assert [name for name in sorted(p.name for p in directory.iterdir())
            if not name.startswith(".")] == [n for n in before if not n.startswith(".")]

    checked = run_cli(config, "check")

    assert checked.returncode != 0, checked.stdout + checked.stderr
    output = checked.stdout + checked.stderr
    assert "cannot connect to PostgreSQL" in output
    assert f'password authentication failed for user "{POSTGRES_USER}"' in output
    assert "Traceback" not in output
    assert_no_password(output)
    assert started_at(tracker) == started


# -- altered data --------------------------------------------------------------------------------

def test_a_dump_with_an_altered_row_fails_verification_and_is_not_restored(make_stack):
    tracker = make_stack(driver="postgresql", postgres_version=17)
    tracker.wait_for_writes(200)
    # The set's own verification is skipped (test 1 shows sets verify): only the copy is.
    config = write_config(tracker, extra="[verify]\nafter_backup = false\n")
    assert run_cli(config, "backup").returncode == 0
    [good] = list_sets(config)
    directory = backup_directory(tracker)
    tampered = tamper_copy(good, directory, "torrents")

    done = run_cli(config, "verify", tampered)

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{tampered}: FAILED" in done.stdout
    assert "checksums differ for table(s) torrents" in done.stdout
    assert "does not match the manifest" not in done.stdout  # the artifact itself checks out
    assert "Traceback" not in done.stderr
    entry = next(s for s in list_sets(config) if s["id"] == tampered)
    assert entry["verification"]["outcome"] == "failed"

    started = started_at(tracker)
    startups = tracker.startup_seqs()
    n_before, _ = live_state(tracker)
    ids = [s["id"] for s in list_sets(config)]

    done = run_cli(config, "restore", tampered, "--yes")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "checksums differ for table(s) torrents" in done.stderr
    assert "Traceback" not in done.stderr
    assert started_at(tracker) == started, "the tracker must not have been stopped"
    assert tracker.startup_seqs() == startups and tracker.running()
    assert schemas(tracker) == {"public"}, "the shadow schema must be dropped"
    assert [s["id"] for s in list_sets(config)] == ids
    assert not (directory / RECORD).exists()
    n_after, state = live_state(tracker)
    assert n_after >= n_before and state == expected_state(n_after)
