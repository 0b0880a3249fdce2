#!/usr/bin/env bash
# Measures uploads with one-time codes next to uploads with the bearer token, and decoys, in one
# run against one release server on a fresh data directory (loopback only), the way
# docs/BENCHMARKS.md reports it. The embargo (--release-delay 48h) keeps every uploaded key
# unpublished, so the publisher stays idle and the runs compare the upload paths alone (a growing
# publish backlog slows each run more than the last); bearer and code runs alternate
# (A B B A A B) so that the growing store and the machine's drift weigh on both alike. Prints one table; leaves the JSON
# reports.
#
#   scripts/bench-codes.sh [OUTPUT_DIR] [SECONDS_PER_RUN]
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-codes-results "$@"

data=$(mktemp -d)
port=50661
url="http://127.0.0.1:$port"
# The bench authority gets quotas far above the default: thousands of cases a second on purpose.
token=$("$server" authority add --data-dir "$data" --name bench --region VN-TB \
  --uploads-per-minute 100000000 --keys-per-day 100000000000 | tail -n 1)
# Code issuing is limited per authority by a server flag: off for the benchmark.
"$server" --data-dir "$data" --grpc-addr "127.0.0.1:$port" --metrics-addr 127.0.0.1:0 \
  --publish-interval 2s --release-delay 48h --authority-codes-per-minute 0 \
  --log-format json 2>"$out/server.log" &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 50); do
  "$loadtest" run --target "$url" --scenario noop --requests 1 --concurrency 1 \
    --format json --output /dev/null 2>/dev/null && break
  sleep 0.2
done

run() {
  local name=$1; shift
  echo "== $name" >&2
  EXPOSURE_TOKEN="$token" "$loadtest" run --target "$url" --format json \
    --output "$out/$name.json" --duration "${seconds}s" "$@"
}
# An upload-code run issues one code per request before its clock starts: bound the requests
# above what the run can send in its duration.
codes=$((seconds * 6000))

run seed          --scenario upload      --requests 100 --concurrency 4
run decoy         --scenario decoy       --warmup 200
run bearer-1      --scenario upload      --warmup 200
run code-1        --scenario upload-code --warmup 200 --requests "$codes"
run code-2        --scenario upload-code --warmup 200 --requests "$codes"
run bearer-2      --scenario upload      --warmup 200
run bearer-3      --scenario upload      --warmup 200
run code-3        --scenario upload-code --warmup 200 --requests "$codes"

python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
reports = {name: json.loads((out / f"{name}.json").read_text())
           for name in ["decoy", "bearer-1", "code-1", "code-2", "bearer-2", "bearer-3", "code-3"]}
print("| run | requests/s | p50 ms | p99 ms | errors | skipped |")
print("|---|---|---|---|---|---|")
for name, report in reports.items():
    latency = report["latency_ms"]
    print(f"| {name} | {report['rps']:,.0f} | {latency['p50']:.2f} | {latency['p99']:.2f} | "
          f"{report['errors']} | {report.get('skipped', 0)} |")
bearer = sum(reports[f"bearer-{run}"]["rps"] for run in (1, 2, 3)) / 3
code = sum(reports[f"code-{run}"]["rps"] for run in (1, 2, 3)) / 3
print(f"\ncode uploads / bearer uploads = {code:,.0f} / {bearer:,.0f} = {code / bearer:.2f}")
PY
