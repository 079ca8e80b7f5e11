# SegAnyPET Studio: `make run` (embedded demo) and `make test` (whole suite, both modes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

HOST ?= 127.0.0.1
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/seganypet
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
PYTEST_ARGS ?=

.PHONY: run test eval install frontend system-deps test-frontend test-services test-embedded lint clean

# Debian packages the tests use as references and drivers: dcm2niix (independent DICOM
# converter), dicom3tools (dciodvfy), chromium (browser tests), orthanc + orthanc-dicomweb (a real
# PACS with DICOMweb for tests/pacs). Installed when missing and root.
SYSTEM_PACKAGES := dcm2niix dicom3tools chromium orthanc orthanc-dicomweb
ORTHANC_DICOMWEB_PLUGIN := /usr/share/orthanc/plugins/libOrthancDicomWeb.so
system-deps:
	@missing=""; for tool in dcm2niix dciodvfy chromium Orthanc; do command -v $$tool >/dev/null || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; done; \
	[ -f $(ORTHANC_DICOMWEB_PLUGIN) ] || missing="$$missing orthanc-dicomweb"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
		else echo "missing:$$missing; install: sudo apt-get install -y $(SYSTEM_PACKAGES)"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

FRONTEND_STAMP := frontend/node_modules/.installed
FRONTEND_SOURCES := $(shell find frontend/src frontend/index.html frontend/vite.config.ts frontend/tsconfig.json -type f 2>/dev/null)

$(FRONTEND_STAMP): frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

frontend/dist/index.html: $(FRONTEND_STAMP) $(FRONTEND_SOURCES)
	cd frontend && npm run build
	touch $@

frontend: frontend/dist/index.html

test-frontend: $(FRONTEND_STAMP)
	cd frontend && npm test

run: install frontend
	DEBUG=true $(PY) manage.py migrate --noinput
	DEBUG=true $(PY) manage.py collectstatic --noinput -v0
	DEBUG=true $(PY) manage.py seed_demo
	@echo "Open http://$(HOST):$(PORT)/ and sign in with a demo user above."
	DEBUG=true PRELOAD_ENGINES=$${PRELOAD_ENGINES-seganypet-demo} $(VENV)/bin/uvicorn backend.asgi:application --host $(HOST) --port $(PORT)

# The whole suite runs against PostgreSQL + Redis, then again in the embedded mode.
test: system-deps install frontend test-frontend test-services test-embedded

test-services: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

# The embedded pass repeats everything but the slow tests (which the services pass already ran).
test-embedded: install
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -m "not services_only and not slow" $(PYTEST_ARGS)

# bench_engines checks issue 14's targets and exits 1 when one is missed (after writing its results):
# it runs last so that a miss does not skip the held-out evaluation; REPORT_ONLY=1 never fails.
eval: install
	$(PY) -m worker.seganypet.evaluate --checkpoint worker/seganypet/weights/demo.pt \
		--json bench/results/engines_heldout.json --markdown bench/results/engines_heldout.md
	$(PY) bench/bench_engines.py $(if $(REPORT_ONLY),--report-only)

# ruff, then the layer contracts in pyproject.toml's [tool.importlinter] (docs/architecture.md).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) data frontend/node_modules frontend/dist
