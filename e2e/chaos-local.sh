#!/usr/bin/env bash
# The chaos scenario (runtime/tests/chaos.rs) on a local 3-process cluster,
# for as long as asked: a soak test. Usage: e2e/chaos-local.sh [SECONDS]
# (default 600). Needs only the Rust toolchain; see docs/chaos.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || (( seconds < 10 )); then
    echo "usage: $0 [SECONDS >= 10]" >&2
    exit 2
fi
rustup target add wasm32-wasip2
VSS_CHAOS_SECONDS="$seconds" cargo test --release -p vss-runtime --test chaos -- --nocapture
