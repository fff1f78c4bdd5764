"""MySQL/MariaDB deployments: a real window against the deployer's compose layout (mysql:8.4
is the locally built MariaDB image), the dump imported into a fresh server and compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest

from tests.integration.conftest import REPO, decompress, list_sets, run_cli, write_config
from tests.testbed.stack import MYSQL_USER_PASSWORD
from torrust_maint.engines.mysql import checksum_expression, quote_name

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import expected_state, read_state  # noqa: E402


class FreshServer:
    """A throwaway MariaDB container to import a dump into."""

    def __init__(self, name: str):
        self.name = name
        self.password = "fresh-root-pw"
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)
        subprocess.run(["docker", "run", "--detach", "--name", name,
                        "--env", "MYSQL_ROOT_PASSWORD", "--env", "MYSQL_DATABASE=restored",
                        "mysql:8.4"], check=True, capture_output=True,
                       env={**os.environ, "MYSQL_ROOT_PASSWORD": self.password})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.connect().close()
                return
            except pymysql.err.MySQLError:
                time.sleep(0.5)
        raise AssertionError(f"{name} did not come up")

    def address(self) -> str:
        data = json.loads(subprocess.run(["docker", "container", "inspect", self.name],
                                         capture_output=True, check=True).stdout)[0]
        return data["NetworkSettings"]["IPAddress"]

    def connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.address(), user="root", password=self.password,
                               database="restored", connect_timeout=2)

    def import_dump(self, dump: Path) -> None:
        with open(dump, "rb") as source:
            done = subprocess.run(["docker", "exec", "--interactive", "--env", "MYSQL_PWD",
                                   self.name, "mariadb", "--user=root", "restored"],
                                  stdin=source, capture_output=True,
                                  env={**os.environ, "MYSQL_PWD": self.password})
        assert done.returncode == 0, done.stderr.decode()

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.name], capture_output=True)


@pytest.fixture
def fresh_server(request):
    server = FreshServer(f"tm-it-fresh-{os.getpid()}")
    yield server
    server.remove()


def table_checksums(connection, tables) -> dict[str, int]:
    checksums = {}
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute("SELECT column_name FROM information_schema.columns "
                           "WHERE table_schema = DATABASE() AND table_name = %s "
                           "ORDER BY ordinal_position", (table,))
            columns = [quote_name(row[0]) for row in cursor.fetchall()]
            cursor.execute(f"SELECT {checksum_expression(columns)} FROM {quote_name(table)}")
            checksums[table] = int(cursor.fetchone()[0] or 0)
    return checksums


def test_mysql_dump_holds_exactly_the_committed_transactions(make_stack, fresh_server,
                                                             tmp_path):
    tracker = make_stack(driver="mysql")
    tracker.wait_for_writes(300)
    config = write_config(tracker)

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr
    [backup] = list_sets(config)
    assert backup["complete"] is True
    assert backup["database"]["driver"] == "mysql"
    assert backup["database"]["dump_tool"] in ("mariadb-dump", "mysqldump")
    assert backup["database"]["server_version"]
    assert backup["downtime_seconds"] > 0
    database = next(a for a in backup["artifacts"] if a["name"] == "database")
    assert database["path"].endswith("database.sql.zst")
    dump = decompress(database, tmp_path / "dump.sql")
    assert b"enable the sandbox mode" not in dump.read_bytes()[:200]

    fresh_server.import_dump(dump)
    connection = fresh_server.connect()
    n, state = read_state(connection)
    startups = tracker.startup_seqs()
    assert len(startups) == 2, tracker.logs()
    assert n > 300
    assert n == startups[-1], "the dump must hold exactly what was committed before the stop"
    assert state == expected_state(n)
    tables = backup["database"]["tables"]
    assert tables["torrents"] == len(state["torrents"])
    assert table_checksums(connection, tables) == backup["database"]["table_checksums"]
    connection.close()
    tracker.wait_healthy(timeout=10)


def test_the_password_is_never_on_a_command_line_or_in_output(make_stack):
    tracker = make_stack(driver="mysql")
    config = write_config(tracker)
    seen_commands: set[str] = set()
    stop = threading.Event()

    def watch_ps():
        while not stop.is_set():
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            seen_commands.update(ps.splitlines())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_ps)
    watcher.start()
    try:
        done = run_cli(config, "-v", "backup")
    finally:
        stop.set()
        watcher.join()

    assert done.returncode == 0, done.stderr
    assert any("--defaults-extra-file=/dev/stdin" in c for c in seen_commands), \
        "the watcher must have seen the dump's command line"
    encoded = MYSQL_USER_PASSWORD.replace("%", "%25")
    for text in [*seen_commands, done.stdout, done.stderr,
                 json.dumps(list_sets(config))]:
        assert MYSQL_USER_PASSWORD not in text
        assert "p%25ss" not in text and encoded not in text


def test_the_deployers_user_has_no_global_privileges_and_gets_a_clean_dump(make_stack):
    tracker = make_stack(driver="mysql")
    root = tracker.mysql_connect()
    with root.cursor() as cursor:
        cursor.execute("SHOW GRANTS FOR 'db_user'@'%'")
        grants = [row[0] for row in cursor.fetchall()]
    root.close()
    assert any("ALL PRIVILEGES ON `torrust_tracker`.*" in g for g in grants), grants
    assert not any("PROCESS" in g or "ON *.*" in g and "USAGE" not in g for g in grants), grants
    config = write_config(tracker)

    done = run_cli(config, "backup")

    assert done.returncode == 0, done.stderr  # any warning of the dump tool fails the run
    assert "Warning" not in done.stderr


def test_mysql_dry_run_touches_nothing(make_stack):
    tracker = make_stack(driver="mysql")
    config = write_config(tracker)

    done = run_cli(config, "backup", "--dry-run")

    assert done.returncode == 0, done.stderr
    assert "--defaults-extra-file=/dev/stdin" in done.stdout
    assert "would run: docker stop" in done.stdout
    assert tracker.startup_seqs() == [0]
    assert list_sets(config) == []


def test_rejected_credentials_fail_before_the_window(make_stack):
    # The tracker's connection is already open; only new logins see the changed password.
    tracker = make_stack(driver="mysql")
    tracker.wait_for_writes(50)
    root = tracker.mysql_connect()
    with root.cursor() as cursor:
        cursor.execute("ALTER USER 'db_user'@'%' IDENTIFIED BY 'changed-elsewhere'")
    root.close()
    config = write_config(tracker)
    started = tracker.state()["StartedAt"]

    done = run_cli(config, "backup")

    assert done.returncode == 1, done.stderr
    assert "cannot connect to MySQL" in done.stderr and "'db_user'" in done.stderr
    assert MYSQL_USER_PASSWORD not in done.stderr and "Traceback" not in done.stderr
    assert tracker.state()["StartedAt"] == started  # the tracker was never stopped
    assert list_sets(config) == []
