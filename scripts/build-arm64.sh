#!/usr/bin/env bash
# Builds the Lambda artifact as `sam build` and AWS run it: release, arm64 (Graviton), for
# provided.al2023. Installs what a fresh machine lacks: cargo-lambda and ziglang (its
# cross-linker) with pip, and the aarch64 Rust target with rustup. The zip-ready `bootstrap` is
# in target/lambda/leadspace-enrich/.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

ensure_cargo_lambda
ensure_zig
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  log "adding the aarch64-unknown-linux-gnu Rust target"
  rustup target add aarch64-unknown-linux-gnu
fi

log "cargo lambda build --release --arm64"
cargo lambda build --release --arm64 --locked --bin leadspace-enrich
artifact=target/lambda/leadspace-enrich/bootstrap
file "$artifact" 2>/dev/null || true
log "built $artifact ($(du -h "$artifact" | cut -f1))"
