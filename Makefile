# geomlops: two commands on a fresh Debian machine with Python 3.11.
#   make demo   install everything, start the local stack, run the main job end to end
#   make test   install everything, lint, type-check, run the test suite
# Re-running either is quick when nothing changed (pip runs only when pyproject.toml did).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Seldon Core 1.17.1 (its last Apache-2.0 release) pins numpy<2, protobuf<4, Flask<3 and
# needs setuptools<81: the serving components get an environment of their own.
VENV_SERVING := .venv-serving
# chromium: the browser the map page's tests drive (Playwright with the system browser).
APT_PACKAGES := postgresql postgresql-15-postgis-3 acl git chromium
# The map page's one browser dependency (MapLibre GL) comes from the npm registry and is
# served by the gateway itself: no CDN, so the page works air-gapped.
MAP_STATIC := gateway/static
SHARED_DATA := $(abspath ../shared/data)
# Every Dockerfile but the registration tests' deliberately broken ones (hadolint in `test`).
DOCKERFILES = $(shell git ls-files '*Dockerfile' ':!:tests/registration/broken_packages/*')

# Sample data (real scenes, schemas) is never committed: point at the shared copy when
# there is one; otherwise the sample-data registry downloads what it needs.
ifneq ($(wildcard $(SHARED_DATA)),)
export GEOMLOPS_SAMPLE_DATA ?= $(SHARED_DATA)
endif

.PHONY: demo test lint install system-packages clean-venv

demo: install
	$(BIN)/geomlops demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint $(DOCKERFILES)
	$(BIN)/python tools/typecheck.py
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/python tools/typecheck.py

install: system-packages $(VENV)/.installed $(VENV_SERVING)/.installed $(MAP_STATIC)/node_modules/.installed

# Debian packages: checked every time (dpkg is fast), installed only when missing.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# npm comes with NodeSource's nodejs, or Debian's npm package; install one only if missing.
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends nodejs npm; }

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[platform,dev]"
	touch $@

$(VENV_SERVING)/.installed: requirements/serving.txt requirements/serving-model.txt pyproject.toml
	test -x $(VENV_SERVING)/bin/python || $(PYTHON) -m venv $(VENV_SERVING)
	$(VENV_SERVING)/bin/python -m pip install -q --upgrade pip
	$(VENV_SERVING)/bin/python -m pip install -q -r requirements/serving-model.txt
	$(VENV_SERVING)/bin/python -m pip install -q --no-deps -e .
	touch $@

$(MAP_STATIC)/node_modules/.installed: $(MAP_STATIC)/package.json $(MAP_STATIC)/package-lock.json
	npm ci --prefix $(MAP_STATIC) --ignore-scripts --no-audit --no-fund
	touch $@

clean-venv:
	rm -rf $(VENV) $(VENV_SERVING)
