"""The export runs at a lower CPU priority than the tracker it serves beside."""

from __future__ import annotations

import os
import threading

from torrust_maint.actions import backup


def in_a_thread(action) -> list[int]:
    """Run action in a new thread (Linux sets nice per thread): the nice values it saw."""
    seen: list[int] = []

    def run() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, 0)  # from the default, whatever ran before (root)
        seen.append(os.getpriority(os.PRIO_PROCESS, 0))
        action()
        seen.append(os.getpriority(os.PRIO_PROCESS, 0))
        child = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
        child.start()
        child.join()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen


def test_the_export_yields_the_cpu_and_its_worker_threads_inherit_it():
    calling_thread = os.getpriority(os.PRIO_PROCESS, 0)
    before, after, worker = in_a_thread(backup.yield_cpu_to_the_tracker)
    assert before == 0
    assert after == worker == backup.EXPORT_NICE
    assert os.getpriority(os.PRIO_PROCESS, 0) == calling_thread  # that thread only


def test_a_lower_priority_already_set_is_kept():
    def nicer_first() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, 15)
        backup.yield_cpu_to_the_tracker()

    assert in_a_thread(nicer_first)[1:] == [15, 15]
