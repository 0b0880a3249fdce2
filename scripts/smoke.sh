#!/usr/bin/env bash
# Runs every scripts/*.sh in its smoke mode (SMOKE=1: a second or two each, tiny inputs, no
# build of its own), so a script that no longer runs fails CI instead of the next person who
# needs it. .ci/run calls this after the README's test command, whose release binaries (in
# $CARGO_TARGET_DIR) the scripts reuse. A script fails the smoke run when it exits non-zero or
# when its output, or a log it leaves, holds an error line (an `error` line, a panic, a port
# already in use, a failed test, a server log line at level ERROR).
#
#   scripts/smoke.sh              # every script
#   scripts/smoke.sh bench-tls    # some of them, by name
set -euo pipefail
cd "$(dirname "$0")/.."
export SMOKE=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/exposure-server/target}"

scripts=("$@")
if ((${#scripts[@]} == 0)); then
  for path in scripts/*.sh; do
    name=$(basename "$path" .sh)
    [[ "$name" == smoke ]] || scripts+=("$name")
  done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
error_lines='^(error|Error|ERROR)\b|panicked|[Aa]ddress already in use|"level":"ERROR"|^ +FAIL \[|^FAILED|command not found|unbound variable|syntax error'
failed=()
started=$(date +%s)
for name in "${scripts[@]}"; do
  script="scripts/$name.sh"
  out="$work/$name"
  mkdir -p "$out"
  log="$work/$name.out"
  begun=$(date +%s)
  status=0
  case "$name" in
    bench-common)
      # Sourced, not run: it must parse and define what the benches call.
      bash -n "$script" >"$log" 2>&1 &&
        bash -c "source $script && declare -F bench_setup start_server stop_servers add_load_authority check_reports warmup smoke start_moto" \
          >>"$log" 2>&1 || status=$?
      ;;
    bench-attacks | bench-codes | bench-console | bench-object-store | bench-padding | bench-server | bench-tls | failover-drill) timeout 120 "$script" "$out" >"$log" 2>&1 || status=$? ;;
    bench-record) timeout 120 "$script" "$out" >"$log" 2>&1 || status=$? ;;
    crash-campaign | fuzz) timeout 120 "$script" >"$log" 2>&1 || status=$? ;;
    *)
      if [[ ! -f "$script" ]]; then
        echo "no script $script" >"$log"
        status=1
      else
        # A script this runner does not know yet: it must take SMOKE=1 with no arguments.
        timeout 120 "$script" >"$log" 2>&1 || status=$?
      fi
      ;;
  esac
  errors=$(cat "$log" | grep -E "$error_lines" || true)
  log_errors=$(find "$out" -type f \( -name '*.log' -o -name '*.err' \) -exec grep -H -E '"level":"ERROR"|panicked' {} + 2>/dev/null || true)
  elapsed=$(($(date +%s) - begun))
  if ((status != 0)) || [[ -n "$errors" || -n "$log_errors" ]]; then
    echo "FAILED $name (exit $status, ${elapsed}s):"
    [[ -n "$errors$log_errors" ]] && printf '%s\n%s\n' "$errors" "$log_errors" | grep -v '^$' | head -n 20 | sed 's/^/  /'
    echo "  last lines of its output:"
    tail -n 15 "$log" | sed 's/^/  | /'
    failed+=("$name")
  else
    echo "ok     $name (${elapsed}s)"
  fi
done
echo "smoke: ${#scripts[@]} scripts in $(($(date +%s) - started))s, ${#failed[@]} failed${failed:+: ${failed[*]}}"
((${#failed[@]} == 0))
