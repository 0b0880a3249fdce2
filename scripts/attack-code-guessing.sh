#!/usr/bin/env bash
# The code-guessing attack of issue 18 (hole 4; DESIGN.md section 12) against one release server
# on a fresh data directory, loopback only. `exposure-loadtest code-guessing` poses as a trusted
# proxy (the server runs with --trusted-proxies 127.0.0.0/8): patients claiming one IPv4 address
# each upload with valid codes, first alone, then beside guessers claiming NETWORKS IPv6 /64s.
# Prints the tool's summary, then the server's peak RSS and open descriptors after the run;
# leaves the JSON report. Exits 2 when the patients' success rate under attack is below 99.9 %.
#
#   scripts/attack-code-guessing.sh [OUTPUT_DIR] [SECONDS_PER_PHASE]
#   NETWORKS=1000 UPLOADS=200 scripts/attack-code-guessing.sh   # the defaults
#   SMOKE=1 scripts/attack-code-guessing.sh OUTPUT_DIR          # 1 s phases, 50 networks (CI)
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup attack-code-guessing-results "$@"

networks=${NETWORKS:-1000}
uploads=${UPLOADS:-200}
if smoke; then networks=${NETWORKS:-50}; uploads=${UPLOADS:-20}; fi

data=$(mktemp -d)
trap 'stop_servers; rm -rf "$data"' EXIT
token=$(add_load_authority "$data")
# Every guessing network holds its own connection: room for them and the patients. The embargo
# keeps the publisher idle, so the run measures the upload path.
start_server attack "$data" --trusted-proxies 127.0.0.0/8 --authority-codes-per-minute 0 \
  --release-delay 48h --max-grpc-connections $((networks + uploads * 2 + 64))
url="http://$started_grpc"

status=0
EXPOSURE_TOKEN="$token" "$loadtest" code-guessing --target "$url" --duration "${seconds}s" \
  --networks "$networks" --uploads "$uploads" --format json --output "$out/code-guessing.json" \
  || status=$?
python3 - "$out/code-guessing.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"code guessing from {report['networks']} client networks")
for name in ("quiet", "under_attack"):
    phase = report[name]
    patients, guesses = phase["patients"], phase["guesses"]
    print(f"  {name}: patients {patients['succeeded']}/{patients['sent']} OK "
          f"({patients['success_percent']:.2f} %), p50 {patients['p50_ms']:.1f} ms, "
          f"p99 {patients['p99_ms']:.1f} ms; guesses {guesses['sent']}: "
          f"{guesses['unauthenticated']} looked up, {guesses['resource_exhausted']} refused, "
          f"{guesses['other']} other")
PY
echo "server: peak RSS $(awk '/VmHWM/ {print $2, $3}' "/proc/$started_pid/status"), open descriptors $(ls "/proc/$started_pid/fd" | wc -l)"
exit "$status"
