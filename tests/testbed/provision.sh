#!/bin/bash
# Make this machine a test bed: Debian packages the tests need, a Docker engine
# (started without systemd when none runs) and the compose v2 plugin.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail

APT_PACKAGES=(
    docker.io sqlite3 zstd gzip debootstrap tar xfsprogs
    python3 python3-pytest python3-systemd python3-pymysql python3-psycopg python3-sdnotify
    python3-zstandard mypy
    # issue 10: notifications, systemd over D-Bus, progress bars; test receivers
    apprise python3-pystemd python3-tqdm python3-aiosmtpd
    # issue 11: off-site copies through restic; sftp's client for restic's sftp backend
    restic openssh-client
    # issue 13: cron schedules checked against cron's next runs
    python3-croniter
    # make deb / make test-system: build the .deb, lintian, logrotate -d, systemd-analyze
    build-essential debhelper dh-python pybuild-plugin-pyproject python3-all
    python3-setuptools python3-wheel lintian logrotate systemd
    # make test-package (issue 15): piuparts with adequate, autopkgtest (its docker backend
    # uses the engine above; debootstrap is listed above)
    piuparts adequate autopkgtest apt-utils
    # issue 15: make repo (reprepro, gpg signing), the upgrade tests' previous release (git)
    reprepro gnupg gpgv git
)

log() { printf 'provision: %s\n' "$*" >&2; }

missing_packages() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
            || printf '%s\n' "$pkg"
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# Compose v2 from Debian 13 (a static Go binary that runs on Debian 12 too).
install_compose_v2() {
    if docker compose version >/dev/null 2>&1; then
        return
    fi
    log "installing docker-compose v2 from Debian trixie"
    local source=/etc/apt/sources.list.d/torrust-maint-trixie.sources
    local workdir
    workdir=$(mktemp -d)
    cat >"$source" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -qq
    (cd "$workdir" && apt-get download -qq docker-compose/trixie)
    rm -f "$source"
    apt-get update -qq
    dpkg -i "$workdir"/docker-compose_*.deb >/dev/null
    rm -rf "$workdir"
}

start_docker_engine() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    log "starting dockerd"
    setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &
    local i
    for i in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then
            return
        fi
        sleep 1
    done
    log "dockerd did not come up; see /var/log/dockerd.log"
    tail -n 20 /var/log/dockerd.log >&2
    exit 1
}

install_packages
install_compose_v2
start_docker_engine
log "ready: $(docker version --format 'engine {{.Server.Version}}') / $(docker compose version --short)"
