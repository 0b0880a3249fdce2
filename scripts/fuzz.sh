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
#   SMOKE=1 scripts/fuzz.sh    # checks the script and its targets in a second, builds nothing (CI)
#
# Needs the nightly toolchain and cargo-fuzz (installed when missing). The build has its own
# target folder (FUZZ_TARGET_DIR, default ~/.cache/exposure-server/fuzz-target): the first one
# compiles RocksDB for the server's targets (15-25 minutes on 2 cores).
#
# Smoke mode does not fuzz: building the targets needs nightly and, for the server's targets, a
# RocksDB build of its own, far too long for CI. It checks what the script relies on instead:
# every target named has a source file, a [[bin]] in fuzz/Cargo.toml, seeds, and the feature
# the script passes for it is the one Cargo.toml requires; and it reports whether nightly and
# cargo-fuzz are installed (without installing them).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(batch_file gaen_export upload_request http_path inbox_request)
fi

# The --features a target needs, from the script's point of view.
features_of() {
  case "$1" in
    upload_request | http_path | inbox_request) echo "--features server" ;;
    *) echo "" ;;
  esac
}

if [[ "${SMOKE:-0}" == 1 ]]; then
  failed=0
  for target in "${targets[@]}"; do
    problems=()
    [[ -f "fuzz/fuzz_targets/$target.rs" ]] || problems+=("no fuzz/fuzz_targets/$target.rs")
    grep -qx "name = \"$target\"" fuzz/Cargo.toml || problems+=("no [[bin]] $target in fuzz/Cargo.toml")
    [[ -n "$(ls -A "fuzz/seeds/$target" 2>/dev/null)" ]] || problems+=("no seeds in fuzz/seeds/$target")
    # The [[bin]] block's required-features, if any, against what the script passes.
    required=$(awk -v name="name = \"$target\"" '
      $0 == "[[bin]]" { inside = 0 }
      $0 == name { inside = 1 }
      inside && /^required-features/ { print }' fuzz/Cargo.toml)
    if [[ -n "$required" && -z "$(features_of "$target")" ]]; then
      problems+=("fuzz/Cargo.toml requires features for $target ($required) that the script does not pass")
    elif [[ -z "$required" && -n "$(features_of "$target")" ]]; then
      problems+=("the script passes $(features_of "$target") to $target, which fuzz/Cargo.toml does not require")
    fi
    if ((${#problems[@]})); then
      printf 'error: fuzz target %s: %s\n' "$target" "$(IFS=';'; echo "${problems[*]}" | sed 's/;/; /g')" >&2
      failed=1
    else
      echo "smoke: fuzz target $target: source, [[bin]], seeds and features agree"
    fi
  done
  # Every target fuzz/Cargo.toml declares is one the script fuzzes by default.
  for declared in $(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml); do
    [[ "$declared" == exposure-fuzz ]] && continue
    if [[ " batch_file gaen_export upload_request http_path inbox_request " != *" $declared "* ]]; then
      echo "error: fuzz/Cargo.toml declares $declared, which scripts/fuzz.sh does not run by default" >&2
      failed=1
    fi
  done
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "smoke: nightly toolchain present"
  else
    echo "smoke: no nightly toolchain (a real run needs: rustup toolchain install nightly)"
  fi
  if command -v cargo-fuzz >/dev/null 2>&1; then
    echo "smoke: cargo-fuzz present"
  else
    echo "smoke: cargo-fuzz missing (a real run installs it: cargo install cargo-fuzz --locked)"
  fi
  echo "smoke: nothing built or fuzzed (the nightly build of the targets is too long for CI)"
  exit "$failed"
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
  read -r -a features <<<"$(features_of "$target")"
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
