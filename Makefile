# `make run` and `make test` are the two commands a newcomer needs; both bootstrap first.
SHELL := bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: bootstrap test-tools run cluster test lint typecheck proto-lint proto-breaking generate check-generated migrate pytest bench fuzz

bootstrap:  ## find Python 3.13, install uv if missing, sync .venv from uv.lock
	@./scripts/bootstrap.sh

run: bootstrap  ## the whole stack on this machine: PostgreSQL, Redis, migrations, server, Envoy (TLS=1: over TLS)
	$(VENV)/adplane dev $(if $(TLS),--tls)

cluster: bootstrap test-tools  ## two nodes (127.0.0.2, .3), Envoy over both, PgBouncer, Redis Sentinel (docs/scaling.md)
	$(VENV)/adplane dev --topology cluster

test: bootstrap lint typecheck proto-lint proto-breaking check-generated pytest  ## every check CI runs

lint: bootstrap
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/buf format protos --diff --exit-code
	node_modules/.bin/tsc -p sdk/typescript
	node_modules/.bin/tsc -p sdk/typescript/tsconfig.build.json --noEmit

typecheck: bootstrap
	$(VENV)/mypy server devstack tests bench sdk/python/src sdk/python/examples scripts/generate.py scripts/module_graph.py scripts/openapi.py scripts/field_constraints.py scripts/api_reference.py scripts/buf_breaking.py

proto-lint: bootstrap
	$(VENV)/buf lint

proto-breaking: bootstrap  ## buf breaking against the last release (protos/releases/, protos/accepted_breaking_changes.yaml)
	$(VENV)/python scripts/buf_breaking.py

generate: bootstrap  ## rewrite generated/ from protos/
	$(VENV)/python scripts/generate.py

check-generated: bootstrap
	$(VENV)/python scripts/generate.py --check

migrate: bootstrap  ## upgrade the database at DATABASE_URL
	$(VENV)/adplane migrate

# Test processes (pytest-xdist); PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2

test-tools:  ## system programs the tests need (PgBouncer): apt-get install when missing, or the command to run
	@./scripts/test_tools.sh

pytest: bootstrap test-tools
	$(VENV)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

fuzz: bootstrap  ## schemathesis against a test stack, 200 examples per operation (make test runs 5)
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} FUZZ_PHASES=$${FUZZ_PHASES:-examples,coverage,fuzzing} \
		$(VENV)/pytest tests/e2e/test_fuzz.py -v --timeout=1800

bench: bootstrap  ## performance figures (not part of make test)
	$(VENV)/python -m bench.sync_accounts
	$(VENV)/python -m bench.read_rpc
	$(VENV)/python -m bench.read_rpc --keyset
	$(VENV)/python -m bench.write_rpc
	$(VENV)/python -m bench.soak
	$(VENV)/python -m bench.retention
