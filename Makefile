# torrust-maint: the newcomer's commands are `make demo` and `make test`.
# Tests run with Debian's interpreter and Debian's python3-* packages: what users get.
PYTHON := /usr/bin/python3
PYTEST := $(PYTHON) -m pytest

.PHONY: help testbed test unit integration demo demo-down bench lint clean

help:
	@echo "make demo        run a real maintenance window against a demo deployment"
	@echo "make test        provision the test bed (apt, Docker engine, images) and run all tests"
	@echo "make unit        unit tests only (no Docker needed)"
	@echo "make demo-down   remove the demo deployment"
	@echo "make lint        ruff (if installed)"

# Debian packages, a Docker engine, compose v2, and the locally built images (cached by hash).
testbed:
	bash tests/testbed/provision.sh
	bash tests/testbed/build-images.sh

test: testbed
	$(PYTEST) -ra tests/unit tests/integration

unit:
	$(PYTEST) -ra tests/unit

integration: testbed
	$(PYTEST) -ra tests/integration

demo: testbed
	$(PYTHON) -m tests.testbed.demo

demo-down:
	$(PYTHON) -m tests.testbed.demo --down

# Downtime and timings against database size (MySQL flat; SQLite copy grows with disk speed).
bench: testbed
	$(PYTHON) -m bench.downtime

lint:
	ruff check torrust_maint tests

clean:
	rm -rf build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
