#!/usr/bin/env bash
# The whole flow on local stand-ins: moto (S3 + Secrets Manager), the Leadspace emulator, and
# the function under `cargo lambda watch` (the real Lambda Invoke API on a local port).
# Creates a bucket and the token secret, uploads a customers file, invokes the function with
# the sample S3 event, then prints the summary and the first enriched rows.
# Installs moto, the AWS CLI and cargo-lambda with pip when they are missing.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
trap stop_all EXIT

ensure_moto
ensure_aws_cli
ensure_cargo_lambda

DEMO_DIR="$REPO_ROOT/.demo"
mkdir -p "$DEMO_DIR"
MOTO_PORT=${MOTO_PORT:-$(free_port)}
EMULATOR_PORT=${EMULATOR_PORT:-$(free_port)}
LAMBDA_PORT=${LAMBDA_PORT:-$(free_port)}
BUCKET=customer-data                       # the bucket named in events/s3-put.json
SOURCE_KEY="incoming/Customers (EU) Q4 + Übersicht.csv"
OUTPUT_KEY="enriched/Customers (EU) Q4 + Übersicht.csv"
TOKEN=demo-token-not-secret

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
aws_local() { aws --endpoint-url "http://127.0.0.1:$MOTO_PORT" "$@"; }

log "building the function and the Leadspace emulator"
cargo build --locked --workspace --bins

log "starting moto_server on 127.0.0.1:$MOTO_PORT"
start_moto "$MOTO_PORT" "$DEMO_DIR/moto.log"

log "starting the Leadspace emulator on 127.0.0.1:$EMULATOR_PORT"
target/debug/leadspace-emulator --port "$EMULATOR_PORT" --token "$TOKEN" --bulk-ready-ms 300 >"$DEMO_DIR/emulator.log" 2>&1 &
PIDS+=($!)
wait_for_port "$EMULATOR_PORT" leadspace-emulator 30

log "creating the bucket, the token secret and uploading $SOURCE_KEY"
aws_local s3 mb "s3://$BUCKET" >/dev/null
aws_local secretsmanager create-secret --name leadspace/demo \
  --secret-string "{\"token\": \"$TOKEN\", \"program_id\": \"DEMO\"}" >/dev/null
aws_local s3 cp tests/data/customers.csv "s3://$BUCKET/$SOURCE_KEY" >/dev/null

cat >"$DEMO_DIR/function.env" <<ENV
LEADSPACE_SECRET_ID=leadspace/demo
LEADSPACE_BASE_URL=http://127.0.0.1:$EMULATOR_PORT
DATA_SHARING_CONSENT=true
S3_FORCE_PATH_STYLE=true
AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_SESSION_TOKEN=testing
AWS_REGION=us-east-1
RUST_LOG=info
ENV

log "starting the function under cargo lambda watch on 127.0.0.1:$LAMBDA_PORT"
cargo lambda watch --bin leadspace-enrich --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT" \
  --env-file "$DEMO_DIR/function.env" >"$DEMO_DIR/lambda.log" 2>&1 &
PIDS+=($!)
wait_for_port "$LAMBDA_PORT" "cargo lambda watch" 120

log "invoking the function with events/s3-put.json (the key arrives URL-encoded, as S3 sends it)"
cargo lambda invoke leadspace-enrich --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT" \
  --data-file events/s3-put.json | tee "$DEMO_DIR/response.json"
echo

log "summary: s3://$BUCKET/$OUTPUT_KEY.summary.json"
aws_local s3 cp "s3://$BUCKET/$OUTPUT_KEY.summary.json" - | python3 -m json.tool

log "first enriched rows: s3://$BUCKET/$OUTPUT_KEY"
aws_local s3 cp "s3://$BUCKET/$OUTPUT_KEY" "$DEMO_DIR/enriched.csv" >/dev/null
python3 - "$DEMO_DIR/enriched.csv" <<'PY'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
shown = ["Account Name", "leadspace_status", "leadspace_name", "leadspace_industry", "leadspace_employees", "leadspace_country", "leadspace_confidence"]
print(" | ".join(shown))
for row in rows[:6]:
    print(" | ".join((row.get(c) or "").replace("\n", " ")[:28] for c in shown))
print(f"... {len(rows)} rows in all; logs in .demo/")
PY
