#!/bin/sh
# Serve /data over restic's REST protocol on port 8000 with rclone. HTTP basic auth when
# REST_USER and REST_PASSWORD are set (both or neither); REST_APPEND_ONLY=1 forbids deletions.
# Further arguments go to `rclone serve restic` (e.g. -v for access logs).
set -eu

set -- --addr 0.0.0.0:8000 "$@"
if [ -n "${REST_USER:-}" ] || [ -n "${REST_PASSWORD:-}" ]; then
    : "${REST_USER:?REST_USER must be set with REST_PASSWORD}"
    : "${REST_PASSWORD:?REST_PASSWORD must be set with REST_USER}"
    set -- --user "$REST_USER" --pass "$REST_PASSWORD" "$@"
else
    echo "rest-entrypoint: REST_USER/REST_PASSWORD unset: no authentication" >&2
fi
if [ "${REST_APPEND_ONLY:-0}" = 1 ]; then
    set -- --append-only "$@"
fi
mkdir -p /data
echo "rest-entrypoint: rclone serve restic on 0.0.0.0:8000 over /data" >&2
exec rclone serve restic --config /dev/null "$@" /data
