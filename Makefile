# torrust-maint: the newcomer's commands are `make demo` and `make test`.
# Tests run with Debian's interpreter and Debian's python3-* packages: what users get.
PYTHON := /usr/bin/python3
PYTEST := $(PYTHON) -m pytest

.PHONY: help testbed test unit integration test-system test-package piuparts autopkgtest test-reliability host-images deb lint-deb repo previous-release demo demo-down bench bench-offsite bench-postgresql lint typecheck clean

help:
	@echo "make demo        a real maintenance window and a restore against a demo deployment"
	@echo "make test        provision the test bed (apt, Docker engine, images) and run all tests"
	@echo "make unit        unit tests only (no Docker needed)"
	@echo "make test-reliability  50-window soaks and the full fault matrix (slow; restarts dockerd)"
	@echo "make deb         build dist/torrust-maint_<version>_all.deb (dpkg-buildpackage) and lintian it"
	@echo "make test-system install the .deb in Debian 12 and 13 systemd containers, run real windows"
	@echo "make test-package  piuparts and autopkgtest on the .deb, Debian 12 and 13 (make piuparts, make autopkgtest)"
	@echo "make repo        build the signed apt repository in dist/apt (TORRUST_MAINT_SIGNING_KEY, TORRUST_MAINT_REPO_URL)"
	@echo "make demo-down   remove the demo deployment"
	@echo "make lint        ruff (if installed)"

# Debian packages, a Docker engine, compose v2, and the locally built images (cached by hash).
testbed:
	bash tests/testbed/provision.sh
	bash tests/testbed/build-images.sh

test: testbed typecheck test-system
	$(PYTEST) -ra --durations=15 tests/unit tests/integration -m "not slow"
	$(PYTEST) -ra tests/reliability -m "not slow"

unit:
	$(PYTEST) -ra tests/unit

integration: testbed
	$(PYTEST) -ra tests/integration

# Issue 8's proof (tests/reliability, docs/reliability.md): soaks of
# TORRUST_MAINT_SOAK_WINDOWS windows per engine and every fault case, including dockerd
# restarted mid-window (every container on the engine restarts: run it on a quiet machine).
# Measurements go to build/reliability-results.json; `make test` runs the fast subset.
TORRUST_MAINT_SOAK_WINDOWS ?= 50
test-reliability: testbed
	TORRUST_MAINT_SOAK_WINDOWS=$(TORRUST_MAINT_SOAK_WINDOWS) $(PYTEST) -ra tests/reliability
	$(PYTEST) -ra tests/integration -m slow

# The Debian package: dpkg-buildpackage (debian/), results moved to dist/, then lintian
# (no errors, no warnings). The build's own leftovers are cleaned away afterwards.
# Debian's tools and interpreter only (not a pyenv python3 that may come first on PATH).
DEBIAN_PATH := /usr/sbin:/usr/bin:/sbin:/bin
VERSION = $(shell dpkg-parsechangelog -S Version)

deb:
	rm -f dist/torrust-maint_*
	env PATH=$(DEBIAN_PATH) dpkg-buildpackage -us -uc -b
	mkdir -p dist
	mv ../torrust-maint_$(VERSION)_all.deb ../torrust-maint_$(VERSION)_*.buildinfo \
	   ../torrust-maint_$(VERSION)_*.changes dist/
	env PATH=$(DEBIAN_PATH) debian/rules clean >/dev/null
	$(MAKE) lint-deb

lint-deb:
	env PATH=$(DEBIAN_PATH) lintian --fail-on error,warning --info dist/torrust-maint_$(VERSION)_*.changes

# The signed apt repository (README: Cutting a release): reprepro, suites bookworm and trixie,
# signed with the key TORRUST_MAINT_SIGNING_KEY names in GNUPGHOME, the sources files pointing
# at TORRUST_MAINT_REPO_URL. Both are checked before the package is built.
REPO_DIR ?= dist/apt

repo:
	bash tools/build-apt-repo.sh --check
	$(MAKE) deb
	bash tools/build-apt-repo.sh $(REPO_DIR) dist/torrust-maint_$(VERSION)_all.deb

# The previous release built from its git tag (dist/previous-release, cached by commit):
# what the upgrade tests (tests/system/test_upgrade.py) upgrade from.
PREVIOUS_RELEASE ?= v0.1.0
PREVIOUS_RELEASE_COMMIT ?= 751836d157bd10ee9c12b215e1162638e8fd2efd
export PREVIOUS_RELEASE_COMMIT

previous-release:
	bash tools/build-previous-release.sh $(PREVIOUS_RELEASE) $(PREVIOUS_RELEASE_COMMIT)

# Debian 12 and 13 systemd "host" images (debootstrap, cached by content hash).
host-images:
	bash tests/testbed/build-host-images.sh

# The .deb under real systemd in Debian 12 and 13 host containers driving the test bed.
test-system: testbed host-images deb previous-release
	$(PYTEST) -ra --durations=10 tests/system

# Debian's package testers on the .deb, for Debian 12 and 13 (tests/package/, README: Package
# tests): piuparts (install, remove, purge, reinstall, and the upgrade from the previous
# release, in a chroot where systemd does not run; clean, every exception commented) and
# autopkgtest (debian/tests in a throwaway container, autopkgtest-virt-docker). Debootstrap
# bases cached in /var/cache/torrust-maint-test; logs in build/package-tests/.
PACKAGE_SUITES ?= bookworm trixie

test-package: testbed deb previous-release
	bash tests/package/run-package-tests.sh $(PACKAGE_SUITES)

piuparts: testbed deb previous-release
	bash tests/package/run-piuparts.sh $(PACKAGE_SUITES)

autopkgtest: testbed deb
	bash tests/package/run-autopkgtest.sh $(PACKAGE_SUITES)

demo: testbed
	$(PYTHON) -m tests.testbed.demo

demo-down:
	$(PYTHON) -m tests.testbed.demo --down

# `make bench`, on an otherwise idle machine (about an hour on 2 cores):
# 1. bench.scale (docs/benchmarks.md): a backup at production sizes (SQLite 1 and 4 GiB in
#    both journal modes, MySQL 1 GiB), the cron-era pipeline, our stop and online modes, and
#    the physical reference (bare stop+start, cp, cp + zstd -T0), seen by a 20 ms prober, with
#    commit latency p99, export throughput, bytes written and peak RSS; each target reported
#    as met or missed. Results: bench/results/scale.json. Smaller: bench.scale --help.
# 2. bench.downtime: restore downtime against a bare stop+start (MySQL 2,000,000 torrent rows,
#    SQLite 1 GiB; medians of 3); target within 1.5x. Results: build/bench-results.json.
# Reports only: nothing is asserted.
bench: testbed
	$(PYTHON) -m bench.scale
	$(PYTHON) -m bench.downtime

# What the off-site upload sends, by measurement (docs/offsite-dedup.md): the set's
# compressed artifacts against the uncompressed database streamed into restic, 7 days of a
# tracker-like change pattern, bytes added per day. Needs restic only (no Docker).
bench-offsite:
	$(PYTHON) -m bench.offsite_dedup
	$(PYTHON) -m bench.offsite_dedup --hot-fraction 0.05 --repeats 3 \
	    --out bench/results/offsite-dedup-hot.json

# The PostgreSQL window (docs/postgresql-bench.md): backup downtime and in-window snapshot time
# at the stand-in's few thousand rows and at a 1 GiB database (pg_database_size), side by side
# with the deployer's `pg_dump | gzip` in a stopped window and a bare stop+start (medians of
# 3), and plain vs custom dump formats through zstd. Reports only; results go to
# bench/results/postgresql-window.json. Run it on an otherwise idle machine.
bench-postgresql: testbed
	$(PYTHON) -m bench.postgresql_window

lint:
	ruff check torrust_maint tests

# Debian's mypy (provision.sh installs it): `make test` fails on a type error.
typecheck:
	/usr/bin/mypy torrust_maint

clean:
	rm -rf build dist *.egg-info .pytest_cache .pybuild
	rm -rf debian/.debhelper debian/torrust-maint debian/files debian/*.substvars \
	       debian/debhelper-build-stamp debian/*.debhelper.log
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
