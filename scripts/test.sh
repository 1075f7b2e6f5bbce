#!/usr/bin/env bash
# Runs every check the project has: formatting, clippy, cfn-lint, unit tests, the integration
# tests against a real moto server and the Leadspace emulator, the end-to-end run through
# `cargo lambda watch` and the AWS CLI (scripts/e2e.sh), and the arm64 release build. Installs
# moto, cfn-lint, the AWS CLI and cargo-lambda into the project's .venv/ when they are missing,
# and finds or installs a Chromium (the report is checked in a real headless browser).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
trap stop_all EXIT

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

ensure_cfn_lint
log "cfn-lint template.yaml"
cfn-lint template.yaml

port=$(free_port)
log "starting moto_server on 127.0.0.1:$port"
start_moto "$port" "${TMPDIR:-/tmp}/leadspace-enrich-moto-$port.log"
export MOTO_ENDPOINT="http://127.0.0.1:$port"

ensure_chromium
log "cargo test"
results=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$results"
stop_all
PIDS=()

log "end to end: cargo lambda watch + the AWS CLI"
scripts/e2e.sh 2>&1 | tee -a "$results"

# The artifact that is deployed: Lambda's arm64 build, from this checkout, as `sam build` makes it.
log "the deployable artifact: cargo lambda build --release --arm64"
build_log=$(mktemp)
build_failed=0
if scripts/build-arm64.sh >"$build_log" 2>&1; then
  tail -n 2 "$build_log"
  echo "build: 1 passed, 0 failed" | tee -a "$results"
else
  tail -n 40 "$build_log"
  echo "build: 0 passed, 1 failed" | tee -a "$results"
  build_failed=1
fi
rm -f "$build_log"

# One closing line for the whole run: cargo prints a result line per test binary, and the last
# of them (a doc-test binary with nothing in it) would otherwise speak for the rest.
awk '/^test result:/ { passed += $4; failed += $6 }
     /^(e2e|build): [0-9]+ passed/ { passed += $2; failed += $4 }
     END { printf "%d passed, %d failed\n", passed, failed }' "$results"
rm -f "$results"
exit "$build_failed"
