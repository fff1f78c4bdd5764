"""The fault-injection hook in notify.status that the reliability tests pause runs with."""

from __future__ import annotations

import time

from torrust_maint import notify

ENV = ("TORRUST_MAINT_FAULT_PAUSE", "TORRUST_MAINT_FAULT_LOG", "TORRUST_MAINT_FAULT_SECONDS",
       "TORRUST_MAINT_FAULT_RELEASE", "NOTIFY_SOCKET")


def clear(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_inert_without_the_variable(monkeypatch, tmp_path):
    clear(monkeypatch)
    monkeypatch.setenv("TORRUST_MAINT_FAULT_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("TORRUST_MAINT_FAULT_SECONDS", "5")
    began = time.monotonic()
    notify.status("maintenance window: snapshot")
    assert time.monotonic() - began < 0.5
    assert not (tmp_path / "log").exists()


def test_other_phases_pass_untouched(monkeypatch, tmp_path):
    clear(monkeypatch)
    monkeypatch.setenv("TORRUST_MAINT_FAULT_PAUSE", "pruning")
    monkeypatch.setenv("TORRUST_MAINT_FAULT_LOG", str(tmp_path / "log"))
    began = time.monotonic()
    notify.status("exporting the database")
    assert time.monotonic() - began < 0.5
    assert not (tmp_path / "log").exists()


def test_pauses_at_the_matching_phase_and_logs_it(monkeypatch, tmp_path):
    clear(monkeypatch)
    monkeypatch.setenv("TORRUST_MAINT_FAULT_PAUSE", "snapshot")
    monkeypatch.setenv("TORRUST_MAINT_FAULT_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("TORRUST_MAINT_FAULT_SECONDS", "0.4")
    began = time.monotonic()
    notify.status("maintenance window: snapshot")
    assert time.monotonic() - began >= 0.4
    assert (tmp_path / "log").read_text() == "maintenance window: snapshot\n"


def test_release_file_ends_the_pause(monkeypatch, tmp_path):
    clear(monkeypatch)
    release = tmp_path / "release"
    release.touch()
    monkeypatch.setenv("TORRUST_MAINT_FAULT_PAUSE", "pruning")
    monkeypatch.setenv("TORRUST_MAINT_FAULT_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("TORRUST_MAINT_FAULT_RELEASE", str(release))
    monkeypatch.setenv("TORRUST_MAINT_FAULT_SECONDS", "30")
    began = time.monotonic()
    notify.status("pruning")
    assert time.monotonic() - began < 1
    assert (tmp_path / "log").read_text() == "pruning\n"
