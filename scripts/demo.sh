#!/usr/bin/env bash
# The whole flow on local stand-ins: moto (S3 + Secrets Manager), the Leadspace emulator, and
# the function's debug binary behind `cargo lambda watch --only-lambda-apis` (the real Lambda
# Invoke API on a local port; the function is built once, by scripts/local-stack.sh).
# Creates a bucket and the token secret, uploads a customers file, invokes the function with
# the sample S3 event, then prints the summary and the first enriched rows.
# Installs moto, the AWS CLI and cargo-lambda into the project's .venv/ when they are missing.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"
trap stop_all EXIT

source "$(dirname "$0")/local-stack.sh"
SOURCE_KEY="incoming/Customers (EU) Q4 + Übersicht.csv"
OUTPUT_KEY="enriched/Customers (EU) Q4 + Übersicht.csv"
DEMO_DIR="$REPO_ROOT/.demo"
local_stack_up "$DEMO_DIR"

log "uploading tests/data/customers.csv as s3://$BUCKET/$SOURCE_KEY"
aws_s3 s3 cp tests/data/customers.csv "s3://$BUCKET/$SOURCE_KEY" >/dev/null

log "invoking the function with events/s3-put.json (the key arrives URL-encoded, as S3 sends it)"
cargo lambda invoke "$FUNCTION" --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT" \
  --data-file events/s3-put.json | tee "$DEMO_DIR/response.json"
echo

log "summary: s3://$BUCKET/$OUTPUT_KEY.summary.json"
aws_s3 s3 cp "s3://$BUCKET/$OUTPUT_KEY.summary.json" - | python3 -m json.tool

log "first enriched rows: s3://$BUCKET/$OUTPUT_KEY"
aws_s3 s3 cp "s3://$BUCKET/$OUTPUT_KEY" "$DEMO_DIR/enriched.csv" >/dev/null
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
