#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting and lints, unit and
# integration tests, the conformance suite against Berth on the filesystem and on
# S3 (and against the reference registry, to check the suite itself), and the
# real-client tests.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-test-deps.sh

# A real S3 server on loopback for the tests that run Berth on S3.
s3_env=$(./scripts/s3-test-server.sh start)
eval "$s3_env"
trap './scripts/s3-test-server.sh stop' EXIT

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
