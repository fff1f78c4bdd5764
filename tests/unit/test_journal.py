"""journal: events reach journald with MESSAGE_ID and upper-case fields only; the file log."""

from __future__ import annotations

import logging
import os
import re

import pytest

from torrust_maint import cli, journal
from torrust_maint.actions import report
from torrust_maint.errors import ConfigError
from torrust_maint.journal import (
    MESSAGE_IDS,
    FieldsFormatter,
    JournalFieldsHandler,
    event,
    record_fields,
)


class Sent:
    """Stands in for systemd.journal.send: records MESSAGE and fields."""

    def __init__(self):
        self.messages: list[dict] = []

    def __call__(self, message, **fields):
        for name in fields:  # what sd_journal_sendv would get: only valid field names
            assert re.fullmatch(r"[A-Z0-9][A-Z0-9_]*", name), name
        self.messages.append({"MESSAGE": message, **fields})


@pytest.fixture
def sent():
    sender = Sent()
    root = logging.getLogger()
    root.handlers[:] = [JournalFieldsHandler(sender=sender)]
    root.setLevel(logging.DEBUG)
    return sender


def test_message_ids_are_unique_128_bit_hex():
    ids = list(MESSAGE_IDS.values())
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_event_sends_message_id_kind_and_fields(sent):
    event("backup_committed", "backup %s committed", "20261126T030000Z",
          BACKUP_ID="20261126T030000Z", BACKUP_BYTES=1234, DB_DRIVER="sqlite3",
          TRACKER_DOWNTIME_SEC=0.25, BACKUP_PATH=None)
    [record] = sent.messages
    assert record["MESSAGE"] == "backup 20261126T030000Z committed"
    assert record["MESSAGE_ID"] == MESSAGE_IDS["backup_committed"]
    assert record["TORRUST_EVENT"] == "backup_committed"
    assert record["BACKUP_ID"] == "20261126T030000Z"
    assert record["BACKUP_BYTES"] == "1234"
    assert record["DB_DRIVER"] == "sqlite3"
    assert record["TRACKER_DOWNTIME_SEC"] == "0.25"
    assert record["PRIORITY"] == "6"
    assert record["SYSLOG_IDENTIFIER"] == "torrust-maint"
    assert record["LOGGER"] == "torrust_maint.events"
    assert "BACKUP_PATH" not in record  # None is left out


def test_lower_case_record_attributes_are_not_sent(sent):
    logging.getLogger("torrust_maint.x").warning("plain %s", "line")
    [record] = sent.messages
    assert record["MESSAGE"] == "plain line"
    assert record["PRIORITY"] == "4"
    for attribute in ("msg", "args", "name", "levelname", "exc_info", "taskName", "process"):
        assert attribute not in record
    assert "MESSAGE_ID" not in record


def test_exception_text_is_part_of_the_message(sent):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("t").exception("failed")
    [record] = sent.messages
    assert record["PRIORITY"] == "3"
    assert record["MESSAGE"].startswith("failed\nTraceback")
    assert "ValueError: boom" in record["MESSAGE"]


def test_extra_cannot_override_the_handlers_own_fields(sent):
    logging.getLogger("t").info("x", extra={"PRIORITY": "0", "SYSLOG_IDENTIFIER": "evil",
                                            "_PID": "1", "GOOD_FIELD": 1})
    [record] = sent.messages
    assert record["PRIORITY"] == "6" and record["SYSLOG_IDENTIFIER"] == "torrust-maint"
    assert "_PID" not in record and record["GOOD_FIELD"] == "1"


def test_a_failing_sender_does_not_raise(monkeypatch):
    def broken(message, **fields):
        raise OSError("journald gone")

    handler = JournalFieldsHandler(sender=broken)
    monkeypatch.setattr(logging, "raiseExceptions", False)
    handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, "m", (), None))


@pytest.mark.parametrize(("level", "priority"), [
    (logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3),
    (logging.CRITICAL, 2)])
def test_priorities(level, priority):
    assert journal.journal_priority(level) == priority


def test_journal_handler_only_when_stderr_is_the_journal_stream(monkeypatch, tmp_path):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert journal._journal_handler() is None
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert journal._journal_handler() is None  # not our stderr
    info = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    assert isinstance(journal._journal_handler(), JournalFieldsHandler)
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    assert journal._journal_handler() is None


def test_record_fields_keeps_only_journal_names():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", (), None)
    record.BACKUP_ID = "x"
    record.lower = "no"
    record.Mixed = "no"
    record._TRUSTED = "no"
    assert record_fields(record) == {"BACKUP_ID": "x"}


def test_file_formatter_appends_the_event_and_its_fields():
    record = logging.LogRecord("torrust_maint.events", logging.INFO, __file__, 1,
                               "backup %s committed", ("B1",), None)
    record.MESSAGE_ID = MESSAGE_IDS["backup_committed"]
    record.TORRUST_EVENT = "backup_committed"
    record.BACKUP_ID = "B1"
    record.BACKUP_PATH = "/a b"
    line = FieldsFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO backup B1 committed [backup_committed BACKUP_ID=B1 BACKUP_PATH='/a b']"


def test_file_log_gets_lines_with_fields(tmp_path):
    path = tmp_path / "log/torrust-maint/torrust-maint.log"
    journal.setup(0)
    handler = journal.add_file_log(path)
    try:
        event("sets_pruned", "pruned %d sets", 2, SETS_PRUNED=2)
        logging.getLogger("t").debug("not at INFO")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} INFO pruned 2 sets "
                        r"\[sets_pruned SETS_PRUNED=2\]\n", text), text
    assert oct(path.parent.stat().st_mode & 0o777) == "0o750"
    assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_file_log_that_cannot_be_opened_is_a_warning(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        assert journal.add_file_log(blocker / "sub/x.log") is None
    assert "[logging] file: cannot open" in caplog.text


def test_cli_adds_the_configured_file_log(tmp_path, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    log_file = tmp_path / "logs/tm.log"
    config = tmp_path / "c.toml"
    config.write_text(f'[deployment]\ncompose_dir = "{tmp_path}/c"\n'
                      f'[backup]\ndirectory = "{tmp_path}/b"\n'
                      f'[logging]\nfile = "{log_file}"\n')
    (tmp_path / "b").mkdir()
    assert cli.main(["--config", str(config), "list"]) == 0
    assert log_file.exists()
    for handler in logging.getLogger().handlers:
        handler.close()


def test_report_failure_logs_a_structured_record(sent, monkeypatch):
    monkeypatch.setenv("MONITOR_SERVICE_RESULT", "signal")
    monkeypatch.setenv("MONITOR_EXIT_CODE", "killed")
    monkeypatch.setenv("MONITOR_EXIT_STATUS", "KILL")
    monkeypatch.setenv("MONITOR_INVOCATION_ID", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("TORRUST_MAINT_CONFIG", "/nonexistent/torrust-maint.toml")
    with pytest.raises(ConfigError, match="configuration file not found"):
        report.run("torrust-backup.service", dict(os.environ))
    [record] = sent.messages
    assert record["MESSAGE"] == "torrust-backup.service failed: result signal (killed KILL)"
    assert record["MESSAGE_ID"] == MESSAGE_IDS["unit_failed"]
    assert record["PRIORITY"] == "3"
    assert record["OBJECT_SYSTEMD_UNIT"] == "torrust-backup.service"
    assert record["OBJECT_SYSTEMD_INVOCATION_ID"] == "0123456789abcdef0123456789abcdef"
    assert (record["SERVICE_RESULT"], record["EXIT_CODE"], record["EXIT_STATUS"]) == (
        "signal", "killed", "KILL")


def test_report_logs_the_failure_record_even_without_a_configuration(monkeypatch, tmp_path,
                                                                      capsys):
    """The record comes first; a missing configuration then only stops the notice."""
    monkeypatch.setenv("MONITOR_SERVICE_RESULT", "exit-code")
    monkeypatch.setenv("TORRUST_MAINT_CONFIG", str(tmp_path / "missing.toml"))
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert cli.main(["report", "torrust-backup.service"]) == 2
    err = capsys.readouterr().err
    assert "torrust-backup.service failed: result exit-code" in err
    assert err.index("result exit-code") < err.index("missing.toml: configuration file not found")
