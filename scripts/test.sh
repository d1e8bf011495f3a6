#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (unit, property, end to
# end over loopback, crash and tamper suites, interop with real clients: DuckDB,
# pyarrow, the openai SDK). Installs what the suite needs first (a Python venv in
# .venv from PyPI); everything it starts is bound to 127.0.0.1 and stopped by it.
#
#   scripts/test.sh
#
# Long variants (more crash kills, longer fuzzing) run with KIROKU_LONG=1.
set -euo pipefail
cd "$(dirname "$0")/.."

# One clean run gains nothing from incremental compilation, and its caches cost over a
# gigabyte of disk; a caller who wants them sets CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

scripts/setup-interop.sh

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== dependency policy (cargo-deny: licenses, bans, sources; see deny.toml)"
if ! command -v cargo-deny >/dev/null 2>&1; then
  cargo install --locked --quiet cargo-deny
fi
# cargo-deny reads the metadata of every target's dependencies: fetch them all first.
cargo fetch --quiet
cargo deny --offline check licenses bans sources

echo "== tests"
cargo test --workspace
