#!/usr/bin/env bash
# Set-up included: creates/reuses .venv, installs everything, runs the quick default test suite
# (tests marked `slow` are excluded; run them with `scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec python -m pytest -n 2 -q "$@"
