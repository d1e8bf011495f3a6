#!/usr/bin/env bash
# Installs what the interop tests need (idempotent): DuckDB, pyarrow, the official
# openai SDK, blake3 + PyNaCl for the independent verifiers (into .venv from PyPI), and
# Debian's chromium for the report test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv for the interop tests"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import duckdb, pyarrow, openai, blake3, nacl" 2>/dev/null; then
  echo "== installing interop clients into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium for the report test"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium > /dev/null
fi
