"""SIGKILL and SIGTERM at every step of `torrust-maint restore ID --yes`, for each engine.

The restore is paused at a step by the fault hook in notify.status (each step announces
itself there) and the signal goes to the restore process, as an operator's kill or the OOM
killer would send it. Expected, whatever the step:

- the tracker runs again within a bounded time: after SIGKILL inside the window the guardian
  rolls an unfinished file swap back and starts it (stop_timeout + a few seconds); SIGTERM is
  held inside the window and acted on once the tracker runs (exit 1, "interrupted by SIGTERM");
- the live database is exactly the state from before the restore or exactly the restored
  set's, never a mix: the stand-in's startup seq after the restart is the set's N (restored)
  or the last transaction before the stop (from before), and the live tables are
  expected_state(N) of their own N;
- the state from before is never lost: after `restore --finish` (exit 0) it is live, or a
  complete safety set that passed verification holds it (at least every transaction committed
  before the restore began; for SQLite its content is checked row by row);
- nothing is left behind: no incoming or aside files beside the SQLite database, no shadow or
  aside tables in MySQL, no restore record; `status` exits 0; the next backup works.

"sqlite-wal-killed" is the SQLite stack whose tracker ignores SIGTERM: `docker stop` kills it,
so a -wal holding committed transactions is there during the window and is moved aside (and
back) with the database.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import backup_state, decompress, list_sets, run_cli
from tests.integration.test_restore import mysql_tables
from tests.integration.test_verify_restore import live_state
from tests.reliability.scenario import GUARDIAN_GRACE, SIGNALS, Scenario, expected_state
from tests.reliability.support import (
    TrackerWatch,
    throwaway_containers,
    wait_for_writes,
)
from tests.testbed.stack import CONTAINER_DB_PATH

DB_NAME = Path(CONTAINER_DB_PATH).name
RECORD = ".torrust-maint-restore.json"
INCOMING_SUFFIX = ".torrust-maint-restore"
ASIDE_INFIX = ".torrust-maint-pre-restore-"
MYSQL_PREFIXES = ("torrust_maint_new_", "torrust_maint_old_")

# The restore's steps, in order, and the status text (a substring) each announces.
STEPS = {
    "prepare": "preparing set ",
    "staged": None,  # the set's database staged, before its check (STAGED: per engine)
    "stop": "maintenance window: stopping tracker",
    "window": "maintenance window: snapshot",  # window open, before the swap
    "swapping": "restore: swapping the restored state in",
    "wal-aside": f"restore: moved {DB_NAME}-wal aside",  # SQLite, only if a -wal exists
    "db-aside": f"restore: moved {DB_NAME} aside",  # SQLite: between the renames
    "swapped": "restore: swapped in, recording it",
    "start": "maintenance window: starting tracker",
    "safety-export": "exporting the state from before the restore",
    "export": "exporting the database",
    "committed": "committed, verifying it",
    "verify": "verifying 2",  # "verifying <set id>" (a UTC time), not "..., verifying it"
    "remove-aside": "restore: removing the state set aside",
}
# While staging, after the set's database is written (SQLite) or imported (MySQL).
STAGED = {"sqlite3": "restore: database staged beside the live one, checking it",
          "mysql": "restore: shadow tables imported, checking them"}
BEFORE_WINDOW = ("prepare", "staged", "stop")
IN_WINDOW = ("window", "swapping", "wal-aside", "db-aside", "swapped", "start")
AFTER_WINDOW = ("safety-export", "export", "committed", "verify", "remove-aside")

# variant: (Scenario engine, Scenario settings)
VARIANTS = {
    "sqlite-wal": ("sqlite-wal", {}),
    "sqlite-wal-killed": ("sqlite-wal", {"ignore_sigterm": True, "stop_timeout": 2}),
    "mysql": ("mysql", {}),
}
KILLED_STEPS = ("wal-aside", "db-aside", "swapped")  # with a -wal set aside and back

FAST = {
    ("sqlite-wal", "db-aside", signal.SIGKILL),  # between the SQLite renames
    ("mysql", "swapped", signal.SIGKILL),  # after the RENAME TABLE, before the start
    ("sqlite-wal", "swapping", signal.SIGTERM),  # held in the window, acted on after it
    ("mysql", "export", signal.SIGKILL),  # during the safety export
}


def steps_of(variant: str) -> list[str]:
    if variant == "sqlite-wal-killed":
        return list(KILLED_STEPS)
    # A tracker stopped cleanly leaves no -wal (SQLite removes it on the last close).
    return [s for s in STEPS if s != "wal-aside" and not (variant == "mysql" and s == "db-aside")]


def matrix():
    for variant in VARIANTS:
        for step in steps_of(variant):
            for signum in (signal.SIGKILL, signal.SIGTERM):
                marks = () if (variant, step, signum) in FAST else (pytest.mark.slow,)
                yield pytest.param(variant, step, signum, marks=marks,
                                   id=f"{variant}-{step}-{SIGNALS[signum]}")


# -- what the tracker and the deployment show --------------------------------------------------

def stopped_seqs(tracker) -> list[int]:
    """The seq each clean stop of the stand-in had committed last, in order."""
    return [int(n) for n in re.findall(r"standin: stopped seq=(\d+)", tracker.logs())]


def leftover_files(compose_dir: Path) -> list[str]:
    """Incoming and aside files of a restore anywhere in the deployment."""
    return sorted(str(p) for p in compose_dir.rglob("*")
                  if p.name.endswith(INCOMING_SUFFIX) or ASIDE_INFIX in p.name)


def restore_tables(tracker) -> list[str]:
    """Shadow (new) and aside (old) tables of a restore in the live MySQL database."""
    return [table for table in mysql_tables(tracker) if table.startswith(MYSQL_PREFIXES)]


def safety_sets(listing: list[dict]) -> list[dict]:
    """Complete sets that hold the state from before a restore (manifest `pre_restore`)."""
    found = []
    for entry in listing:
        if not entry["complete"]:
            continue
        manifest = json.loads((Path(entry["path"]) / "manifest.json").read_text())
        if isinstance(manifest.get("pre_restore"), dict):
            found.append({**entry, "pre_restore": manifest["pre_restore"]})
    return found


# -- the matrix --------------------------------------------------------------------------------

@pytest.mark.parametrize("variant, step, signum", list(matrix()))
def test_signal_at_restore_step(variant, step, signum, make_stack, tmp_path, record):
    engine, settings = VARIANTS[variant]
    name = SIGNALS[signum]
    scenario = Scenario(make_stack, engine, record, **settings)
    tracker = scenario.tracker
    record.update(fault=f"{name} during restore ({step})", phase=f"restore {step}", signal=name,
                  variant=variant)
    scenario.prepare()
    [target] = list_sets(scenario.config)
    n_set = target["database"]["tables"]["torrents"]
    wait_for_writes(tracker, n_set + 300, timeout=60)
    n_pre, state = live_state(tracker)  # every transaction committed before the restore
    assert n_pre >= n_set + 300 and state == expected_state(n_pre)
    starts_before = len(tracker.startup_seqs())
    stops_before = len(stopped_seqs(tracker))

    with TrackerWatch(scenario.name) as watch:
        text = STEPS[step] or STAGED[tracker.driver]
        run = scenario.run(text, tmp_path / "run", args=("restore", target["id"], "--yes"))
        try:
            paused = run.wait_for_pause(timeout=180)
            moment = run.send(signum)
            run.release()
            code = run.wait(timeout=240)
            running_at_exit = tracker.running()
            scenario.settle()
            scenario.measure(watch, moment)
        finally:
            run.kill_if_running()
    run.finish_reading(timeout=60)
    scenario.outcome(run, code)
    record.update(paused_at=paused, tracker_running_at_exit=running_at_exit)
    assert text in paused

    # The process's end and the tracker running again.
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL, run.output()
        if step in IN_WINDOW:
            record["recovered_by"] = "guardian"
            bound = scenario.stop_timeout + GUARDIAN_GRACE
            back = record["tracker_back_s"]
            assert back is not None and back <= bound, \
                f"the guardian should start the tracker within {bound} s; it took {back}\n" \
                f"{run.output()}"
            assert "recovered" in run.stderr, f"the guardian said nothing\n{run.output()}"
    else:
        scenario.assert_one_clear_line(run, code, (1,))
        assert run.error_lines() == [f"torrust-maint: error: interrupted by {name}"]
        assert running_at_exit, "the tracker must run again before the process exits"
        assert throwaway_containers(scenario.directory) == [], "left its throwaway container"
        record["recovered_by"] = "the run itself"
    if step not in IN_WINDOW:
        assert record["tracker_back_s"] == 0.0, "the tracker was not running at the signal"

    # Exactly one state live: the one from before, or the set's.
    seqs = tracker.startup_seqs()[starts_before:]
    stops = stopped_seqs(tracker)
    window_stop = stops[stops_before] if len(stops) > stops_before else None  # clean stop
    record.update(startups_after=seqs, window_stop_seq=window_stop, n_set=n_set, n_pre=n_pre)
    if step in BEFORE_WINDOW:
        assert seqs == [], f"the tracker was restarted although no window had begun: {seqs}"
    else:
        assert len(seqs) == 1, f"one start after the window expected, got seqs {seqs}"
    restored_live = bool(seqs) and seqs[0] == n_set
    record["live_after"] = "restored set" if restored_live else "state from before"
    if seqs and not restored_live:
        assert seqs[0] >= n_pre, \
            f"started on seq {seqs[0]}: neither the set's {n_set} nor the state from before " \
            f"(>= {n_pre})"
        if window_stop is not None:
            assert seqs[0] == window_stop, "the state from before lost or gained transactions"
    if step in AFTER_WINDOW:
        assert restored_live, "the swap was done before this step: the set must be live"
    n_live, state = live_state(tracker)
    assert n_live >= (n_set if restored_live else n_pre)
    assert state == expected_state(n_live), "the live database is a mix of two states"

    # restore --finish secures the state from before (or cleans up a restore that did not swap).
    finished = run_cli(scenario.config, "restore", "--finish", timeout=600)
    record["finish_exit"] = finished.returncode
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "Traceback" not in finished.stderr, finished.stderr
    assert len(tracker.startup_seqs()) == starts_before + len(seqs), \
        "restore --finish restarted the tracker"
    left = {"record": (scenario.directory / RECORD).exists(),
            "files": leftover_files(tracker.compose_dir),
            "tables": restore_tables(tracker) if tracker.driver == "mysql" else []}
    record["left_after_finish"] = left
    listing = list_sets(scenario.config)
    saved = [s for s in safety_sets(listing)
             if (s["verification"] or {}).get("outcome") == "passed"
             and s["pre_restore"]["restore_of"] == target["id"]
             and s["database"]["tables"]["torrents"] >= n_pre]
    record["safety_sets"] = [s["id"] for s in saved]
    if restored_live:
        assert saved, (f"the state from before the restore (>= {n_pre} transactions) is in no "
                       f"verified safety set; left behind: {left}\n--- finish\n"
                       f"{finished.stdout}{finished.stderr}--- sets: "
                       f"{[(s['id'], s['kind'], s['complete']) for s in listing]}\n"
                       f"{run.output()}")
        newest = saved[-1]
        n_safe = newest["database"]["tables"]["torrents"]
        if window_stop is not None:
            assert n_safe == window_stop, "the safety set is not the state at the stop"
        if tracker.driver == "sqlite3":
            database = next(a for a in newest["artifacts"] if a["name"] == "database")
            n, content = backup_state(decompress(database, tmp_path / "safety.sqlite3"))
            assert n == n_safe and content == expected_state(n)

    # Nothing left behind.
    assert not left["record"], "the restore record is still there"
    assert left["files"] == [], "incoming or aside files left beside the database"
    assert left["tables"] == [], "restore tables left in the live database"
    status = run_cli(scenario.config, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    scenario.assert_older_sets_intact()
    # A killed run's staging directory may stay (listed as unfinished) until the next backup;
    # a run that handled its SIGTERM leaves none (checked last: the next backup comes first).
    unfinished = [e for e in scenario.assert_no_partial_set(allow_unfinished=True)
                  if not e["complete"]]
    record["unfinished_after_finish"] = [e["path"] for e in unfinished]
    scenario.assert_later_backup_works(tmp_path)
    if signum != signal.SIGKILL:
        assert unfinished == [], f"a partial set is listed after {name} and --finish: " \
            f"{[e['path'] for e in unfinished]}"
