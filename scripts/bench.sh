#!/usr/bin/env bash
# Prints the project's measured figures (never asserted in tests). Builds the release binary,
# starts a moto server, then runs:
#   - examples/bench.rs: the function's release binary as Lambda runs it (its own process,
#     polling a Runtime API) on each scale scenario: rows/s, peak RSS, requests, 429s, the
#     ratio to the emulator's theoretical minimum; then cold start and binary size.
#   - examples/fault_run.rs: the resilience figures (5xx and 429 storms).
# `scripts/bench.sh c` runs only the scale scenarios whose name starts with "c".
# BENCH_CPU_LIMIT=0.3 runs the function on that share of one CPU, as a 512 MB Lambda function
# gets (about one vCPU per 1,769 MB); it needs a writable cgroup (root).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
trap stop_all EXIT

ensure_moto
port=$(free_port)
start_moto "$port" "${TMPDIR:-/tmp}/leadspace-enrich-bench-moto-$port.log"
export MOTO_ENDPOINT="http://127.0.0.1:$port"

log "building the release binary"
cargo build --release --locked --bin leadspace-enrich
export BENCH_FUNCTION_BINARY="$REPO_ROOT/target/release/leadspace-enrich"

log "scale: the release binary against moto and the emulator"
cargo run --release --locked --example bench -- "$@"

if [ $# -eq 0 ]; then
  log "fault run: emulator with 20% 5xx and a 5 TPS limit, LEADSPACE_TPS=25"
  cargo run --release --locked --example fault_run
fi
