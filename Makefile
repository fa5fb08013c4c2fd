# The two commands of the README:
#   make demo   sets everything up if needed, then runs the main job
#   make test   sets everything up if needed, then runs the whole test suite
# in a private network namespace with LOCALHOST discovery.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup lint test demo bench clean
setup:
	@bash scripts/setup.sh

# ruff + mypy (scripts/lint.sh); part of `make test`
lint: setup
	@bash scripts/lint.sh

test: setup lint
	@bash scripts/isolated.sh $(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	@bash scripts/isolated.sh $(PY) -m fleet_coord.cli demo

bench: setup
	@bash scripts/isolated.sh $(PY) bench/mapf.py

clean:
	rm -rf $(VENV) build install log .pytest_cache
