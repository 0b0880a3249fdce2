#!/usr/bin/env bash
# Runs the benchmarks behind docs/BENCHMARKS.md's matcher, province and publish figures in one
# go, and records with each the commit, the UTC start and end, and the machine's state (load
# averages as `uptime` gives them, 1, 5 and 15 minutes, and CPU pressure, `/proc/pressure/cpu`
# "some" avg10) before and after, so every figure in the docs can name its run. Output: one log
# per step and `runs.tsv` in OUTPUT_DIR.
#
#   scripts/bench-record.sh [OUTPUT_DIR] [STEPS...]
#   SMOKE=1 scripts/bench-record.sh OUTPUT_DIR   # tiny province runs, no criterion (CI)
#
# Steps (all by default, in this order): matcher (expansion, filters, pipeline, gaen criterion
# benches), phone (the pipeline bench's phone_daily_match group alone: a phone's day, one
# thread, ordered store against the plain loop; part of matcher), province (bench-province at
# the peak day's defaults), province-small (the peak day's batch, a tenth of the phones: for a
# machine shared with other work), widths (bench-province at 8 and 32 bits, a tenth of the
# phones), dram (a 16 M-tag day, past the L3 cache, 32-bit, 7,514 phones), computed (SHA-256
# tags computed in the run, a hundredth of the phones), publish (the server's publish
# pipeline). Run it on an otherwise idle machine: the figures are only as quiet as the machine.
#
# It records only what the project's own test command passes at: it refuses a dirty tree (a
# figure must name the code that made it), and a commit without a green run of the README's
# test command, `cargo nextest run --workspace --release`, which it runs first unless
# $CARGO_TARGET_DIR/green/<commit> says it passed (.ci/run and this script write that file).
#
# Smoke mode checks the script itself in seconds: it reports a dirty tree instead of refusing,
# skips the test command (and says so), builds nothing, skips the criterion steps (they compile
# the benches) and runs every bench-province step at a tiny size.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-record}
shift || true
steps=("$@")
smoke() {
  [[ "${SMOKE:-0}" == 1 ]]
}
if ((${#steps[@]} == 0)); then
  steps=(matcher province widths dram computed publish)
fi
for step in "${steps[@]}"; do
  case "$step" in
    matcher | phone | province | province-small | widths | dram | computed | publish) ;;
    *) echo "error: unknown step $step (matcher phone province province-small widths dram computed publish)" >&2; exit 64 ;;
  esac
done
target_dir=${CARGO_TARGET_DIR:-target}
commit=$(git rev-parse HEAD)

# A dirty tree: anything git would commit or stash, the output folder aside.
out_in_repo=$(realpath -m --relative-to=. "$out")
dirty=$(git status --porcelain --untracked-files=all | grep -v -F " $out_in_repo/" || true)
if [[ -n "$dirty" ]]; then
  if smoke; then
    echo "smoke: the tree is dirty; a recording would refuse it:" >&2
    echo "$dirty" | head -n 5 >&2
  else
    echo "error: refusing to record on a dirty tree (commit first, so each figure names its code):" >&2
    echo "$dirty" >&2
    exit 1
  fi
fi

# A red tree: the README's test command must pass at this commit.
green="$target_dir/green/$commit"
if smoke; then
  echo "smoke: skipping the test command (cargo nextest run --workspace --release); a recording runs it unless $green exists" >&2
elif [[ -f "$green" ]]; then
  echo "the test command passed at $commit ($green)" >&2
else
  echo "running the README's test command at $commit before recording" >&2
  if ! cargo nextest run --workspace --release; then
    echo "error: refusing to record: cargo nextest run --workspace --release fails at $commit" >&2
    exit 1
  fi
  mkdir -p "$target_dir/green"
  date -u +%FT%TZ >"$green"
fi

mkdir -p "$out"
matcher="$target_dir/release/exposure-matcher"
if smoke; then
  if [[ ! -x "$matcher" ]]; then
    echo "error: smoke mode reuses the test command's release build; $matcher is missing" >&2
    exit 1
  fi
else
  cargo build --release --bin exposure-matcher
  cargo bench --no-run -p exposure-matcher -p exposure-server 2>/dev/null
fi
runs="$out/runs.tsv"
[[ -f "$runs" ]] || printf 'step\tcommit\tstart\tend\tload_start\tload_end\tcpu_pressure_start\tcpu_pressure_end\tcommand\n' >"$runs"

# Load averages (1, 5, 15 minutes, as `uptime` prints them) and CPU pressure.
state() {
  printf '%s\t%s' "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')" \
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
  # A province run whose baseline did not run at the plain loop's speed says so in its report.
  if grep -q '"ratio_valid": false' "$out/$step.log"; then
    echo "$step: ratio not valid (the baseline's lookup_ns against plain_loop_calibration, in $out/$step.log)" >&2
  fi
}

criterion() {
  local step=$1
  shift
  if smoke; then
    echo "smoke: skipping $step (criterion: $*), which compiles the benches" >&2
  else
    record "$step" "$@"
  fi
}

# bench-province with STEP's options; smoke mode shrinks every run to a few hundred phones of
# a small day, the fingerprint and tag options kept.
province() {
  local step=$1
  shift
  if smoke; then
    local keep=() arg
    while (($#)); do
      arg=$1
      shift
      case "$arg" in
        --fingerprint | --observation-tags) keep+=("$arg" "$1"); shift ;;
        --*) shift ;;
      esac
    done
    record "$step" "$matcher" bench-province --phones 300 --observations 100 --cases 20 \
      --baseline-phones 100 "${keep[@]}" --format json
  else
    record "$step" "$matcher" bench-province "$@" --format json
  fi
}

for step in "${steps[@]}"; do
  case "$step" in
    matcher) criterion matcher cargo bench -p exposure-matcher --bench expansion --bench filters \
      --bench pipeline --bench gaen ;;
    phone) criterion phone cargo bench -p exposure-matcher --bench pipeline -- phone_daily_match ;;
    province) province province ;;
    province-small) province province-small --phones 75142 --baseline-phones 9393 ;;
    widths)
      province province-8bit --fingerprint 8 --phones 75142 --baseline-phones 9393
      province province-32bit --fingerprint 32 --phones 75142 --baseline-phones 9393 ;;
    dram) province province-dram --cases 8000 --fingerprint 32 --phones 7514 --baseline-phones 7514 ;;
    computed) province province-computed --observation-tags computed --phones 7514 ;;
    publish) criterion publish cargo bench -p exposure-server --bench publish ;;
  esac
done
