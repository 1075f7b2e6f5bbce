#!/usr/bin/env bash
# Prints the project's measured figures (never asserted in tests): runs each benchmark in
# release mode against a moto server it starts and the in-process Leadspace emulator.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
trap stop_all EXIT

port=$(free_port)
start_moto "$port" "${TMPDIR:-/tmp}/leadspace-enrich-bench-moto-$port.log"
export MOTO_ENDPOINT="http://127.0.0.1:$port"

log "fault run: emulator with 20% 5xx and a 5 TPS limit, LEADSPACE_TPS=25"
cargo run --release --locked --example fault_run
