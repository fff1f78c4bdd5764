#!/bin/sh
# Make this container's host keys if missing, install AUTHORIZED_KEY for user `backup`, then
# run sshd in the foreground, logging to stderr. Further arguments go to sshd.
set -eu

: "${AUTHORIZED_KEY:?AUTHORIZED_KEY must hold the public key allowed to log in as backup}"
ssh-keygen -A >/dev/null
mkdir -p /run/sshd /home/backup/.ssh /srv/restic
printf '%s\n' "$AUTHORIZED_KEY" >/home/backup/.ssh/authorized_keys
chmod 0700 /home/backup/.ssh
chmod 0600 /home/backup/.ssh/authorized_keys
chown -R backup:backup /home/backup/.ssh
chown backup:backup /srv/restic
echo "sftp-entrypoint: sshd on port 22" >&2
exec /usr/sbin/sshd -D -e "$@"
