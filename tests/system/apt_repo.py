"""The signed apt repository in tests: a throwaway signing key, tools/build-apt-repo.sh (what
`make repo` runs) and a local HTTP server that the host containers (--network host) reach."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools/build-apt-repo.sh"
SUITES = ("bookworm", "trixie")


@dataclass(frozen=True)
class SigningKey:
    """A secret key in its own GNUPGHOME, as the release manager's would be."""

    gnupghome: Path
    fingerprint: str

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for build-apt-repo.sh: GNUPGHOME and TORRUST_MAINT_SIGNING_KEY."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
        env.update(GNUPGHOME=str(self.gnupghome), TORRUST_MAINT_SIGNING_KEY=self.fingerprint)
        env.update(extra)
        return env

    def public_key(self) -> str:
        return gpg(self.gnupghome, "--armor", "--export", self.fingerprint)


def gpg(home: Path, *args: str) -> str:
    done = subprocess.run(["gpg", "--batch", "--homedir", str(home), *args],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"gpg {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def generate_key(home: Path, name: str) -> SigningKey:
    """A new passphrase-less signing key in `home` (a fresh, private GNUPGHOME)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg(home, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.invalid>",
        "default", "default", "never")
    listing = gpg(home, "--with-colons", "--list-secret-keys")
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    return SigningKey(home, fingerprint)


def stop_agent(key: SigningKey) -> None:
    subprocess.run(["gpgconf", "--homedir", str(key.gnupghome), "--kill", "gpg-agent"],
                   capture_output=True, timeout=30, check=False)


def build(outdir: Path, debs: list[Path], key: SigningKey, url: str,
          check: bool = True) -> subprocess.CompletedProcess:
    """tools/build-apt-repo.sh OUTDIR DEB... with the key and URL in its environment."""
    done = subprocess.run(["bash", str(BUILD_SCRIPT), str(outdir), *map(str, debs)],
                          env=key.env(TORRUST_MAINT_REPO_URL=url), capture_output=True,
                          text=True, timeout=300, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"build-apt-repo.sh exited {done.returncode}:\n{done.stderr}")
    return done


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve(root: Path):
    """Serve `root` over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def packages_versions(outdir: Path, suite: str, arch: str = "amd64") -> dict[str, str]:
    """Package -> Version in a suite's Packages index."""
    text = (outdir / f"dists/{suite}/main/binary-{arch}/Packages").read_text()
    versions = {}
    for stanza in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
        versions[fields["Package"]] = fields["Version"]
    return versions
