#!/usr/bin/env bash
# Measures the server the way docs/BENCHMARKS.md reports it, in one run on this machine: a
# release server on a fresh data directory (loopback only), seeded with cases, then every
# load-test scenario back to back, then the province mix at 1x and 10x. Prints one table and
# leaves the JSON reports in the output folder.
#
#   scripts/bench-server.sh [OUTPUT_DIR] [SECONDS_PER_SCENARIO]
#   SMOKE=1 scripts/bench-server.sh OUTPUT_DIR   # 1 s runs on the built binaries (CI)
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-results "$@"

data=$(mktemp -d)
trap 'stop_servers; rm -rf "$data"' EXIT
# The bench authority's limits are set for load: the upload scenario sends thousands of cases a
# second on purpose. Every listener takes a port the kernel picks.
token=$(add_load_authority "$data")
start_server bench "$data" --publish-interval 2s --release-delay 0s "${LOAD_GENERATOR_SHARES[@]}"
url="http://$started_grpc"
http_url="http://$started_http"

run() {
  local name=$1; shift
  echo "== $name" >&2
  "$loadtest" run --target "$url" --format json --output "$out/$name.json" "$@"
}
run_http() {
  local name=$1; shift
  echo "== $name" >&2
  "$loadtest" run --target "$http_url" --format json --output "$out/$name.json" "$@"
}

# Seed: 100 cases (half of each case's keys are yesterday's, so they publish at once).
run seed --scenario upload --token "$token" --requests 100 --concurrency 4
if smoke; then sleep 2; else sleep 5; fi
run noop     --scenario noop     --duration "${seconds}s" --warmup "$(warmup 1000)"
run poll     --scenario poll     --duration "${seconds}s" --warmup "$(warmup 1000)"
run confirm  --scenario confirm  --duration "${seconds}s" --warmup "$(warmup 1000)"
run download --scenario download --duration "${seconds}s" --warmup "$(warmup 200)"
run_http http-poll     --scenario http-poll     --duration "${seconds}s" --warmup "$(warmup 1000)"
run_http http-download --scenario http-download --duration "${seconds}s" --warmup "$(warmup 200)"
run province-1x  --scenario province --token "$token" --duration "$((seconds * 2))s"
run province-10x --scenario province --token "$token" --duration "$((seconds * 2))s" --speedup 10
# Last: the upload run leaves a backlog of hundreds of thousands of keys (weeks of peak days)
# that the publisher then works through, which would distort any run after it.
run upload   --scenario upload   --token "$token" --duration "${seconds}s" --warmup "$(warmup 200)"
check_reports "$out"/{seed,noop,poll,confirm,download,http-poll,http-download,province-1x,province-10x,upload}.json

python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
noop = json.loads((out / "noop.json").read_text())["rps"] or float("nan")
print(f"| scenario | requests/s | × noop | p50 ms | p99 ms | errors | other |")
print(f"|---|---|---|---|---|---|---|")
for name in ["noop", "poll", "http-poll", "confirm", "download", "http-download",
             "province-1x", "province-10x", "upload"]:
    report = json.loads((out / f"{name}.json").read_text())
    latency = report["latency_ms"]
    other = ""
    if report.get("throughput_mb_s"):
        other = f"{report['throughput_mb_s']:.0f} MB/s"
    print(f"| {name} | {report['rps']:,.0f} | {report['rps'] / noop:.2f} | {latency['p50']:.2f} | "
          f"{latency['p99']:.2f} | {report['errors']} | {other} |")
PY
grep -o '"message":"batch published".*' "$out/server-bench.log" | tail -n 3 >&2 || true
