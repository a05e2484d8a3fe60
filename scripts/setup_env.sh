#!/usr/bin/env bash
# Shared set-up for scripts/demo.sh and scripts/test.sh: creates or reuses .venv, installs the
# package with its dev extra at the exact versions of constraints.txt (the reproducible CPU
# environment), and installs Debian's Fashion-MNIST files and R's earth (the MARS reference) when
# running as root.
# Source it from the repository root: `source scripts/setup_env.sh`.
set -euo pipefail
: "${PYTHON:=python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the package metadata or the requested extras changed since the last install.
extras="dev${FASTDFKD_EXTRAS:+,$FASTDFKD_EXTRAS}"
stamp=".venv/.fastdfkd_installed_${extras//,/_}"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
    || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]"
  touch "$stamp"
fi
fmnist_dir=/usr/share/datasets/fashion-mnist
if [ ! -f "$fmnist_dir/train-images-idx3-ubyte.gz" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped" >&2
fi
# R's earth, the reference the MARS parity tests compare with (tests/spline/test_mars_earth.py).
if ! Rscript -e 'library(earth)' >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-cran-earth) >/dev/null \
    || echo "warning: could not install r-cran-earth; the MARS parity tests will be skipped" >&2
fi
export PATH="$PWD/.venv/bin:$PATH"
