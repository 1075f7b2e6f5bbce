#!/usr/bin/env bash
# End to end, exactly as a user drives it: the function under `cargo lambda watch` (the real
# Lambda Invoke API), the real AWS CLI for every upload, invoke and download, against moto and
# the Leadspace emulator. Runs every sample in events/ and a scheduled refresh after one file
# changes. Prints one line per check and "e2e: N passed, N failed"; exits non-zero on failure.
set -euo pipefail
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/local-stack.sh"
cd "$REPO_ROOT"
trap stop_all EXIT

WORK=$(mktemp -d "${TMPDIR:-/tmp}/leadspace-enrich-e2e.XXXXXX")
# The most verbose log there is, in Lambda's JSON format, for the log-policy check at the end:
# every invocation below is logged at TRACE, dependencies included.
FUNCTION_LOG_LEVEL=trace FUNCTION_LOG_FORMAT=JSON local_stack_up "$WORK"
passed=0
failed=0

# check NAME RESPONSE_FILE PYTHON_EXPRESSION_ON_r
check() {
  if python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if ($3) else 1)" "$2"; then
    echo "ok     $1"
    passed=$((passed + 1))
  else
    echo "FAILED $1: $(cat "$2")"
    failed=$((failed + 1))
  fi
}

invoke() { # event file -> response file path on stdout
  local out="$WORK/$(basename "$1" .json).$RANDOM.response.json"
  lambda_invoke "$1" "$out" >/dev/null
  echo "$out"
}

outcomes='[(x["key"], x["outcome"]) for x in r["results"]]'
CSV_KEY="incoming/Customers (EU) Q4 + Übersicht.csv"
CSV_NAME="${CSV_KEY#incoming/}"
python3 - "$WORK/accounts.jsonl.gz" <<'PY'
import gzip, sys
with open("tests/data/customers.jsonl", "rb") as src, gzip.open(sys.argv[1], "wb") as dst:
    dst.write(src.read())
PY

log "uploading with aws s3 cp"
aws_s3 s3 cp tests/data/customers.csv "s3://$BUCKET/$CSV_KEY" >/dev/null
aws_s3 s3 cp "$WORK/accounts.jsonl.gz" "s3://$BUCKET/incoming/crm/accounts.jsonl.gz" >/dev/null

log "invoking with aws lambda invoke"
r=$(invoke events/s3-put.json)
check "s3-put: the URL-encoded key is decoded and enriched" "$r" "$outcomes == [('$CSV_KEY', 'enriched')]"
aws_s3 s3 cp "s3://$BUCKET/enriched/Customers (EU) Q4 + Übersicht.csv" "$WORK/enriched.csv" >/dev/null
python3 -c "
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline='', encoding='utf-8')))
json.dump({'rows': len(rows), 'statuses': sorted({r['leadspace_status'] for r in rows})}, open(sys.argv[2], 'w'))
" "$WORK/enriched.csv" "$WORK/enriched.check.json"
check "s3-put: aws s3 cp downloads 10 enriched rows" "$WORK/enriched.check.json" "r['rows'] == 10 and 'enriched' in r['statuses']"

r=$(invoke events/s3-put-multi.json)
check "s3-put-multi: one job per created object" "$r" \
  "$outcomes == [('$CSV_KEY', 'skipped'), ('incoming/crm/accounts.jsonl.gz', 'enriched')]"

r=$(invoke events/eventbridge-object-created.json)
check "eventbridge-object-created: the unencoded key, already enriched" "$r" "$outcomes == [('$CSV_KEY', 'skipped')]"

r=$(invoke events/scheduled.json)
check "scheduled: nothing changed, nothing enriched" "$r" "all(o == 'skipped' for _, o in $outcomes) and len(r['results']) == 2"

aws_s3 s3 cp "$WORK/accounts.jsonl.gz" "s3://$BUCKET/incoming/crm/accounts.jsonl.gz" --metadata changed=yes >/dev/null
printf '{"id": 6, "account": {"name": "Wide World Importers"}}\n' | gzip >>"$WORK/accounts.jsonl.gz"
aws_s3 s3 cp "$WORK/accounts.jsonl.gz" "s3://$BUCKET/incoming/crm/accounts.jsonl.gz" >/dev/null
r=$(invoke events/scheduled.json)
check "scheduled: after one file changed, only that file is enriched" "$r" \
  "$outcomes == [('$CSV_KEY', 'skipped'), ('incoming/crm/accounts.jsonl.gz', 'enriched')]"

r=$(invoke events/cli-dry-run.json)
check "cli-dry-run: an estimate, nothing sent" "$r" \
  "r['results'][0]['estimate'] == {'rows': 10, 'unique_companies': 7, 'rows_without_company_name': 1, 'credits_at_most': 7}"

r=$(invoke events/cli-enrich.json)
check "cli-enrich: force re-enriches with the given mapping" "$r" "$outcomes == [('$CSV_KEY', 'enriched')]"

r=$(invoke events/cli-refresh.json)
check "cli-refresh: everything is up to date" "$r" "all(o == 'skipped' for _, o in $outcomes)"

# Files as spreadsheets really export them: a European Excel CSV (Windows-1252, semicolons) and
# a workbook saved with a .csv name.
python3 - "$WORK/excel-eu.csv" "$WORK/workbook.csv" <<'PY'
import sys
table = "Société;Ville;Notes\r\nSociété Générale;Paris;=1+1\r\nMüller GmbH;Köln;\r\n"
open(sys.argv[1], "wb").write(table.encode("cp1252"))
open(sys.argv[2], "wb").write(b"PK\x03\x04\x14\x00\x06\x00not really a workbook")
PY
aws_s3 s3 cp "$WORK/excel-eu.csv" "s3://$BUCKET/incoming/excel-eu.csv" >/dev/null
aws_s3 s3 cp "$WORK/workbook.csv" "s3://$BUCKET/incoming/workbook.csv" >/dev/null
for name in excel-eu workbook; do
  printf '{"action": "enrich", "bucket": "%s", "key": "incoming/%s.csv"}' "$BUCKET" "$name" >"$WORK/$name.json"
done
r=$(invoke "$WORK/excel-eu.json")
aws_s3 s3 cp "s3://$BUCKET/enriched/excel-eu.csv" "$WORK/excel-eu.out.csv" >/dev/null
aws_s3 s3 cp "s3://$BUCKET/enriched/excel-eu.csv.summary.json" "$WORK/excel-eu.summary.json" >/dev/null
python3 -c "
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline='', encoding='utf-8-sig'), delimiter=';'))
summary = json.load(open(sys.argv[2]))
json.dump({'names': [r['Société'] for r in rows], 'notes': [r['Notes'] for r in rows],
           'encoding': summary['source']['encoding'], 'mapping': summary['field_mapping']}, open(sys.argv[3], 'w'))
" "$WORK/excel-eu.out.csv" "$WORK/excel-eu.summary.json" "$WORK/excel-eu.check.json"
check "a European Excel export (Windows-1252, ';') comes back as UTF-8, accents and cells intact" \
  "$WORK/excel-eu.check.json" \
  "r['names'] == ['Société Générale', 'Müller GmbH'] and r['notes'] == ['=1+1', ''] and r['encoding'] == 'windows-1252' and r['mapping'] == {'company_name': 'Société', 'city': 'Ville'}"
r=$(invoke "$WORK/workbook.json")
check "a workbook named .csv gets a failed summary that says how to fix it" "$r" \
  "$outcomes == [('incoming/workbook.csv', 'failed')] and 'save it as CSV UTF-8' in r['results'][0]['message']"

r=$(invoke events/cli-status.json)
check "cli-status: every enrichment, with its status and row counts" "$r" \
  "sorted((e['source']['key'], e['status'], e['rows']['total']) for e in r['enrichments']) == [('$CSV_KEY', 'complete', 10), ('incoming/crm/accounts.jsonl.gz', 'complete', 6), ('incoming/excel-eu.csv', 'complete', 2), ('incoming/workbook.csv', 'failed', 0)]"

r=$(invoke events/cli-delete.json)
check "cli-delete (a dry run): the output, summary and working state it would remove, and nothing removed" "$r" \
  "r['dry_run'] and 'enriched/$CSV_NAME' in r['removed'] and 'enriched/$CSV_NAME.summary.json' in r['removed']"

# A function error: real Lambda answers 200 with X-Amz-Function-Error, which the AWS CLI shows;
# cargo lambda watch answers 500, which the CLI retries and then hides, so this one check reads
# the Invoke API's answer with curl.
echo '{"action": "explode"}' >"$WORK/bad.json"
curl -s -o "$WORK/bad.response.json" -X POST --data-binary "@$WORK/bad.json" \
  "http://127.0.0.1:$LAMBDA_PORT/2015-03-31/functions/$FUNCTION/invocations"
check "an unknown action is refused, naming the accepted shapes" "$WORK/bad.response.json" \
  "r['errorType'] == 'NonRetryable.InvalidEvent' and '\"refresh\"' in r['errorMessage']"

# Logging policy: counts, never contents. Every invocation above ran with RUST_LOG=trace; the
# function's whole log (its stdout and stderr, which local-stack.sh writes to lambda.log) must hold neither
# the token nor any customer value of the files it read.
python3 - "$WORK/lambda.log" "$LEADSPACE_TOKEN" tests/data/customers.csv tests/data/customers.jsonl \
  "$WORK/excel-eu.csv" >"$WORK/leak.check.json" <<'PY'
import csv, io, json, sys
log_path, token, table, lines, excel = sys.argv[1:6]
def leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    elif isinstance(value, str):
        yield value
cells = [c for row in list(csv.reader(open(table, newline="", encoding="utf-8")))[1:] for c in row]
cells += [v for line in open(lines, encoding="utf-8") if line.strip() for v in leaves(json.loads(line))]
excel_text = open(excel, "rb").read().decode("cp1252")
cells += [c for row in list(csv.reader(io.StringIO(excel_text), delimiter=";"))[1:] for c in row]
# Short or numeric cells ("US", "1") are in any log by chance; every other value must not be.
values = sorted({c.strip() for c in cells if len(c.strip()) >= 5 and not c.strip().replace(".", "").isdigit()})
log = open(log_path, encoding="utf-8", errors="replace").read()
# A value counts where it stands as a value, not inside a longer word: the SDK's random request
# ids ("45e19cda-002c-...") hold "A-002" by chance in about one run in ten.
import re
def appears(value):
    return re.search(r"(?<![0-9a-z])" + re.escape(value.lower()) + r"(?![0-9a-z])", lowered) is not None
lowered = log.lower()
leaks = [v for v in values if appears(v)]
if token in log:
    leaks.append("<the token>")
# The metrics ride in the same log, in Embedded Metric Format, one line per file.
metrics = [json.loads(line) for line in log.splitlines() if line.startswith('{"_aws"')]
jobs = [m for m in metrics if "RowsTotal" in m]
emf_ok = bool(jobs) and all(
    {d["Name"] for d in m["_aws"]["CloudWatchMetrics"][0]["Metrics"]} <= set(m) and m["FunctionName"] for m in metrics)
json.dump({"log_lines": log.count("\n"), "values_checked": len(values), "trace_lines": log.count('"TRACE"'),
           "leaks": leaks, "emf_jobs": len(jobs), "emf_ok": emf_ok,
           "rows_enriched": sum(m.get("RowsEnriched", 0) for m in jobs)}, sys.stdout)
PY
check "RUST_LOG=trace: neither the token nor any customer value appears in the function's log" "$WORK/leak.check.json" \
  "r['trace_lines'] > 100 and r['values_checked'] >= 30 and r['leaks'] == []"
check "every file's figures reach the log as CloudWatch Embedded Metric Format" "$WORK/leak.check.json" \
  "r['emf_ok'] and r['emf_jobs'] >= 6 and r['rows_enriched'] > 0"

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
