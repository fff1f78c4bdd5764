"""Plain shell variable assignments (the legacy ``backup.conf``) read without running them.

``KEY=value``, ``KEY="value"``, ``KEY='value'``, an ``export`` before them, comments and blank
lines are understood; anything the shell would expand or run (``$VAR``, ``$(...)``, backquotes,
commands, globs) is a problem naming the line, never executed. Messages never quote a value:
the file holds DB_PASSWORD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
PLAIN = re.compile(r"^[A-Za-z0-9_./:@%+,=-]*$")  # what the shell leaves as it is, unquoted
DOUBLE_QUOTE_ESCAPES = "$`\"\\"  # the characters a backslash escapes inside "..."
HOW = "write a plain value: KEY=value, KEY=\"value\" or KEY='value'"


@dataclass(frozen=True)
class Assignment:
    """One variable's value and the line that set it (the last one, as the shell does)."""

    key: str
    value: str
    line: int


def _expansion(text: str) -> str:
    """What shell syntax `text` holds, in words."""
    if "$(" in text or "`" in text:
        return "a command substitution"
    if "$" in text:
        return "a variable expansion"
    return "shell syntax (spaces, quotes, globs or operators)"


def _tail_problem(tail: str) -> str | None:
    """After a value only spaces and a comment may follow (`KEY=v cmd` would run cmd)."""
    if not tail or tail.isspace():
        return None
    if tail[0].isspace() and tail.lstrip().startswith("#"):
        return None
    return "text after the value (the shell would run it as a command)"


def _single_quoted(raw: str) -> tuple[str | None, str | None]:
    end = raw.find("'", 1)
    if end == -1:
        return None, "an unterminated single quote"
    return raw[1:end], _tail_problem(raw[end + 1:])


def _double_quoted(raw: str) -> tuple[str | None, str | None]:
    value: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == '"':
            return "".join(value), _tail_problem(raw[index + 1:])
        following = raw[index + 1:index + 2]
        if char == "\\" and following and following in DOUBLE_QUOTE_ESCAPES:
            value.append(following)
            index += 2
            continue
        if char in "$`":
            return None, _expansion(raw[index:])
        value.append(char)
        index += 1
    return None, "an unterminated double quote"


def parse_value(raw: str) -> tuple[str | None, str | None]:
    """(value, None) of the text after `KEY=`, or (None, why the shell would not take it
    literally)."""
    if raw.startswith("'"):
        return _single_quoted(raw)
    if raw.startswith('"'):
        return _double_quoted(raw)
    end = next((index for index, char in enumerate(raw) if char.isspace()), len(raw))
    word, tail = raw[:end], raw[end:]
    if not PLAIN.match(word):
        return None, _expansion(word)
    return word, _tail_problem(tail)


def parse(text: str, origin: str) -> tuple[dict[str, Assignment], list[str]]:
    """The assignments of a shell file, and a problem per line that is not a plain one."""
    values: dict[str, Assignment] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found = ASSIGNMENT.match(stripped)
        if not found:
            problems.append(f"{origin}:{number}: not a KEY=value assignment (migrate reads "
                            f"this file without running it); {HOW}")
            continue
        key = found.group(1)
        value, problem = parse_value(found.group(2))
        if problem or value is None:
            problems.append(f"{origin}:{number}: {key}: {problem} (migrate reads this file "
                            f"without running it); {HOW}")
            continue
        values[key] = Assignment(key, value, number)
    return values, problems
