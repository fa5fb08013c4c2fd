#!/usr/bin/env bash
# Lint and type checks, run by `make test` (and `make lint`) before the test suite:
# ruff over the whole tree (rules in ruff.toml), mypy strict on fleet_coord/core (setup.cfg).
# Either one's findings fail the target. ~1-5 s with a warm mypy cache.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FLEET_COORD_VENV:-$PWD/.venv}
"$VENV/bin/ruff" check --quiet .
"$VENV/bin/mypy"
