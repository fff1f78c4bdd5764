"""Off-site copies against real restic and real servers: a REST server (`rclone serve
restic`) and an sftp server (openssh), each in a container (tests/offsite_servers.py).

Upload after verified sets with catch-up, retention scoped to this host and our tag in a
shared repository, `list --offsite`, `offsite check` + `verify --scheduled`, a lost
deployment rebuilt with `restore --from-offsite`, and the faults: the server killed
mid-upload, a full remote, a wrong password, stale and live locks. Secrets never show.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    PYTHON,
    REPO,
    backup_state,
    decompress,
    run_cli,
    tree,
    write_config,
)
from tests.offsite_servers import REST_PORT, RestServer, SftpServer, TcpProxy

sys.path.insert(0, str(REPO / "tests/testbed"))
from standin_tracker import expected_state  # noqa: E402

PASSWORD = "offsite-pass-Zq81"  # the repository's; never in argv, logs or messages
REST_PASSWORD = "rest-basic-auth-Xk42"  # the REST server's, inside the repository URL


def offsite_config(tracker, repository: str, *, host: str = "tracker-a",
                   keep: str = "", options: list[str] | None = None,
                   notify: str = "", limit_upload: int = 0) -> Path:
    """A config with [offsite] (its password in a 0600 file beside it)."""
    password = tracker.compose_dir.parent / "offsite-password"
    if not password.exists():
        password.write_text(PASSWORD + "\n")
        password.chmod(0o600)
    lines = [f'\n[offsite]\nrepository = "{repository}"', f'password_file = "{password}"',
             f'host = "{host}"', keep]
    if options:
        lines.append("options = " + json.dumps(options))
    if limit_upload:
        lines.append(f"limit_upload = {limit_upload}")
    return write_config(tracker, extra="\n".join(lines) + "\n" + notify)


def restic_env(repository: str, password_file: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
            "RESTIC_REPOSITORY": repository, "RESTIC_PASSWORD_FILE": str(password_file)}


def restic(repository: str, password_file: Path, *args: str, options: list[str] | None = None,
           check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """The restic CLI as an operator would run it, to look at the repository ourselves."""
    done = subprocess.run(["restic", *(options or []), *args], capture_output=True, text=True,
                          env=restic_env(repository, password_file), timeout=300, input=input)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def snapshots(repository: str, password_file: Path, **kwargs) -> list[dict]:
    return json.loads(restic(repository, password_file, "snapshots", "--json",
                             **kwargs).stdout or "[]")


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def backups(config: Path, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        ok(run_cli(config, "backup"))
        ids.append(json.loads(run_cli(config, "list", "--json").stdout)[-1]["id"])
    return ids


def no_secret(*outputs: str) -> None:
    for output in outputs:
        assert PASSWORD not in output
        assert REST_PASSWORD not in output


def pad_config(tracker, megabytes: int) -> None:
    """Incompressible bytes in a config path: every set carries them (a long upload)."""
    (tracker.compose_dir / "storage/tracker/etc/padding.bin").write_bytes(
        os.urandom(megabytes << 20))


@pytest.fixture
def rest_server(request):
    server = RestServer(f"rest-{abs(hash(request.node.nodeid)) % 10**6}",
                        password=REST_PASSWORD)
    server.start()
    yield server
    server.remove()


def test_upload_catch_up_list_and_retention_through_a_rest_server(make_stack, rest_server):
    tracker = make_stack()
    tracker.wait_for_writes(20)
    repository = rest_server.url("tracker")
    config = offsite_config(tracker, repository,
                            keep="keep_last = 2\nkeep_daily = 0\nkeep_weekly = 0\n"
                                 "keep_monthly = 0")
    password = config.parent / "offsite-password"
    checked = run_cli(config, "check")
    assert checked.returncode == 2 and "offsite init" in checked.stderr  # nothing created
    assert restic(repository, password, "cat", "config", check=False).returncode != 0
    init = ok(run_cli(config, "offsite", "init"))
    checked = ok(run_cli(config, "check"))
    assert "reachable, opens with the password" in checked.stdout
    first, second = backups(config, 2)  # an outage: two sets wait

    started = time.monotonic()
    upload = ok(run_cli(config, "offsite", "upload"))
    seconds = time.monotonic() - started
    assert "2 set(s) uploaded" in upload.stdout
    found = snapshots(repository, password)
    assert sorted(s["tags"][1] for s in found) == [f"set:{first}", f"set:{second}"]
    assert {s["hostname"] for s in found} == {"tracker-a"}
    listed = json.loads(ok(run_cli(config, "list", "--json")).stdout)
    assert all(s["offsite"]["snapshot"] in {f["id"] for f in found} for s in listed)
    assert "off-site (" in ok(run_cli(config, "list")).stdout

    third = backups(config, 1)[0]
    again = ok(run_cli(config, "offsite", "upload"))
    assert "1 set(s) uploaded" in again.stdout and "1 forgotten" in again.stdout
    kept = sorted(s["tags"][1] for s in snapshots(repository, password))
    assert kept == [f"set:{second}", f"set:{third}"]
    offsite = ok(run_cli(config, "list", "--offsite")).stdout
    assert second in offsite and third in offsite and first not in offsite
    assert (tracker.compose_dir / "storage/backup" / first).is_dir()  # local sets untouched
    no_secret(checked.stdout, checked.stderr, init.stdout, init.stderr, upload.stdout,
              upload.stderr, again.stdout, again.stderr, offsite)
    print(f"upload of 2 sets to the REST server: {seconds:.2f} s")


def test_retention_never_touches_other_hosts_or_untagged_snapshots(make_stack, rest_server,
                                                                   tmp_path):
    tracker = make_stack()
    tracker.wait_for_writes(20)
    repository = rest_server.url("shared")
    config = offsite_config(tracker, repository,
                            keep="keep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\n"
                                 "keep_monthly = 0")
    password = config.parent / "offsite-password"
    ok(run_cli(config, "offsite", "init"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("another host's backup")
    for host, tags in (("other-host", ["torrust-maint", "set:20260101T030000Z"]),
                       ("tracker-a", ["manual"])):
        restic(repository, password, "backup", "--host", host,
               *[arg for tag in tags for arg in ("--tag", tag)], str(other))
    backups(config, 3)
    ok(run_cli(config, "offsite", "upload"))
    left = snapshots(repository, password)
    ours = [s for s in left if s["hostname"] == "tracker-a" and "torrust-maint" in s["tags"]]
    assert len(ours) == 1
    assert any(s["hostname"] == "other-host" for s in left)
    assert any(s["tags"] == ["manual"] for s in left)
    listed = ok(run_cli(config, "list", "--offsite")).stdout
    assert "other-host" in listed  # list --offsite shows every host's sets


def test_upload_through_sftp_with_a_dedicated_ssh_key(make_stack):
    tracker = make_stack()
    tracker.wait_for_writes(20)
    with SftpServer("sftp-upload") as server:
        repository = server.repository()
        config = offsite_config(tracker, repository, options=[
            f"sftp.command={server.ssh_command()}"])
        password = config.parent / "offsite-password"
        ok(run_cli(config, "offsite", "init"))
        set_id = backups(config, 1)[0]
        ok(run_cli(config, "offsite", "upload"))
        found = snapshots(repository, password, options=server.restic_options())
        assert [s["tags"] for s in found] == [["torrust-maint", f"set:{set_id}"]]


def test_offsite_check_fetches_the_newest_set_and_scheduled_verify_restores_it(make_stack,
                                                                              rest_server):
    tracker = make_stack()
    tracker.wait_for_writes(20)
    config = offsite_config(tracker, rest_server.url("check"))
    ok(run_cli(config, "offsite", "init"))
    newest = backups(config, 2)[-1]
    ok(run_cli(config, "offsite", "upload"))
    checked = ok(run_cli(config, "offsite", "check"))
    assert f"fetched set {newest}" in checked.stdout
    fetched = tracker.compose_dir.parent / "state/offsite-fetched" / newest
    assert (fetched / "manifest.json").is_file()
    verified = ok(run_cli(config, "verify", "--scheduled"))
    assert f"{newest} (off-site copy): verified" in verified.stdout
    assert not fetched.exists()  # removed once it passed
    state = json.loads((tracker.compose_dir.parent / "state/state.json").read_text())
    assert state["offsite_verified"]["outcome"] == "passed"
    assert state["offsite-check"]["last_run"]["outcome"] == "success"


# MySQL (33 s) in `make test-reliability`; the SQLite rebuild also runs under systemd in
# tests/system/test_offsite_drill.py.
@pytest.mark.parametrize("driver", ["sqlite3", pytest.param("mysql", marks=pytest.mark.slow)])
def test_a_lost_deployment_is_rebuilt_from_offsite(make_stack, rest_server, tmp_path, driver):
    tracker = make_stack(driver=driver)
    with open(tracker.compose_dir / ".env", "a") as env:  # restored with the set: the
        env.write(f"COMPOSE_PROJECT_NAME={tracker.project}\n")  # stack comes back as itself
    tracker.wait_for_writes(30)
    config = offsite_config(tracker, rest_server.url(f"drill-{driver}"))
    ok(run_cli(config, "offsite", "init"))
    set_id = backups(config, 1)[0]
    ok(run_cli(config, "offsite", "upload"))
    [listed] = json.loads(ok(run_cli(config, "list", "--json")).stdout)
    if driver == "sqlite3":
        database = next(a for a in listed["artifacts"] if a["name"] == "database")
        n_set, contents = backup_state(decompress(database, tmp_path / "set.sqlite3"))
        assert contents == expected_state(n_set)  # the set holds 1..N exactly
    else:  # the window's clean stop logs the last transaction it committed: the set's N
        n_set = stopped_seqs(tracker)[-1]
    assert n_set > 0
    tracker.down()
    shutil.rmtree(tracker.compose_dir)  # the host's disk: deployment, database, backups
    shutil.rmtree(tracker.compose_dir.parent / "state")

    listed_offsite = ok(run_cli(config, "list", "--offsite")).stdout
    assert set_id in listed_offsite and " no" in listed_offsite
    dry = ok(run_cli(config, "restore", "--from-offsite", "latest", "--with-config",
                     "--dry-run"))
    assert f"would restore set {set_id} of host tracker-a" in dry.stdout
    assert not tracker.compose_dir.exists()  # --dry-run fetched and wrote nothing
    started = time.monotonic()
    restored = ok(run_cli(config, "restore", "--from-offsite", "latest", "--with-config",
                          "--yes", timeout=600))
    seconds = time.monotonic() - started
    assert "config files put back (they were absent): .env, docker-compose.yml" in \
        restored.stdout
    assert tracker.running()
    assert tracker.startup_seqs()[-1] == n_set  # the tracker started on exactly the set
    after = json.loads(ok(run_cli(config, "list", "--json")).stdout)
    assert after[0]["id"] == set_id and after[0]["offsite"] is not None
    assert after[1]["kind"] == "safety"  # the fresh stack's database, kept
    print(f"rebuilt a lost {driver} deployment from off-site in {seconds:.2f} s")


def stopped_seqs(tracker) -> list[int]:
    """The last transaction each clean stop of the stand-in committed, in order."""
    return [int(n) for n in re.findall(r"standin: stopped seq=(\d+)", tracker.logs())]


# -- faults: local sets intact, a clear failure, the next run catches up ---------------------

def test_a_wrong_password_fails_clearly_and_the_next_run_catches_up(make_stack, rest_server):
    tracker = make_stack()
    tracker.wait_for_writes(20)
    config = offsite_config(tracker, rest_server.url("wrongpw"))
    password = config.parent / "offsite-password"
    ok(run_cli(config, "offsite", "init"))
    backups(config, 1)
    before = tree(tracker.compose_dir / "storage/backup")
    password.write_text("not-the-password\n")
    failed = run_cli(config, "offsite", "upload")
    assert failed.returncode == 1
    assert "the password does not open the repository" in failed.stderr
    assert tree(tracker.compose_dir / "storage/backup") == before
    checked = run_cli(config, "check")
    assert checked.returncode == 2 and "password does not open" in checked.stderr
    password.write_text(PASSWORD + "\n")
    assert "1 set(s) uploaded" in ok(run_cli(config, "offsite", "upload")).stdout
    no_secret(failed.stderr, checked.stdout, checked.stderr)


@pytest.mark.slow  # about 1 min of restic's own retries: in `make test-reliability`
def test_a_full_remote_fails_clearly_and_the_next_run_catches_up(make_stack):
    tracker = make_stack()
    tracker.wait_for_writes(20)
    pad_config(tracker, 12)
    with RestServer("rest-full", password=REST_PASSWORD, size_limit_mb=40) as server:
        config = offsite_config(tracker, server.url("full"))
        ok(run_cli(config, "offsite", "init"))
        backups(config, 1)
        before = tree(tracker.compose_dir / "storage/backup")
        subprocess.run(["docker", "exec", server.name, "dd", "if=/dev/zero",
                        "of=/data/filler", "bs=1M", "count=36"], capture_output=True)
        started = time.monotonic()
        failed = run_cli(config, "offsite", "upload", timeout=600)
        seconds = time.monotonic() - started
        assert failed.returncode == 1, failed.stdout
        assert "off-site upload" in failed.stderr
        assert tree(tracker.compose_dir / "storage/backup") == before
        subprocess.run(["docker", "exec", server.name, "rm", "/data/filler"], check=True)
        assert "1 set(s) uploaded" in ok(run_cli(config, "offsite", "upload")).stdout
        no_secret(failed.stderr)
        print(f"a full remote failed the upload after {seconds:.1f} s: "
              f"{failed.stderr.strip().splitlines()[-1]}")


@pytest.mark.slow  # about 3 min of restic 0.14's own retries: in `make test-reliability`
def test_the_server_killed_mid_upload_fails_it_and_the_next_run_catches_up(make_stack):
    """Reached through a relay that dies with the server, as a server process killed on a
    host that still answers: restic 0.14's retries then end in about a minute."""
    tracker = make_stack()
    tracker.wait_for_writes(20)
    pad_config(tracker, 8)
    with RestServer("rest-killed", password=REST_PASSWORD) as server:
        relay = TcpProxy(server.address, REST_PORT)
        url = server.url("killed").replace(f"@{server.address}:{REST_PORT}",
                                           f"@127.0.0.1:{relay.port}")
        config = offsite_config(tracker, url, limit_upload=512)
        ok(run_cli(config, "offsite", "init"))
        backups(config, 1)
        before = tree(tracker.compose_dir / "storage/backup")
        upload = start_upload(config)
        caught_mid_upload(server)
        server.kill()
        relay.stop()
        started = time.monotonic()
        out, err = upload.communicate(timeout=600)
        seconds = time.monotonic() - started
        assert upload.returncode == 1, out
        assert "off-site upload" in err and "cannot be reached" in err
        assert tree(tracker.compose_dir / "storage/backup") == before
        server.start()
        config = offsite_config(tracker, server.url("killed"))  # its address may change
        assert "1 set(s) uploaded" in ok(run_cli(config, "offsite", "upload")).stdout
        no_secret(out, err)
        print(f"the upload failed {seconds:.1f} s after the server was killed: "
              f"{err.strip().splitlines()[-1][:300]}")


def start_upload(config: Path) -> subprocess.Popen:
    """`offsite upload` in a session of its own (to kill it with its restic)."""
    return subprocess.Popen(
        [PYTHON, "-m", "torrust_maint", "--config", str(config), "offsite", "upload"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)


def caught_mid_upload(server: RestServer, timeout: float = 60) -> None:
    """Until upload data arrives: with limit_upload = 512 (KiB/s) the 8 MiB set takes some
    16 s, so restic is in the middle of it (holding its lock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.bytes_stored() > 1 << 20:
            return
        time.sleep(0.1)
    raise AssertionError("no upload data arrived at the server")


def kill_session(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL a process and everything in its session, and wait until all are gone
    (reaped too: a zombie still answers kill(2), and restic would take it for alive)."""
    os.killpg(process.pid, 9)
    process.communicate(timeout=timeout)
    deadline = time.monotonic() + timeout
    while any(session_of(entry) == process.pid for entry in Path("/proc").iterdir()
              if entry.name.isdigit()):
        assert time.monotonic() < deadline, "the killed upload's processes linger"
        time.sleep(0.05)


def session_of(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rpartition(")")[2].split()[3])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.slow  # a fault case (20 s): in `make test-reliability`
def test_a_stale_lock_of_a_killed_upload_is_removed_a_live_one_never(make_stack, rest_server):
    tracker = make_stack()
    tracker.wait_for_writes(20)
    pad_config(tracker, 8)
    repository = rest_server.url("locks")
    config = offsite_config(tracker, repository, limit_upload=512)
    password = config.parent / "offsite-password"
    ok(run_cli(config, "offsite", "init"))
    backups(config, 1)
    # A live exclusive lock of another host: `restic key passwd` (exclusive) waiting for a
    # new password on stdin, with another host name (a UTS namespace of its own).
    other = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", "hostname other-host && exec restic key passwd"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=restic_env(repository, password))
    try:
        wait_for_lock(repository, password)
        locked = run_cli(config, "offsite", "upload")
        assert locked.returncode == 1
        assert "a live lock" in locked.stderr and "nothing was removed" in locked.stderr
        assert restic(repository, password, "list", "locks", "--no-lock").stdout.strip()
    finally:
        other.communicate(input="", timeout=60)  # no new password: it gives up, unlocking
    assert not restic(repository, password, "list", "locks", "--no-lock").stdout.strip()
    # SIGKILL an upload mid-way: its lock is stale (its process is gone on this host).
    upload = start_upload(config)
    caught_mid_upload(rest_server)
    kill_session(upload)
    assert restic(repository, password, "list", "locks", "--no-lock").stdout.strip()
    config = offsite_config(tracker, repository)  # no bandwidth limit for the catch-up
    caught_up = ok(run_cli(config, "offsite", "upload"))
    assert "removing stale locks" in caught_up.stderr
    assert "1 set(s) uploaded" in caught_up.stdout


def wait_for_lock(repository: str, password: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if restic(repository, password, "list", "locks", "--no-lock").stdout.strip():
            return
        time.sleep(0.1)
    raise AssertionError("the other host's restic took no lock")


def test_secrets_are_never_on_a_command_line(make_stack, rest_server):
    """Every process's argv, sampled every 10 ms during init, upload and check."""
    tracker = make_stack()
    tracker.wait_for_writes(20)
    pad_config(tracker, 8)
    config = offsite_config(tracker, rest_server.url("argv"))
    seen: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        seen.append((entry / "cmdline").read_bytes().decode(errors="replace"))
                    except OSError:
                        pass
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        ok(run_cli(config, "offsite", "init"))
        backups(config, 1)
        ok(run_cli(config, "offsite", "upload"))
        ok(run_cli(config, "check"))
    finally:
        stop.set()
        sampler.join()
    ours = [line for line in seen if line.startswith("restic") or "torrust_maint" in line]
    assert any(line.startswith("restic") for line in ours)  # the sampler saw restic run
    assert not any(PASSWORD in line or REST_PASSWORD in line for line in ours)


def test_an_upload_failure_is_notified(make_stack, rest_server):
    from tests.receivers import HttpReceiver

    tracker = make_stack()
    tracker.wait_for_writes(20)
    with HttpReceiver() as receiver:
        notify = f'\n[notify]\nurls = ["{receiver.url("/hook")}"]\n'
        config = offsite_config(tracker, rest_server.url("notified"), notify=notify)
        ok(run_cli(config, "offsite", "init"))
        backups(config, 1)
        rest_server.kill()
        failed = run_cli(config, "offsite", "upload", timeout=600)
        assert failed.returncode == 1
        notice = receiver.wait_for(1)[0]
        assert "off-site upload FAILED" in notice.title
        assert notice.json["type"] == "failure"
        no_secret(notice.raw.decode(errors="replace"))
