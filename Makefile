# The project's entry points. `make run` runs the product; `make test` runs everything CI runs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e shared -e services/images-api -e services/generator -e services/publisher -e services/sync

.PHONY: setup system-deps run test test-quick test-isolated lint typecheck format bench secrets clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || { rm -rf $(VENV); echo "could not create $(VENV): on Debian, apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements/constraints.txt requirements/base.txt requirements/dev.txt
	$(BIN)/pip install -q -c requirements/constraints.txt -r requirements/base.txt -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps $(PACKAGES)
	touch $@

setup: $(VENV)/.installed ## create the venv and install everything (pinned)

system-deps: ## PHP + WordPress for the real-WordPress tests (apt)
	bash deploy/install-system-deps.sh

run: setup ## run the whole product locally (broker, Postgres, services, demo data); Ctrl-C stops all
	$(BIN)/python -m writer_images.devstack $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy shared/src bench $$(for d in services/*/src; do compgen -G "$$d/*/*.py" >/dev/null && echo $$d; done)

test: setup system-deps lint typecheck ## everything CI runs: lint, types, all tests (crash drills included)
	$(BIN)/pytest -q

test-quick: setup ## the inner loop: everything but the slow truths
	$(BIN)/pytest -q -m "not slow" -x

test-isolated: setup system-deps ## all tests in a network namespace of their own (root): none of the machine's servers answer, so Postgres and MariaDB are private ones
	unshare --net bash -c 'ip link set lo up && exec "$$0" -q "$$@"' $(BIN)/pytest $(ARGS)

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup system-deps ## run the benchmarks (ratios against named baselines in the same run)
	$(BIN)/python -m bench $(ARGS)

secrets: ## print new WI_SECRETS_KEY and WI_JWT_SECRET lines, e.g. `make -s secrets > .env` for docker compose
	@$(PY) -c 'import base64, os, secrets; print(f"WI_SECRETS_KEY={base64.urlsafe_b64encode(os.urandom(32)).decode()}\nWI_JWT_SECRET={secrets.token_urlsafe(48)}")'

clean: ## delete local state: var/ (blobs, logs, private Postgres), caches, and the database `make run` made on 127.0.0.1:5432
	if [ -x $(BIN)/python ]; then $(BIN)/python -m writer_images.devstack --drop-database; fi
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
