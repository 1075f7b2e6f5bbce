#!/usr/bin/env bash
# Runs every check the project has: formatting, clippy, unit tests and the integration tests
# against a real moto server and the Leadspace emulator. Installs moto when it is missing.
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
# One closing line for the whole run: cargo prints a result line per test binary, and the last
# of them (a doc-test binary with nothing in it) would otherwise speak for the rest.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$results"
rm -f "$results"
