"""The off-site test servers (tests/offsite_servers.py) against the real restic CLI: backups
land and can be read back over REST and sftp, a wrong password is refused, append-only
forbids deletion, and a full remote makes restic fail."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.offsite_servers import RestServer, SftpServer, docker

RESTIC = "/usr/bin/restic"
PASSWORD = "offsite-test-repository-password"
RUN = os.getpid()  # container names of concurrent runs must not clash


def restic_env(tmp_path: Path, repository: str) -> dict[str, str]:
    """restic's environment: repository and a 0600 password file, never on argv."""
    password_file = tmp_path / "restic-password"
    if not password_file.exists():
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(PASSWORD)
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_REPOSITORY": repository,
            "RESTIC_PASSWORD_FILE": str(password_file),
            "RESTIC_CACHE_DIR": str(tmp_path / "restic-cache")}


def restic(env: dict[str, str], *args: str, options: list[str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real restic CLI and capture its output."""
    return subprocess.run([RESTIC, *(options or []), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def make_source(tmp_path: Path) -> Path:
    """A small directory to back up: a text file and some random bytes in a subdirectory."""
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "notes.txt").write_text("torrust-maint off-site test\n")
    (source / "sub" / "random.bin").write_bytes(os.urandom(256 * 1024))
    return source


def backup_and_read_back(tmp_path: Path, env: dict[str, str],
                         options: list[str] | None = None) -> str:
    """init, back up a small directory, check the snapshot list and restore it; the snapshot id."""
    source = make_source(tmp_path)
    done = restic(env, "init", options=options)
    assert done.returncode == 0, done.stderr
    done = restic(env, "backup", str(source), options=options)
    assert done.returncode == 0, done.stderr
    done = restic(env, "snapshots", "--json", options=options)
    assert done.returncode == 0, done.stderr
    snapshots = json.loads(done.stdout)
    assert [snapshot["paths"] for snapshot in snapshots] == [[str(source)]]
    target = tmp_path / "restored"
    done = restic(env, "restore", snapshots[0]["id"], "--target", str(target), options=options)
    assert done.returncode == 0, done.stderr
    restored = target / source.relative_to("/")
    for name in ("notes.txt", "sub/random.bin"):
        assert (restored / name).read_bytes() == (source / name).read_bytes()
    return snapshots[0]["id"]


def test_rest_server_backup_survives_kill(tmp_path):
    """A backup over REST reads back, and is still there after the server is SIGKILLed."""
    with RestServer(f"rest-backup-{RUN}", user="tm", password="p@ss word/1") as server:
        snapshot_id = backup_and_read_back(tmp_path, restic_env(tmp_path, server.url()))
        assert server.bytes_stored() > 256 * 1024
        server.kill()
        assert not server.running()
        server.start()
        done = restic(restic_env(tmp_path, server.url()), "snapshots", "--json")
        assert done.returncode == 0, done.stderr
        assert [snapshot["id"] for snapshot in json.loads(done.stdout)] == [snapshot_id]


def test_sftp_server_backup(tmp_path):
    """A backup over sftp (restic's sftp.command with the fixture's key) reads back."""
    with SftpServer(f"sftp-backup-{RUN}") as server:
        env = restic_env(tmp_path, server.repository())
        backup_and_read_back(tmp_path, env, options=server.restic_options())
        assert server.bytes_stored() > 256 * 1024
        assert server.known_hosts.read_text().strip(), "host key was not recorded"


def test_rest_server_refuses_wrong_password(tmp_path):
    """Wrong basic-auth credentials are refused (401) and create nothing; right ones work."""
    with RestServer(f"rest-auth-{RUN}", user="tm", password="right") as server:
        done = restic(restic_env(tmp_path, server.url(password="wrong")), "init")
        assert done.returncode != 0
        assert "401" in done.stderr, done.stderr
        assert docker("exec", server.name, "ls", "-A", "/data").stdout.strip() == ""
        done = restic(restic_env(tmp_path, server.url()), "init")
        assert done.returncode == 0, done.stderr


def rest_delete(server: RestServer, path: str) -> int:
    """Send a REST protocol DELETE with the server's credentials; the HTTP status."""
    token = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
    request = urllib.request.Request(f"http://{server.address}:{server.port}/{path}",
                                     method="DELETE", headers={"Authorization": f"Basic {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_rest_server_append_only_refuses_delete(tmp_path):
    """With append_only, backups land but deleting a snapshot is refused (restic itself would
    retry the refusal for ~45 s, so the REST DELETE is sent directly)."""
    with RestServer(f"rest-append-{RUN}", append_only=True) as server:
        env = restic_env(tmp_path, server.url())
        snapshot_id = backup_and_read_back(tmp_path, env)
        assert rest_delete(server, f"repo/snapshots/{snapshot_id}") == 403
        done = restic(env, "snapshots", "--json")
        assert done.returncode == 0, done.stderr
        assert [snapshot["id"] for snapshot in json.loads(done.stdout)] == [snapshot_id]
