#!/usr/bin/env bash
# Measures what TLS costs, in one run on this machine: two release servers on fresh data
# directories (loopback only), one plaintext and one with a certificate made here by openssl,
# then the noop, poll and upload scenarios against each, alternating. Prints one table with the
# TLS/plaintext ratio and leaves the JSON reports in the output folder.
#
#   scripts/bench-tls.sh [OUTPUT_DIR] [SECONDS_PER_SCENARIO]
#   SMOKE=1 scripts/bench-tls.sh OUTPUT_DIR      # 1 s runs on the built binaries (CI)
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-tls-results "$@"

command -v openssl >/dev/null 2>&1 || { echo "error: bench-tls.sh needs openssl for its certificate" >&2; exit 1; }
work=$(mktemp -d)
# A CA and a server certificate for localhost/127.0.0.1 (P-256, like the rest of the project).
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -subj "/CN=bench CA" -days 2 -out "$work/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$work/server.key" 2>/dev/null
openssl req -new -key "$work/server.key" -subj "/CN=localhost" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/ext" -out "$work/server.crt" 2>/dev/null

trap 'stop_servers; rm -rf "$work"' EXIT
# Each server takes ports the kernel picks for all three listeners (gRPC, HTTP mirror,
# metrics), so the two never collide with each other or with anything else on the machine; the
# bench authority's limits are set for load, so upload rows measure uploads, not refusals.
declare -A target token pid
start() {
  local name=$1; shift
  add_load_authority "$work/$name" >"$work/$name.token"
  start_server "$name" "$work/$name" --publish-interval 2s --release-delay 0s "${LOAD_GENERATOR_SHARES[@]}" "$@"
  pid[$name]=$started_pid
  token[$name]=$(cat "$work/$name.token")
}
start plain
target[plain]="http://$started_grpc"
start tls --tls-cert "$work/server.crt" --tls-key "$work/server.key"
target[tls]="https://localhost:${started_grpc##*:}"

run() {
  local name=$1 mode=$2; shift 2
  local extra=()
  if [ "$mode" = tls ]; then
    extra=(--ca-cert "$work/ca.pem")
  fi
  echo "== $name $mode" >&2
  "$loadtest" run --target "${target[$mode]}" "${extra[@]}" --format json --output "$out/$name-$mode.json" "$@"
}
for mode in plain tls; do
  run seed "$mode" --scenario upload --token "${token[$mode]}" --requests 100 --concurrency 4
done
if smoke; then sleep 1; else sleep 5; fi
for name in noop poll; do
  for mode in plain tls; do
    run "$name" "$mode" --scenario "$name" --duration "${seconds}s" --warmup "$(warmup 1000)"
  done
done
# An upload run leaves a backlog that its server's publisher then works through; the plaintext
# server is stopped after its upload run so that work does not run beside the TLS upload run.
run upload plain --scenario upload --token "${token[plain]}" --duration "${seconds}s" --warmup "$(warmup 200)"
stop_servers "${pid[plain]}"
run upload tls --scenario upload --token "${token[tls]}" --duration "${seconds}s" --warmup "$(warmup 200)"
check_reports "$out"/{seed,noop,poll,upload}-{plain,tls}.json

python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| scenario | plaintext req/s | TLS req/s | TLS ÷ plaintext | plaintext p50/p99 ms | TLS p50/p99 ms | errors |")
print("|---|---|---|---|---|---|---|")
for name in ["noop", "poll", "upload"]:
    plain = json.loads((out / f"{name}-plain.json").read_text())
    tls = json.loads((out / f"{name}-tls.json").read_text())
    lp, lt = plain["latency_ms"], tls["latency_ms"]
    ratio = tls['rps'] / plain['rps'] if plain['rps'] else float('nan')
    print(f"| {name} | {plain['rps']:,.0f} | {tls['rps']:,.0f} | {ratio:.2f} | "
          f"{lp['p50']:.2f} / {lp['p99']:.2f} | {lt['p50']:.2f} / {lt['p99']:.2f} | "
          f"{plain['errors']} / {tls['errors']} |")
PY
