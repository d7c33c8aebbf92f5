#!/usr/bin/env bash
# The main job on a fresh machine: fetch SmolLM2-135M-Instruct, build Tessera,
# start a cluster of two tensor-parallel shard processes behind the gRPC API,
# ask the model a question and stream the answer, then stop the cluster.
#
# Usage: scripts/demo.sh [QUESTION]
set -euo pipefail
cd "$(dirname "$0")/.."

question=${1:-"What is the capital of France?"}
command -v cargo >/dev/null || { echo "error: cargo is needed; install Rust from rustup" >&2; exit 1; }
scripts/fetch-model.sh
cargo build --release --locked --bin tessera --bin tessera-shard
./target/release/tessera generate \
  --model models/SmolLM2-135M-Instruct.Q4_1.gguf --tp 2 --chat --max-new-tokens 64 \
  "$question"
