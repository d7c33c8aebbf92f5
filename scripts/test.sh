#!/usr/bin/env bash
# The test entry point: fetches the model the tests check against, then runs
# every test of the workspace. CI runs exactly this (through .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "error: cargo is needed; install Rust from rustup" >&2; exit 1; }
scripts/fetch-model.sh
cargo test --workspace --locked "$@"
