#!/usr/bin/env bash
# Installs what the interop tests need (idempotent): DuckDB, pyarrow, the official
# openai SDK, blake3 + PyNaCl for the independent verifiers (into .venv from PyPI),
# Debian's chromium for the report test, and for the fleet tests moto's S3-compatible
# server, DuckDB's httpfs and pyspark (into .venv-fleet) on a Java runtime.
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
# The fleet tests: moto's S3-compatible server, DuckDB 1.5 with its httpfs extension
# from PyPI, and pyspark (on the machine's Java runtime) in a venv of their own.
if [ ! -x .venv-fleet/bin/python ]; then
  echo "== creating .venv-fleet for the fleet tests"
  "$PY" -m venv .venv-fleet
fi
if ! .venv-fleet/bin/python -c "import moto, pyspark, duckdb, duckdb_extension_httpfs, boto3" 2>/dev/null; then
  echo "== installing the S3-compatible server and the engines into .venv-fleet"
  .venv-fleet/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements-fleet.txt
fi
if ! command -v java >/dev/null 2>&1; then
  echo "== installing Debian's Java runtime for Spark"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jre-headless > /dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium for the report test"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium > /dev/null
fi
