"""Markdown tables for docs/reliability.md from a results file of the reliability suite.

    /usr/bin/python3 -m tests.reliability.report [build/reliability-results.json ...]

Several files (e.g. the main run and a separate dockerd-restart run) are merged; for a test
present in more than one, the last file wins.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tests.reliability.conftest import results_path


def seconds(value) -> str:
    return "-" if value is None else f"{value:.2f} s"


def short(text: str) -> str:
    """A message without the test deployment's long directory names."""
    text = re.sub(r"/tmp/torrust-maint-it/[^/ ]+/opt/torrust/", "/opt/torrust/", text)
    return re.sub(r"tm-it-[a-z0-9-]+?-[0-9a-f]{6}-\d+", "tracker", text)


def outcome(entry: dict) -> str:
    code = entry.get("exit_code")
    line = entry.get("error_line")
    text = "killed (-9)" if code == -9 else f"exit {code}" if code is not None else "-"
    if line:
        line = short(line.replace("torrust-maint: error: ", "")).replace("|", "\\|")
        text += ": `" + (line if len(line) <= 140 else line[:140] + "...") + "`"
    return text


def render(data: dict) -> str:
    out = []
    machine = data.get("machine", {})
    out.append(f"Machine: {machine.get('cores')} cores, {machine.get('filesystem')}, Docker "
               f"{machine.get('docker')}, kernel {machine.get('kernel')}, Python "
               f"{machine.get('python')}; run on {machine.get('date')}.\n")
    if data.get("soak"):
        out.append("| engine | windows | downtime p50 | p95 | max | mean | s per window |")
        out.append("|---|---|---|---|---|---|---|")
        for engine, f in data["soak"].items():
            out.append(f"| {engine} | {f['windows']} | {f['p50']:.3f} s | {f['p95']:.3f} s | "
                       f"{f['max']:.3f} s | {f['mean']:.3f} s | {f['seconds_per_window']} |")
        out.append("")
    if data.get("faults"):
        out.append("| case | engine | outcome | tracker running again after | healthy after "
                   "| recovered by | test |")
        out.append("|---|---|---|---|---|---|---|")
        for e in data["faults"]:
            test = e.get("outcome", "?")
            if test == "failed":
                test = "**FAILED**: " + short(e.get("failure") or "").replace("|", "\\|")[:160]
            out.append(f"| {e.get('fault', e['test'])} | {e.get('engine', '-')} | {outcome(e)} "
                       f"| {seconds(e.get('tracker_back_s'))} "
                       f"| {seconds(e.get('tracker_healthy_s'))} "
                       f"| {e.get('recovered_by', '-')} | {test} |")
    return "\n".join(out) + "\n"


def merge(paths: list[Path]) -> dict:
    merged: dict = {"soak": {}, "faults": []}
    seen: dict[str, int] = {}
    for path in paths:
        data = json.loads(path.read_text())
        merged["machine"] = data.get("machine", merged.get("machine"))
        merged["soak"].update(data.get("soak", {}))
        for entry in data.get("faults", []):
            if entry["test"] in seen:
                merged["faults"][seen[entry["test"]]] = entry
            else:
                seen[entry["test"]] = len(merged["faults"])
                merged["faults"].append(entry)
    return merged


if __name__ == "__main__":
    files = [Path(arg) for arg in sys.argv[1:]] or [results_path()]
    sys.stdout.write(render(merge(files)))
