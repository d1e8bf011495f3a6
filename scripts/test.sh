#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (unit, property, end to
# end over loopback, interop with real clients). Installs what the suite needs first.
#
#   scripts/test.sh
#
# Long variants (more crash kills, longer fuzzing) run with KIROKU_LONG=1.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== tests"
cargo test --workspace
