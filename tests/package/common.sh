# shellcheck shell=bash disable=SC2034
# Shared by run-piuparts.sh and run-autopkgtest.sh (sourced, not run: the variables it sets
# are theirs, hence SC2034 off).
#
# One Debian base per release, made by debootstrap and cached as a tarball: piuparts unpacks it
# for every test (`piuparts --basetgz`), and it is `docker import`ed once as the autopkgtest
# testbed image. The tarball is what piuparts itself would debootstrap (minbase, merged /usr,
# main only, eatmydata), with the release's updates and security suites in sources.list, as on
# a real host. It is rebuilt when its recipe changes or when it is older than
# TORRUST_MAINT_BASE_MAX_AGE_DAYS (piuparts and autopkgtest upgrade it to the mirror's current
# state on every run; a fresher base only makes that upgrade shorter).

CACHE=${TORRUST_MAINT_TEST_CACHE:-/var/cache/torrust-maint-test}
MIRROR=${TORRUST_MAINT_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${TORRUST_MAINT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
BASE_MAX_AGE_DAYS=${TORRUST_MAINT_BASE_MAX_AGE_DAYS:-7}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SUPPORTED_SUITES=(bookworm trixie)
# Bump BASE_RECIPE when build_base changes.
BASE_RECIPE=3
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$REPO/build/package-tests
# Debian's tools first (not a pyenv python3 that may come first on PATH).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# dist/torrust-maint_<version>_all.deb for debian/changelog's version (make deb builds it), or
# the .deb TORRUST_MAINT_DEB names.
package_deb() {
    local version deb=${TORRUST_MAINT_DEB:-}
    if [[ -z $deb ]]; then
        version=$(cd "$REPO" && dpkg-parsechangelog -S Version)
        deb=$REPO/dist/torrust-maint_${version}_all.deb
    fi
    if [[ ! -f $deb ]]; then
        log "no $deb: run \`make deb\` first"
        return 1
    fi
    printf '%s\n' "$deb"
}

check_suites() {
    local suite known
    for suite in "$@"; do
        for known in "${SUPPORTED_SUITES[@]}"; do
            [[ $suite == "$known" ]] && continue 2
        done
        log "unknown release '$suite' (known: ${SUPPORTED_SUITES[*]})"
        return 1
    done
}

sources_list() {
    local suite=$1
    printf 'deb %s %s main\n' "$MIRROR" "$suite"
    printf 'deb %s %s-updates main\n' "$MIRROR" "$suite"
    printf 'deb %s %s-security main\n' "$SECURITY_MIRROR" "$suite"
}

debootstrap_args() {
    local suite=$1
    printf '%s\n' --variant=minbase --merged-usr --components=main --include=eatmydata \
        "--keyring=$KEYRING" "$suite"
}

base_hash() {
    local suite=$1
    { debootstrap_args "$suite"; sources_list "$suite"; echo "$MIRROR $BASE_RECIPE"; } \
        | sha256sum | cut -c1-16
}

build_base() {
    local suite=$1 tarball=$2 root status=0
    root=$(mktemp -d "/var/tmp/torrust-maint-base-$suite.XXXXXX")
    log "debootstrap $suite -> $tarball"
    local -a args
    mapfile -t args < <(debootstrap_args "$suite")
    if debootstrap "${args[@]}" "$root" "$MIRROR" >"$root.log" 2>&1; then
        finish_base "$suite" "$root" "$tarball" || status=1
    else
        tail -n 30 "$root.log" >&2
        status=1
    fi
    rm -rf "$root" "$root.log" "$tarball.tmp"
    return "$status"
}

# (Each step is checked: this runs where `set -e` does not apply.)
finish_base() {
    local suite=$1 root=$2 tarball=$3
    sources_list "$suite" >"$root/etc/apt/sources.list" || return 1
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* || return 1
    # The tarball's "./" would carry mktemp's 0700, which unpacking gives the chroot's /:
    # apt's _apt user could not reach its directories ("Download is performed unsandboxed as
    # root ... couldn't be accessed by user '_apt'").
    chmod 0755 "$root" || return 1
    # piuparts unpacks with `tar -zxf`; docker import reads gzip too.
    tar -C "$root" --numeric-owner -czf "$tarball.tmp" . || return 1
    mv "$tarball.tmp" "$tarball"
}

# Print the path of the suite's cached base tarball, building it first when needed. A lock per
# release: the piuparts and autopkgtest scripts may ask for the same base at the same time.
ensure_base() {
    local suite=$1 dir tarball
    dir=$CACHE/$suite
    tarball=$dir/base-$(base_hash "$suite").tgz
    mkdir -p "$dir"
    (
        flock 9
        if [[ -f $tarball ]] && [[ -z $(find "$tarball" -mtime "+$BASE_MAX_AGE_DAYS") ]]; then
            exit 0
        fi
        find "$dir" -maxdepth 1 -name 'base-*.tgz' -delete
        build_base "$suite" "$tarball"
    ) 9>"$dir/.lock" || return 1
    printf '%s\n' "$tarball"
}

# Run "$@" once per suite in parallel ("$@" gets the suite as its last argument); the status
# is 1 when any of them failed.
for_each_suite() {
    local -a pids=()
    local suite pid status=0
    for suite in "${SUITES[@]}"; do
        "$@" "$suite" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || status=1
    done
    return "$status"
}
