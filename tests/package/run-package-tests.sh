#!/bin/bash
# `make test-package`: run-piuparts.sh and run-autopkgtest.sh side by side (each runs its
# releases in parallel too: the work is mostly downloads and dpkg, not CPU), then the timings.
# Fails when either fails; both always run to the end.
#
# Usage: run-package-tests.sh [bookworm] [trixie]
set -euo pipefail
cd "$(dirname "$0")"

start=$SECONDS
bash ./run-piuparts.sh "$@" &
piuparts=$!
bash ./run-autopkgtest.sh "$@" &
autopkgtest=$!
status=0
wait "$piuparts" || { status=1; echo "run-package-tests: piuparts FAILED" >&2; }
wait "$autopkgtest" || { status=1; echo "run-package-tests: autopkgtest FAILED" >&2; }
printf 'run-package-tests: %s in %d s\n' "$( ((status == 0)) && echo PASS || echo FAIL)" \
    "$((SECONDS - start))"
exit "$status"
