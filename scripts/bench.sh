#!/usr/bin/env bash
# Prints the project's measured figures (never asserted in tests). Builds the function's release
# binary and the harness (the leadspace-bench package, which depends on neither the function's
# crate nor the AWS SDK, so nothing is compiled twice), starts a moto server, then runs
# leadspace-bench: the function's release binary as Lambda runs it (its own process, polling a
# Runtime API) on each scenario: a, a', a-np, a'-np (bulk against a 30 TPS limit), b (single),
# c (a million rows), d (after a throttle), cold start, binary size, and the fault scenario.
# `scripts/bench.sh c` runs only the scenarios whose tag starts with "c".
# BENCH_RUNS=5 repeats each scale scenario and prints the median and range.
# BENCH_CPU_LIMIT=0.3 runs the function on that share of one CPU, as a 512 MB Lambda function
# gets (about one vCPU per 1,769 MB); it needs a writable cgroup (root).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
trap stop_all EXIT

target_dir=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
log "building the function's release binary"
cargo build --release --locked --bin leadspace-enrich
log "building the bench harness"
cargo build --release --locked -p leadspace-bench

ensure_moto
port=$(free_port)
start_moto "$port" "${TMPDIR:-/tmp}/leadspace-enrich-bench-moto-$port.log"
export MOTO_ENDPOINT="http://127.0.0.1:$port"
export BENCH_FUNCTION_BINARY="$target_dir/release/leadspace-enrich"

"$target_dir/release/leadspace-bench" "$@"
