"""restic.py: secrets reach restic only through its environment, its words are classified
and redacted, and the password comes from the unit's credential or a private file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from torrust_maint import restic
from torrust_maint.config import OffsiteConfig
from torrust_maint.errors import ConfigError

SECRET = "hunter2-very-secret"
REPOSITORY = f"rest:https://backup:{SECRET}@backup.example.org:8000/tracker"


class FakeRestic:
    """Stands in for the restic binary: records argv and env, answers from `replies`."""

    def __init__(self, *replies: tuple[int, bytes, bytes]):
        self.replies = list(replies) or [(0, b"", b"")]
        self.calls: list[dict] = []

    def __call__(self, argv, **kwargs):
        self.calls.append({"argv": argv, **kwargs})
        code, out, err = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return subprocess.CompletedProcess(argv, code, out, err)


@pytest.fixture
def password_file(tmp_path) -> Path:
    path = tmp_path / "offsite-password"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)
    return path


def settings(password_file: Path, **changes) -> OffsiteConfig:
    return OffsiteConfig(repository=REPOSITORY, password_file=password_file, host="tracker-1",
                         **changes)


def test_secrets_go_to_the_environment_never_argv(password_file):
    fake = FakeRestic((0, b"[]", b""))
    client = restic.Restic(settings(password_file), environ={"PATH": "/usr/bin"}, runner=fake)
    client.snapshots("tracker-1")
    call = fake.calls[0]
    assert call["argv"][:3] == ["restic", "snapshots", "--json"]
    assert not any(SECRET in arg or "correct horse" in arg for arg in call["argv"])
    assert call["env"]["RESTIC_REPOSITORY"] == REPOSITORY
    assert call["env"]["RESTIC_PASSWORD_FILE"] == str(password_file)
    assert call["env"]["TZ"] == "UTC"
    assert "RESTIC_PASSWORD" not in call["env"]


def test_inherited_restic_and_cloud_variables_are_not_passed(password_file):
    fake = FakeRestic((0, b"[]", b""))
    environ = {"PATH": "/usr/bin", "RESTIC_PASSWORD": "other", "AWS_SECRET_ACCESS_KEY": "x"}
    restic.Restic(settings(password_file), environ=environ, runner=fake).snapshots(None)
    env = fake.calls[0]["env"]
    assert "RESTIC_PASSWORD" not in env and "AWS_SECRET_ACCESS_KEY" not in env


def test_environment_file_keys_are_passed_and_redacted(tmp_path, password_file):
    env_file = tmp_path / "offsite.env"
    env_file.write_text("AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY='s3-key-value'\n")
    env_file.chmod(0o600)
    fake = FakeRestic((1, b"", b"Fatal: s3-key-value rejected for AKIAEXAMPLE\n"))
    client = restic.Restic(settings(password_file, environment_file=env_file),
                           environ={}, runner=fake)
    with pytest.raises(restic.ResticError) as raised:
        client.open_repository()
    assert fake.calls[0]["env"]["AWS_SECRET_ACCESS_KEY"] == "s3-key-value"
    assert "s3-key-value" not in str(raised.value)
    assert "AKIAEXAMPLE" not in str(raised.value)


def test_environment_file_must_be_private(tmp_path, password_file):
    env_file = tmp_path / "offsite.env"
    env_file.write_text("B2_ACCOUNT_KEY=x\n")
    env_file.chmod(0o644)
    client = restic.Restic(settings(password_file, environment_file=env_file), environ={},
                           runner=FakeRestic())
    with pytest.raises(Exception, match=r"\[offsite\] environment_file: .* mode 0644"):
        client.open_repository()


def test_environment_file_may_not_set_the_repository(tmp_path, password_file):
    env_file = tmp_path / "offsite.env"
    env_file.write_text("RESTIC_PASSWORD=x\n")
    env_file.chmod(0o600)
    client = restic.Restic(settings(password_file, environment_file=env_file), environ={},
                           runner=FakeRestic())
    with pytest.raises(ConfigError, match="RESTIC_PASSWORD"):
        client.open_repository()


@pytest.mark.parametrize(("code", "stderr", "kind"), [
    (1, "Fatal: wrong password or no key found\n", "password"),
    (12, "Fatal: wrong password or no key found\n", "password"),
    (1, "unable to create lock in backend: repository is already locked by PID 7 on h\n",
     "locked"),
    (11, "Fatal: unable to create lock\n", "locked"),
    (1, "Fatal: unable to open config file: Stat: 404\nIs there a repository at the following "
        "location?\n", "no-repository"),
    (10, "Fatal: repository does not exist\n", "no-repository"),
    (1, "Save(<data/1234>) returned error: 507 Insufficient Storage\n", "full"),
    (1, "write /srv/restic/data/ab: no space left on device\n", "full"),
    (1, "Fatal: unable to open repository: Get \"http://h/config\": dial tcp: connection "
        "refused\n", "unreachable"),
    (130, "signal interrupt received, cleaning up\n", "interrupted"),
    (1, "Fatal: something else entirely\n", "failed"),
])
def test_failures_are_classified(code, stderr, kind):
    assert restic.classify(code, stderr) == kind


def test_a_failure_names_the_repository_without_its_password(password_file):
    words = f"Fatal: unable to open config file: Get \"{REPOSITORY}config\": connection refused\n"
    fake = FakeRestic((1, b"", words.encode()))
    client = restic.Restic(settings(password_file), environ={}, runner=fake)
    with pytest.raises(restic.ResticError) as raised:
        client.open_repository()
    message = str(raised.value)
    assert raised.value.kind == "unreachable"
    assert SECRET not in message
    assert "rest:https://backup:***@backup.example.org:8000/tracker" in message


def test_the_password_itself_is_redacted_from_restic_output(password_file):
    fake = FakeRestic((1, b"", b"Fatal: key correct horse battery staple rejected\n"))
    client = restic.Restic(settings(password_file), environ={}, runner=fake)
    with pytest.raises(restic.ResticError) as raised:
        client.open_repository()
    assert "correct horse" not in str(raised.value)


def test_the_unit_credential_is_used_when_systemd_loaded_one(tmp_path, password_file):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / restic.CREDENTIAL).write_text("from-the-unit\n")
    (credentials / restic.CREDENTIAL).chmod(0o400)  # as systemd writes it
    fake = FakeRestic((0, b"[]", b""))
    client = restic.Restic(settings(password_file),
                           environ={"CREDENTIALS_DIRECTORY": str(credentials)}, runner=fake)
    client.snapshots(None)
    assert fake.calls[0]["env"]["RESTIC_PASSWORD_FILE"] == str(
        credentials / restic.CREDENTIAL)


@pytest.mark.parametrize("content", [None, restic.CREDENTIAL_UNSET])
def test_a_missing_credential_names_the_password_file(tmp_path, password_file, content):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    if content is not None:
        (credentials / restic.CREDENTIAL).write_text(content)
    with pytest.raises(ConfigError, match=r"\[offsite\] password_file: .* does not exist"):
        restic.Restic(settings(password_file),
                      environ={"CREDENTIALS_DIRECTORY": str(credentials)}, runner=FakeRestic())


@pytest.mark.parametrize(("mode", "content", "expected"), [
    (0o644, "pw\n", "mode 0644"),
    (0o600, "", "is empty"),
    (0o600, "\nsecond line\n", "is empty"),
])
def test_an_unusable_password_file_is_named(tmp_path, mode, content, expected):
    path = tmp_path / "pw"
    path.write_text(content)
    path.chmod(mode)
    client = restic.Restic(settings(path), environ={}, runner=FakeRestic())
    with pytest.raises(ConfigError, match=expected) as raised:
        client.open_repository()
    assert "[offsite] password_file" in str(raised.value)


def test_a_missing_password_file_says_what_to_do(tmp_path):
    client = restic.Restic(settings(tmp_path / "absent"), environ={}, runner=FakeRestic())
    with pytest.raises(ConfigError, match="does not exist: write the repository's password"):
        client.open_repository()


def test_forget_is_scoped_to_our_tag_and_this_host(password_file):
    fake = FakeRestic((0, b"[]", b""))
    client = restic.Restic(settings(password_file), environ={}, runner=fake)
    client.forget("tracker-1", {"keep_last": 3, "keep_daily": 0, "keep_weekly": 8})
    argv = fake.calls[0]["argv"]
    assert argv[:4] == ["restic", "forget", "--json", "--prune"]
    assert argv[argv.index("--host") + 1] == "tracker-1"
    assert argv[argv.index("--tag") + 1] == restic.TAG
    assert argv[argv.index("--group-by") + 1] == "host"
    assert "--keep-last" in argv and "--keep-weekly" in argv
    assert "--keep-daily" not in argv  # 0: the rule is off


def test_backup_uploads_the_set_directory_by_its_name(password_file, tmp_path):
    summary = b'{"message_type":"status"}\n{"message_type":"summary","data_added":42,' \
              b'"snapshot_id":"abcd1234"}\n'
    fake = FakeRestic((0, summary, b""))
    client = restic.Restic(settings(password_file), environ={}, runner=fake)
    result = client.backup(tmp_path, "20261126T030000Z", host="tracker-1",
                           tags=["torrust-maint", "set:20261126T030000Z"],
                           time="2026-11-26 03:00:00")
    assert result["data_added"] == 42
    call = fake.calls[0]
    assert call["cwd"] == tmp_path
    assert call["argv"][-2:] == ["--", "20261126T030000Z"]
    assert call["timeout"] is None  # an upload may take hours


def test_extended_options_go_before_the_command(password_file):
    fake = FakeRestic((0, b"", b""))
    client = restic.Restic(settings(password_file, options=("sftp.command=ssh x -s sftp",)),
                           environ={}, runner=fake)
    client.unlock()
    assert fake.calls[0]["argv"] == ["restic", "-o", "sftp.command=ssh x -s sftp", "unlock"]


def test_a_missing_restic_binary_says_which_package(password_file):
    def missing(argv, **kwargs):
        raise FileNotFoundError(argv[0])

    client = restic.Restic(settings(password_file), environ={}, runner=missing)
    with pytest.raises(Exception, match="apt install restic"):
        client.open_repository()


@pytest.mark.parametrize(("repository", "shown"), [
    ("rest:https://u:p@h:8000/r", "rest:https://u:***@h:8000/r"),
    ("rest:http://h:8000/r", "rest:http://h:8000/r"),
    ("sftp:backup@host:/srv/restic", "sftp:backup@host:/srv/restic"),
    ("s3:https://s3.example.com/bucket", "s3:https://s3.example.com/bucket"),
    ("/srv/restic", "/srv/restic"),
])
def test_shown_repository_masks_only_a_password(repository, shown):
    assert restic.shown_repository(repository) == shown


def test_bandwidth_limits_are_restic_global_flags(password_file):
    fake = FakeRestic((0, b"", b""))
    client = restic.Restic(settings(password_file, limit_upload=2048, limit_download=4096),
                           environ={}, runner=fake)
    client.unlock()
    assert fake.calls[0]["argv"] == ["restic", "--limit-upload", "2048", "--limit-download",
                                     "4096", "unlock"]


def test_an_incomplete_snapshot_is_forgotten_and_the_upload_fails(password_file, tmp_path):
    summary = b'{"message_type":"summary","data_added":1,"snapshot_id":"0b393fe9"}\n'
    fake = FakeRestic((3, summary, b"error: open 20261126T030000Z/db.zst: no such file\n"),
                      (0, b"", b""))
    client = restic.Restic(settings(password_file), environ={}, runner=fake)
    with pytest.raises(restic.ResticError, match="could not be read .* incomplete snapshot "
                                                 "0b393fe9 was forgotten"):
        client.backup(tmp_path, "20261126T030000Z", host="tracker-1",
                      tags=["torrust-maint"], time="2026-11-26 03:00:00")
    assert fake.calls[1]["argv"] == ["restic", "forget", "0b393fe9"]
