#!/bin/bash
# Build the systemd "host" images of the system tests (tests/system): a minimal Debian 12
# (bookworm) and Debian 13 (trixie) root filesystem with systemd as PID 1, made by
# debootstrap and `docker import`ed (nothing can be pulled). Each image carries a label with
# the hash of its recipe: an image whose recipe did not change is not built again.
#
# The images hold only systemd, apt and cron (the legacy cron-based backup that `torrust-maint
# migrate` switches from must really run); `apt install ./torrust-maint_*.deb` in the test fetches
# the package's dependencies from Debian as on a real host. docker.service, docker.socket and
# containerd.service are masked in advance: the system test mounts the outer engine's socket,
# and docker.io (Debian 12's only package with the Docker CLI) would otherwise start its own
# daemon on top of it.
#
# Usage: build-host-images.sh [bookworm] [trixie]   (default: both, in parallel)
set -euo pipefail

LABEL=org.torrust-maint.content-hash
REPO=torrust-maint-test/host
HOST_PACKAGES=systemd,systemd-sysv,dbus,ca-certificates,cron
MASKED_UNITS=(docker.service docker.socket containerd.service systemd-udevd.service
              getty@tty1.service console-getty.service systemd-firstboot.service)
# Bump HOST_RECIPE when build_host changes.
HOST_RECIPE=1

log() { printf 'build-host-images: %s\n' "$*" >&2; }

recipe_hash() {
    printf '%s %s %s %s\n' "$1" "$HOST_PACKAGES" "${MASKED_UNITS[*]}" "$HOST_RECIPE" \
        | sha256sum | cut -c1-16
}

image_hash() {
    docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true
}

build_host() {
    local suite=$1 hash=$2 image=$3 rootfs unit
    rootfs=$(mktemp -d "/var/tmp/torrust-maint-host-$suite.XXXXXX")
    log "debootstrap $suite ($HOST_PACKAGES) -> $image"
    if ! debootstrap --variant=minbase --include="$HOST_PACKAGES" "$suite" "$rootfs" \
        http://deb.debian.org/debian >"$rootfs.log" 2>&1; then
        tail -n 30 "$rootfs.log" >&2
        rm -rf "$rootfs" "$rootfs.log"
        return 1
    fi
    for unit in "${MASKED_UNITS[@]}"; do
        ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
    done
    # systemd creates a machine id at boot; apt lists are fetched by the test (never stale).
    : >"$rootfs/etc/machine-id"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        --change "LABEL $LABEL=$hash" \
        --change 'ENV container=docker' \
        --change 'CMD ["/lib/systemd/systemd"]' \
        - "$image" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
    log "built $image"
}

ensure_host() {
    local suite=$1 hash image
    hash=$(recipe_hash "$suite")
    image="$REPO-$suite:latest"
    if [[ "$(image_hash "$image")" == "$hash" ]]; then
        return 0
    fi
    build_host "$suite" "$hash" "$image"
}

suites=("$@")
((${#suites[@]})) || suites=(bookworm trixie)
pids=()
for suite in "${suites[@]}"; do
    ensure_host "$suite" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
((status == 0)) || { log "building a host image failed"; exit 1; }
log "ready: $(printf "$REPO-%s:latest " "${suites[@]}")"
