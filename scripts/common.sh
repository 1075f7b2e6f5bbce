# Shared helpers for the project's scripts: install what is missing, start and stop local
# stand-ins, wait for ports. Sourced, not run.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDS=()

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Python tools (moto, the AWS CLI, cargo-lambda, cfn-lint, ziglang) that are missing are installed
# into a virtual environment of the project, never into the system's Python: Debian 12, Ubuntu
# 23.04+, Arch and Homebrew mark theirs as externally managed (PEP 668) and refuse `pip install`.
# The environment comes first on PATH once it exists, so a second run finds what the first
# installed without touching the network; a tool already on PATH at a good version is used as it
# is. LEADSPACE_VENV moves it (default .venv/, which git ignores); delete it to start again.
VENV_DIR="${LEADSPACE_VENV:-$REPO_ROOT/.venv}"
OUTER_PATH="$PATH" # PATH without the project's environment: where "already installed" is looked for
if [ -x "$VENV_DIR/bin/python" ]; then
  PATH="$VENV_DIR/bin:$PATH"
fi

# Makes the project's environment (python3 -m venv) when there is none that works.
ensure_venv() {
  if "$VENV_DIR/bin/python" -c 'import pip' >/dev/null 2>&1; then
    return
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 not found: install Python 3 (with its venv module), then run this again" >&2
    return 1
  fi
  log "creating the project's Python environment in $VENV_DIR (python3 -m venv)"
  rm -rf "$VENV_DIR"
  if ! PATH="$OUTER_PATH" python3 -m venv "$VENV_DIR" >/dev/null 2>&1; then
    rm -rf "$VENV_DIR"
    # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a package of its own.
    if command -v apt-get >/dev/null 2>&1 && as_root true 2>/dev/null; then
      log "installing python3-venv (apt), which python3 -m venv needs here"
      apt_install python3-venv
      PATH="$OUTER_PATH" python3 -m venv "$VENV_DIR" >/dev/null 2>&1 || {
        rm -rf "$VENV_DIR"
        echo "error: python3 -m venv still fails after installing python3-venv: install the venv package of $(PATH="$OUTER_PATH" python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')" >&2
        return 1
      }
    elif command -v apt-get >/dev/null 2>&1; then
      echo "error: python3 -m venv cannot make $VENV_DIR: install the python3-venv package (sudo apt-get install python3-venv), then run this again" >&2
      return 1
    else
      echo "error: python3 -m venv cannot make $VENV_DIR: install a Python 3 that has its venv module (for example from python.org or your package manager), then run this again" >&2
      return 1
    fi
  fi
  PATH="$VENV_DIR/bin:$PATH"
  hash -r
}

pip_install() {
  ensure_venv
  log "installing $* into $VENV_DIR (pip)"
  "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  hash -r
}

# Runs a command as root: directly when we are root, through sudo without a password prompt
# otherwise (a prompt would hang CI); fails when neither can.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo -n "$@"
  fi
}

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Where a Chromium or Chrome is: the names it has on PATH, then the macOS application bundles.
find_chromium() {
  local name bundle
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return
    fi
  done
  for bundle in "/Applications/Chromium.app/Contents/MacOS/Chromium" \
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" \
    "$HOME/Applications/Chromium.app/Contents/MacOS/Chromium" \
    "$HOME/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"; do
    if [ -x "$bundle" ]; then
      echo "$bundle"
      return
    fi
  done
  return 1
}

# The headless browser that renders the HTML report in the tests, exported as CHROMIUM for them:
# one found where people have it, else Debian's chromium installed with apt; otherwise it stops
# with one line naming what to install (the browser test is never skipped).
ensure_chromium() {
  if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then
    export CHROMIUM
    return
  fi
  if ! CHROMIUM=$(find_chromium); then
    if command -v apt-get >/dev/null 2>&1 && as_root true 2>/dev/null; then
      log "installing chromium (apt)"
      apt_install chromium || apt_install chromium-browser || true
    fi
    if ! CHROMIUM=$(find_chromium); then
      echo "error: the report's browser test needs Chromium or Google Chrome: install one (Debian: apt-get install chromium; macOS: brew install --cask chromium), or set CHROMIUM to its path" >&2
      return 1
    fi
  fi
  export CHROMIUM
}

# moto's standalone server (S3, Secrets Manager...), with its [server] extra. 5.2.1 answers
# CompleteMultipartUpload with the wrong XML root, which strict clients such as the Rust SDK
# reject (getmoto/moto#10055, fixed in later releases): older versions are upgraded.
MOTO_MIN_VERSION=5.2.5
moto_is_recent() { # the python interpreter whose moto to check
  "$1" - "$MOTO_MIN_VERSION" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
have = tuple(int(p) for p in version("moto").split(".")[:3] if p.isdigit())
need = tuple(int(p) for p in sys.argv[1].split("."))
sys.exit(0 if have >= need else 1)
PY
}
ensure_moto() {
  local found
  found=$(command -v moto_server 2>/dev/null) || found=""
  if [ "$found" = "$VENV_DIR/bin/moto_server" ] && moto_is_recent "$VENV_DIR/bin/python"; then
    return
  fi
  # One outside the environment: its version is the one its PATH's python3 sees.
  if [ -n "$found" ] && [ "$found" != "$VENV_DIR/bin/moto_server" ] &&
    PATH="$OUTER_PATH" moto_is_recent python3; then
    return
  fi
  pip_install "moto[server]>=$MOTO_MIN_VERSION"
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

ensure_cfn_lint() {
  if ! command -v cfn-lint >/dev/null 2>&1; then
    pip_install cfn-lint
  fi
}

# cargo-lambda's cross-linker for the arm64 build: zig on PATH, or the ziglang package of the
# python3 first on PATH (cargo-zigbuild runs `python3 -m ziglang`).
ensure_zig() {
  if command -v zig >/dev/null 2>&1 || python3 -c "import ziglang" >/dev/null 2>&1; then
    return
  fi
  pip_install ziglang
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
