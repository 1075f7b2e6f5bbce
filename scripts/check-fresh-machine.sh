#!/usr/bin/env bash
# The README's commands as a newcomer runs them: on a clean clone of what is committed, with an
# environment holding only HOME and a PATH of the system's directories and cargo's, so the
# system's python3 (externally managed on Debian 12, Ubuntu 23.04+, macOS with Homebrew) is the
# one found, and nothing this shell has set (pyenv, a venv, CARGO_TARGET_DIR) helps.
#
#   scripts/check-fresh-machine.sh          # scripts/demo.sh, then again to show it reuses .venv
#   scripts/check-fresh-machine.sh test     # the same for scripts/test.sh (what CI runs)
#   scripts/check-fresh-machine.sh all      # both
#
# The second run of each command gets PIP_NO_INDEX=1 and CARGO_NET_OFFLINE=true: anything it
# tried to download would fail it. Prints each run's wall time and last lines; the clone is
# removed at the end unless KEEP_CLONE=1.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

what=${1:-demo}
case "$what" in
  demo) commands=(scripts/demo.sh) ;;
  test) commands=(scripts/test.sh) ;;
  all) commands=(scripts/demo.sh scripts/test.sh) ;;
  *)
    echo "error: unknown argument '$what': use demo, test or all" >&2
    exit 2
    ;;
esac

SYSTEM_PATH="$HOME/.cargo/bin:/usr/local/bin:/usr/bin:/bin"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  log "note: uncommitted changes are not part of the check (it clones what is committed)"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/leadspace-enrich-fresh.XXXXXX")
if [ "${KEEP_CLONE:-0}" != 1 ]; then
  trap 'rm -rf "$work"' EXIT
fi
git clone --quiet "$REPO_ROOT" "$work/clone"
log "clean clone of $(git rev-parse --short HEAD) in $work/clone"
log "python3 there: $(env -i HOME="$HOME" PATH="$SYSTEM_PATH" bash -c 'command -v python3 && python3 --version' | tr '\n' ' ')"

status=0
for command in "${commands[@]}"; do
  for run in first second; do
    offline=()
    if [ "$run" = second ]; then
      offline=(PIP_NO_INDEX=1 CARGO_NET_OFFLINE=true)
    fi
    out="$work/$(basename "$command" .sh).$run.log"
    log "$command ($run run${offline:+, offline installs refused}); output in $out"
    started=$(date +%s)
    if (cd "$work/clone" && env -i HOME="$HOME" PATH="$SYSTEM_PATH" TERM="${TERM:-dumb}" ${offline[@]+"${offline[@]}"} \
      bash "$command") >"$out" 2>&1; then
      result=passed
    else
      result=FAILED
      status=1
    fi
    elapsed=$(($(date +%s) - started))
    printf '%s (%s run): %s in %dm%02ds; its last lines:\n' "$command" "$run" "$result" $((elapsed / 60)) $((elapsed % 60))
    tail -n "${TAIL_LINES:-8}" "$out" | sed 's/^/    /'
    if [ "$run" = first ] && [ "$result" = FAILED ]; then
      break
    fi
  done
done
exit "$status"
