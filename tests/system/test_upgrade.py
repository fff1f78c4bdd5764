"""The signed apt repository under real systemd, and the upgrade from the previous release, on
Debian 12 and 13: the README's install route (key, sources file, apt update, apt install by
name), the previous release in use, `apt upgrade` while a window is held open, a reinstall,
the next run, remove and purge, a fresh install of this release, and a downgrade.

The tests of this module run in order on one host container per release (see conftest.py);
the repository is served over HTTP from this machine and checked by its real signature.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system import apt_repo
from tests.system.conftest import REPO, Host, timing
from torrust_maint import __version__
from torrust_maint.journal import MESSAGE_IDS

SERVICE = "torrust-backup.service"
TIMER = "torrust-backup.timer"
VERIFY_TIMER = "torrust-verify.timer"
RECOVER_SERVICE = "torrust-recover.service"
UNITS = (SERVICE, TIMER, "torrust-notify@.service", "torrust-verify.service", VERIFY_TIMER,
         RECOVER_SERVICE, "torrust-offsite.service", "torrust-offsite-check.service")
CONFFILE = "/etc/torrust-maint/torrust-maint.toml"
LOGROTATE = "/etc/logrotate.d/torrust-maint"
KEYRING = "/etc/apt/keyrings/torrust-maint.asc"
SOURCES = "/etc/apt/sources.list.d/torrust-maint.sources"
CONFOLD = ("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
# The fault hook (torrust_maint/notify.py, in the previous release too) holds a run inside its
# window, the tracker stopped, until RELEASE exists.
HOLD_DROP_IN = f"/etc/systemd/system/{SERVICE}.d/hold-window.conf"
HELD = "/var/log/torrust-maint/held-window"
RELEASE = "/run/torrust-maint-release-window"
HOLD = f"""\
[Service]
Environment="TORRUST_MAINT_FAULT_PAUSE=maintenance window: snapshot"
Environment=TORRUST_MAINT_FAULT_LOG={HELD} TORRUST_MAINT_FAULT_RELEASE={RELEASE}
Environment=TORRUST_MAINT_FAULT_SECONDS=600
"""
STOP_TIMEOUT = 1  # the stand-in ignores SIGTERM: every docker stop takes this long


@dataclass
class Repository:
    """The apt repository served to one host; publish() replaces what it holds."""

    root: Path
    url: str
    key: apt_repo.SigningKey

    def publish(self, *debs: Path) -> None:
        apt_repo.build(self.root / "apt", list(debs), self.key, self.url)


@pytest.fixture(scope="module")
def repository(host: Host, signing_key, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"apt-{host.distro}")
    with apt_repo.serve(root) as base:
        yield Repository(root, f"{base}/apt", signing_key)


def apt_get(host: Host, *args: str, check: bool = True):
    """apt-get with no terminal and stdin at EOF: a conffile prompt would fail the run."""
    return host.run("apt-get", "--yes", "--quiet", "--no-install-recommends", *args,
                    check=check, timeout=600)


def installed(host: Host) -> str:
    """The installed version of torrust-maint, or '' when it is not installed."""
    done = host.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "torrust-maint",
                    check=False)
    return done.stdout[3:] if done.stdout.startswith("ii ") else ""


def policy(host: Host) -> dict[str, str | list[str]]:
    """apt-cache policy torrust-maint: Installed, Candidate and the version table's lines."""
    text = host.run("apt-cache", "policy", "torrust-maint").stdout
    fields: dict[str, str | list[str]] = dict(re.findall(r"^  (Installed|Candidate): (\S+)$",
                                                         text, re.M))
    fields["table"] = [line.strip() for line in text.split("Version table:", 1)[-1].splitlines()
                       if line.strip()]
    return fields


def unit_states(host: Host) -> dict[str, tuple[str, str]]:
    """(is-enabled, is-active) of the units the administrator turns on or off."""
    return {unit: (host.run("systemctl", "is-enabled", unit, check=False).stdout.strip(),
                   host.run("systemctl", "is-active", unit, check=False).stdout.strip())
            for unit in (TIMER, VERIFY_TIMER, RECOVER_SERVICE)}


def unit_mtimes(host: Host) -> dict[str, str]:
    out = host.run("stat", "-c", "%n %Y", *(f"/lib/systemd/system/{u}" for u in UNITS)).stdout
    return dict(line.rsplit(" ", 1) for line in out.splitlines())


def reloaded(host: Host) -> dict[str, str]:
    """NeedDaemonReload= of every unit: 'no' when systemd runs what is on disk."""
    return {unit: host.show(unit.replace("@.", f"@{SERVICE}."), "NeedDaemonReload")
            for unit in UNITS}


def sets(host: Host) -> dict[str, int]:
    """Backup set -> the mtime (ns) of its manifest."""
    return {p.name: (p / "manifest.json").stat().st_mtime_ns
            for p in sorted(host.backup_dir.iterdir()) if (p / "manifest.json").exists()}


def manifest(host: Host, name: str) -> dict:
    return json.loads((host.backup_dir / name / "manifest.json").read_text())


def cursor(host: Host) -> str:
    out = host.run("journalctl", "--show-cursor", "--lines", "0", "--quiet").stdout
    return out.strip().rsplit("cursor: ", 1)[-1]


def windows_since(host: Host, after: str) -> list[dict]:
    """The window_started records of every unit after a journal cursor (filtered here:
    systemd 252's journalctl finds no match after a cursor that does not match itself)."""
    out = host.run("journalctl", "--no-pager", "--output", "json",
                   f"--after-cursor={after}").stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in records if r.get("MESSAGE_ID") == MESSAGE_IDS["window_started"]]


def run_log(host: Host, invocation: str) -> str:
    """What one run of the backup unit logged."""
    return host.run("journalctl", "--no-pager", "--output", "cat",
                    f"_SYSTEMD_INVOCATION_ID={invocation}", check=False).stdout


def conffile_notes(output: str) -> list[str]:
    """The conffiles dpkg talked about (it does before each conffile prompt)."""
    return re.findall(r"^Configuration file '([^']+)'$", output, re.M)


def start_backup(host: Host) -> str:
    """A backup through the unit; the new set's name."""
    before = set(sets(host))
    host.run("systemctl", "start", SERVICE, timeout=300)
    assert host.show(SERVICE, "Result") == "success"
    [new] = set(sets(host)) - before
    return new


def test_install_by_name_from_the_signed_repository(host: Host, repository: Repository,
                                                   previous_deb: Path):
    started = time.monotonic()
    repository.publish(previous_deb)
    previous = previous_deb.name.split("_")[1]
    host.facts["previous"] = previous
    apt_get(host, "update")
    # Debian updates newer than the host image are not what is tested: they stay as they are,
    # so that `apt-get upgrade` below has only torrust-maint to upgrade.
    outdated = re.findall(r"^Inst (\S+)", apt_get(host, "--simulate", "upgrade").stdout, re.M)
    if outdated:
        host.run("apt-mark", "hold", *outdated)
    timing(host.distro, "Debian packages newer than the host image, held", len(outdated))
    apt_get(host, "install", "curl")
    codename = re.search(r"^VERSION_CODENAME=(\w+)$", host.run("cat", "/etc/os-release").stdout,
                         re.M).group(1)
    assert codename == host.distro

    # A repository that the key does not sign is refused (no [trusted=yes] anywhere).
    host.run("curl", "-fsSL", "-o", SOURCES, f"{repository.url}/torrust-maint-{codename}.sources")
    sources = host.run("cat", SOURCES).stdout
    assert "trusted" not in sources and f"Signed-By: {KEYRING}\n" in sources
    host.write(SOURCES, sources.replace(KEYRING, "/usr/share/keyrings/debian-archive-keyring.gpg"))
    unsigned = apt_get(host, "update", check=False)
    assert unsigned.returncode != 0
    assert re.search(rf"^E: .*{re.escape(repository.url)} {codename} InRelease.* not signed",
                     unsigned.stdout + unsigned.stderr, re.M), unsigned
    assert policy(host).get("Candidate", "(none)") == "(none)"

    # The README's route: the key into /etc/apt/keyrings, the sources file, update, install.
    host.run("curl", "-fsSL", "-o", KEYRING, f"{repository.url}/torrust-maint.asc")
    host.run("curl", "-fsSL", "-o", SOURCES, f"{repository.url}/torrust-maint-{codename}.sources")
    updated = apt_get(host, "update")
    assert repository.url not in updated.stderr, updated.stderr  # no warning about it
    listed = policy(host)
    assert (listed["Installed"], listed["Candidate"]) == ("(none)", previous)
    assert f"500 {repository.url} {codename}/main amd64 Packages" in listed["table"]
    after = cursor(host)
    apt_get(host, "install", "torrust-maint")
    timing(host.distro, "README route: apt update + apt install torrust-maint (s)",
           time.monotonic() - started)
    assert installed(host) == previous
    assert host.run("torrust-maint", "--version").stdout.strip() == f"torrust-maint {previous}"
    assert unit_states(host) == {TIMER: ("disabled", "inactive"),
                                 VERIFY_TIMER: ("disabled", "inactive"),
                                 RECOVER_SERVICE: ("enabled", "inactive")}
    assert windows_since(host, after) == []


def test_previous_release_in_use(host: Host):
    """An administrator's host: an edited conffile and logrotate file, a drop-in, the backup
    timer enabled, the boot-time recovery disabled, a set made by the previous release."""
    config = host.stack.config_toml(deployment_extra=f"stop_timeout = {STOP_TIMEOUT}\n")
    config = config.replace(f'[state]\ndirectory = "{host.stack.compose_dir.parent / "state"}"\n',
                            "")
    config = "# edited by the administrator\n" + config
    host.write(CONFFILE, config)
    rotation = host.run("cat", LOGROTATE).stdout
    assert "\trotate 12\n" in rotation
    rotation = rotation.replace("\trotate 12\n", "\trotate 30\n", 1)
    host.write(LOGROTATE, rotation)
    host.facts.update(conffile=config, logrotate=rotation)
    database_dir = host.stack.compose_dir / "storage/tracker/lib"
    host.write(f"/etc/systemd/system/{SERVICE}.d/backup-directory.conf",
               f"[Service]\nReadWritePaths={host.backup_dir} {database_dir}\n")
    for unit in ("torrust-verify.service", RECOVER_SERVICE):
        host.write(f"/etc/systemd/system/{unit}.d/backup-directory.conf",
                   f"[Service]\nReadWritePaths={host.backup_dir}\n")
    host.run("systemctl", "daemon-reload")
    host.run("systemctl", "enable", "--now", TIMER)
    host.run("systemctl", "disable", RECOVER_SERVICE)
    host.run("torrust-maint", "check")
    made = start_backup(host)
    assert manifest(host, made)["tool_version"] == host.facts["previous"]
    assert unit_states(host) == {TIMER: ("enabled", "active"),
                                 VERIFY_TIMER: ("disabled", "inactive"),
                                 RECOVER_SERVICE: ("disabled", "inactive")}


def test_apt_upgrade_while_a_window_is_open(host: Host, repository: Repository, deb: Path):
    """`apt upgrade` from the previous release with a window held open: the run is neither
    restarted nor broken, the units are reloaded, the edited conffile is kept
    (--force-confold: it changed upstream), the timers keep their state, nothing else runs."""
    repository.publish(deb)
    apt_get(host, "update")
    listed = policy(host)
    assert (listed["Installed"], listed["Candidate"]) == (host.facts["previous"], __version__)
    states, mtimes, before = unit_states(host), unit_mtimes(host), sets(host)
    timer = {p: host.show(TIMER, p) for p in ("ActiveEnterTimestampMonotonic", "LastTriggerUSec")}
    assert set(reloaded(host).values()) == {"no"}
    host.write(HOLD_DROP_IN, HOLD)
    host.run("systemctl", "daemon-reload")
    try:
        after = cursor(host)
        host.run("systemctl", "start", "--no-block", SERVICE)
        host.wait_for("the window held open", lambda: host.run("cat", HELD, check=False).stdout,
                      timeout=60, every=0.1)
        invocation, pid = host.show(SERVICE, "InvocationID"), host.show(SERVICE, "MainPID")
        assert not host.stack.running()  # the window has the tracker stopped

        started = time.monotonic()
        upgrade = apt_get(host, *CONFOLD, "upgrade")
        timing(host.distro, "apt-get upgrade, previous -> this release, window open (s)",
               time.monotonic() - started)
        assert installed(host) == __version__
        unpacked = (f"Unpacking torrust-maint ({__version__}) over "
                    f"({host.facts['previous']}) ...")
        assert unpacked in upgrade.stdout.splitlines(), upgrade.stdout
        # The run is untouched: the same invocation and process, still inside its window.
        assert (host.show(SERVICE, "ActiveState"), host.show(SERVICE, "InvocationID"),
                host.show(SERVICE, "MainPID")) == ("activating", invocation, pid)
        assert not host.stack.running()
        # Every unit file was replaced, and systemd runs the new ones (no daemon-reload needed).
        assert all(unit_mtimes(host)[path] != mtime for path, mtime in mtimes.items())
        assert set(reloaded(host).values()) == {"no"}, reloaded(host)
        # Both edited conffiles changed upstream: --force-confold kept them without a prompt,
        # and the new ones are beside them.
        assert sorted(conffile_notes(upgrade.stdout)) == sorted([CONFFILE, LOGROTATE]), \
            upgrade.stdout
        assert upgrade.stdout.count("==> Keeping old config file as default.") == 2, upgrade.stdout
        assert host.run("cat", CONFFILE).stdout == host.facts["conffile"]
        assert host.run("cat", f"{CONFFILE}.dpkg-dist").stdout \
            == (REPO / "conf/torrust-maint.toml").read_text()
        assert host.run("cat", LOGROTATE).stdout == host.facts["logrotate"]
        assert host.run("cat", f"{LOGROTATE}.dpkg-dist").stdout \
            == (REPO / "logrotate/torrust-maint").read_text()
        # The administrator's choices stay; the timer was not restarted and did not fire.
        assert unit_states(host) == states
        assert {p: host.show(TIMER, p) for p in timer} == timer

        host.run("touch", RELEASE)
        host.wait_for("the held run done",
                      lambda: host.show(SERVICE, "ActiveState") in ("inactive", "failed"),
                      timeout=120, every=0.2)
        assert (host.show(SERVICE, "Result"), host.show(SERVICE, "InvocationID")) \
            == ("success", invocation), run_log(host, invocation)
        [made] = set(sets(host)) - set(before)
        assert manifest(host, made)["tool_version"] == host.facts["previous"]  # begun before
        assert manifest(host, made)["verification"]["outcome"] == "passed"
        assert {name: sets(host)[name] for name in before} == before
        # The upgrade started no backup: the only window is the held run's.
        assert [w["_SYSTEMD_INVOCATION_ID"] for w in windows_since(host, after)] == [invocation]
        host.stack.wait_healthy(timeout=30)
    finally:  # a failure above must not leave the window held for the next tests
        host.run("touch", RELEASE)
        host.wait_for("the held run done",
                      lambda: host.show(SERVICE, "ActiveState") in ("inactive", "failed"),
                      timeout=120, every=0.2)
        host.run("rm", "-f", HOLD_DROP_IN, RELEASE, HELD)
        host.run("systemctl", "daemon-reload")


def test_reinstall_keeps_the_conffile_without_a_prompt(host: Host):
    """The conffile unchanged upstream (the same version again): dpkg keeps the edited one and
    asks nothing, with no --force-conf* option (stdin is at EOF: a prompt would fail)."""
    states, after = unit_states(host), cursor(host)
    done = apt_get(host, "install", "--reinstall", "torrust-maint")
    assert conffile_notes(done.stdout) == [], done.stdout
    assert host.run("cat", CONFFILE).stdout == host.facts["conffile"]
    assert host.run("cat", LOGROTATE).stdout == host.facts["logrotate"]
    assert unit_states(host) == states
    assert set(reloaded(host).values()) == {"no"}
    assert windows_since(host, after) == []


def test_the_next_run_is_this_release(host: Host, deb: Path):
    """The package, --version, the repository and the new set's manifest agree."""
    made = start_backup(host)
    assert manifest(host, made)["tool_version"] == __version__
    assert host.run("torrust-maint", "--version").stdout.strip() \
        == f"torrust-maint {__version__}"
    assert installed(host) == __version__ == policy(host)["Candidate"]
    assert deb.name == f"torrust-maint_{__version__}_all.deb"


def test_remove_and_purge_keep_the_backups(host: Host):
    kept = sets(host)
    assert len(kept) == 3  # the previous release's, the held run's, this release's
    host.run("systemctl", "is-active", TIMER)
    apt_get(host, "remove", "torrust-maint")
    assert installed(host) == ""
    assert host.run("systemctl", "is-active", TIMER, check=False).stdout.strip() == "inactive"
    assert host.run("cat", CONFFILE).stdout == host.facts["conffile"]  # remove keeps it
    assert sets(host) == kept
    apt_get(host, "purge", "torrust-maint")
    for gone in ("/etc/torrust-maint", "/var/lib/torrust-maint", "/var/log/torrust-maint"):
        assert host.run("test", "-e", gone, check=False).returncode == 1, gone
    assert sets(host) == kept  # the same sets, not one file rewritten
    assert host.stack.running()


def test_fresh_install_by_name_is_this_release(host: Host):
    after, kept = cursor(host), sets(host)
    apt_get(host, "install", "torrust-maint")
    assert installed(host) == __version__
    assert host.run("cat", CONFFILE).stdout == (REPO / "conf/torrust-maint.toml").read_text()
    assert unit_states(host) == {TIMER: ("disabled", "inactive"),
                                 VERIFY_TIMER: ("disabled", "inactive"),
                                 RECOVER_SERVICE: ("enabled", "inactive")}
    assert windows_since(host, after) == []
    assert sets(host) == kept


def test_downgrade_only_when_asked_and_cleanly(host: Host, repository: Repository,
                                               previous_deb: Path):
    """The repository rolled back to the previous release: apt keeps this release (upgrade
    does nothing, `install torrust-maint=<previous>` is refused without --allow-downgrades);
    asked for, the downgrade keeps the edited conffile and the units' state, reloads the
    units, runs nothing, and the previous release works with the configuration."""
    previous = host.facts["previous"]
    host.write(CONFFILE, host.facts["conffile"])  # configured again (the drop-ins stayed)
    repository.publish(previous_deb)
    apt_get(host, "update")
    listed = policy(host)
    assert (listed["Installed"], listed["Candidate"]) == (__version__, __version__)
    assert any(line.startswith(f"{previous} 500") for line in listed["table"]), listed
    states, after = unit_states(host), cursor(host)
    apt_get(host, *CONFOLD, "upgrade")
    assert installed(host) == __version__
    refused = apt_get(host, *CONFOLD, "install", f"torrust-maint={previous}", check=False)
    assert refused.returncode != 0
    assert "E: Packages were downgraded and -y was used without --allow-downgrades." \
        in refused.stderr, refused
    assert installed(host) == __version__

    apt_get(host, *CONFOLD, "--allow-downgrades", "install", f"torrust-maint={previous}")
    assert installed(host) == previous
    assert host.run("torrust-maint", "--version").stdout.strip() == f"torrust-maint {previous}"
    assert host.run("cat", CONFFILE).stdout == host.facts["conffile"]
    assert unit_states(host) == states
    # The previous release's scripts reload nothing: this release's postrm did.
    assert set(reloaded(host).values()) == {"no"}, reloaded(host)
    assert windows_since(host, after) == []
    host.run("torrust-maint", "check")
