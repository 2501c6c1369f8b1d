#!/usr/bin/env bash
# Installs on first use, then runs the bot with ./config.yaml (extra arguments go to ishowtts).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/ishowtts "$@"
