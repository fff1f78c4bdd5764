#!/bin/bash
# autopkgtest (Debian's as-installed package test runner) on debian/tests (control + smoke)
# and the .deb that `make deb` built, for each Debian release given (default: bookworm trixie,
# run in parallel).
#
# Backend: autopkgtest-virt-docker, with Debian 12's autopkgtest (5.28) on this host. The
# testbed is a container of the release's minbase (common.sh's cached debootstrap base,
# `docker import`ed: nothing is pulled from a registry), fresh for the run and removed after
# it. Why this one: the Docker engine is already part of the test bed and root may use it, so
# each run gets a throwaway Debian 12 or 13 with no configuration added to the host. The
# others in 5.28: virt-null would test on this host itself (not a clean Debian 12/13),
# virt-schroot needs chroot definitions in /etc/schroot, virt-lxc/lxd/qemu an lxc setup or a
# VM image; virt-unshare could use the same tarball but adds nothing here. autopkgtest
# installs the test's dependencies (`Depends: @`, i.e. the .deb) with apt from the Debian
# mirror and runs the test (as root: the minbase has no other user; smoke also passes as a
# normal user). It fails on a non-zero exit; stderr is allowed (Restrictions: allow-stderr).
#
# Results: build/package-tests/<release>/autopkgtest/ (log, summary, the testbed's packages).
#
# Usage: run-autopkgtest.sh [bookworm] [trixie]
set -euo pipefail
source "$(dirname "$0")/common.sh"

LABEL=org.torrust-maint.content-hash

# The testbed image: the cached base tarball imported as is. Rebuilt when the tarball is.
ensure_image() {
    local suite=$1 tarball=$2 image=torrust-maint-test/autopkgtest-$1:latest want have
    want="$(basename "$tarball")@$(stat -c %Y "$tarball")"
    have=$(docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$image" \
        2>/dev/null || true)
    if [[ $have != "$want" ]]; then
        log "docker import $tarball -> $image"
        docker import --change "LABEL $LABEL=$want" "$tarball" "$image" >/dev/null || return 1
    fi
    printf '%s\n' "$image"
}

run_suite() {
    local suite=$1 dir base image src start status=0 elapsed
    dir=$OUT/$suite
    mkdir -p "$dir"
    start=$SECONDS
    base=$(ensure_base "$suite") || { log "$suite: no base tarball"; return 1; }
    image=$(ensure_image "$suite" "$base") || { log "$suite: no testbed image"; return 1; }
    # The source side autopkgtest reads: debian/control (which binary `@` means),
    # debian/changelog and debian/tests. Copied so that a build running in the checkout at
    # the same time cannot change it under autopkgtest.
    src=$(mktemp -d "/var/tmp/torrust-maint-autopkgtest-$suite.XXXXXX")
    mkdir -p "$src/debian/source"
    cp "$REPO"/debian/{control,changelog,copyright} "$src/debian/"
    cp "$REPO/debian/source/format" "$src/debian/source/"
    cp -r "$REPO/debian/tests" "$src/debian/"
    rm -rf "$dir/autopkgtest"
    # --apt-upgrade: apt-get update and dist-upgrade first (the imported base has no package
    # lists and may be a few days old: the test runs on the release as it is today).
    # After `--`: the virt server and its image; docker run's --init makes the container's
    # `sleep infinity` stop at once when autopkgtest is done (no 10 s docker stop timeout).
    autopkgtest --apt-upgrade --output-dir "$dir/autopkgtest" "$DEB" "$src/" \
        -- docker "$image" --init >"$dir/autopkgtest.log" 2>&1 || status=$?
    rm -rf "$src"
    elapsed=$((SECONDS - start))
    local results
    results=$(sed -n '/@@@@ summary/,$p' "$dir/autopkgtest.log" | tail -n +2 | paste -sd ';')
    if ((status == 0)); then
        printf 'autopkgtest %-8s PASS in %3d s: %s\n' "$suite" "$elapsed" "$results"
        return 0
    fi
    # 2: a test was skipped, 4: failed, 8: no test ran, 12/14: erroneous package or
    # arguments, 16: the testbed failed (autopkgtest(1), EXIT STATUS). Only 0 passes.
    printf 'autopkgtest %-8s FAIL in %3d s (exit %d): %s (%s)\n' "$suite" "$elapsed" "$status" \
        "${results:-no summary}" "$dir/autopkgtest.log"
    tail -n 40 "$dir/autopkgtest.log"
    return 1
}

SUITES=("$@")
((${#SUITES[@]})) || SUITES=("${SUPPORTED_SUITES[@]}")
check_suites "${SUITES[@]}"
DEB=$(package_deb)
log "$(basename "$DEB") on ${SUITES[*]} (autopkgtest $(dpkg-query -W -f '${Version}' autopkgtest), virt-docker)"
for_each_suite run_suite
