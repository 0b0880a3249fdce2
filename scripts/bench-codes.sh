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
#   SMOKE=1 scripts/bench-codes.sh OUTPUT_DIR    # 1 s runs, 300 codes a run, built binaries (CI)
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-codes-results "$@"

data=$(mktemp -d)
trap 'stop_servers; rm -rf "$data"' EXIT
# The bench authority's limits are set for load: thousands of cases a second on purpose. Code
# issuing is limited per authority by a server flag: off for the benchmark. Every listener
# takes a port the kernel picks. The load generator is one connection from one address, playing
# many phones: the code and decoy classes give it the shares of many clients, and its network
# the code-attempt budget of many (an attempt is charged before its look-up and given back when
# the code is valid, so 50 in flight from one network would spend the default 20 at once).
token=$(add_load_authority "$data")
start_server bench "$data" --publish-interval 2s --release-delay 48h --authority-codes-per-minute 0 \
  --max-code-uploads-per-connection 256 --max-code-uploads-per-network 256 \
  --max-decoys-per-connection 256 --max-decoys-per-network 256 \
  --code-failures-per-client-per-hour 1000000
url="http://$started_grpc"

run() {
  local name=$1; shift
  echo "== $name" >&2
  EXPOSURE_TOKEN="$token" "$loadtest" run --target "$url" --format json \
    --output "$out/$name.json" --duration "${seconds}s" "$@"
}
# An upload-code run issues one code per request before its clock starts: bound the requests
# above what the run can send in its duration.
codes=$((seconds * 6000))
if smoke; then codes=300; fi

run seed          --scenario upload      --requests 100 --concurrency 4
w=$(warmup 200)
run decoy         --scenario decoy       --warmup "$w"
run bearer-1      --scenario upload      --warmup "$w"
run code-1        --scenario upload-code --warmup "$w" --requests "$codes"
run code-2        --scenario upload-code --warmup "$w" --requests "$codes"
run bearer-2      --scenario upload      --warmup "$w"
run bearer-3      --scenario upload      --warmup "$w"
run code-3        --scenario upload-code --warmup "$w" --requests "$codes"
check_reports "$out"/{seed,decoy,bearer-1,bearer-2,bearer-3,code-1,code-2,code-3}.json

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
ratio = code / bearer if bearer else float("nan")
print(f"\ncode uploads / bearer uploads = {code:,.0f} / {bearer:,.0f} = {ratio:.2f}")
PY
