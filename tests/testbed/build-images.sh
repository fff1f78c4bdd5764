#!/bin/bash
# Build the test bed's images locally (nothing can be pulled), each tagged with a
# label holding the hash of its inputs: an image whose inputs did not change is
# not built again.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LABEL=org.torrust-maint.content-hash
BASE_REPO=torrust-maint-test/base
TRACKER_IMAGE=torrust-maint-test/tracker:latest
MARIADB_IMAGE=torrust-maint-test/mariadb:latest
REST_SERVER_IMAGE=torrust-maint-test/rest-server:latest
SFTP_SERVER_IMAGE=torrust-maint-test/sftp-server:latest
POSTGRES_REPO=torrust-maint-test/postgres
BASE_PACKAGES=python3,python3-pymysql,python3-psycopg,ca-certificates

log() { printf 'build-images: %s\n' "$*" >&2; }

content_hash() { cat "$@" | sha256sum | cut -c1-16; }

image_hash() {
    docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true
}

# A minimal Debian root filesystem of one suite with python3, imported as an image.
build_base() {
    local suite=$1 hash=$2 image=$3 rootfs
    rootfs=$(mktemp -d)
    log "debootstrap $suite ($BASE_PACKAGES) -> $image"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$suite" "$rootfs" \
        http://deb.debian.org/debian >"$rootfs.log" 2>&1 || {
        tail -n 30 "$rootfs.log" >&2
        exit 1
    }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import --change "LABEL $LABEL=$hash" - "$image" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
}

# Bump BASE_RECIPE when build_base changes.
BASE_RECIPE=1

base_recipe_hash() {
    printf '%s %s %s\n' "$1" "$BASE_PACKAGES" "$BASE_RECIPE" | sha256sum | cut -c1-16
}

ensure_base() {
    local suite=$1 hash=$2 image=$3
    if [[ "$(image_hash "$image")" != "$hash" ]]; then
        build_base "$suite" "$hash" "$image"
    fi
}

# Debian 12 is the base of every image but postgres:17's, which is Debian 13's (as upstream's).
base_hash=$(base_recipe_hash bookworm)
base_image="$BASE_REPO:$base_hash"
trixie_hash=$(base_recipe_hash trixie)
trixie_image="$BASE_REPO:$trixie_hash"
ensure_base bookworm "$base_hash" "$base_image" &
bookworm_pid=$!
ensure_base trixie "$trixie_hash" "$trixie_image" &
trixie_pid=$!
status=0
wait "$bookworm_pid" || status=1
wait "$trixie_pid" || status=1
((status == 0)) || exit 1

tracker_hash=$(printf '%s\n' "$base_hash" | cat - "$HERE/images/tracker/Dockerfile" \
    "$HERE/standin_tracker.py" | sha256sum | cut -c1-16)
if [[ "$(image_hash "$TRACKER_IMAGE")" != "$tracker_hash" ]]; then
    log "building $TRACKER_IMAGE"
    DOCKER_BUILDKIT=0 docker build --quiet --label "$LABEL=$tracker_hash" \
        --build-arg "BASE_IMAGE=$base_image" -t "$TRACKER_IMAGE" \
        -f "$HERE/images/tracker/Dockerfile" "$HERE" >/dev/null
fi
# MariaDB from Debian, standing in for the deployer's mysql:8.4 (tagged as such too).
mariadb_hash=$(printf '%s\n' "$base_hash" | cat - "$HERE/images/mariadb/Dockerfile" \
    "$HERE/images/mariadb/mysql-entrypoint.sh" | sha256sum | cut -c1-16)
if [[ "$(image_hash "$MARIADB_IMAGE")" != "$mariadb_hash" ]]; then
    log "building $MARIADB_IMAGE (Debian's mariadb-server)"
    DOCKER_BUILDKIT=0 docker build --quiet --label "$LABEL=$mariadb_hash" \
        --build-arg "BASE_IMAGE=$base_image" -t "$MARIADB_IMAGE" \
        "$HERE/images/mariadb" >/dev/null
fi
docker tag "$MARIADB_IMAGE" mysql:8.4

# Off-site targets for restic: a REST server (Debian's rclone) and an sftp server (openssh).
rest_hash=$(printf '%s\n' "$base_hash" | cat - "$HERE/images/rest-server/Dockerfile" \
    "$HERE/images/rest-server/rest-entrypoint.sh" | sha256sum | cut -c1-16)
if [[ "$(image_hash "$REST_SERVER_IMAGE")" != "$rest_hash" ]]; then
    log "building $REST_SERVER_IMAGE (Debian's rclone serve restic)"
    DOCKER_BUILDKIT=0 docker build --quiet --label "$LABEL=$rest_hash" \
        --build-arg "BASE_IMAGE=$base_image" -t "$REST_SERVER_IMAGE" \
        "$HERE/images/rest-server" >/dev/null
fi
sftp_hash=$(printf '%s\n' "$base_hash" | cat - "$HERE/images/sftp-server/Dockerfile" \
    "$HERE/images/sftp-server/sftp-entrypoint.sh" "$HERE/images/sftp-server/sshd-container.conf" \
    | sha256sum | cut -c1-16)
if [[ "$(image_hash "$SFTP_SERVER_IMAGE")" != "$sftp_hash" ]]; then
    log "building $SFTP_SERVER_IMAGE (Debian's openssh-server)"
    DOCKER_BUILDKIT=0 docker build --quiet --label "$LABEL=$sftp_hash" \
        --build-arg "BASE_IMAGE=$base_image" -t "$SFTP_SERVER_IMAGE" \
        "$HERE/images/sftp-server" >/dev/null
fi

# PostgreSQL from Debian, standing in for the official postgres image (tagged as such too):
# 15 from Debian 12, 17 from Debian 13 (the deployer's compose file uses postgres:17).
build_postgres() {
    local major=$1 from_hash=$2 from_image=$3 image="$POSTGRES_REPO:$1" hash
    hash=$(printf '%s %s\n' "$from_hash" "$major" | cat - "$HERE/images/postgres/Dockerfile" \
        "$HERE/images/postgres/postgres-entrypoint.sh" | sha256sum | cut -c1-16)
    if [[ "$(image_hash "$image")" != "$hash" ]]; then
        log "building $image (Debian's postgresql-$major)"
        DOCKER_BUILDKIT=0 docker build --quiet --label "$LABEL=$hash" \
            --build-arg "BASE_IMAGE=$from_image" --build-arg "PG_MAJOR=$major" \
            -t "$image" "$HERE/images/postgres" >/dev/null
    fi
    docker tag "$image" "postgres:$major"
}
build_postgres 15 "$base_hash" "$base_image"
build_postgres 17 "$trixie_hash" "$trixie_image"

log "ready: $base_image, $trixie_image, $TRACKER_IMAGE, $MARIADB_IMAGE (= mysql:8.4)," \
    "$POSTGRES_REPO:15 (= postgres:15), $POSTGRES_REPO:17 (= postgres:17)"
