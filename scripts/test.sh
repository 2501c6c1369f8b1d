#!/usr/bin/env bash
# Installs the test dependencies (Debian + Python), checks formatting, lint and types, runs pytest.
# Tests start the services they need themselves (PulseAudio, a local Twitch double).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
echo "==> ruff"
.venv/bin/ruff format --check bot engine tests bench
.venv/bin/ruff check bot engine tests bench
echo "==> mypy"
.venv/bin/mypy
echo "==> import rules (docs/architecture.md)"
.venv/bin/lint-imports --no-cache
echo "==> pytest"
exec .venv/bin/pytest "$@"
