"""A deployer-shaped tracker stack on the local Docker engine, for tests and the demo."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import time
import urllib.parse
from pathlib import Path

TRACKER_IMAGE = "torrust-maint-test/tracker:latest"
CONTAINER_DB_PATH = "/var/lib/torrust/tracker/database/sqlite3.db"
LATENCY_LOG = "/var/log/torrust/tracker/commit-latency.log"  # storage/tracker/log on the host

COMPOSE_SQLITE = """\
# Shaped like the Torrust deployer's docker-compose.yml (tracker service only).
services:
  tracker:
    image: {image}
    container_name: {container_name}
    tty: true
    restart: unless-stopped
    environment:
      - TORRUST_TRACKER_CONFIG_TOML_PATH=${{TORRUST_TRACKER_CONFIG_TOML_PATH}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=${{TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN=${{TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN}}
      - STANDIN_JOURNAL_MODE=${{STANDIN_JOURNAL_MODE:-delete}}
      - STANDIN_WAL_AUTOCHECKPOINT=${{STANDIN_WAL_AUTOCHECKPOINT:-1000}}
      - STANDIN_IGNORE_SIGTERM=${{STANDIN_IGNORE_SIGTERM:-0}}
      - STANDIN_INTERVAL_MS=${{STANDIN_INTERVAL_MS:-5}}
      - STANDIN_LATENCY_LOG=${{STANDIN_LATENCY_LOG:-}}
    volumes:
      - ./storage/tracker/lib:/var/lib/torrust/tracker:Z
      - ./storage/tracker/log:/var/log/torrust/tracker:Z
      - ./storage/tracker/etc:/etc/torrust/tracker:Z
    logging:
      options:
        max-size: "10m"
        max-file: "10"
"""

COMPOSE_MYSQL = """\
# Shaped like the Torrust deployer's docker-compose.yml for MySQL (tracker + mysql services).
services:
  tracker:
    image: {image}
    container_name: {container_name}
    tty: true
    restart: unless-stopped
    environment:
      - TORRUST_TRACKER_CONFIG_TOML_PATH=${{TORRUST_TRACKER_CONFIG_TOML_PATH}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=${{TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH=${{TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN=${{TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN}}
      - STANDIN_IGNORE_SIGTERM=${{STANDIN_IGNORE_SIGTERM:-0}}
      - STANDIN_INTERVAL_MS=${{STANDIN_INTERVAL_MS:-5}}
      - STANDIN_LATENCY_LOG=${{STANDIN_LATENCY_LOG:-}}
    networks:
      - database_network
    volumes:
      - ./storage/tracker/lib:/var/lib/torrust/tracker:Z
      - ./storage/tracker/log:/var/log/torrust/tracker:Z
      - ./storage/tracker/etc:/etc/torrust/tracker:Z
    depends_on:
      mysql:
        condition: service_healthy

  mysql:
    image: mysql:8.4
    container_name: {mysql_container_name}
    restart: unless-stopped
    command: --mysql-native-password=ON
    environment:
      - MYSQL_ROOT_PASSWORD=${{MYSQL_ROOT_PASSWORD}}
      - MYSQL_DATABASE=${{MYSQL_DATABASE}}
      - MYSQL_USER=${{MYSQL_USER}}
      - MYSQL_PASSWORD=${{MYSQL_PASSWORD}}
    networks:
      - database_network
    volumes:
      - ./storage/mysql/data:/var/lib/mysql
    healthcheck:
      test: ["CMD", "mysqladmin", "ping", "-h", "localhost"]
      interval: 1s
      timeout: 5s
      retries: 60
      start_period: 60s

networks:
  database_network: {{}}
"""

COMPOSE_POSTGRES = """\
# Shaped like the Torrust tracker's PostgreSQL e2e setup (tracker + postgres services).
services:
  tracker:
    image: {image}
    container_name: {container_name}
    tty: true
    restart: unless-stopped
    environment:
      - TORRUST_TRACKER_CONFIG_TOML_PATH=${{TORRUST_TRACKER_CONFIG_TOML_PATH}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=${{TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH=${{TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH}}
      - TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN=${{TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN}}
      - STANDIN_IGNORE_SIGTERM=${{STANDIN_IGNORE_SIGTERM:-0}}
      - STANDIN_INTERVAL_MS=${{STANDIN_INTERVAL_MS:-5}}
      - STANDIN_LATENCY_LOG=${{STANDIN_LATENCY_LOG:-}}
    networks:
      - database_network
    volumes:
      - ./storage/tracker/lib:/var/lib/torrust/tracker:Z
      - ./storage/tracker/log:/var/log/torrust/tracker:Z
      - ./storage/tracker/etc:/etc/torrust/tracker:Z
    depends_on:
      postgres:
        condition: service_healthy

  postgres:
    image: postgres:{postgres_version}
    container_name: {postgres_container_name}
    restart: unless-stopped
    environment:
      - POSTGRES_DB=torrust_tracker
      - POSTGRES_USER=${{POSTGRES_USER}}
      - POSTGRES_PASSWORD=${{POSTGRES_PASSWORD}}
    networks:
      - database_network
    volumes:
      - ./storage/postgres/data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "{postgres_user}", "-d", "torrust_tracker"]
      interval: 1s
      timeout: 5s
      retries: 60
      start_period: 60s

networks:
  database_network: {{}}
"""

# Awkward on purpose: a double quote (option files) and URL-reserved characters (the DSN).
MYSQL_USER_PASSWORD = 'tr@ck:er/p%ss"w0rd#1'

POSTGRES_USER = "torrust"
# Both quote kinds (so .env needs escapes), `$` (compose interpolation), URL-reserved characters.
POSTGRES_USER_PASSWORD = 'tr@ck:er/p%ss"w0rd#1\'$pg'


TRACKER_TOML = """\
[metadata]
app = "torrust-tracker"
purpose = "configuration"
schema_version = "2.0.0"

[logging]
threshold = "info"

[core]
listed = false
private = false

[core.database]
driver = "sqlite3"
path = "{db_path}"
"""


def env_quote(value: str) -> str:
    """Quote a .env value as compose reads it: single quotes, or double with escapes (`\\`,
    `"`, and `$`, which compose would interpolate in double quotes)."""
    if "'" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def compose(directory: Path, *args: str, check: bool = True,
            project: str | None = None) -> subprocess.CompletedProcess:
    """`docker compose` in a deployment directory. Every deployer-shaped directory is named
    `torrust`, so each stack gets its own project name: otherwise one stack's `up` or `down`
    would take the others' containers for its own (discovery itself goes by working_dir)."""
    env = dict(os.environ)
    if project:
        env["COMPOSE_PROJECT_NAME"] = project
    return subprocess.run(["docker", "compose", *args], cwd=directory, check=check,
                          capture_output=True, text=True, env=env)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


class TrackerStack:
    """One deployment directory (the compose_dir) and its running stack."""

    def __init__(self, compose_dir: Path, container_name: str, *, journal_mode: str = "delete",
                 wal_autocheckpoint: int = 1000, ignore_sigterm: bool = False,
                 interval_ms: int = 5, driver: str = "sqlite3", user: str | None = None,
                 postgres_version: int = 17, latency_log: bool = False):
        self.compose_dir = compose_dir
        self.container_name = container_name
        self.driver = driver
        self.user = user  # "uid:gid" to run the tracker as, like the real image's torrust user
        self.mysql_container_name = f"{container_name}-mysql"
        self.postgres_container_name = f"{container_name}-postgres"
        self.postgres_version = postgres_version
        self.project = re.sub(r"[^a-z0-9_-]", "-", container_name.lower())
        self.settings = {
            "STANDIN_JOURNAL_MODE": journal_mode,
            "STANDIN_WAL_AUTOCHECKPOINT": str(wal_autocheckpoint),
            "STANDIN_IGNORE_SIGTERM": "1" if ignore_sigterm else "0",
            "STANDIN_INTERVAL_MS": str(interval_ms),
            "STANDIN_LATENCY_LOG": LATENCY_LOG if latency_log else "",
        }

    @property
    def db_host_path(self) -> Path:
        return self.compose_dir / "storage/tracker/lib/database/sqlite3.db"

    def create(self) -> None:
        """Lay out the directory as the deployer does."""
        root = self.compose_dir
        for sub in ("storage/tracker/etc", "storage/tracker/lib/database", "storage/tracker/log",
                    "storage/prometheus/etc", "storage/grafana/provisioning/datasources",
                    "storage/backup"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        env = {
            "TORRUST_TRACKER_CONFIG_TOML_PATH": "/etc/torrust/tracker/tracker.toml",
            "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER": self.driver,
            "TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN": "test-admin-token",
            **self.settings,
        }
        if self.driver == "mysql":
            (root / "storage/mysql/data").mkdir(parents=True, exist_ok=True)
            quoted = urllib.parse.quote(MYSQL_USER_PASSWORD, safe="")
            env.update({
                "MYSQL_ROOT_PASSWORD": "root-secret-pw",
                "MYSQL_DATABASE": "torrust_tracker",
                "MYSQL_USER": "db_user",
                "MYSQL_PASSWORD": MYSQL_USER_PASSWORD,
                "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH":
                    f"mysql://db_user:{quoted}@mysql:3306/torrust_tracker",
            })
            compose_file = COMPOSE_MYSQL.format(image=TRACKER_IMAGE,
                                                container_name=self.container_name,
                                                mysql_container_name=self.mysql_container_name)
        elif self.driver == "postgresql":
            compose_file = self._create_postgres(env)
        else:
            compose_file = COMPOSE_SQLITE.format(image=TRACKER_IMAGE,
                                                 container_name=self.container_name)
        (root / ".env").write_text("".join(f"{k}={env_quote(v)}\n" for k, v in env.items()))
        os.chmod(root / ".env", 0o600)
        if self.user:
            uid, gid = (int(part) for part in self.user.split(":"))
            compose_file = compose_file.replace(
                "    tty: true\n", f"    tty: true\n    user: \"{self.user}\"\n", 1)
            for sub in ("storage/tracker/lib", "storage/tracker/lib/database",
                        "storage/tracker/log"):
                os.chown(root / sub, uid, gid)
        (root / "docker-compose.yml").write_text(compose_file)
        (root / "storage/tracker/etc/tracker.toml").write_text(
            TRACKER_TOML.format(db_path=CONTAINER_DB_PATH))
        (root / "storage/prometheus/etc/prometheus.yml").write_text("global: {}\n")
        (root / "storage/grafana/provisioning/datasources/prometheus.yml").write_text(
            "apiVersion: 1\n")

    def _create_postgres(self, env: dict[str, str]) -> str:
        """The postgres variant's data directory, .env entries and compose file."""
        (self.compose_dir / "storage/postgres/data").mkdir(parents=True, exist_ok=True)
        quoted = urllib.parse.quote(POSTGRES_USER_PASSWORD, safe="")
        env.update({
            "POSTGRES_USER": POSTGRES_USER,
            "POSTGRES_PASSWORD": POSTGRES_USER_PASSWORD,
            "TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__DATABASE__PATH":
                f"postgresql://{POSTGRES_USER}:{quoted}@postgres:5432/torrust_tracker",
        })
        return COMPOSE_POSTGRES.format(image=TRACKER_IMAGE, container_name=self.container_name,
                                       postgres_container_name=self.postgres_container_name,
                                       postgres_version=self.postgres_version,
                                       postgres_user=POSTGRES_USER)

    def up(self, timeout: float = 60) -> None:
        compose(self.compose_dir, "up", "--detach", "--wait", "--wait-timeout", str(int(timeout)),
                project=self.project)

    def down(self) -> None:
        if not (self.compose_dir / "docker-compose.yml").exists():
            docker("rm", "--force", self.container_name, self.mysql_container_name,
                   self.postgres_container_name, check=False)
            return
        compose(self.compose_dir, "down", "--volumes", "--timeout", "1", check=False,
                project=self.project)

    def state(self) -> dict:
        out = docker("container", "inspect", self.container_name).stdout
        return json.loads(out)[0]["State"]

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state.get("Running") and state.get("Health", {}).get("Status") == "healthy":
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.container_name} not healthy after {timeout} s: {state}")

    def logs(self) -> str:
        done = docker("logs", self.container_name)
        return done.stdout + done.stderr

    def startup_seqs(self) -> list[int]:
        """The seq each start of the stand-in found in the database, in order."""
        return [int(n) for n in re.findall(r"standin: startup seq=(\d+)", self.logs())]

    def mysql_address(self) -> str:
        data = json.loads(docker("container", "inspect", self.mysql_container_name).stdout)[0]
        networks = data["NetworkSettings"]["Networks"]
        return next(net["IPAddress"] for net in networks.values() if net.get("IPAddress"))

    def mysql_connect(self):
        """A root connection to the stack's database (test code only)."""
        import pymysql

        return pymysql.connect(host=self.mysql_address(), user="root",
                               password="root-secret-pw", database="torrust_tracker",
                               autocommit=True)

    def postgres_address(self) -> str:
        data = json.loads(docker("container", "inspect", self.postgres_container_name).stdout)[0]
        networks = data["NetworkSettings"]["Networks"]
        return next(net["IPAddress"] for net in networks.values() if net.get("IPAddress"))

    def postgres_connect(self):
        """A superuser connection (autocommit) to the stack's database (test code only)."""
        import psycopg

        return psycopg.connect(host=self.postgres_address(), user=POSTGRES_USER,
                               password=POSTGRES_USER_PASSWORD, dbname="torrust_tracker",
                               autocommit=True, connect_timeout=5)

    def wait_for_writes(self, at_least: int, timeout: float = 30) -> None:
        """Wait until the live database holds at least `at_least` transactions."""
        if self.driver in ("mysql", "postgresql"):
            self._wait_for_server_writes(at_least, timeout)
            return
        import sqlite3

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                uri = f"file:{self.db_host_path}?mode=ro"
                with sqlite3.connect(uri, uri=True, timeout=5) as connection:
                    row = connection.execute(
                        "SELECT value FROM torrent_aggregate_metrics WHERE metric_name = ?",
                        ("torrents_downloads_total",)).fetchone()
                if row and row[0] >= at_least:
                    return
            except sqlite3.Error:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the stand-in did not reach {at_least} transactions")

    def _wait_for_server_writes(self, at_least: int, timeout: float) -> None:
        connect = self.postgres_connect if self.driver == "postgresql" else self.mysql_connect
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                connection = connect()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT value FROM torrent_aggregate_metrics "
                                   "WHERE metric_name = 'torrents_downloads_total'")
                    row = cursor.fetchone()
                connection.close()
                if row and row[0] >= at_least:
                    return
            except Exception:  # noqa: BLE001 -- not up yet
                pass
            time.sleep(0.2)
        raise AssertionError(f"the stand-in did not reach {at_least} transactions")

    def config_toml(self, backup_dir: Path | None = None, extra: str = "",
                    deployment_extra: str = "") -> str:
        """The two-key config of a deployer-made host; `extra` goes into [backup]."""
        backup_dir = backup_dir or self.compose_dir / "storage/backup"
        return textwrap.dedent(f"""\
            [deployment]
            compose_dir = "{self.compose_dir}"
            """) + deployment_extra + textwrap.dedent(f"""\
            [state]
            directory = "{self.compose_dir.parent / 'state'}"

            [backup]
            directory = "{backup_dir}"
            """) + extra

    def remove_files(self) -> None:
        shutil.rmtree(self.compose_dir, ignore_errors=True)
        shutil.rmtree(self.compose_dir.parent / "state", ignore_errors=True)  # config_toml's
