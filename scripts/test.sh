#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting and lints, unit and
# integration tests, the conformance suite against Berth (and against the reference
# registry, to check the suite itself), and the real-client tests.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-test-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
