#!/bin/bash
# Initialise an empty datadir the way the official mysql image does, then run the server.
set -euo pipefail

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld "$DATADIR"

# Options only MySQL knows (e.g. the deployer's --mysql-native-password=ON) are dropped.
args=()
for arg in "$@"; do
    case "$arg" in
        --mysql-native-password=*|--default-authentication-plugin=*) echo "entrypoint: ignoring MySQL-only option $arg" >&2 ;;
        *) args+=("$arg") ;;
    esac
done
if [[ ${#args[@]} -eq 0 || "${args[0]}" == -* ]]; then
    args=(mariadbd "${args[@]}")
fi

sql_string() { local s=${1//\\/\\\\}; s=${s//\'/\\\'}; printf "'%s'" "$s"; }
sql_name() { local s=${1//\`/\`\`}; printf '`%s`' "$s"; }

if [[ ! -d "$DATADIR/mysql" ]]; then
    : "${MYSQL_ROOT_PASSWORD:?MYSQL_ROOT_PASSWORD must be set}"
    echo "entrypoint: initialising $DATADIR" >&2
    mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
        --auth-root-authentication-method=normal >/dev/null
    mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
    pid=$!
    for _ in $(seq 1 60); do
        mariadb-admin --socket="$SOCKET" ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    {
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$MYSQL_ROOT_PASSWORD");"
        echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_string "$MYSQL_ROOT_PASSWORD");"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [[ -n "${MYSQL_DATABASE:-}" ]]; then
            echo "CREATE DATABASE IF NOT EXISTS $(sql_name "$MYSQL_DATABASE") CHARACTER SET utf8mb4;"
        fi
        if [[ -n "${MYSQL_USER:-}" && -n "${MYSQL_PASSWORD:-}" ]]; then
            echo "CREATE USER $(sql_string "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
            if [[ -n "${MYSQL_DATABASE:-}" ]]; then
                echo "GRANT ALL ON $(sql_name "$MYSQL_DATABASE").* TO $(sql_string "$MYSQL_USER")@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --socket="$SOCKET" -uroot
    MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mariadb-admin --socket="$SOCKET" -uroot shutdown
    wait "$pid" || true
    echo "entrypoint: initialised" >&2
fi

if [[ "${args[0]}" == mariadbd || "${args[0]}" == mysqld ]]; then
    exec "${args[@]}" --user=mysql --datadir="$DATADIR"
fi
exec "${args[@]}"
