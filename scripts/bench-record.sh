#!/usr/bin/env bash
# Runs the benchmarks behind docs/BENCHMARKS.md's matcher, province and publish figures in one
# go, and records with each the commit, the UTC start and end, and the machine's state (load
# average and CPU pressure, `/proc/pressure/cpu` "some" avg10) before and after, so every figure
# in the docs can name its run. Output: one log per step and `runs.tsv` in OUTPUT_DIR.
#
#   scripts/bench-record.sh [OUTPUT_DIR] [STEPS...]
#
# Steps (all by default, in this order): matcher (expansion, filters, pipeline, gaen criterion
# benches), province (bench-province at the peak day's defaults), widths (bench-province at 8
# and 32 bits, a tenth of the phones), dram (a 16 M-tag day, past the L3 cache, 32-bit, 7,514
# phones), computed (SHA-256 tags computed in the run, a hundredth of the phones), publish (the
# server's publish pipeline). Run it on an otherwise idle machine: the figures are only as
# quiet as the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-record}
shift || true
steps=("$@")
if ((${#steps[@]} == 0)); then
  steps=(matcher province widths dram computed publish)
fi
mkdir -p "$out"
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --bin exposure-matcher
cargo bench --no-run -p exposure-matcher -p exposure-server 2>/dev/null
matcher="$target_dir/release/exposure-matcher"
runs="$out/runs.tsv"
[[ -f "$runs" ]] || printf 'step\tcommit\tstart\tend\tload_start\tload_end\tcpu_pressure_start\tcpu_pressure_end\tcommand\n' >"$runs"

state() {
  printf '%s\t%s' "$(cut -d' ' -f1 /proc/loadavg)" \
    "$(sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null || echo n/a)"
}

record() {
  local step=$1
  shift
  local load_start pressure_start start
  IFS=$'\t' read -r load_start pressure_start <<<"$(state)"
  start=$(date -u +%FT%TZ)
  echo "== $step: $*" >&2
  "$@" >"$out/$step.log" 2>"$out/$step.err"
  local load_end pressure_end
  IFS=$'\t' read -r load_end pressure_end <<<"$(state)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$(git rev-parse --short HEAD)" "$start" \
    "$(date -u +%FT%TZ)" "$load_start" "$load_end" "$pressure_start" "$pressure_end" "$*" | tee -a "$runs"
}

for step in "${steps[@]}"; do
  case "$step" in
    matcher) record matcher cargo bench -p exposure-matcher --bench expansion --bench filters \
      --bench pipeline --bench gaen ;;
    province) record province "$matcher" bench-province --format json ;;
    widths)
      record province-8bit "$matcher" bench-province --fingerprint 8 --phones 75142 --baseline-phones 9393 --format json
      record province-32bit "$matcher" bench-province --fingerprint 32 --phones 75142 --baseline-phones 9393 --format json ;;
    dram) record province-dram "$matcher" bench-province --cases 8000 --fingerprint 32 --phones 7514 --baseline-phones 7514 --format json ;;
    computed) record province-computed "$matcher" bench-province --observation-tags computed --phones 7514 --format json ;;
    publish) record publish cargo bench -p exposure-server --bench publish ;;
    *) echo "unknown step $step (matcher province widths dram computed publish)" >&2; exit 64 ;;
  esac
done
