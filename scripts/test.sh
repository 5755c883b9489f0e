#!/usr/bin/env bash
# Runs every test of the project: unit, property and integration tests.
#
# It installs nothing by hand: Rust crates come from crates.io through
# Cargo.lock. Services the tests need are started here and stopped on exit,
# also when tests fail. Benchmarks are not tests: see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked "$@"
