"""`make repo` (tools/build-apt-repo.sh): a reprepro repository with suites bookworm and trixie,
signed by the key TORRUST_MAINT_SIGNING_KEY names, with the public key and the sources files
a host needs, and clear errors naming the variables. Installing from it under systemd, the
upgrade from the previous release and purge are in test_upgrade.py."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from tests.system import apt_repo
from tests.system.conftest import REPO, run, timing
from torrust_maint import __version__

URL = "https://example.invalid/torrust-maint/apt"
ARCHITECTURES = {"amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x"}


def make_repo(env: dict[str, str], outdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "repo",
                           f"REPO_DIR={outdir}"], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def refused(done: subprocess.CompletedProcess, outdir: Path, deb: Path, built: float) -> str:
    """The refusal's message, after checking that nothing was built."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert not outdir.exists()
    assert deb.stat().st_mtime == built  # refused before `make deb`
    [message] = [line for line in done.stderr.splitlines() if "build-apt-repo: " in line]
    return message.split("build-apt-repo: ", 1)[1]


def test_make_repo_names_the_unset_signing_key(tmp_path, signing_key, deb):
    env = signing_key.env(TORRUST_MAINT_REPO_URL=URL)
    del env["TORRUST_MAINT_SIGNING_KEY"]
    message = refused(make_repo(env, tmp_path / "apt"), tmp_path / "apt", deb,
                      deb.stat().st_mtime)
    assert message.startswith("TORRUST_MAINT_SIGNING_KEY is not set: set it to the key id or "
                              f"fingerprint of the repository's signing key in GNUPGHOME "
                              f"({signing_key.gnupghome})"), message


def test_make_repo_names_an_unknown_signing_key(tmp_path, signing_key, deb):
    unknown = "0123456789ABCDEF0123456789ABCDEF01234567"
    env = signing_key.env(TORRUST_MAINT_SIGNING_KEY=unknown, TORRUST_MAINT_REPO_URL=URL)
    message = refused(make_repo(env, tmp_path / "apt"), tmp_path / "apt", deb,
                      deb.stat().st_mtime)
    assert message.startswith(f"TORRUST_MAINT_SIGNING_KEY={unknown}: no such secret key in "
                              f"GNUPGHOME ({signing_key.gnupghome})"), message


def test_make_repo_names_the_unset_url(tmp_path, signing_key, deb):
    message = refused(make_repo(signing_key.env(), tmp_path / "apt"), tmp_path / "apt", deb,
                      deb.stat().st_mtime)
    assert message.startswith("TORRUST_MAINT_REPO_URL is not set"), message


def release_fields(path: Path) -> dict[str, str]:
    return {line.split(": ", 1)[0]: line.split(": ", 1)[1]
            for line in path.read_text().splitlines() if ": " in line and line[0] != " "}


def verified_by(keyring: Path, *files: Path) -> str:
    """The fingerprint gpgv reports a good signature of (VALIDSIG), or '' for none."""
    done = run(["gpgv", "--status-fd", "1", "--keyring", str(keyring), *map(str, files)],
               check=False)
    valid = [line.split()[2] for line in done.stdout.splitlines()
             if line.startswith("[GNUPG:] VALIDSIG ")]
    return valid[0] if done.returncode == 0 and valid else ""


def test_repository_suites_are_signed_and_hold_the_package(tmp_path, signing_key, deb):
    outdir = tmp_path / "apt"
    started = time.monotonic()
    apt_repo.build(outdir, [deb], signing_key, URL + "/")
    timing("-", "build-apt-repo.sh, 2 suites, 1 package (s)", time.monotonic() - started)
    timing("-", "apt repository size (KiB)",
           sum(p.stat().st_size for p in outdir.rglob("*") if p.is_file()) / 1024)
    version = deb.name.split("_")[1]
    assert version == __version__  # the package, the repository and --version agree

    # The published key is the public key alone, and it checks every suite's signatures.
    published = (outdir / "torrust-maint.asc").read_text()
    assert published.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in published
    shown = run(["gpg", "--batch", "--with-colons", "--show-keys"], input=published).stdout
    assert [line.split(":")[9] for line in shown.splitlines() if line.startswith("fpr:")][0] \
        == signing_key.fingerprint
    assert not [line for line in shown.splitlines() if line.startswith(("sec", "ssb"))]
    keyring = tmp_path / "torrust-maint.gpg"
    run(["gpg", "--batch", "--dearmor", "--output", str(keyring)], input=published)
    other = apt_repo.generate_key(tmp_path / "other-gnupg", "someone-else")
    try:
        other_keyring = tmp_path / "other.gpg"
        run(["gpg", "--batch", "--dearmor", "--output", str(other_keyring)],
            input=other.public_key())
    finally:
        apt_repo.stop_agent(other)

    deb_sha256 = hashlib.sha256(deb.read_bytes()).hexdigest()
    for suite in apt_repo.SUITES:
        dists = outdir / "dists" / suite
        assert verified_by(keyring, dists / "InRelease") == signing_key.fingerprint
        assert verified_by(keyring, dists / "Release.gpg", dists / "Release") \
            == signing_key.fingerprint
        assert verified_by(other_keyring, dists / "InRelease") == ""
        release = release_fields(dists / "Release")
        assert (release["Codename"], release["Components"], release["Origin"]) \
            == (suite, "main", "torrust-maint")
        assert set(release["Architectures"].split()) == ARCHITECTURES
        assert "SHA256" in (dists / "Release").read_text()
        for arch in ARCHITECTURES:
            assert apt_repo.packages_versions(outdir, suite, arch) == {"torrust-maint": version}
        stanza = (dists / "main/binary-amd64/Packages").read_text()
        assert f"SHA256: {deb_sha256}\n" in stanza
        filename = next(line.split(": ", 1)[1] for line in stanza.splitlines()
                        if line.startswith("Filename: "))
        assert hashlib.sha256((outdir / filename).read_bytes()).hexdigest() == deb_sha256

        sources = (outdir / f"torrust-maint-{suite}.sources").read_text()
        fields = dict(line.split(": ", 1) for line in sources.splitlines()
                      if line and not line.startswith("#"))
        assert fields == {"Types": "deb", "URIs": URL, "Suites": suite, "Components": "main",
                          "Signed-By": "/etc/apt/keyrings/torrust-maint.asc"}
    # What is published: no reprepro database or configuration, no key but the public one.
    assert sorted(p.name for p in outdir.iterdir()) == [
        "dists", "pool", "torrust-maint-bookworm.sources", "torrust-maint-trixie.sources",
        "torrust-maint.asc"]


def test_a_rebuild_replaces_the_published_repository(tmp_path, signing_key, deb,
                                                     previous_deb):
    """OUTDIR holds exactly the packages of the last build: a release replaces the previous
    one, and a half-built repository is never published (it is built beside OUTDIR)."""
    outdir = tmp_path / "apt"
    apt_repo.build(outdir, [previous_deb], signing_key, URL)
    previous = previous_deb.name.split("_")[1]
    assert apt_repo.packages_versions(outdir, "trixie") == {"torrust-maint": previous}
    apt_repo.build(outdir, [deb], signing_key, URL)
    for suite in apt_repo.SUITES:
        assert apt_repo.packages_versions(outdir, suite) == {"torrust-maint": __version__}
    assert [p.name for p in (outdir / "pool/main/t/torrust-maint").iterdir()] == [deb.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apt"]
    failed = apt_repo.build(outdir, [tmp_path / "missing.deb"], signing_key, URL, check=False)
    assert failed.returncode != 0
    assert f"{tmp_path / 'missing.deb'}: no such package (make deb builds it)" in failed.stderr
    assert apt_repo.packages_versions(outdir, "bookworm") == {"torrust-maint": __version__}
