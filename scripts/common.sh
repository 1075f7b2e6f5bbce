# Shared helpers for the project's scripts: install what is missing, start and stop local
# stand-ins, wait for ports. Sourced, not run.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDS=()

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

pip_install() {
  log "installing $* (pip)"
  python3 -m pip install --quiet --disable-pip-version-check "$@"
  hash -r
}

# Debian's headless Chromium, which renders the HTML report in the tests.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then
    return
  fi
  log "installing chromium (apt)"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

# moto's standalone server (S3, Secrets Manager...), with its [server] extra. 5.2.1 answers
# CompleteMultipartUpload with the wrong XML root, which strict clients such as the Rust SDK
# reject (getmoto/moto#10055, fixed in later releases): older versions are upgraded.
MOTO_MIN_VERSION=5.2.5
ensure_moto() {
  if ! command -v moto_server >/dev/null 2>&1 || ! python3 - "$MOTO_MIN_VERSION" <<'PY'
import sys
from importlib.metadata import version
have = tuple(int(p) for p in version("moto").split(".")[:3] if p.isdigit())
need = tuple(int(p) for p in sys.argv[1].split("."))
sys.exit(0 if have >= need else 1)
PY
  then
    pip_install "moto[server]>=$MOTO_MIN_VERSION"
  fi
}

ensure_aws_cli() {
  if ! command -v aws >/dev/null 2>&1; then
    pip_install awscli
  fi
}

ensure_cargo_lambda() {
  if ! cargo lambda --version >/dev/null 2>&1; then
    pip_install cargo-lambda
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port, name, seconds, [pid of the server: stop waiting if it dies]
  local port=$1 name=$2 limit=${3:-60} pid=${4:-} waited=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $name exited before listening on port $port; see its log" >&2
      return 1
    fi
    sleep 0.2
    waited=$((waited + 1))
    if [ "$waited" -ge $((limit * 5)) ]; then
      echo "error: $name did not start listening on port $port within ${limit}s" >&2
      return 1
    fi
  done
}

start_moto() { # port, log file
  ensure_moto
  moto_server -H 127.0.0.1 -p "$1" >"$2" 2>&1 &
  PIDS+=($!)
  wait_for_port "$1" moto_server 60 "$!"
}

stop_all() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
}
