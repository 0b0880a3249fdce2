#!/usr/bin/env bash
# Measures what TLS costs, in one run on this machine: two release servers on fresh data
# directories (loopback only), one plaintext and one with a certificate made here by openssl,
# then the noop, poll and upload scenarios against each, alternating. Prints one table with the
# TLS/plaintext ratio and leaves the JSON reports in the output folder.
#
#   scripts/bench-tls.sh [OUTPUT_DIR] [SECONDS_PER_SCENARIO]
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-tls-results "$@"

work=$(mktemp -d)
# A CA and a server certificate for localhost/127.0.0.1 (P-256, like the rest of the project).
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -subj "/CN=bench CA" -days 2 -out "$work/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$work/server.key" 2>/dev/null
openssl req -new -key "$work/server.key" -subj "/CN=localhost" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/ext" -out "$work/server.crt" 2>/dev/null

plain_port=50661
tls_port=50662
pids=()
trap 'for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done; rm -rf "$work"' EXIT
start() {
  local name=$1 port=$2; shift 2
  "$server" authority add --data-dir "$work/$name" --name bench --region VN-TB | tail -n 1 >"$work/$name.token"
  "$server" --data-dir "$work/$name" --grpc-addr "127.0.0.1:$port" --metrics-addr 127.0.0.1:0 \
    --publish-interval 2s --release-delay 0s --log-format json "$@" 2>"$out/server-$name.log" &
  pids+=($!)
}
start plain "$plain_port"
start tls "$tls_port" --tls-cert "$work/server.crt" --tls-key "$work/server.key"
sleep 1

run() {
  local name=$1 mode=$2; shift 2
  local target="http://127.0.0.1:$plain_port" extra=()
  if [ "$mode" = tls ]; then
    target="https://localhost:$tls_port"
    extra=(--ca-cert "$work/ca.pem")
  fi
  echo "== $name $mode" >&2
  "$loadtest" run --target "$target" "${extra[@]}" --format json --output "$out/$name-$mode.json" "$@"
}
for mode in plain tls; do
  run seed "$mode" --scenario upload --token "$(cat "$work/$mode.token")" --requests 100 --concurrency 4
done
sleep 5
for name in noop poll; do
  for mode in plain tls; do
    run "$name" "$mode" --scenario "$name" --duration "${seconds}s" --warmup 1000
  done
done
# An upload run leaves a backlog that its server's publisher then works through; the plaintext
# server is stopped after its upload run so that work does not run beside the TLS upload run.
run upload plain --scenario upload --token "$(cat "$work/plain.token")" --duration "${seconds}s" --warmup 200
kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=("${pids[@]:1}")
run upload tls --scenario upload --token "$(cat "$work/tls.token")" --duration "${seconds}s" --warmup 200

python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| scenario | plaintext req/s | TLS req/s | TLS ÷ plaintext | plaintext p50/p99 ms | TLS p50/p99 ms | errors |")
print("|---|---|---|---|---|---|---|")
for name in ["noop", "poll", "upload"]:
    plain = json.loads((out / f"{name}-plain.json").read_text())
    tls = json.loads((out / f"{name}-tls.json").read_text())
    lp, lt = plain["latency_ms"], tls["latency_ms"]
    print(f"| {name} | {plain['rps']:,.0f} | {tls['rps']:,.0f} | {tls['rps'] / plain['rps']:.2f} | "
          f"{lp['p50']:.2f} / {lp['p99']:.2f} | {lt['p50']:.2f} / {lt['p99']:.2f} | "
          f"{plain['errors']} / {tls['errors']} |")
PY
