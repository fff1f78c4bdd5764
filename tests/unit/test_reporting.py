"""reporting.reported and `torrust-maint report UNIT`: outcomes recorded, notices sent once.

notifications.send is the adapter seam: it is replaced by a recorder, so nothing leaves the
machine; systemd's next elapse of the timer is faked the same way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from torrust_maint import notifications, reporting, state, systemd_units
from torrust_maint.actions import report
from torrust_maint.config import (
    CONFIG_ENV_VAR,
    BackupConfig,
    Config,
    DeploymentConfig,
    NotifyConfig,
    StateConfig,
)
from torrust_maint.errors import (
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_TRACKER_DOWN,
    LockedError,
    MaintError,
    TrackerDownError,
    VerificationInconclusive,
)

URL = "json://user:S3cr3tT0ken@127.0.0.1:9/hook"
NEXT_RUN = "2026-03-02T03:00:00Z"
BACKUP_UNIT = "torrust-backup.service"


@pytest.fixture(autouse=True)
def _outside_systemd(monkeypatch):
    for name in ("INVOCATION_ID", reporting.NOTICES_ENV, CONFIG_ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(systemd_units, "next_backup", lambda reader=None: NEXT_RUN)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[NotifyConfig, notifications.Notice]]:
    """Every notice handed to notifications.send (which is not run)."""
    calls: list[tuple[NotifyConfig, notifications.Notice]] = []

    def record(settings, notice):
        calls.append((settings, notice))
        return True

    monkeypatch.setattr(notifications, "send", record)
    return calls


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"


def make_config(tmp_path: Path, state_dir: Path,
                on: tuple[str, ...] = ("failure", "recovery")) -> Config:
    return Config(path=tmp_path / "torrust-maint.toml",
                  deployment=DeploymentConfig(compose_dir=Path("/srv/tracker")),
                  backup=BackupConfig(directory=tmp_path / "backups"),
                  notify=NotifyConfig(urls=(URL,), on=on),
                  state=StateConfig(directory=state_dir))


def backup_part(directory: Path, job: str = "backup") -> dict:
    return state.job(state.read(directory), job)


def events(sent) -> list[str]:
    return [notice.event for _, notice in sent]


def failing(error: BaseException, **details):
    def body(into: dict) -> int:
        into.update(details)
        raise error

    return body


# -- reported ------------------------------------------------------------------------------

def test_a_success_is_recorded_with_its_details_and_duration(tmp_path, state_dir, sent):
    config = make_config(tmp_path, state_dir)

    def body(details: dict) -> int:
        details.update(backup_id="20260301T030000Z", downtime_seconds=1.5)
        time.sleep(0.05)
        return 0

    before = time.monotonic()
    assert reporting.reported(config, "backup", body) == 0
    elapsed = time.monotonic() - before

    part = backup_part(state_dir)
    run = part["last_run"]
    assert (run["outcome"], run["exit_code"]) == ("success", 0)
    assert (run["backup_id"], run["downtime_seconds"]) == ("20260301T030000Z", 1.5)
    assert 0.05 <= run["duration_seconds"] <= elapsed + 0.001
    assert run["invocation_id"] is None
    assert part["last_success"] == run
    assert part["consecutive_failures"] == 0
    assert sent == []  # a plain success is not in the default `on`


def test_a_failure_is_recorded_and_its_error_raised_again(tmp_path, state_dir, sent):
    config = make_config(tmp_path, state_dir)
    error = TrackerDownError("the tracker is not running again 120 s after the window")

    with pytest.raises(TrackerDownError) as caught:
        reporting.reported(config, "backup", failing(error, backup_id="20260301T030000Z",
                                                     downtime_seconds=120.25))

    assert caught.value is error
    part = backup_part(state_dir)
    run = part["last_run"]
    assert run["outcome"] == "failure"
    assert run["exit_code"] == EXIT_TRACKER_DOWN
    assert run["error"] == str(error)
    assert (run["backup_id"], run["downtime_seconds"]) == ("20260301T030000Z", 120.25)
    assert run["duration_seconds"] >= 0
    assert part["consecutive_failures"] == 1
    [(settings, notice)] = sent
    assert settings == config.notify
    assert notice.event == "failure"
    lines = notice.body.splitlines()
    assert f"error: {error}" in lines
    assert "outcome: failure (exit 4)" in lines
    assert "backup: 20260301T030000Z" in lines
    assert "deployment: /srv/tracker" in lines
    assert f"next scheduled run: {NEXT_RUN}" in lines
    assert "first failure (the run before it did not fail)" in lines


@pytest.mark.parametrize(("error", "exit_code", "text"), [
    (LockedError("another torrust-maint run (pid 7) holds it (after 3 attempts)"), EXIT_LOCKED,
     "another torrust-maint run (pid 7) holds it (after 3 attempts)"),
    (MaintError("first line\nsecond line"), EXIT_FAILED, "first line second line"),
    (ValueError("unexpected"), EXIT_FAILED, "internal error: ValueError: unexpected"),
    (KeyboardInterrupt(), EXIT_FAILED, "interrupted"),
])
def test_each_error_is_recorded_as_one_line_with_its_exit_code(tmp_path, state_dir, sent, error,
                                                                exit_code, text):
    config = make_config(tmp_path, state_dir)
    with pytest.raises(type(error)):
        reporting.reported(config, "backup", failing(error))
    run = backup_part(state_dir)["last_run"]
    assert (run["outcome"], run["exit_code"], run["error"]) == ("failure", exit_code, text)
    assert events(sent) == ["failure"]


def test_a_non_zero_exit_code_without_an_error_is_a_failure(tmp_path, state_dir, sent):
    config = make_config(tmp_path, state_dir)
    assert reporting.reported(config, "verify", lambda details: 1) == 1
    run = backup_part(state_dir, "verify")["last_run"]
    assert (run["outcome"], run["exit_code"]) == ("failure", 1)
    assert "error" not in run
    assert events(sent) == []  # verify_failure is not in the default `on`


def test_an_inconclusive_verification_is_marked_so(tmp_path, state_dir, sent):
    config = make_config(tmp_path, state_dir, on=("verify_failure",))
    with pytest.raises(VerificationInconclusive):
        reporting.reported(config, "verify",
                           failing(VerificationInconclusive("docker did not answer")))
    run = backup_part(state_dir, "verify")["last_run"]
    assert run["inconclusive"] is True
    [(_, notice)] = sent
    assert notice.event == "verify_failure"
    assert "INCONCLUSIVE" in notice.title


def test_failures_in_a_row_are_counted_in_the_notices(tmp_path, state_dir, sent):
    config = make_config(tmp_path, state_dir)
    for _ in range(3):
        with pytest.raises(MaintError):
            reporting.reported(config, "backup", failing(MaintError("boom")))
    assert backup_part(state_dir)["consecutive_failures"] == 3
    assert events(sent) == ["failure"] * 3
    assert "3rd failure in a row" in sent[-1][1].body.splitlines()
    assert sent[-1][1].title.endswith("(3rd in a row)")


def test_a_success_after_failures_sends_one_recovery_notice(tmp_path, state_dir, sent):
    config = make_config(tmp_path, state_dir, on=("failure", "recovery", "success"))
    for _ in range(2):
        with pytest.raises(MaintError):
            reporting.reported(config, "backup", failing(MaintError("boom")))
    sent.clear()
    assert reporting.reported(config, "backup", lambda details: 0) == 0
    [(_, notice)] = sent  # the recovery notice says it succeeded: no second one
    assert notice.event == "recovery"
    assert "after 2 failed runs in a row" in notice.body.splitlines()
    sent.clear()
    assert reporting.reported(config, "backup", lambda details: 0) == 0
    assert events(sent) == ["success"]


def test_under_its_unit_the_run_records_but_sends_nothing(tmp_path, state_dir, sent,
                                                          monkeypatch):
    monkeypatch.setenv(reporting.NOTICES_ENV, "unit")
    monkeypatch.setenv("INVOCATION_ID", "0123abcd")
    config = make_config(tmp_path, state_dir)
    with pytest.raises(MaintError):
        reporting.reported(config, "backup", failing(MaintError("boom")))
    part = backup_part(state_dir)
    assert (part["last_run"]["outcome"], part["last_run"]["invocation_id"]) == ("failure",
                                                                                 "0123abcd")
    assert sent == []
    assert "notified" not in part  # the notify unit claims it


def test_unit_mode_without_an_invocation_id_still_sends(tmp_path, state_dir, sent,
                                                        monkeypatch):
    monkeypatch.setenv(reporting.NOTICES_ENV, "unit")  # but not started by systemd
    config = make_config(tmp_path, state_dir)
    with pytest.raises(MaintError):
        reporting.reported(config, "backup", failing(MaintError("boom")))
    assert events(sent) == ["failure"]


def test_by_hand_with_an_invocation_id_it_sends_once_and_claims_it(tmp_path, state_dir, sent,
                                                                   monkeypatch):
    monkeypatch.setenv("INVOCATION_ID", "feed0001")
    config = make_config(tmp_path, state_dir)
    with pytest.raises(MaintError):
        reporting.reported(config, "backup", failing(MaintError("boom")))
    assert events(sent) == ["failure"]
    assert backup_part(state_dir)["notified"] == ["feed0001"]
    # the notify unit, started after it, finds the notice sent
    report.run(BACKUP_UNIT, monitor_env(write_config(tmp_path, state_dir), "feed0001",
                                        "exit-code", "exited", "1"))
    assert events(sent) == ["failure"]


def test_an_unusable_state_directory_does_not_stop_the_run_or_its_notice(tmp_path, sent,
                                                                         caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = make_config(tmp_path, blocker / "state")
    ran = []

    def body(details: dict) -> int:
        ran.append(True)
        raise MaintError("boom")

    with caplog.at_level(logging.WARNING), pytest.raises(MaintError, match="^boom$"):
        reporting.reported(config, "backup", body)
    assert ran == [True]
    assert events(sent) == ["failure"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("the run state is not recorded: [state] directory")
               for m in warnings)


# -- torrust-maint report UNIT ---------------------------------------------------------------

def write_config(tmp_path: Path, state_dir: Path, backup_extra: str = "") -> Path:
    path = tmp_path / "torrust-maint.toml"
    path.write_text(f'[deployment]\ncompose_dir = "{tmp_path / "compose"}"\n\n'
                    f'[backup]\ndirectory = "{tmp_path / "backups"}"\n{backup_extra}\n'
                    f'[notify]\nurls = ["{URL}"]\n\n'
                    f'[state]\ndirectory = "{state_dir}"\n')
    return path


def monitor_env(config_path: Path, invocation: str, result: str, code: str,
                status: str, unit: str = BACKUP_UNIT) -> dict[str, str]:
    """What systemd passes to an OnFailure=/OnSuccess= unit."""
    return {CONFIG_ENV_VAR: str(config_path), "MONITOR_SERVICE_RESULT": result,
            "MONITOR_EXIT_CODE": code, "MONITOR_EXIT_STATUS": status,
            "MONITOR_INVOCATION_ID": invocation, "MONITOR_UNIT": unit}


def killed(config_path: Path, invocation: str = "beef0042") -> dict[str, str]:
    return monitor_env(config_path, invocation, "signal", "killed", "KILL")


def fail_times(directory: Path, count: int) -> None:
    for n in range(count):
        state.record_end(directory, "backup", {"outcome": "failure", "error": f"fault {n}",
                                               "exit_code": 1, "invocation_id": f"old-{n}"})


def test_a_killed_run_is_completed_and_notified(tmp_path, state_dir, sent, caplog):
    config_path = write_config(tmp_path, state_dir)
    fail_times(state_dir, 2)
    started = state.record_start(state_dir, "backup", "beef0042")  # then SIGKILL

    with caplog.at_level(logging.INFO):
        assert report.run(BACKUP_UNIT, killed(config_path)) == 0

    part = backup_part(state_dir)
    run = part["last_run"]
    assert run["outcome"] == "failure"
    assert run["error"] == f"{BACKUP_UNIT} was killed by a signal (KILL)"
    assert run["service_result"] == "signal"
    assert run["started_at"] == started["started_at"]
    assert run["invocation_id"] == "beef0042"
    assert "exit_code" not in run  # killed: no exit status to report
    assert part["consecutive_failures"] == 3
    [(_, notice)] = sent
    assert notice.event == "failure"
    assert f"error: {BACKUP_UNIT} was killed by a signal (KILL)" in notice.body.splitlines()
    assert "3rd failure in a row" in notice.body.splitlines()
    [record] = [r for r in caplog.records if getattr(r, "TORRUST_EVENT", None) == "unit_failed"]
    assert (record.FAILED_UNIT, record.OBJECT_SYSTEMD_UNIT) == (BACKUP_UNIT, BACKUP_UNIT)
    assert (record.SERVICE_RESULT, record.EXIT_CODE, record.EXIT_STATUS) == ("signal",
                                                                             "killed", "KILL")
    assert record.OBJECT_SYSTEMD_INVOCATION_ID == "beef0042"


def test_report_run_twice_for_one_invocation_notifies_once(tmp_path, state_dir, sent):
    config_path = write_config(tmp_path, state_dir)
    state.record_start(state_dir, "backup", "beef0042")
    assert report.run(BACKUP_UNIT, killed(config_path)) == 0
    after_first = backup_part(state_dir)
    assert report.run(BACKUP_UNIT, killed(config_path)) == 0
    assert events(sent) == ["failure"]
    assert backup_part(state_dir) == after_first
    assert after_first["consecutive_failures"] == 1


def test_a_run_that_recorded_its_failure_is_not_recorded_again(tmp_path, state_dir, sent,
                                                               monkeypatch):
    config_path = write_config(tmp_path, state_dir)
    monkeypatch.setenv(reporting.NOTICES_ENV, "unit")
    monkeypatch.setenv("INVOCATION_ID", "cafe0007")
    config = make_config(tmp_path, state_dir)
    with pytest.raises(LockedError):
        reporting.reported(config, "backup",
                           failing(LockedError("another run holds it (after 3 attempts)")))
    assert sent == []
    recorded = backup_part(state_dir)

    env = monitor_env(config_path, "cafe0007", "exit-code", "exited", "5")
    assert report.run(BACKUP_UNIT, env) == 0
    assert report.run(BACKUP_UNIT, env) == 0

    part = backup_part(state_dir)
    assert part.pop("notified") == ["cafe0007"]
    assert part == recorded  # the run's own record stands
    [(_, notice)] = sent
    assert "error: another run holds it (after 3 attempts)" in notice.body.splitlines()
    assert "outcome: failure (exit 5)" in notice.body.splitlines()


def test_a_run_that_died_before_recording_anything(tmp_path, state_dir, sent):
    config_path = write_config(tmp_path, state_dir)
    env = monitor_env(config_path, "dead0001", "exit-code", "exited", "4")
    assert report.run(BACKUP_UNIT, env) == 0
    run = backup_part(state_dir)["last_run"]
    assert (run["outcome"], run["exit_code"], run["invocation_id"]) == ("failure", 4,
                                                                        "dead0001")
    assert run["error"] == f"{BACKUP_UNIT} exited with an error (4)"
    assert events(sent) == ["failure"]


def test_a_timed_out_verification_is_a_verify_failure(tmp_path, state_dir, sent, monkeypatch):
    config_path = write_config(tmp_path, state_dir)
    config_path.write_text(config_path.read_text().replace(
        "[notify]\n", '[notify]\non = ["verify_failure"]\n'))
    state.record_start(state_dir, "verify", "ver00001")
    env = monitor_env(config_path, "ver00001", "timeout", "killed", "TERM",
                      unit="torrust-verify.service")
    assert report.run("torrust-verify.service", env) == 0
    run = backup_part(state_dir, "verify")["last_run"]
    assert run["error"] == "torrust-verify.service timed out (TimeoutStartSec=) (TERM)"
    assert backup_part(state_dir) == {}  # the backup job is untouched
    assert events(sent) == ["verify_failure"]


def test_a_broken_configuration_still_sends_with_notify_and_state_alone(tmp_path, state_dir,
                                                                        sent, caplog):
    config_path = write_config(tmp_path, state_dir, backup_extra="no_such_key = 1\n")
    state.record_start(state_dir, "backup", "beef0042")
    with caplog.at_level(logging.ERROR):
        assert report.run(BACKUP_UNIT, killed(config_path)) == 0
    [(settings, notice)] = sent
    assert settings.urls == (URL,)
    assert notice.event == "failure"
    assert backup_part(state_dir)["consecutive_failures"] == 1
    assert any("no_such_key" in r.getMessage() and "[notify] and [state]" in r.getMessage()
               for r in caplog.records)


def test_a_configuration_that_is_not_toml_is_an_error(tmp_path, state_dir, sent):
    from torrust_maint.errors import ConfigError

    config_path = tmp_path / "torrust-maint.toml"
    config_path.write_text("[backup\n")
    with pytest.raises(ConfigError):
        report.run(BACKUP_UNIT, killed(config_path))
    assert sent == []


def test_on_success_after_failures_sends_a_recovery_notice(tmp_path, state_dir, sent,
                                                           monkeypatch):
    config_path = write_config(tmp_path, state_dir)
    fail_times(state_dir, 2)
    monkeypatch.setenv(reporting.NOTICES_ENV, "unit")
    monkeypatch.setenv("INVOCATION_ID", "5ucce55")
    assert reporting.reported(make_config(tmp_path, state_dir), "backup",
                              lambda details: 0) == 0
    assert sent == []
    env = monitor_env(config_path, "5ucce55", "success", "exited", "0")
    assert report.run(BACKUP_UNIT, env) == 0
    assert report.run(BACKUP_UNIT, env) == 0
    [(_, notice)] = sent
    assert notice.event == "recovery"
    assert "after 2 failed runs in a row" in notice.body.splitlines()
    assert backup_part(state_dir)["consecutive_failures"] == 0


def test_on_success_logs_no_failure_record(tmp_path, state_dir, sent, monkeypatch, caplog):
    config_path = write_config(tmp_path, state_dir)
    monkeypatch.setenv(reporting.NOTICES_ENV, "unit")
    monkeypatch.setenv("INVOCATION_ID", "5ucce56")
    reporting.reported(make_config(tmp_path, state_dir), "backup", lambda details: 0)
    with caplog.at_level(logging.DEBUG):
        report.run(BACKUP_UNIT, monitor_env(config_path, "5ucce56", "success", "exited", "0"))
    assert not [r for r in caplog.records if getattr(r, "TORRUST_EVENT", None) == "unit_failed"]
    assert sent == []  # a first success is not in the default `on`
    assert backup_part(state_dir)["last_run"]["outcome"] == "success"


def test_on_success_of_a_run_that_recorded_nothing_resends_no_older_notice(tmp_path, state_dir,
                                                                           sent, caplog):
    """The unit succeeded but its run could not write the state (e.g. [state] directory not
    writable in its sandbox): the last run on record is an older one, already notified."""
    config_path = write_config(tmp_path, state_dir)
    fail_times(state_dir, 1)
    assert state.claim_notice(state_dir, "backup", "old-0")  # its notice went out then
    before = state.read(state_dir)
    env = monitor_env(config_path, "n0rec0rd", "success", "exited", "0")
    with caplog.at_level(logging.WARNING):
        assert report.run(BACKUP_UNIT, env) == 0
    assert sent == []
    assert state.read(state_dir) == before
    assert any(r.getMessage() == f"{BACKUP_UNIT} left no record in {state_dir}; no notice is "
               "sent" for r in caplog.records)


def test_an_environment_error_is_described_as_the_command_line_prints_it():
    """A full or removed disk is no internal error: the state and the notice say what and
    where, as cli.main prints it."""
    import errno

    error = OSError(errno.ENOSPC, "No space left on device", "/srv/backups/x")
    assert reporting.describe(error) == "No space left on device (/srv/backups/x)"
    assert reporting.describe(KeyError("x")) == "internal error: KeyError: 'x'"


def test_the_on_success_instance_names_the_unit_without_its_suffix(tmp_path, state_dir, sent):
    """OnSuccess= starts torrust-notify@torrust-backup.service (instance "torrust-backup"):
    MONITOR_UNIT names the unit; without it the suffix is put back."""
    assert report.unit_name("torrust-backup", {}) == BACKUP_UNIT
    assert report.unit_name("torrust-backup", {"MONITOR_UNIT": BACKUP_UNIT}) == BACKUP_UNIT
    assert report.unit_name(BACKUP_UNIT, {}) == BACKUP_UNIT
    assert report.job_of(report.unit_name("torrust-verify", {})) == "verify"


@pytest.mark.parametrize(("unit", "job"), [
    ("torrust-backup.service", "backup"),
    ("torrust-verify.service", "verify"),
    ("torrust-offsite.service", "upload"),
    ("torrust-offsite-check.service", "offsite-check"),
])
def test_each_unit_reports_as_its_job(unit, job):
    assert report.job_of(unit) == job


def test_an_upload_failure_notice_says_off_site_upload():
    part = {"consecutive_failures": 1, "last_run": {
        "outcome": "failure", "error": "off-site upload (rest:http://u:***@h/r): the "
        "repository cannot be reached", "exit_code": 1, "started_at": "2026-11-26T03:05:00Z"}}
    notice = notifications.compose("upload", part, "failure", deployment="/opt/torrust")
    assert notice.title.startswith("torrust-maint: off-site upload FAILED on ")
    assert "error: off-site upload (rest:http://u:***@h/r): the repository cannot be reached" \
        in notice.body


def test_the_offsite_units_report_nothing_where_offsite_copies_are_off(tmp_path, state_dir,
                                                                       sent):
    """torrust-offsite.service skipped by its ExecCondition= (no [offsite]): no record,
    no notice, no failure record."""
    config_path = write_config(tmp_path, state_dir)
    for unit in ("torrust-offsite.service", "torrust-offsite-check.service"):
        assert report.run(unit.removesuffix(".service"), monitor_env(
            config_path, "cafe0001", "success", "exited", "0", unit=unit)) == 0
    assert sent == []
    assert not (state_dir / state.STATE_NAME).exists()


def test_an_upload_skipped_by_its_exec_condition_is_no_failure(tmp_path, state_dir, sent,
                                                               caplog):
    """What systemd 252 hands the OnSuccess= instance after torrust-offsite.service skipped
    itself: result exec-condition. No unit_failed record (it would alert on every backup)."""
    caplog.set_level(logging.INFO)
    config_path = write_config(tmp_path, state_dir)
    assert report.run("torrust-offsite", monitor_env(
        config_path, "cafe0002", "exec-condition", "exited", "1",
        unit="torrust-offsite.service")) == 0
    assert [r for r in caplog.records if getattr(r, "TORRUST_EVENT", None) == "unit_failed"] \
        == []
    assert sent == []
    # The same result through OnFailure= (instance with ".service": the condition itself
    # crashed or exited 255) is a failure.
    assert report.run("torrust-offsite.service", monitor_env(
        config_path, "cafe0003", "exec-condition", "exited", "255",
        unit="torrust-offsite.service")) == 0
    [failed] = [r for r in caplog.records if getattr(r, "TORRUST_EVENT", None) == "unit_failed"]
    assert failed.SERVICE_RESULT == "exec-condition"


def test_a_killed_upload_is_completed_and_notified_as_an_off_site_upload(tmp_path, state_dir,
                                                                        sent):
    config_path = write_config(tmp_path, state_dir,
                               backup_extra='\n[offsite]\nrepository = "/srv/restic"\n')
    state.record_start(state_dir, "upload", "beef0043")  # then SIGKILL
    assert report.run("torrust-offsite.service", killed(config_path, "beef0043") | {
        "MONITOR_UNIT": "torrust-offsite.service"}) == 0
    assert events(sent) == ["failure"]
    upload = state.job(state.read(state_dir), "upload")
    assert upload["last_run"]["outcome"] == "failure"
    assert "torrust-offsite.service was killed by a signal" in upload["last_run"]["error"]
