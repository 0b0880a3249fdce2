#!/usr/bin/env bash
# Fuzzes every parser that reads bytes from outside (issue 11): the batch file parser and its
# lookups, the GAEN export reader, upload decoding + validation, the HTTP listener's path
# router and the admin inbox's request files. Each target runs SECONDS (default 600) from a
# corpus seeded with real files (fuzz/seeds/); a crash leaves its input in
# fuzz/artifacts/TARGET/ and stops the script with exit 1. A summary line per target (runs,
# seconds, corpus size, crashes) goes to stdout and to fuzz/logs/summary.tsv.
#
#   scripts/fuzz.sh            # 10 minutes per target
#   scripts/fuzz.sh 60 gaen_export http_path
#
# Needs the nightly toolchain and cargo-fuzz (installed when missing). The build has its own
# target folder (FUZZ_TARGET_DIR, default ~/.cache/exposure-server/fuzz-target): the first one
# compiles RocksDB for the server's targets (15-25 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(batch_file gaen_export upload_request http_path inbox_request)
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/exposure-server/fuzz-target}"
mkdir -p fuzz/logs
summary=fuzz/logs/summary.tsv
[[ -f "$summary" ]] || printf 'date\tcommit\ttarget\tseconds\truns\tcorpus\tcrashes\n' >"$summary"

for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  cp -n fuzz/seeds/"$target"/* "$corpus"/
  log="fuzz/logs/$target.log"
  echo "fuzzing $target for ${seconds}s (log: $log)"
  features=()
  case "$target" in
    upload_request | http_path | inbox_request) features=(--features server) ;;
  esac
  status=0
  # -s none: the targets are safe Rust (the workspace denies unsafe code), so AddressSanitizer
  # adds cost and finds nothing; libFuzzer still catches every panic, abort and timeout.
  cargo +nightly fuzz run --fuzz-dir fuzz --target-dir "$target_dir" -s none "${features[@]}" "$target" "$corpus" \
    -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  files=$(find "$corpus" -type f | wc -l)
  crashes=$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD)" \
    "$target" "$seconds" "${runs:-0}" "$files" "$crashes" | tee -a "$summary"
  if ((status != 0)); then
    echo "$target: libFuzzer exited $status; see $log and fuzz/artifacts/$target/" >&2
    tail -30 "$log" >&2
    exit 1
  fi
done
