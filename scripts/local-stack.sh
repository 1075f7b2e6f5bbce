# The local stand-ins the demo and the end-to-end test run the function on: moto (S3 and
# Secrets Manager), the Leadspace emulator, and the function itself behind `cargo lambda watch
# --only-lambda-apis`, which serves the real Lambda Invoke API and the Runtime API the function
# polls. Sourced after common.sh, not run.

BUCKET=customer-data                       # the bucket named in events/*.json
SECRET_ID=leadspace/demo
LEADSPACE_TOKEN=demo-token-not-secret
FUNCTION=leadspace-enrich

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""

aws_s3() { aws --endpoint-url "http://127.0.0.1:$MOTO_PORT" "$@"; }

# aws lambda invoke against the local runtime, in the form the installed CLI takes (v2 needs
# --cli-binary-format to read a JSON payload file; v1 does not know the flag); prints the body.
lambda_invoke() { # payload file, response file
  local format=()
  if aws --version 2>&1 | grep -q '^aws-cli/2'; then
    format=(--cli-binary-format raw-in-base64-out)
  fi
  # An invocation may legitimately run for minutes: no read timeout, and no CLI retry that
  # would deliver the same event twice.
  AWS_MAX_ATTEMPTS=1 aws lambda invoke --cli-read-timeout 0 \
    --endpoint-url "http://127.0.0.1:$LAMBDA_PORT" --function-name "$FUNCTION" \
    "${format[@]}" --payload "file://$1" "$2" >/dev/null
  cat "$2"
}

local_stack_up() { # working directory for logs and env file
  local dir=$1
  mkdir -p "$dir"
  ensure_moto
  ensure_aws_cli
  ensure_cargo_lambda
  MOTO_PORT=${MOTO_PORT:-$(free_port)}
  EMULATOR_PORT=${EMULATOR_PORT:-$(free_port)}
  LAMBDA_PORT=${LAMBDA_PORT:-$(free_port)}

  # One build: the function and the emulator together. cargo lambda watch only serves the
  # APIs (--only-lambda-apis) and the function's debug binary is started here, because watch
  # would otherwise build the function a second time with its own flags.
  log "building the function and the Leadspace emulator"
  cargo build --locked -p leadspace-enrich -p leadspace-emulator --bins
  local bin=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug

  log "starting moto_server on 127.0.0.1:$MOTO_PORT"
  start_moto "$MOTO_PORT" "$dir/moto.log"

  log "starting the Leadspace emulator on 127.0.0.1:$EMULATOR_PORT"
  "$bin/leadspace-emulator" --port "$EMULATOR_PORT" --token "$LEADSPACE_TOKEN" --bulk-ready-ms 300 \
    >"$dir/emulator.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$EMULATOR_PORT" leadspace-emulator 30 "$!"

  log "creating s3://$BUCKET and the secret $SECRET_ID"
  aws_s3 s3 mb "s3://$BUCKET" >/dev/null
  aws_s3 secretsmanager create-secret --name "$SECRET_ID" \
    --secret-string "{\"token\": \"$LEADSPACE_TOKEN\", \"program_id\": \"DEMO\"}" >/dev/null

  cat >"$dir/function.env" <<ENV
LEADSPACE_SECRET_ID=$SECRET_ID
LEADSPACE_BASE_URL=http://127.0.0.1:$EMULATOR_PORT
LEADSPACE_ALLOW_HTTP=true
DATA_SHARING_CONSENT=true
SOURCE_BUCKET=$BUCKET
S3_FORCE_PATH_STYLE=true
AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_SESSION_TOKEN=testing
AWS_REGION=us-east-1
RUST_LOG="${FUNCTION_LOG_LEVEL:-info,leadspace_enrich=debug}"
AWS_LAMBDA_LOG_FORMAT=${FUNCTION_LOG_FORMAT:-TEXT}
ENV

  log "starting the Lambda APIs (cargo lambda watch --only-lambda-apis) on 127.0.0.1:$LAMBDA_PORT"
  cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT" \
    >"$dir/lambda-apis.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$LAMBDA_PORT" "cargo lambda watch ($dir/lambda-apis.log)" 120 "$!"

  # The function polls the Runtime API under its own name (/.rt/<function>), the queue that
  # invocations of that function name fill; its log (stdout and stderr) goes to lambda.log.
  log "starting the function ($bin/$FUNCTION) with $dir/function.env"
  (
    set -a
    # shellcheck disable=SC1091
    source "$dir/function.env"
    set +a
    export AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$LAMBDA_PORT/.rt/$FUNCTION"
    export AWS_LAMBDA_FUNCTION_NAME="$FUNCTION" AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024
    exec "$bin/$FUNCTION"
  ) >"$dir/lambda.log" 2>&1 &
  PIDS+=($!)

  # A status call, which changes nothing: the function is up and reaches moto before the
  # invocations that matter.
  log "checking that the function answers"
  curl -s --max-time 60 -o "$dir/warm-up.json" -X POST --data-binary "{\"action\": \"status\", \"bucket\": \"$BUCKET\"}" \
    "http://127.0.0.1:$LAMBDA_PORT/2015-03-31/functions/$FUNCTION/invocations"
  if ! grep -q '"enrichments"' "$dir/warm-up.json"; then
    echo "error: the function did not answer its warm-up call; see $dir/lambda.log" >&2
    return 1
  fi
}
