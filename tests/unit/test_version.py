"""One version, written only in debian/changelog: the package (dpkg-parsechangelog, what
debian/rules puts in _release.py), pyproject.toml, --version and the manifests agree."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import torrust_maint
from torrust_maint import cli
from torrust_maint.actions import backup

REPO = Path(__file__).resolve().parents[2]
CHANGELOG = REPO / "debian/changelog"


def changelog_version() -> str:
    """What dpkg-buildpackage and debian/rules (DEB_VERSION) take as the version."""
    done = subprocess.run(["dpkg-parsechangelog", "-l", str(CHANGELOG), "-S", "Version"],
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


def test_the_source_tree_reads_the_changelog():
    assert not (REPO / "torrust_maint/_release.py").exists(), \
        "torrust_maint/_release.py is a build product (debian/rules clean removes it)"
    assert torrust_maint.__version__ == changelog_version()
    assert torrust_maint.changelog_version(CHANGELOG) == changelog_version()


def test_no_version_is_written_anywhere_else():
    version = re.escape(changelog_version())
    written = [path for path in [REPO / "torrust_maint/__init__.py", REPO / "pyproject.toml",
                                 REPO / "man/torrust-maint.8", REPO / "debian/rules"]
               if re.search(rf"(?<![\d.]){version}(?![\d.])", path.read_text())]
    assert written == []


def test_pyproject_takes_the_same_version():
    from setuptools.config.pyprojecttoml import read_configuration

    with pytest.warns(Warning):  # setuptools calls [tool.setuptools] "beta"
        project = read_configuration(REPO / "pyproject.toml", expand=True)["project"]
    assert project["version"] == changelog_version()


def test_version_option_says_it(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"torrust-maint {changelog_version()}"


def test_the_manifest_records_it():
    deployment = types.SimpleNamespace(
        compose_dir=Path("/opt/torrust"), trackers=[], driver="mysql",
        database=types.SimpleNamespace(user="torrust"))
    snapshot = types.SimpleNamespace(manifest=lambda: {})
    report = types.SimpleNamespace(downtime=0.5)
    manifest = backup.build_manifest("20261127T000000Z", dt.datetime.now(dt.UTC), deployment,
                                     snapshot, [], report, {}, [])
    assert manifest["tool_version"] == changelog_version()


def test_the_package_takes_the_version_debian_rules_wrote(monkeypatch):
    monkeypatch.setitem(sys.modules, "torrust_maint._release",
                        types.SimpleNamespace(VERSION="9.8.7"))
    assert torrust_maint._version() == "9.8.7"


@pytest.mark.parametrize(("first_line", "expected"), [
    ("torrust-maint (0.2.0) unstable; urgency=medium\n", "0.2.0"),
    ("torrust-maint (1:0.3.0~rc1-2) trixie; urgency=low\n", "1:0.3.0~rc1-2"),
    ("not a changelog\n", None),
    ("", None),
])
def test_changelog_first_line(tmp_path, first_line, expected):
    path = tmp_path / "changelog"
    path.write_text(first_line)
    assert torrust_maint.changelog_version(path) == expected


def test_no_changelog_and_no_release_module_is_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(torrust_maint, "CHANGELOG", tmp_path / "missing")
    assert torrust_maint._version() == torrust_maint.UNKNOWN_VERSION
