# latticehub: `make up` runs the stack on the embedded defaults, `make test` sets up and
# runs every test tier against real services. See README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
PG_URL ?= postgresql://latticehub:latticehub@127.0.0.1:5432/latticehub
PYTEST_ARGS ?=

.PHONY: up services lint format test test-unit test-services test-security bench clean

services:
	scripts/services.sh all

up: services
	scripts/up.sh

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python scripts/check_layers.py
	$(VENV)/bin/mypy  # latticehub/ and hub_ext/ ([tool.mypy] in pyproject.toml)

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-unit:
	$(PY) -m pytest tests/unit tests/store tests/service tests/widgets tests/quotas tests/culling $(PYTEST_ARGS)

# docker, swarm and postgres tiers (real engine, real Hub + proxy, real PostgreSQL)
test-services:
	LATTICEHUB_TEST_PG_URL=$(PG_URL) $(PY) -m pytest tests -m "(docker or swarm or postgres or slurm or browser) and not security" $(PYTEST_ARGS)

# attacks on the tenant boundaries (docs/security.md): real Hub + proxy + services, Docker, Slurm
test-security:
	LATTICEHUB_TEST_PG_URL=$(PG_URL) $(PY) -m pytest tests/security -m security $(PYTEST_ARGS)

test: services lint test-unit test-security test-services

bench: services
	$(PY) bench/spawn.py

clean:
	rm -rf run .pytest_cache .ruff_cache *.egg-info
