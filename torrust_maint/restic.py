"""The one place that runs restic: argv lists in, parsed JSON out, secrets kept out of sight.

The repository string (it may hold a password: ``rest:https://user:pass@host/``), the password
and the backend keys of ``environment_file`` reach restic only through its environment
(RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE, the file's variables), never its argv. Whatever
restic prints is redacted before it is logged or raised.

Under systemd the password comes from the unit's credential (``LoadCredential=``); run by
hand, from ``[offsite] password_file`` (0600).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torrust_maint import safefs
from torrust_maint.config import OffsiteConfig
from torrust_maint.deployment import parse_env_file
from torrust_maint.errors import ConfigError, MaintError

log = logging.getLogger(__name__)

CREDENTIAL = "offsite-password"  # LoadCredential=offsite-password:/etc/torrust-maint/...
# The units' SetCredential= fallback: systemd gives it (or nothing) when the file is missing.
CREDENTIAL_UNSET = "torrust-maint:no-password-file"
MAX_SECRET_FILE_BYTES = 64 << 10
QUICK_TIMEOUT = 300  # seconds, for calls that move no data (cat config, snapshots, unlock)
TAG = "torrust-maint"
SET_TAG_PREFIX = "set:"

# What restic says, in 0.14 (Debian 12) and 0.18 (Debian 13); 0.17+ also has exit codes.
SIGNS = {  # in this order: an unreachable server also makes "Is there a repository...?"
    "password": ("wrong password or no key found", "an empty password is not a password"),
    "locked": ("repository is already locked", "unable to create lock"),
    "full": ("no space left on device", "insufficient storage", "quota exceeded",
             "507 insufficient"),
    "unreachable": ("connection refused", "no such host", "i/o timeout", "network is unreachable",
                    "connection reset", "no route to host", ": eof", "unexpected eof",
                    "broken pipe", "connection closed", "tls handshake", "ssh command exited",
                    "unable to start the sftp session", "server unexpectedly closed"),
    "no-repository": ("is there a repository at the following location",
                      "repository does not exist", "unable to open config file"),
}
EXIT_KINDS = {10: "no-repository", 11: "locked", 12: "password", 130: "interrupted"}
INCOMPLETE = 3  # `restic backup`: the snapshot was made, but some files could not be read
HINTS = {
    "password": "the password does not open the repository ([offsite] password_file, or the "
                "unit's credential)",
    "locked": "the repository is locked by another restic process",
    "no-repository": "there is no restic repository there: create it with "
                     "`torrust-maint offsite init`",
    "full": "the off-site storage is full",
    "unreachable": "the repository cannot be reached",
    "interrupted": "restic was interrupted",
    "failed": "restic failed",
}


class ResticError(MaintError):
    """A restic call failed; `kind` says how (password, locked, no-repository, full,
    unreachable, interrupted, failed). The message holds no secret."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class ResticResult:
    """A finished restic call: its exit status, stdout (bytes) and redacted stderr."""

    returncode: int
    stdout: bytes
    stderr: str


Runner = Callable[..., subprocess.CompletedProcess]


def shown_repository(repository: str) -> str:
    """The repository for messages and logs: any password in it replaced by ***."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", repository)


def password_file(settings: OffsiteConfig, environ: dict[str, str]) -> tuple[Path, str]:
    """Where the password is, and the setting that names it: the unit's credential when
    systemd loaded one, else [offsite] password_file."""
    credentials = environ.get("CREDENTIALS_DIRECTORY", "")
    if credentials.startswith("/"):
        candidate = Path(credentials) / CREDENTIAL
        try:
            text = candidate.read_bytes()
        except OSError:
            text = b""
        if text and text.strip() != CREDENTIAL_UNSET.encode():
            return candidate, f"the unit's credential {CREDENTIAL} (LoadCredential=)"
        raise ConfigError(f"[offsite] password_file: {settings.password_file} does not exist "
                          f"(the unit loads it as credential {CREDENTIAL}): write the "
                          "repository's password there, chmod 600")
    return settings.password_file, "[offsite] password_file"


def read_password(path: Path, setting: str) -> str:
    """The password (its first line), from a private file; a clear error when unusable."""
    try:
        raw = safefs.read_private_file(path, setting, MAX_SECRET_FILE_BYTES)
    except safefs.PrivateFileError as error:
        raise ConfigError(f"{error}: write the repository's password there, chmod 600"
                          if "does not exist" in str(error) else str(error)) from None
    lines = raw.decode("utf-8", errors="replace").splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"{setting}: {path} is empty; its first line is the password")
    return lines[0]


def read_environment(path: Path) -> dict[str, str]:
    """The backend keys of [offsite] environment_file (KEY=value lines, 0600)."""
    raw = safefs.read_private_file(path, "[offsite] environment_file", MAX_SECRET_FILE_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"[offsite] environment_file: {path} is not UTF-8 text") from None
    try:
        values = parse_env_file(text, f"[offsite] environment_file {path}")
    except ConfigError as error:  # the line number, never the line (a key's value)
        raise ConfigError(str(error)) from None
    reserved = sorted(key for key in values if key.startswith("RESTIC_") and key in (
        "RESTIC_REPOSITORY", "RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE",
        "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY_FILE"))
    if reserved:
        raise ConfigError(f"[offsite] environment_file: {path} sets {', '.join(reserved)}; "
                          "the repository and its password are [offsite] repository and "
                          "password_file")
    return values


def classify(returncode: int, stderr: str) -> str:
    """How a restic call failed, from its exit status and its words."""
    if returncode in EXIT_KINDS:
        return EXIT_KINDS[returncode]
    lowered = stderr.lower()
    for kind, signs in SIGNS.items():
        if any(sign in lowered for sign in signs):
            return kind
    if returncode < 0 or returncode == 128 + signal.SIGTERM:
        return "interrupted"
    return "failed"


class Restic:
    """restic for one [offsite] repository. Secrets go through the environment only."""

    def __init__(self, settings: OffsiteConfig, environ: dict[str, str] | None = None,
                 runner: Runner = subprocess.run, binary: str = "restic"):
        if settings.repository is None:
            raise ConfigError("[offsite] repository: not set; off-site copies are off")
        self.settings = settings
        self.repository: str = settings.repository
        self.environ = dict(os.environ if environ is None else environ)
        self.runner = runner
        self.binary = binary
        self.password_path, self.password_setting = password_file(settings, self.environ)
        self._secrets: list[str] | None = None
        self._env: dict[str, str] | None = None

    @property
    def shown(self) -> str:
        return shown_repository(self.repository)

    def environment(self) -> dict[str, str]:
        """restic's whole environment: no inherited RESTIC_* or cloud keys but the file's."""
        if self._env is None:
            password = read_password(self.password_path, self.password_setting)
            extra = (read_environment(self.settings.environment_file)
                     if self.settings.environment_file is not None else {})
            env = {key: self.environ[key] for key in ("PATH", "HOME", "LANG", "SSH_AUTH_SOCK")
                   if key in self.environ}
            env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            env.update(extra)
            env.update(TZ="UTC", RESTIC_REPOSITORY=self.repository,
                       RESTIC_PASSWORD_FILE=str(self.password_path))
            cache = self.environ.get("CACHE_DIRECTORY", "").split(":")[0]
            if cache.startswith("/"):  # systemd's CacheDirectory=: ProtectHome= hides ~/.cache
                env["RESTIC_CACHE_DIR"] = str(Path(cache) / "restic")
            self._secrets = sorted({password, *self._url_passwords(),
                                    *(v for v in extra.values() if len(v) >= 4)},
                                   key=len, reverse=True)
            self._env = env
        return self._env

    def _url_passwords(self) -> list[str]:
        return re.findall(r"://[^/@:]*:([^/@]+)@", self.repository)

    def redact(self, text: str) -> str:
        """Text restic printed, with the repository shown safely and no secret left."""
        text = text.replace(self.repository, self.shown)
        for secret in self._secrets or []:
            if secret:
                text = text.replace(secret, "***")
        return text

    def argv(self, args: Sequence[str]) -> list[str]:
        options = [item for option in self.settings.options for item in ("-o", option)]
        if self.settings.limit_upload:
            options += ["--limit-upload", str(self.settings.limit_upload)]
        if self.settings.limit_download:
            options += ["--limit-download", str(self.settings.limit_download)]
        return [self.binary, *options, *args]

    def run(self, args: Sequence[str], *, what: str, timeout: float | None = QUICK_TIMEOUT,
            cwd: Path | None = None, ok: Sequence[int] = (0,)) -> ResticResult:
        """Run `restic args`; ResticError (classified, redacted) unless its exit is in ok."""
        env = self.environment()
        argv = self.argv(args)
        log.debug("running %s", " ".join(argv))
        try:
            done = self.runner(argv, env=env, cwd=cwd, capture_output=True, timeout=timeout,
                               check=False, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise MaintError(f"{self.binary}: command not found; install Debian's restic "
                             "package (apt install restic)") from None
        except subprocess.TimeoutExpired:
            raise ResticError("unreachable", f"off-site {what} ({self.shown}): restic gave no "
                              f"answer within {timeout:.0f} s") from None
        stderr = self.redact(done.stderr.decode("utf-8", errors="replace"))
        if done.returncode not in ok:
            kind = classify(done.returncode, stderr)
            detail = last_lines(stderr) or f"exit status {done.returncode}"
            raise ResticError(kind, f"off-site {what} ({self.shown}): {HINTS[kind]}: {detail}")
        return ResticResult(done.returncode, done.stdout, stderr)

    # -- operations --------------------------------------------------------------------

    def open_repository(self) -> None:
        """Reach the repository and unlock it with the password (reads its config only)."""
        self.run(["cat", "config"], what="check")

    def init(self) -> None:
        """Create the repository with compression (repository format 2)."""
        self.run(["init", "--repository-version", "2"], what="init")

    def snapshots(self, host: str | None) -> list[dict[str, Any]]:
        """Our snapshots (tag torrust-maint), of one host or of all of them."""
        args = ["snapshots", "--json", "--tag", TAG]
        if host is not None:
            args += ["--host", host]
        out = self.run(args, what="snapshot list").stdout
        try:
            found = json.loads(out or b"[]")
        except ValueError:
            raise ResticError("failed", f"off-site snapshot list ({self.shown}): restic "
                              "printed no JSON") from None
        return [s for s in (found or []) if isinstance(s, dict)]

    def backup(self, directory: Path, name: str, *, host: str, tags: Sequence[str],
               time: str) -> dict[str, Any]:
        """Upload directory/name (stored as `name`, relative); restic's JSON summary."""
        args = ["backup", "--json", "--host", host, "--time", time, "--compression", "auto"]
        for tag in tags:
            args += ["--tag", tag]
        result = self.run([*args, "--", name], what="upload", timeout=None, cwd=directory,
                          ok=(0, INCOMPLETE))
        if result.returncode == INCOMPLETE:  # a snapshot missing files must not count as one
            incomplete = summary(result.stdout).get("snapshot_id")
            if incomplete:
                self.run(["forget", str(incomplete)], what="forget of an incomplete snapshot")
            raise ResticError("failed", f"off-site upload ({self.shown}): some files of "
                              f"{directory / name} could not be read (did the set change "
                              f"while it was uploaded?): {last_lines(result.stderr)}; the "
                              f"incomplete snapshot {incomplete} was forgotten")
        return summary(result.stdout)

    def forget(self, host: str, keep: dict[str, int]) -> dict[str, Any] | list:
        """Forget and prune by `keep`, only among this host's snapshots tagged ours."""
        args = ["forget", "--json", "--prune", "--host", host, "--tag", TAG,
                "--group-by", "host"]
        for rule, count in keep.items():
            if count:
                args += [f"--{rule.replace('_', '-')}", str(count)]
        out = self.run(args, what="forget --prune", timeout=None).stdout
        return json_lines(out)

    def check(self, subset: str) -> None:
        """restic check, reading `subset` of the data (e.g. "5%")."""
        self.run(["check", f"--read-data-subset={subset}"], what="check", timeout=None)

    def restore(self, snapshot: str, target: Path) -> None:
        """Restore a whole snapshot beneath target."""
        self.run(["restore", snapshot, "--target", str(target)], what="download",
                 timeout=None)

    def unlock(self) -> None:
        """Remove stale locks only (restic's advice): never another live process's lock."""
        self.run(["unlock"], what="unlock")


def last_lines(text: str, count: int = 3) -> str:
    """The last lines of restic's stderr, joined: where it says what went wrong."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-count:])[-600:]


def json_lines(out: bytes) -> Any:
    """restic's JSON output: one document, or the last JSON line of several."""
    text = out.decode("utf-8", errors="replace").strip()
    try:
        return json.loads(text or "null")
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def summary(out: bytes) -> dict[str, Any]:
    """The summary line of `restic backup --json` (data_added, snapshot_id...)."""
    for line in reversed(out.decode("utf-8", errors="replace").splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("message_type") == "summary":
            return data
    raise ResticError("failed", "restic backup printed no summary")
