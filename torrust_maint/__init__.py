"""torrust-maint: maintenance windows and backups for Torrust Tracker deployments."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

# debian/changelog is the one place the version is written. debian/rules writes it into
# torrust_maint/_release.py (git-ignored) for the package; a source tree reads the changelog.
CHANGELOG = Path(__file__).resolve().parent.parent / "debian" / "changelog"
UNKNOWN_VERSION = "0+unknown"


def changelog_version(path: Path | None = None) -> str | None:
    """The version of the newest entry of a Debian changelog (the source tree's by default),
    or None without one."""
    try:
        with open(path or CHANGELOG, encoding="utf-8") as handle:
            first = handle.readline()
    except OSError:
        return None
    found = re.match(r"[a-z0-9][a-z0-9+.-]+ \(([^()\s]+)\)", first)
    return found.group(1) if found else None


def _version() -> str:
    """The package's version (debian/rules wrote it), else the source tree's changelog's."""
    try:
        release = importlib.import_module("torrust_maint._release")
    except ImportError:
        return changelog_version() or UNKNOWN_VERSION
    return str(release.VERSION)


__version__ = _version()
