# tasktrail: `make run` serves it, `make test` checks it. Both set up .venv first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP := $(PY) -m pip install -q --disable-pip-version-check
TOOLS := .build/tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION := 1.75.0
REDOCLY := $(TOOLS)/node_modules/.bin/redocly
REDOCLY_VERSION := 2.77.0
PROTOS := $(shell find proto -name '*.proto' | sort)
RUN_ARGS ?=
PYTEST_ARGS ?=
# The PostgreSQL the second test run uses (every test makes its own database there).
PG_TEST_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test

.PHONY: help venv lock breaking run test test-sqlite test-postgres postgres unit e2e lint gen gen-check typecheck fmt bench clean

help:
	@echo "make run        serve tasktrail (REST :3000, gRPC :50051) on ./data (SQLite)"
	@echo "make test       lint, check gen/ is fresh, run every test on SQLite, then on PostgreSQL with 3 replicas"
	@echo "make lint       buf lint, ruff, import contracts, mypy --strict"
	@echo "make gen        regenerate gen/ from proto/"
	@echo "make lock       pin every Python dependency again (requirements.lock)"
	@echo "make bench      run the benchmarks in bench/"

# The virtualenv: every dependency exactly as requirements.lock pins it (with
# its hashes), then the project itself (editable, nothing more fetched).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	set -o pipefail; $(PIP) --require-hashes -r requirements.lock 2>&1 | { grep -v '^WARNING: Location' || true; }
	set -o pipefail; $(PIP) --no-deps --no-build-isolation -e . 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PY) -c 'import tasktrail.cli.main, envoy' # fails loudly if the install did not work
	@touch $(STAMP)

# Pin every dependency again (newest within pyproject.toml's ranges), with hashes, for every platform.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 \
	  --upgrade -o requirements.lock

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m tasktrail up $(RUN_ARGS)

# Both runs must run: an unreachable PostgreSQL fails the second, never skips it.
test: lint gen-check test-sqlite test-postgres

test-sqlite: $(STAMP) chromium $(BUF)
	$(PY) -m pytest $(PYTEST_ARGS)

test-postgres: $(STAMP) postgres chromium $(BUF)
	TASKTRAIL_TEST_DATABASE=$(PG_TEST_URL) TASKTRAIL_TEST_REPLICAS=3 $(PY) -m pytest $(PYTEST_ARGS)

# The machine's PostgreSQL, started if it is down (Debian's cluster tools).
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "PostgreSQL is down: starting it"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done; \
	  pg_isready -h 127.0.0.1 -p 5432; }

# Debian's Chromium for the console's browser tests (Playwright downloads no browser
# here), without its desktop recommends but with a font to render text in. The
# package lists are refreshed only when an install from them fails.
.PHONY: chromium
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "Chromium is missing: installing Debian's chromium"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends chromium fonts-liberation || { \
	    apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-liberation; }; \
	  test -x /usr/bin/chromium; }

unit: $(STAMP)
	$(PY) -m pytest -m 'not e2e' $(PYTEST_ARGS)

e2e: $(STAMP)
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

# buf and Redocly's linter come from the npm registry, at pinned versions.
$(BUF) $(REDOCLY):
	@mkdir -p $(TOOLS)
	cd $(TOOLS) && npm install --silent --no-audit --no-fund --no-save \
	  @bufbuild/buf@$(BUF_VERSION) @redocly/cli@$(REDOCLY_VERSION) >/dev/null
	@test -x $(BUF) && test -x $(REDOCLY)

# googleapis protos for buf, copied from the googleapis-common-protos wheel.
.build/third_party/google/api/annotations.proto: $(STAMP)
	@mkdir -p .build/third_party/google/api .build/third_party/google/rpc
	@SP=$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))'); \
	cp $$SP/google/api/{annotations,http,httpbody}.proto .build/third_party/google/api/; \
	cp $$SP/google/rpc/{status,error_details}.proto .build/third_party/google/rpc/

lint: $(STAMP) $(BUF) $(REDOCLY) .build/third_party/google/api/annotations.proto
	$(BUF) lint
	$(MAKE) --no-print-directory breaking
	$(REDOCLY) lint --format=stylish gen/openapi/*.json
	$(PY) -m ruff check server tests bench
	$(PY) -m ruff format --check server tests bench
	$(VENV)/bin/lint-imports
	$(MAKE) --no-print-directory typecheck

# The protos against main's (its committed descriptor set), by the WIRE_JSON
# rules: the JSON that Envoy transcodes is an API as much as the wire format.
breaking: $(BUF) .build/third_party/google/api/annotations.proto
	$(BUF) build -o .build/current.binpb
	git show main:gen/tasktrail.binpb > .build/main.binpb 2>/dev/null || cp gen/tasktrail.binpb .build/main.binpb
	$(BUF) breaking .build/current.binpb --against .build/main.binpb --exclude-imports \
	  --config '{"version":"v2","breaking":{"use":["WIRE_JSON"]}}'

# mypy reads the sources where they are: server/ (the package) and gen/ (its
# generated subpackages, found there as namespace parts of tasktrail).
typecheck: $(STAMP)
	MYPYPATH=server:gen $(PY) -m mypy -p tasktrail
	MYPYPATH=server:gen $(PY) -m mypy tests bench

fmt: $(STAMP)
	$(PY) -m ruff format server tests bench
	$(PY) -m ruff check --fix server tests bench

# gen/: Python stubs (+ .pyi) and the descriptor set Envoy loads, from proto/.
gen: $(STAMP)
	@rm -rf gen && mkdir -p gen
	@set -e; \
	SP=$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))'); \
	GT=$$($(PY) -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))'); \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -I proto -I $$SP -I $$GT \
	  --python_out=gen --grpc_python_out=gen --mypy_out=gen --mypy_grpc_out=gen $(PROTOS); \
	$(PY) -m grpc_tools.protoc -I proto -I $$SP -I $$GT --include_imports --include_source_info \
	  --descriptor_set_out=gen/tasktrail.binpb $(PROTOS) google/rpc/status.proto google/rpc/error_details.proto; \
	find gen/tasktrail -mindepth 1 -type d -exec touch {}/__init__.py \;; \
	$(PY) -m tasktrail.edge.openapi gen/tasktrail.binpb gen
	@echo "gen/ regenerated from $(words $(PROTOS)) proto files"

# CI: gen/ must be exactly what proto/ generates.
gen-check: gen
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run make gen and commit it"; exit 1; }
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo "gen/ has untracked files: run make gen and commit it"; exit 1; }

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf .build build .pytest_cache .mypy_cache .ruff_cache
