"""Notices of run outcomes, end to end: the real command line, a real tracker stack on the
real Docker engine, and real receivers (an HTTP endpoint for Apprise's json:// and an SMTP
server for its mailto://), with a real fault: the backup directory on a full tmpfs."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import WORK_ROOT, list_sets, run_cli
from tests.receivers import HttpReceiver, SmtpReceiver, dead_url
from tests.testbed.stack import MYSQL_USER_PASSWORD, TrackerStack

HOST = socket.gethostname()
# Distinctive pieces of notification URLs: they must never leave the config.
SECRET_TOKEN = "tok-7Qz9sEcReTpAtH-4411"
SECRET_PASSWORD = "pw-Xk2SeCrEtPaSs-9087"
SECRET_DEAD = "tok-DeadEnDpOiNt-5523"


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def start_stack(name: str, **settings) -> TrackerStack:
    tracker = TrackerStack(WORK_ROOT / name / "opt/torrust", name, **settings)
    tracker.down()
    tracker.remove_files()
    tracker.create()
    tracker.up()
    return tracker


@pytest.fixture(scope="module")
def tracker():
    """One SQLite stand-in stack for the module; each test has its own backup directory
    and starts with an empty run state."""
    stack = start_stack(f"tm-it-notify-{os.getpid()}")
    yield stack
    stack.down()
    shutil.rmtree(stack.compose_dir.parent.parent, ignore_errors=True)


@pytest.fixture
def stack(tracker):
    shutil.rmtree(state_directory(tracker), ignore_errors=True)
    assert tracker.running()
    return tracker


def state_directory(tracker: TrackerStack) -> Path:
    """The [state] directory that the stack's config_toml names."""
    match = re.search(r'^\[state\]\ndirectory = "([^"]+)"', tracker.config_toml(), re.M)
    assert match, tracker.config_toml()
    return Path(match.group(1))


def write_notify_config(tracker: TrackerStack, directory: Path, backup_dir: Path,
                        notify: str, more: str = "") -> Path:
    """A config with the stack's deployment, its own backup directory, one attempt and
    the given [notify] lines."""
    path = directory / "torrust-maint.toml"
    path.write_text(tracker.config_toml(
        backup_dir=backup_dir,
        extra=f"\n[retry]\nattempts = 1\n\n[notify]\n{notify}\n{more}"))
    return path


def status_json(config: Path) -> tuple[int, dict]:
    done = run_cli(config, "status", "--json")
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)


def field(message: str, name: str) -> str:
    """The value of a `name: value` line of a notice."""
    match = re.search(rf"^{re.escape(name)}: (.*)$", message, re.M)
    assert match, f"no {name!r} line in {message!r}"
    return match.group(1)


@contextlib.contextmanager
def full_tmpfs(mountpoint: Path, size: str = "2m"):
    """A small tmpfs at `mountpoint`, filled up to the last byte; unmounted afterwards."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(mountpoint)], check=True, capture_output=True)
    try:
        with open(mountpoint / "filler", "wb", buffering=0) as filler:  # nothing left to flush
            chunk = b"\0" * 65536
            try:
                while True:
                    filler.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
        assert shutil.disk_usage(mountpoint).free == 0
        yield mountpoint
    finally:
        unmount(mountpoint)


def unmount(mountpoint: Path) -> None:
    if os.path.ismount(mountpoint):
        subprocess.run(["umount", str(mountpoint)], check=True, capture_output=True)


# -- a notice per outcome ------------------------------------------------------------------

def test_a_successful_backup_posts_one_notice_with_the_run(stack, tmp_path):
    with HttpReceiver() as http:
        config = write_notify_config(stack, tmp_path, tmp_path / "backups",
                                     f'urls = {toml_list([http.url("/hooks/ok")])}\n'
                                     'on = ["success"]')

        done = run_cli(config, "backup")

        assert done.returncode == 0, done.stderr
        [post] = http.wait_for(1)
        [backup] = list_sets(config)
        assert http.received == [post]  # one notice, not one per event or per attempt
    assert (post.method, post.path) == ("POST", "/hooks/ok")
    assert post.headers["Content-Type"] == "application/json"
    assert {"version", "title", "message", "type"} <= set(post.json)
    assert post.json["type"] == "success"  # Apprise's type: services colour or tag it
    assert post.title == f"torrust-maint: backup succeeded on {HOST}"
    message = post.message
    assert field(message, "host") == HOST
    assert field(message, "deployment") == str(stack.compose_dir)
    assert field(message, "outcome") == "success"
    assert field(message, "backup") == backup["id"]
    assert backup["downtime_seconds"] > 0
    assert field(message, "tracker downtime") == f"{backup['downtime_seconds']:.3f} s"
    duration = float(field(message, "duration").removesuffix(" s"))
    assert duration >= backup["downtime_seconds"] - 0.05
    assert "in a row" not in message and "error:" not in message
    code, status = status_json(config)
    assert code == 0 and status["ok"] is True, status["problems"]
    assert status["last_run"]["outcome"] == "success"
    assert status["last_run"]["backup_id"] == backup["id"]


def test_full_backup_directory_fails_notifies_twice_then_recovers(stack, tmp_path):
    mountpoint = tmp_path / "backups"
    with HttpReceiver() as http, SmtpReceiver() as smtp, full_tmpfs(mountpoint):
        config = write_notify_config(
            stack, tmp_path, mountpoint,
            f'urls = {toml_list([http.url("/hooks/ops"), smtp.url()])}')  # on: the default
        started_at = stack.state()["StartedAt"]

        first = run_cli(config, "backup")

        assert first.returncode == 1, first.stderr
        assert "Traceback" not in first.stderr
        state = stack.state()
        assert state["Running"] and not state["Restarting"], state
        assert state["StartedAt"] == started_at  # the fault was met before any window
        [post] = http.wait_for(1)
        [mail] = smtp.wait_for(1)
        assert post.json["type"] == "failure"
        for title, text in ((post.title, post.message), (mail.subject, mail.text)):
            assert title == f"torrust-maint: backup FAILED on {HOST}"
            assert field(text, "outcome") == "failure (exit 1)"
            error = field(text, "error")
            assert error.startswith("[backup] directory: "), error
            assert str(mountpoint) in error
            assert re.search(r"No space left on device|MB free", error), error
            assert field(text, "deployment") == str(stack.compose_dir)
            assert "first failure (the run before it did not fail)" in text
        assert (mail.mail_from, mail.rcpt_tos) == ("backup@example.com", ["ops@example.com"])
        assert mail.message["To"] == "ops@example.com"

        code, status = status_json(config)
        assert code == 1 and status["ok"] is False
        assert status["last_run"]["outcome"] == "failure"
        assert status["last_run"]["error"] == field(post.message, "error")
        assert status["consecutive_failures"] == 1
        assert any(problem.startswith("the last backup run failed (1 in a row): "
                                      "[backup] directory")
                   for problem in status["problems"]), status["problems"]

        second = run_cli(config, "backup")

        assert second.returncode == 1, second.stderr
        assert stack.running()
        post, mail = http.wait_for(2)[1], smtp.wait_for(2)[1]
        for title, text in ((post.title, post.message), (mail.subject, mail.text)):
            assert title == f"torrust-maint: backup FAILED on {HOST} (2nd in a row)"
            assert "2nd failure in a row" in text
        assert status_json(config)[1]["consecutive_failures"] == 2

        unmount(mountpoint)  # the operator frees the disk
        third = run_cli(config, "backup")

        assert third.returncode == 0, third.stderr
        post, mail = http.wait_for(3)[2], smtp.wait_for(3)[2]
        [backup] = list_sets(config)
        assert len(http.received) == len(smtp.received) == 3  # no separate success notice
    for title, text in ((post.title, post.message), (mail.subject, mail.text)):
        assert "recovered" in title and title == f"torrust-maint: backup recovered on {HOST}"
        assert "after 2 failed runs in a row" in text
        assert field(text, "outcome") == "success"
        assert field(text, "backup") == backup["id"]
        assert "error:" not in text
    code, status = status_json(config)
    assert code == 0 and status["ok"] is True, status["problems"]
    assert status["consecutive_failures"] == 0
    assert status["last_run"]["outcome"] == "success"
    assert status["last_success"]["backup_id"] == backup["id"]
    assert status["last_failure"]["outcome"] == "failure"


# -- a notice that cannot be sent ------------------------------------------------------------

def test_broken_endpoints_leave_the_exit_code_and_never_show_the_url(stack, tmp_path):
    log_file = tmp_path / "torrust-maint.log"
    with HttpReceiver(status=500) as broken:
        secret_url = (f"json://hook:{SECRET_PASSWORD}@127.0.0.1:{broken.port}"
                      f"/hooks/{SECRET_TOKEN}")
        config = write_notify_config(
            stack, tmp_path, tmp_path / "backups",
            f'urls = {toml_list([secret_url, dead_url(f"/hooks/{SECRET_DEAD}")])}\n'
            'on = ["success", "failure"]',
            more=f'\n[logging]\nfile = "{log_file}"\n')

        done = run_cli(config, "backup")

        assert done.returncode == 0, done.stderr
        [post] = broken.wait_for(1)  # it was tried, and answered 500
        assert post.path == f"/hooks/{SECRET_TOKEN}"
        checked = run_cli(config, "check")
    assert len(list_sets(config)) == 1
    log_text = log_file.read_text()
    for text in (done.stderr, log_text):
        assert "notice not delivered to [notify] urls item 1 (json)" in text
        assert "notice not delivered to [notify] urls item 2 (json)" in text
        assert "success notice delivered to 0 of 2 URL(s)" in text
    state_text = (state_directory(stack) / "state.json").read_text()
    assert json.loads(state_text)["backup"]["last_run"]["outcome"] == "success"
    for where, text in {"stdout": done.stdout, "stderr": done.stderr, "log": log_text,
                        "state": state_text, "check stdout": checked.stdout,
                        "check stderr": checked.stderr}.items():
        for secret in (SECRET_TOKEN, SECRET_PASSWORD, SECRET_DEAD):
            assert secret not in text, f"{secret} in {where}: {text}"
        assert "json://" not in text, f"a URL in {where}: {text}"
    assert "Traceback" not in done.stderr + checked.stderr


# -- urls_file and notify-test ---------------------------------------------------------------

def test_urls_file_must_be_private_and_then_delivers(stack, tmp_path):
    urls_file = tmp_path / "notify-urls"
    with HttpReceiver() as http:
        urls_file.write_text(f"# the ops channel\n\n{http.url(f'/hooks/{SECRET_TOKEN}')}\n")
        urls_file.chmod(0o644)
        config = write_notify_config(stack, tmp_path, tmp_path / "backups",
                                     f'urls_file = "{urls_file}"')

        loose = run_cli(config, "check")

        assert loose.returncode != 0, loose.stdout
        output = loose.stdout + loose.stderr
        assert "[notify] urls_file" in output and "chmod 600" in output, output
        assert SECRET_TOKEN not in output
        refused = run_cli(config, "notify-test")
        assert refused.returncode == 1
        assert "[notify] urls_file" in refused.stderr and "chmod 600" in refused.stderr
        assert http.received == []

        urls_file.chmod(0o600)
        checked = run_cli(config, "check")
        sent = run_cli(config, "notify-test")

        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert sent.returncode == 0, sent.stderr
        assert "test notice delivered to every URL" in sent.stdout
        [post] = http.wait_for(1)
    assert post.path == f"/hooks/{SECRET_TOKEN}"
    assert post.title == "torrust-maint: test notice"
    assert str(stack.compose_dir) in post.message
    for text in (checked.stdout, checked.stderr, sent.stdout, sent.stderr):
        assert SECRET_TOKEN not in text


def test_notify_test_with_a_dead_url_exits_1_and_still_reaches_the_good_one(stack, tmp_path):
    with HttpReceiver() as http, SmtpReceiver() as smtp:
        urls = [http.url("/hooks/good"), dead_url(f"/hooks/{SECRET_DEAD}"), smtp.url()]
        config = write_notify_config(stack, tmp_path, tmp_path / "backups",
                                     f"urls = {toml_list(urls)}")

        done = run_cli(config, "notify-test")

        assert done.returncode == 1, done.stdout
        [post] = http.wait_for(1)
        [mail] = smtp.wait_for(1)
    assert post.title == mail.subject == "torrust-maint: test notice"
    assert "notice not delivered to [notify] urls item 2 (json)" in done.stderr
    assert "urls item 1" not in done.stderr and "urls item 3" not in done.stderr
    assert "a test notice was not delivered" in done.stderr
    assert SECRET_DEAD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


# -- MySQL -----------------------------------------------------------------------------------

def test_mysql_backup_success_and_failure_notices(tmp_path):
    tracker = start_stack(f"tm-it-notify-mysql-{os.getpid()}", driver="mysql")
    try:
        with HttpReceiver() as http:
            config = write_notify_config(tracker, tmp_path, tmp_path / "backups",
                                         f'urls = {toml_list([http.url("/hooks/db")])}\n'
                                         'on = ["success", "failure"]')
            tracker.wait_for_writes(50)

            done = run_cli(config, "backup")

            assert done.returncode == 0, done.stderr
            [post] = http.wait_for(1)
            [backup] = list_sets(config)
            assert backup["database"]["driver"] == "mysql"
            assert post.title == f"torrust-maint: backup succeeded on {HOST}"
            assert field(post.message, "deployment") == str(tracker.compose_dir)
            assert field(post.message, "backup") == backup["id"]
            assert field(post.message, "tracker downtime") == \
                f"{backup['downtime_seconds']:.3f} s"

            subprocess.run(["docker", "stop", "--timeout", "1", tracker.mysql_container_name],
                           check=True, capture_output=True)
            failed = run_cli(config, "backup")

            assert failed.returncode == 1, failed.stderr
            post = http.wait_for(2)[1]
            assert len(http.received) == 2
    finally:
        tracker.down()
        shutil.rmtree(tracker.compose_dir.parent.parent, ignore_errors=True)
    assert post.title == f"torrust-maint: backup FAILED on {HOST}"
    error = field(post.message, "error")
    assert tracker.mysql_container_name in error and "nothing was done" in error, error
    assert f"torrust-maint: error: {error}" in failed.stderr
    for text in (post.message, failed.stderr, done.stdout, done.stderr):
        assert MYSQL_USER_PASSWORD not in text
