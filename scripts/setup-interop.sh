#!/usr/bin/env bash
# Installs the interop test clients into .venv (idempotent): DuckDB, pyarrow, the
# official openai SDK, and blake3 + PyNaCl for the independent bundle verifier.
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
