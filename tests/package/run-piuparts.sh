#!/bin/bash
# piuparts (Debian's installation, upgrade, removal and purge tester) on the .deb that
# `make deb` built, in a chroot of each Debian release given (default: bookworm trixie, run in
# parallel). Each chroot starts from the cached debootstrap base (common.sh); piuparts
# upgrades it, resolves the package's dependencies from the Debian mirror, and runs the
# maintainer scripts with systemd installed (a dependency) but not running, as in any chroot.
# Two piuparts runs per release, one after the other:
#   install  install, remove, reinstall over the config-files state, purge, reinstall, purge
#   upgrade  install the previous release with apt (PREVIOUS_DEB, by default the .deb in
#            dist/previous-release that `make previous-release` builds from its git tag),
#            upgrade to this .deb, purge
# (piuparts' --install-remove-install would turn its upgrade test into remove-then-install,
# hence two runs.)
#
# Each run must be clean: piuparts' exit status, and no WARN/Warning line in its log either
# (adequate, broken symlinks, files left behind). Each exception below is an --ignore with the
# reason next to it. Logs: build/package-tests/<release>/piuparts-{install,upgrade}.log.
# (On Debian 13 the logs show dpkg's "while removing torrust-maint, directory
# '/lib/systemd/system' not empty so not removed" at purge: the units are shipped in
# /lib/systemd/system, where Debian 12's dh_installsystemd wants them, and on 13 no other
# package claims that aliased directory, so dpkg tries to remove it. Harmless: a dpkg
# message, not a piuparts finding.)
#
# Usage: [PREVIOUS_DEB=dist/previous-release/torrust-maint_0.1.0_all.deb] \
#            run-piuparts.sh [bookworm] [trixie]
set -euo pipefail
source "$(dirname "$0")/common.sh"

piuparts_options() {
    local suite=$1 mode=$2 previous_repo=$3
    local -a options=(
        # The release with its updates and security suites, as on a real host (piuparts'
        # default is the release alone, with contrib and non-free).
        --mirror "$MIRROR main"
        --extra-repo "deb $MIRROR $suite-updates main"
        --extra-repo "deb $SECURITY_MIRROR $suite-security main"
        # Files the purge leaves in /tmp count as well.
        --pedantic-purge-test
        # adequate(1) runs after each installation (missing modules, Python not
        # byte-compiled, broken symlinks, missing copyright...): any tag fails the run.
        --fail-if-inadequate
        --fail-on-broken-symlinks
        --tmpdir /var/tmp

        # Exceptions: what piuparts reports that is not this package's. All but the last come
        # from systemd, which the package depends on through python3-pystemd (Depends:
        # systemd) and which is not in the minbase chroot: piuparts installs it with the
        # dependencies and purges it at the end, and these are what systemd-tmpfiles created
        # when systemd was configured (no package owns them; systemd's purge leaves them).
        # Checked with `--warn-on-others`, which attributed every one of them to the
        # dependencies, none to torrust-maint.
        # - tmpfiles.d/systemd.conf: `d /var/lib/private`, `/var/log/private`,
        #   `/var/cache/private` (for DynamicUser= units).
        --ignore /var/lib/private/
        --ignore /var/log/private/
        --ignore /var/cache/private/
        # - Debian 12: tmpfiles.d/systemd.conf `d /var/lib/systemd/coredump` and
        #   systemd-pstore.conf `d /var/lib/systemd/pstore` (Debian 13's systemd.postrm
        #   removes both on purge; Debian 12's does not).
        --ignore /var/lib/systemd/coredump/
        --ignore /var/lib/systemd/pstore/
        # - tmpfiles.d/provision.conf: `d- /root/.ssh` (for ssh keys passed as credentials).
        --ignore /root/.ssh/
        # - Debian 13, tmpfiles.d/debian.conf: `L+ /etc/default/locale -> ../locale.conf` and
        #   `L+ /etc/vconsole.conf -> default/keyboard`: dangling in a chroot without locales
        #   or keyboard-configuration (a broken-symlink warning from the moment the
        #   dependencies are installed, before torrust-maint is).
        --ignore /etc/default/locale
        --ignore /etc/vconsole.conf
        # - Debian 13: not systemd but debconf's dpkg-preconfigure, which apt runs before
        #   installing packages and which (re)creates its scratch directory
        #   /var/cache/debconf/tmp.ci (torrust-maint has no debconf templates).
        --ignore /var/cache/debconf/tmp.ci/
    )
    if [[ $mode == install ]]; then
        options+=(
            # Beyond install -> remove -> purge: reinstall after a purge (the maintainer
            # scripts must not depend on what the purge removed), and reinstall over the
            # config-files state a removal leaves (the conffile kept and reused).
            --install-purge-install
            --install-remove-install
            # The upgrade has its own run.
            --no-upgrade-test
        )
    else
        options+=(
            # The previous release as the archive's version: a flat repository of its .deb,
            # bind-mounted into the chroot (unsigned, the local file trusted).
            --bindmount "$previous_repo"
            --extra-repo "deb [trusted=yes] file://$previous_repo ./"
            --no-install-purge-test
            # A file moved between / and /usr from one version to the next (e.g. a unit from
            # /lib/systemd/system to /usr/lib/systemd/system) can vanish on upgrade on a
            # merged-/usr system (DEP 17): fail on any.
            --warn-on-usr-move=fail
        )
    fi
    printf '%s\n' "${options[@]}"
}

# One piuparts run: MODE is install or upgrade. Prints a PASS or FAIL line; 1 on failure.
run_piuparts() {
    local suite=$1 mode=$2 base=$3 previous_repo=$4 logfile start status=0 elapsed
    logfile=$OUT/$suite/piuparts-$mode.log
    mkdir -p "$OUT/$suite"
    start=$SECONDS
    local -a options
    mapfile -t options < <(piuparts_options "$suite" "$mode" "$previous_repo")
    piuparts --distribution "$suite" --basetgz "$base" "${options[@]}" "$DEB" \
        >"$logfile" 2>&1 || status=$?
    elapsed=$((SECONDS - start))
    # piuparts' own verdict, then every warning it logged (a pass with warnings is no pass).
    local warnings passes
    warnings=$(grep -E '^[0-9]+m[0-9.]+s (ERROR|INFO): (WARN|Warning)' "$logfile" || true)
    passes=$(grep -E '^[0-9]+m[0-9.]+s INFO: PASS' "$logfile" | sed -E 's/^\S+ INFO: //' \
        | paste -sd ' ' || true)
    if ((status == 0)) && [[ -z $warnings ]]; then
        printf 'piuparts %-8s %-7s PASS in %3d s: %s\n' "$suite" "$mode" "$elapsed" "$passes"
        return 0
    fi
    printf 'piuparts %-8s %-7s FAIL in %3d s (exit %d): %s\n' "$suite" "$mode" "$elapsed" \
        "$status" "$logfile"
    # Each FAIL/WARN line with the indented lines (file lists, output) that follow it.
    awk '/^[0-9]+m[0-9.]+s (ERROR|INFO): (FAIL|WARN|Warning)/ { show = 1; print; next }
         /^[0-9]+m[0-9.]+s / { show = 0 }
         show' "$logfile" | head -n 60
    return 1
}

run_suite() {
    local suite=$1 base repo status=0
    mkdir -p "$OUT/$suite"
    base=$(ensure_base "$suite") || { log "$suite: no base tarball"; return 1; }
    run_piuparts "$suite" install "$base" "" || status=1
    repo=$(previous_repo "$suite") || { log "$suite: no repository of $PREVIOUS_DEB"; return 1; }
    run_piuparts "$suite" upgrade "$base" "$repo" || status=1
    rm -rf "$repo"
    return "$status"
}

# The previous release's .deb as a flat apt repository (Packages only) for an upgrade run. One
# copy per release: piuparts looks for processes left in its chroot with `lsof +D`, which
# matches files by inode, so a directory bind-mounted into two chroots at once would make one
# piuparts see (and kill) the other's apt.
previous_repo() {
    local suite=$1 repo
    repo=$(mktemp -d "/var/tmp/torrust-maint-previous-$suite.XXXXXX")
    cp "$PREVIOUS_DEB" "$repo/"
    (cd "$repo" && apt-ftparchive packages . >Packages) || { rm -rf "$repo"; return 1; }
    chmod 0755 "$repo"
    printf '%s\n' "$repo"
}

SUITES=("$@")
((${#SUITES[@]})) || SUITES=("${SUPPORTED_SUITES[@]}")
check_suites "${SUITES[@]}"
DEB=$(package_deb)
if [[ -z ${PREVIOUS_DEB:-} ]]; then
    PREVIOUS_DEB=$(find "$REPO/dist/previous-release" -maxdepth 1 -name 'torrust-maint_*_all.deb' \
        2>/dev/null | sort -V | tail -n 1)
fi
if [[ ! -f $PREVIOUS_DEB ]]; then
    log "no previous release's .deb (PREVIOUS_DEB, default dist/previous-release/*.deb), which" \
        "the upgrade runs start from: \`make previous-release\` builds it (\`make piuparts\` does)"
    exit 1
fi
log "$(basename "$DEB") on ${SUITES[*]}, upgrade from $(basename "$PREVIOUS_DEB")" \
    "(piuparts $(dpkg-query -W -f '${Version}' piuparts))"
for_each_suite run_suite
