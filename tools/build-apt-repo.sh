#!/bin/bash
# Build torrust-maint's signed apt repository with reprepro: suites bookworm (Debian 12) and
# trixie (Debian 13), component main, each holding the given .deb files, signed with the key
# that TORRUST_MAINT_SIGNING_KEY names (a key id or fingerprint in the caller's GNUPGHOME,
# ~/.gnupg by default). Beside dists/ and pool/ it writes what a host needs to use it:
#   torrust-maint.asc                    the public key, for /etc/apt/keyrings/
#   torrust-maint-<suite>.sources        a deb822 source with Signed-By:, for
#                                        /etc/apt/sources.list.d/torrust-maint.sources
# TORRUST_MAINT_REPO_URL is where OUTDIR will be published (the sources files' URIs:).
# OUTDIR is replaced as a whole: it holds exactly the given packages. reprepro's database
# lives in a temporary directory, not in what is published.
#
# Usage: build-apt-repo.sh OUTDIR DEB...
#        build-apt-repo.sh --check      (the two variables only; `make repo` runs it first)
set -euo pipefail

SUITES=(bookworm trixie)
declare -A DEBIAN_RELEASE=([bookworm]=12 [trixie]=13)
# An Architecture: all package is listed under each (reprepro 5.3 has no binary-all).
ARCHITECTURES="amd64 arm64 armhf i386 ppc64el riscv64 s390x"
KEY_NAME=torrust-maint.asc
WORK=""    # reprepro's base directory (conf/, db/), removed on exit
STAGED=""  # the repository being built beside OUTDIR, removed on exit unless published

log() { printf 'build-apt-repo: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The signing key's fingerprint, or a clear error naming TORRUST_MAINT_SIGNING_KEY.
signing_fingerprint() {
    local key=${TORRUST_MAINT_SIGNING_KEY:-} home=${GNUPGHOME:-~/.gnupg} listing
    [[ -n "$key" ]] || die "TORRUST_MAINT_SIGNING_KEY is not set: set it to the key id or" \
        "fingerprint of the repository's signing key in GNUPGHOME ($home);" \
        "\`gpg --list-secret-keys\` lists them"
    if ! listing=$(gpg --batch --with-colons --list-secret-keys -- "$key" 2>/dev/null); then
        die "TORRUST_MAINT_SIGNING_KEY=$key: no such secret key in GNUPGHOME ($home);" \
            "\`gpg --list-secret-keys\` lists them"
    fi
    local count
    count=$(grep -c '^sec:' <<<"$listing" || true)
    ((count == 1)) || die "TORRUST_MAINT_SIGNING_KEY=$key matches $count secret keys in" \
        "GNUPGHOME ($home): give the fingerprint of one"
    local sec
    sec=$(grep '^sec:' <<<"$listing")
    case $(cut -d: -f2 <<<"$sec") in
        e) die "TORRUST_MAINT_SIGNING_KEY=$key: the key has expired" ;;
        r) die "TORRUST_MAINT_SIGNING_KEY=$key: the key is revoked" ;;
    esac
    [[ $(cut -d: -f12 <<<"$sec") == *S* ]] \
        || die "TORRUST_MAINT_SIGNING_KEY=$key: the key cannot sign"
    grep '^fpr:' <<<"$listing" | head -n 1 | cut -d: -f10
}

repo_url() {
    local url=${TORRUST_MAINT_REPO_URL:-}
    [[ -n "$url" ]] || die "TORRUST_MAINT_REPO_URL is not set: set it to the URL the" \
        "repository will be published at (the URIs: of the .sources files), e.g." \
        "https://example.org/torrust-maint/apt"
    [[ "$url" =~ ^(https?|file):[^[:space:]]+$ ]] \
        || die "TORRUST_MAINT_REPO_URL=$url is not an http(s):// or file: URL"
    printf '%s\n' "${url%/}"
}

distributions() {
    local fingerprint=$1 suite
    for suite in "${SUITES[@]}"; do
        cat <<STANZA
Origin: torrust-maint
Label: torrust-maint
Codename: $suite
Architectures: $ARCHITECTURES
Components: main
Description: torrust-maint for Debian ${DEBIAN_RELEASE[$suite]} ($suite)
SignWith: $fingerprint

STANZA
    done
}

sources_file() {
    cat <<SOURCES
# torrust-maint for Debian ${DEBIAN_RELEASE[$2]} ($2): /etc/apt/sources.list.d/torrust-maint.sources
Types: deb
URIs: $1
Suites: $2
Components: main
Signed-By: /etc/apt/keyrings/$KEY_NAME
SOURCES
}

main() {
    if [[ "${1:-}" == --check ]]; then
        signing_fingerprint >/dev/null
        repo_url >/dev/null
        return
    fi
    (($# >= 2)) || die "usage: build-apt-repo.sh OUTDIR DEB... (or --check)"
    local outdir=$1 fingerprint url deb suite
    shift
    fingerprint=$(signing_fingerprint)
    url=$(repo_url)
    for deb in "$@"; do
        [[ -f "$deb" ]] || die "$deb: no such package (make deb builds it)"
    done
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/torrust-maint-repo.XXXXXX")
    trap 'rm -rf "$WORK" "$STAGED"' EXIT
    mkdir -p "$WORK/conf"
    distributions "$fingerprint" >"$WORK/conf/distributions"
    mkdir -p "$(dirname "$outdir")"
    outdir="$(cd "$(dirname "$outdir")" && pwd)/$(basename "$outdir")"  # reprepro: absolute
    STAGED="$outdir.new"
    rm -rf "$STAGED"
    for suite in "${SUITES[@]}"; do
        for deb in "$@"; do
            reprepro --silent --basedir "$WORK" --outdir "$STAGED" includedeb "$suite" "$deb" \
                || die "reprepro could not add $deb to $suite (see above)"
        done
    done
    gpg --batch --armor --export -- "$fingerprint" >"$STAGED/$KEY_NAME"
    for suite in "${SUITES[@]}"; do
        sources_file "$url" "$suite" >"$STAGED/torrust-maint-$suite.sources"
    done
    rm -rf "$outdir"
    mv "$STAGED" "$outdir"
    log "$outdir: suites ${SUITES[*]} with $(printf '%s ' "${@##*/}")signed by $fingerprint"
}

main "$@"
