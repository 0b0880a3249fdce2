#!/usr/bin/env bash
# What padding costs (DESIGN §14): bytes and publish time of a quiet day's batches with the
# server's default padding (--pad-min-keys 100 --pad-jitter 20) against the same day without
# padding (--pad-min-keys 0 --pad-jitter 0), run one after the other on fresh data directories.
#
#   scripts/bench-padding.sh [OUTPUT_DIR] [RUNS]
#   SMOKE=1 scripts/bench-padding.sh OUTPUT_DIR     # 2 runs (CI)
#
# Each server publishes every second with no release delay. For each of RUNS publish runs (24
# by default: one case an hour for a day, each hour compressed to one publish interval) the
# load-test tool uploads one case (14 fresh GAEN keys, the 7 of earlier days releasable at
# once), and the script waits for the batch it makes. Then it waits three more intervals with
# no upload and checks that nothing is published (a day without cases costs phones nothing).
# From each server's `batch published` log lines it reports batches, keys, synthetic keys,
# elements, filter bytes (what a phone downloads), and publish time (total_ms, median and
# largest), and writes the table to OUTPUT_DIR/padding.md.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-padding-results "$@"
runs=${2:-24}
if smoke; then runs=${2:-2}; fi

data=$(mktemp -d)
trap 'stop_servers; rm -rf "$data"' EXIT

published() {
  grep -c '"batch published"' "$1" || true
}

# Waits until LOG counts more than BEFORE `batch published` lines (30 s at most).
wait_for_batch() {
  local log=$1 before=$2 _
  for _ in $(seq 300); do
    (($(published "$log") > before)) && return 0
    sleep 0.1
  done
  echo "error: no batch published within 30 s after an upload; see $log" >&2
  exit 1
}

measure() {
  local name=$1
  shift
  mkdir -p "$data/$name"
  local token
  token=$(add_load_authority "$data/$name")
  start_server "$name" "$data/$name" --publish-interval 1s --release-delay 0s "$@"
  local log="$out/server-$name.log" run before
  for run in $(seq "$runs"); do
    before=$(published "$log")
    EXPOSURE_TOKEN="$token" "$loadtest" run --target "http://$started_grpc" --scenario upload \
      --requests 1 --concurrency 1 --format json --output "$out/upload-$name-$run.json" >/dev/null
    wait_for_batch "$log" "$before"
  done
  before=$(published "$log")
  sleep 3.5
  if (($(published "$log") != before)); then
    echo "error: $name published a batch with no upload; see $log" >&2
    exit 1
  fi
  stop_servers "$started_pid"
  check_reports "$out"/upload-"$name"-*.json
}

echo "== padded (the defaults: --pad-min-keys 100 --pad-jitter 20), $runs runs" >&2
measure padded
echo "== unpadded (--pad-min-keys 0 --pad-jitter 0), $runs runs" >&2
measure unpadded --pad-min-keys 0 --pad-jitter 0

python3 - "$out" "$runs" <<'PY' | tee "$out/padding.md"
import json, pathlib, statistics, sys
out, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])

def batches(name):
    found = []
    for line in (out / f"server-{name}.log").read_text().splitlines():
        if '"batch published"' not in line:
            continue
        fields = json.loads(line)
        fields = fields.get("fields", fields)
        found.append({key: int(fields[key]) for key in
                      ("keys", "synthetic_keys", "elements", "bytes", "total_ms")})
    if len(found) != runs:
        sys.exit(f"error: {name}: {len(found)} batches published for {runs} runs")
    return found

print(f"| padding | batches | keys a batch | synthetic keys a batch | elements a batch "
      f"| filter bytes a batch | filter bytes, {runs} runs | publish ms median / max |")
print("|---|---|---|---|---|---|---|---|")
for name in ("padded", "unpadded"):
    found = batches(name)
    def span(key):
        values = [batch[key] for batch in found]
        low, high = min(values), max(values)
        return f"{low:,}" if low == high else f"{low:,}–{high:,}"
    total = sum(batch["bytes"] for batch in found)
    times = [batch["total_ms"] for batch in found]
    print(f"| {name} | {len(found)} | {span('keys')} | {span('synthetic_keys')} "
          f"| {span('elements')} | {span('bytes')} | {total:,} "
          f"| {statistics.median(times):g} / {max(times)} |")
PY
