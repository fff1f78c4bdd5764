"""Settings written into a TOML configuration by editing its lines, keeping every other byte.

Within its section, a key's line (``key = ...``, an array spread over lines included) or its
commented-out line (``#key = ...``) becomes ``key = <value>``; a key on neither is inserted
after the section header, and a missing section is appended. The caller checks the result
with tomllib (``edited_data``): what this cannot edit exactly is refused there.
"""

from __future__ import annotations

import json
import re
from typing import Any

HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")
ANY_HEADER = re.compile(r"^\s*\[")


def toml_value(value: Any) -> str:
    """A string, integer or list of strings in TOML (a JSON string is a TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return "[" + ", ".join(toml_value(item) for item in value) + "]"


def _section_span(lines: list[str], section: str) -> tuple[int, int] | None:
    """(header index, end index) of the section's lines; None if it has no header."""
    start = None
    for index, line in enumerate(lines):
        if start is None:
            found = HEADER.match(line)
            if found and found.group(1) == section:
                start = index
        elif ANY_HEADER.match(line):
            return start, index
    return None if start is None else (start, len(lines))


def _value_end(lines: list[str], index: int) -> int:
    """The index after a key's value: an array left open on its line ends where its
    brackets balance (brackets inside strings are not expected in these settings)."""
    depth = 0
    for end in range(index, len(lines)):
        text = lines[end] if end > index else lines[end].partition("=")[2]
        depth += text.count("[") - text.count("]")
        if depth <= 0:
            return end + 1
    return len(lines)


def _key_line(lines: list[str], start: int, end: int, key: str) -> tuple[int, int] | None:
    """The lines of the key's setting within a section, else of its commented-out line."""
    active = re.compile(rf"^\s*{re.escape(key)}\s*=")
    commented = re.compile(rf"^\s*#\s*{re.escape(key)}\s*=")
    for index in range(start + 1, end):
        if active.match(lines[index]):
            return index, _value_end(lines, index)
    for index in range(start + 1, end):
        if commented.match(lines[index]):
            return index, index + 1
    return None


def set_key(text: str, section: str, key: str, value: Any) -> str:
    """`text` with `key = value` in [section] (see the module docstring)."""
    lines = text.splitlines(keepends=True)
    setting = f"{key} = {toml_value(value)}\n"
    span = _section_span(lines, section)
    if span is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        separator = ["\n"] if lines else []
        return "".join(lines + separator + [f"[{section}]\n", setting])
    found = _key_line(lines, span[0], span[1], key)
    if found is None:
        lines.insert(span[0] + 1, setting)
    else:
        lines[found[0]:found[1]] = [setting]
    return "".join(lines)


def set_keys(text: str, settings: dict[str, dict[str, Any]]) -> str:
    """`text` with every section's keys set."""
    for section, values in settings.items():
        for key, value in values.items():
            text = set_key(text, section, key, value)
    return text


def expected(data: dict[str, Any], settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What tomllib should read from the edited text: `data` with the settings applied."""
    result = {name: dict(value) if isinstance(value, dict) else value
              for name, value in data.items()}
    for section, values in settings.items():
        result.setdefault(section, {}).update(values)
    return result
