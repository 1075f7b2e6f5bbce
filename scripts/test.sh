#!/usr/bin/env bash
# Runs every check the project has: formatting, clippy, cfn-lint, unit tests, the integration
# tests against a real moto server and the Leadspace emulator, and the end-to-end run through
# `cargo lambda watch` and the AWS CLI (scripts/e2e.sh). Installs moto, cfn-lint, the AWS CLI
# and cargo-lambda when they are missing.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
trap stop_all EXIT

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

if ! command -v cfn-lint >/dev/null 2>&1; then
  pip_install cfn-lint
fi
log "cfn-lint template.yaml"
cfn-lint template.yaml

port=$(free_port)
log "starting moto_server on 127.0.0.1:$port"
start_moto "$port" "${TMPDIR:-/tmp}/leadspace-enrich-moto-$port.log"
export MOTO_ENDPOINT="http://127.0.0.1:$port"

log "cargo test"
results=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$results"
stop_all
PIDS=()

log "end to end: cargo lambda watch + the AWS CLI"
scripts/e2e.sh 2>&1 | tee -a "$results"

# One closing line for the whole run: cargo prints a result line per test binary, and the last
# of them (a doc-test binary with nothing in it) would otherwise speak for the rest.
awk '/^test result:/ { passed += $4; failed += $6 }
     /^e2e: [0-9]+ passed/ { passed += $2; failed += $4 }
     END { printf "%d passed, %d failed\n", passed, failed }' "$results"
rm -f "$results"
