"""cli.main: exit codes and `torrust-maint: error:` lines, never a traceback."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

from torrust_maint import cli
from torrust_maint.catalog import MANIFEST, StagedSet, list_sets
from torrust_maint.compress import open_decompressed, sha256_of
from torrust_maint.config import CONFIG_ENV_VAR
from torrust_maint.docker import Docker

PREFIX = "torrust-maint: error: "


def write_config(directory: Path, compose_dir: Path, backup_dir: Path, extra: str = "") -> Path:
    path = directory / "torrust-maint.toml"
    path.write_text(f'[deployment]\ncompose_dir = "{compose_dir}"\n\n'
                    f'[state]\ndirectory = "{directory / "state"}"\n\n'
                    f'[backup]\ndirectory = "{backup_dir}"\n{extra}')
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line[len(PREFIX):] for line in err.splitlines() if line.startswith(PREFIX)]


@pytest.fixture(autouse=True)
def _no_config_from_the_environment(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)


# -- configuration errors --------------------------------------------------------------------

def test_bad_config_exits_2_with_one_error_line_per_problem(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[deployment]\ncompose_dir = "relative"\nstop_timeout = "10"\n\n'
                    '[backup]\ndirectory = "/var/backups/torrust"\ncompression = "xz"\n')
    code, out, err = run(capsys, "--config", str(path), "list")
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 3 == len(err.splitlines())
    assert lines[0] == f"{path}: [deployment] compose_dir: must be an absolute path, not 'relative'"
    assert lines[1].startswith(f"{path}: [deployment] stop_timeout: must be an integer")
    assert lines[2].startswith(f"{path}: [backup] compression: must be one of zstd, gzip")


def test_invalid_toml_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[deployment\n")
    code, _, err = run(capsys, "--config", str(path), "check")
    assert code == 2
    assert error_lines(err)[0].startswith(f"{path}: invalid TOML: ")
    assert "Traceback" not in err


def test_config_from_the_environment_variable(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "from-env.toml"
    monkeypatch.setenv(CONFIG_ENV_VAR, str(missing))
    code, _, err = run(capsys, "list")
    assert code == 2
    assert error_lines(err) == [f"{missing}: configuration file not found"]


def test_empty_config_option_exits_2(capsys):
    code, _, err = run(capsys, "--config", "", "list")
    assert code == 2
    assert error_lines(err) == ["--config must not be empty"]


def test_usage_error_is_argparse_s_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main([])
    assert caught.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_internal_error_is_one_line_without_traceback(tmp_path, capsys, monkeypatch):
    def explode(args):
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(cli, "dispatch", explode)
    code, _, err = run(capsys, "list")
    assert code == 1
    assert err == ("torrust-maint: internal error: RuntimeError: something unexpected "
                   "(run with --debug for a traceback)\n")
    code, _, err = run(capsys, "--debug", "list")
    assert code == 1
    assert "Traceback (most recent call last)" in err and "RuntimeError" in err


# -- list and prune --------------------------------------------------------------------------

def make_set(directory: Path, set_id: str, created_at: str,
             verification: str | None = "passed") -> None:
    staged = StagedSet(directory, set_id)
    (staged.path / "database.sqlite3.zst").write_bytes(b"x" * 10)
    manifest = {"format": 1, "tool": "torrust-maint", "id": set_id,
                "created_at": created_at, "complete": True,
                "database": {"driver": "sqlite3"}, "downtime_seconds": 1.25,
                "artifacts": [{"name": "database", "path": "database.sqlite3.zst",
                               "size": 10}]}
    if verification:
        manifest["verification"] = {"outcome": verification}
    staged.commit(manifest)


def test_list_without_sets(tmp_path, capsys):
    config = write_config(tmp_path, tmp_path, tmp_path / "backups")
    code, out, err = run(capsys, "--config", str(config), "list")
    assert (code, err) == (0, "")
    assert out == f"no backup sets in {tmp_path / 'backups'}\n"


def test_list_as_table_and_json(tmp_path, capsys):
    backups = tmp_path / "backups"
    backups.mkdir()
    make_set(backups, "20260301T030000Z", "2026-03-01T03:00:00.000000Z")
    (backups / ".tmp-torrust-maint-20260302T030000Z").mkdir()
    config = write_config(tmp_path, tmp_path, backups)

    code, out, _ = run(capsys, "--config", str(config), "list")
    assert code == 0
    header, complete, unfinished = out.splitlines()
    assert header.split() == ["ID", "CREATED", "(UTC)", "DRIVER", "SIZE", "DOWNTIME", "STATE"]
    assert complete.split() == ["20260301T030000Z", "2026-03-01", "03:00:00", "sqlite3", "10",
                                "1.250s", "complete,", "passed"]
    assert unfinished.startswith("20260302T030000Z") and "incomplete: unfinished" in unfinished

    code, out, _ = run(capsys, "--config", str(config), "list", "--json")
    data = json.loads(out)
    assert [(s["id"], s["complete"]) for s in data] == [("20260301T030000Z", True),
                                                         ("20260302T030000Z", False)]
    assert data[0]["artifacts"][0]["path"] == str(backups / "20260301T030000Z"
                                                  / "database.sqlite3.zst")


def test_prune_dry_run_then_prune(tmp_path, capsys):
    backups = tmp_path / "backups"
    backups.mkdir()
    for day in (1, 2, 3):
        make_set(backups, f"2026030{day}T030000Z", f"2026-03-0{day}T03:00:00Z")
    config = write_config(tmp_path, tmp_path, backups,
                          "\n[retention]\nkeep_last = 2\nkeep_daily = 0\nkeep_weekly = 0\n"
                          "keep_monthly = 0\n")

    code, out, _ = run(capsys, "--config", str(config), "prune", "--dry-run")
    assert code == 0
    assert "would delete 20260301T030000Z" in out.splitlines()
    assert len(list_sets(backups)) == 3

    code, out, _ = run(capsys, "--config", str(config), "prune")
    assert code == 0
    assert out.splitlines() == ["pruned 20260301T030000Z", "pruned 1 set(s)"]
    assert [s.id for s in list_sets(backups)] == ["20260302T030000Z", "20260303T030000Z"]


def test_retention_counts_only_verified_sets_and_keeps_newer_unverified(tmp_path, capsys):
    backups = tmp_path / "backups"
    backups.mkdir()
    make_set(backups, "20260301T030000Z", "2026-03-01T03:00:00Z")
    make_set(backups, "20260302T030000Z", "2026-03-02T03:00:00Z", verification="failed")
    make_set(backups, "20260303T030000Z", "2026-03-03T03:00:00Z")
    make_set(backups, "20260304T030000Z", "2026-03-04T03:00:00Z", verification=None)
    config = write_config(tmp_path, tmp_path, backups,
                          "\n[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\n"
                          "keep_monthly = 0\n")

    code, out, _ = run(capsys, "--config", str(config), "prune")

    assert code == 0
    # 03 is the newest verified set: kept; 04 is not verified yet but newer: kept;
    # 02 failed and 01 is a verified set beyond keep_last: deleted.
    assert [s.id for s in list_sets(backups)] == ["20260303T030000Z", "20260304T030000Z"]


# -- check and backup against a fake docker ------------------------------------------------

def test_check_reports_the_deployment(tmp_path, capsys, stack, fake_cli_docker):
    stack.add_tracker()
    config = write_config(tmp_path, stack.compose_dir, tmp_path / "backups")
    code, out, err = run(capsys, "--config", str(config), "check")
    assert code == 0, err
    assert f"database: sqlite3 {stack.db_path}" in out
    assert "tracker container: compose-tracker-1 (running)" in out
    assert out.splitlines()[-1] == "check: ok"
    assert fake_cli_docker.calls_to("stop") == []


def test_check_lists_every_problem(tmp_path, capsys, stack, fake_cli_docker):
    config = write_config(tmp_path, stack.compose_dir, tmp_path / "backups")
    code, _, err = run(capsys, "--config", str(config), "check")
    assert code == 2
    assert "no container of service 'tracker'" in error_lines(err)[0]
    assert "Traceback" not in err


def test_backup_when_the_tracker_is_stopped_exits_3(tmp_path, capsys, stack, fake_cli_docker):
    stack.add_tracker(running=False)
    config = write_config(tmp_path, stack.compose_dir, tmp_path / "backups")
    code, _, err = run(capsys, "--config", str(config), "backup")
    assert code == 3
    assert "the tracker is not running: compose-tracker-1 (exited)" in error_lines(err)[0]
    # the run lock lives in the backup directory; nothing else was written
    assert [p.name for p in (tmp_path / "backups").iterdir()] == [".torrust-maint.lock"]
    assert fake_cli_docker.calls_to("stop") == []


def test_backup_dry_run_changes_nothing(tmp_path, capsys, stack, fake_cli_docker):
    cid = stack.add_tracker()
    config = write_config(tmp_path, stack.compose_dir, tmp_path / "backups")
    code, out, _ = run(capsys, "--config", str(config), "backup", "--dry-run")
    assert code == 0
    assert f"would run: docker stop -t 10 {cid}" in out.splitlines()
    assert f"would run: docker start {cid}" in out.splitlines()
    assert fake_cli_docker.calls_to("stop") == fake_cli_docker.calls_to("start") == []
    assert not (tmp_path / "backups").exists()


def test_backup_end_to_end(tmp_path, capsys, stack, fake_cli_docker):
    cid = stack.add_tracker()
    backups = tmp_path / "backups"
    config = write_config(tmp_path, stack.compose_dir, backups, 'compression = "gzip"\n')

    code, out, err = run(capsys, "--config", str(config), "backup")

    assert code == 0, err
    verbs = [argv[1] for argv in fake_cli_docker.calls if argv[1] in ("stop", "start")]
    assert verbs == ["stop", "start"]
    assert fake_cli_docker.running(cid)
    (backup_set,) = list_sets(backups)
    assert backup_set.complete
    assert out.startswith(f"backup {backup_set.id} committed: {backup_set.path}\n")
    manifest = json.loads((backup_set.path / MANIFEST).read_text())
    assert manifest["database"]["tables"] == {"torrents": 3}
    assert manifest["database"]["host_path"] == str(stack.db_path)
    assert manifest["downtime_seconds"] > 0
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    assert set(artifacts) == {"database", "config"}
    for artifact in artifacts.values():
        assert artifact["sha256"] == sha256_of(backup_set.path / artifact["path"])

    restored = tmp_path / "restored.db"
    with open_decompressed(backup_set.path / artifacts["database"]["path"], "gzip") as stream:
        restored.write_bytes(stream.read())
    connection = sqlite3.connect(restored)
    assert connection.execute("SELECT count(*) FROM torrents").fetchone() == (3,)
    connection.close()

    with open_decompressed(backup_set.path / artifacts["config"]["path"], "gzip") as stream:
        names = tarfile.open(fileobj=io.BytesIO(stream.read())).getnames()
    assert "docker-compose.yml" in names and "storage/tracker/etc/tracker.toml" in names
    assert any(".env does not exist" in w for w in manifest["warnings"])
    assert sorted(p.name for p in backups.iterdir()) == [".torrust-maint.lock", backup_set.id]


# -- verify and restore arguments -------------------------------------------------------------

def test_verify_all_with_an_id_is_a_usage_error(tmp_path, capsys):
    config = write_config(tmp_path, tmp_path, tmp_path / "backups")
    code, _, err = run(capsys, "--config", str(config), "verify", "--all", "20260301T030000Z")
    assert code == 2
    assert error_lines(err) == ["verify: --all takes no ID and no --scheduled"]


def test_verify_unknown_set_names_it(tmp_path, capsys):
    backups = tmp_path / "backups"
    backups.mkdir()
    make_set(backups, "20260301T030000Z", "2026-03-01T03:00:00Z")
    config = write_config(tmp_path, tmp_path, backups)
    code, _, err = run(capsys, "--config", str(config), "verify", "20990101T000000Z")
    assert code == 2
    assert error_lines(err) == ["no backup set '20990101T000000Z' (see `torrust-maint list`)"]


def test_restore_refuses_a_set_whose_checksums_fail(tmp_path, capsys):
    backups = tmp_path / "backups"
    backups.mkdir()
    make_set(backups, "20260301T030000Z", "2026-03-01T03:00:00Z")  # no sha256 recorded
    config = write_config(tmp_path, tmp_path, backups)
    code, _, err = run(capsys, "--config", str(config), "restore", "latest", "--yes")
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith("refusing to restore a damaged set: ")
    assert "does not match the manifest's None" in line


def test_backup_during_another_runs_window_exits_5_not_3(tmp_path, capsys, stack,
                                                         fake_cli_docker):
    """Defect: a run started while another run's window had the tracker stopped judged the
    tracker first and exited 3 ("tracker not running"); the lock comes first."""
    from torrust_maint.lock import run_lock

    stack.add_tracker(running=False)  # stopped by the other run's window
    backups = tmp_path / "backups"
    backups.mkdir()
    config = write_config(tmp_path, stack.compose_dir, backups, "[retry]\nattempts = 1\n")
    with run_lock(backups):
        code, _, err = run(capsys, "--config", str(config), "backup")
    assert code == 5
    assert "holds" in error_lines(err)[0]
    assert fake_cli_docker.calls_to("stop") == []


def test_backup_recovers_a_stale_marker_of_a_recreated_tracker(tmp_path, capsys, stack,
                                                               fake_cli_docker):
    """Defect: a marker naming ids that a recreate replaced made every later run wait
    start_timeout and exit 4 although the tracker was healthy."""
    from torrust_maint import recovery

    old_id = stack.add_tracker()
    backups = tmp_path / "backups"
    backups.mkdir()
    fake_cli_docker.set_running(old_id, False)
    recovery.write_marker(backups, Docker(runner=fake_cli_docker).inspect([old_id]), 0)
    fake_cli_docker.recreate(old_id, running=True)
    config = write_config(tmp_path, stack.compose_dir, backups)
    code, out, err = run(capsys, "--config", str(config), "backup")
    assert code == 0, err
    assert recovery.WindowMarker.read(backups) is None
    assert "committed" in out


def test_check_reports_an_interrupted_windows_marker(tmp_path, capsys, stack, fake_cli_docker):
    from torrust_maint import recovery

    cid = stack.add_tracker()
    backups = tmp_path / "backups"
    backups.mkdir()
    recovery.write_marker(backups, Docker(runner=fake_cli_docker).inspect([cid]), 10)
    config = write_config(tmp_path, stack.compose_dir, backups)
    code, _, err = run(capsys, "--config", str(config), "check")
    assert code == 2
    assert any("interrupted window's marker" in line and "torrust-maint recover" in line
               for line in error_lines(err))


def test_a_full_disk_while_writing_the_set_is_one_clear_error(tmp_path, capsys, stack,
                                                             fake_cli_docker, monkeypatch):
    """Defect: file system errors while writing a set (ENOSPC, a removed backup directory)
    ended as "internal error: FileNotFoundError"."""
    import errno

    from torrust_maint.actions import backup

    cid = stack.add_tracker()
    backups = tmp_path / "backups"

    def no_space(snapshot, stem, config, target_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(target_dir / stem))

    monkeypatch.setattr(backup, "export_database", no_space)
    config = write_config(tmp_path, stack.compose_dir, backups)
    code, _, err = run(capsys, "--config", str(config), "backup")
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith(f"[backup] directory: writing the set in {backups} failed: "
                           "No space left on device")
    assert "internal error" not in err and "Traceback" not in err
    assert fake_cli_docker.running(cid)
    assert [p.name for p in backups.iterdir()] == [".torrust-maint.lock"]  # nothing half-done


def test_a_tracker_started_by_someone_else_before_a_file_copy_gives_no_set(
        tmp_path, capsys, stack, fake_cli_docker, monkeypatch):
    """A `docker compose up --force-recreate` inside the window, before a rollback-journal
    copy: the copy may be torn by the new tracker's writes, so no set is written."""
    from torrust_maint.engines import sqlite

    cid = stack.add_tracker()
    real_open = sqlite.SqlitePrepared.open
    recreated: list[str] = []

    def recreate_then_copy(self):
        recreated.append(fake_cli_docker.recreate(cid, running=True))
        return real_open(self)

    monkeypatch.setattr(sqlite.SqlitePrepared, "open", recreate_then_copy)
    backups = tmp_path / "backups"
    config = write_config(tmp_path, stack.compose_dir, backups)
    code, _, err = run(capsys, "--config", str(config), "backup")
    assert code == 1, err
    [line] = error_lines(err)
    assert line.startswith("the tracker was started by someone else during the window "
                           "(compose-tracker-1 started ")
    assert "no set was written" in line
    assert fake_cli_docker.running(recreated[0])
    assert [p.name for p in backups.iterdir()] == [".torrust-maint.lock"]


def test_check_warns_of_notify_urls_in_a_world_readable_configuration(tmp_path, capsys, stack,
                                                                       fake_cli_docker):
    """The URLs hold secrets: inline in a 0644 file, check says where to move them (and
    never prints them)."""
    stack.add_tracker()
    url = "json://user:S3cr3t@127.0.0.1:9/hook"
    config = write_config(tmp_path, stack.compose_dir, tmp_path / "backups",
                          f'[notify]\nurls = ["{url}"]\n')
    warning = (f"warning: [notify] urls: {config} is readable by every user and the URLs "
               "hold secrets: move them to a urls_file (mode 0600), or chmod o-r the file")
    for mode, warned in ((0o644, True), (0o640, False)):
        config.chmod(mode)
        code, out, err = run(capsys, "--config", str(config), "check")
        assert code == 0, err
        assert (warning in out.splitlines()) is warned
        assert "notify: 1 URL(s) (json), on failure, recovery: ok" in out
        assert "S3cr3t" not in out + err and "127.0.0.1" not in out + err
