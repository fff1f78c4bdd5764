#!/bin/bash
# Build the previous release's .deb from git history, for the upgrade tests
# (tests/system/test_upgrade.py): `git archive` of the release tag (default v0.1.0) into
# dist/previous-release/src, then dpkg-buildpackage there, as `make deb` built it at the time.
# Cached by commit: dist/previous-release/COMMIT names the tag's commit the .deb was built
# from, and a rerun with the same commit does nothing.
#
# Usage: build-previous-release.sh [TAG [COMMIT]]
# COMMIT: the tag's commit, used when a clone lacks the tag (a clone of one branch without
# its tags); it must be in this clone's history.
set -euo pipefail

TAG=${1:-v0.1.0}
TAG_COMMIT=${2:-}
OUT=dist/previous-release
DEBIAN_PATH=/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'build-previous-release: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

cd "$(dirname "$0")/.."
commit=$(git rev-parse --verify --quiet "refs/tags/$TAG^{commit}") \
    || { [[ -n "$TAG_COMMIT" ]] && commit=$(git rev-parse --verify --quiet "$TAG_COMMIT^{commit}") \
         && log "no tag $TAG in this clone: building its commit $TAG_COMMIT"; } \
    || die "no tag $TAG in this clone: \`git fetch --tags\` (the upgrade tests build the" \
        "previous release from it)"
if [[ -n "$TAG_COMMIT" && "$commit" != "$(git rev-parse "$TAG_COMMIT^{commit}")" ]]; then
    die "tag $TAG is $commit, not $TAG_COMMIT as the Makefile's PREVIOUS_RELEASE_COMMIT says"
fi
version=$(git show "$commit:debian/changelog" | sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p')
[[ -n "$version" ]] || die "$TAG: no version in its debian/changelog"
deb=$OUT/torrust-maint_${version}_all.deb
if [[ -f "$deb" && "$(cat "$OUT/COMMIT" 2>/dev/null)" == "$commit" ]]; then
    log "$deb: cached ($TAG = $commit)"
    exit 0
fi
rm -rf "$OUT"
mkdir -p "$OUT/src"
git archive "$commit" | tar -x -C "$OUT/src"
log "building $TAG ($commit), version $version"
if ! (cd "$OUT/src" && env PATH="$DEBIAN_PATH" dpkg-buildpackage -us -uc -b) \
    >"$OUT/build.log" 2>&1; then
    tail -n 30 "$OUT/build.log" >&2
    die "building $TAG failed; the whole log is $OUT/build.log"
fi
[[ -f "$deb" ]] || die "$TAG built no $deb (see $OUT/build.log)"
rm -rf "$OUT/src"
printf '%s\n' "$commit" >"$OUT/COMMIT"
printf '%s\n' "$TAG" >"$OUT/TAG"
log "$deb: built from $TAG ($commit)"
