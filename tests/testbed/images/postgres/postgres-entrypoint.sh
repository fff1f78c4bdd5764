#!/bin/bash
# Initialise an empty PGDATA the way the official postgres image does, then run the server
# as the postgres user: POSTGRES_USER (the superuser initdb makes, default postgres),
# POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default:
# the user's name), POSTGRES_INITDB_ARGS (extra initdb options, split on blanks).
set -euo pipefail

export PGDATA=${PGDATA:-/var/lib/postgresql/data}
SOCKET_DIR=/var/run/postgresql

log() { printf 'entrypoint: %s\n' "$*" >&2; }

if [[ $# -eq 0 || "$1" == -* ]]; then
    set -- postgres "$@"
fi

# As root: own the data and socket directories, then run this script again as postgres.
if [[ "$1" == postgres && "$(id -u)" == 0 ]]; then
    mkdir -p "$PGDATA" "$SOCKET_DIR"
    chown postgres:postgres "$PGDATA" "$SOCKET_DIR"
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0700 "$PGDATA"
    chmod 3777 "$SOCKET_DIR"
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

check_settings() {
    POSTGRES_USER=${POSTGRES_USER:-postgres}
    POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
    POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [[ -z "${POSTGRES_PASSWORD:-}" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
        log "the database is uninitialised and POSTGRES_PASSWORD is not set;"
        log "set it (or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection unchecked)"
        exit 1
    fi
    if [[ "$POSTGRES_USER" == *[\"\$\'\\]* ]]; then
        log "POSTGRES_USER must not contain any of \" \$ ' \\ (PostgreSQL refuses them in the"
        log "bootstrap superuser's name)"
        exit 1
    fi
}

# initdb reads the password from a pipe: it is never written to a file of its own. (--auth
# only quiets its warning: configure writes pg_hba.conf.)
run_initdb() {
    local -a extra=()
    read -r -a extra <<<"${POSTGRES_INITDB_ARGS:-}"
    if [[ -n "${POSTGRES_PASSWORD:-}" ]]; then
        initdb --username="$POSTGRES_USER" --auth=trust \
            --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${extra[@]}" >/dev/null
    else
        initdb --username="$POSTGRES_USER" --auth=trust "${extra[@]}" >/dev/null
    fi
}

configure() {
    cat >"$PGDATA/pg_hba.conf" <<HBA
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
host    all       all   ::1/128       trust
local   replication all               trust
host    replication all 127.0.0.1/32  trust
host    replication all ::1/128       trust
host    all       all   all           $POSTGRES_HOST_AUTH_METHOD
HBA
    printf "\nlisten_addresses = '*'\npassword_encryption = scram-sha-256\n" \
        >>"$PGDATA/postgresql.conf"
}

# A temporary server on a private socket (no TCP): a healthcheck cannot see it as ready.
# psql quotes the database's name itself (%I of :'db').
create_database() {
    local socket
    socket=$(mktemp -d)
    pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses='' -c unix_socket_directories=$socket" start
    psql -v ON_ERROR_STOP=1 -X -q --host="$socket" --username="$POSTGRES_USER" --no-password \
        --dbname=postgres --set=db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    pg_ctl -D "$PGDATA" -w -s -m fast stop
    rmdir "$socket"
}

if [[ "$1" == postgres && ! -s "$PGDATA/PG_VERSION" ]]; then
    check_settings
    log "initialising $PGDATA (superuser $POSTGRES_USER, database $POSTGRES_DB)"
    run_initdb
    configure
    create_database
    log "initialised"
fi

exec "$@"
