#!/usr/bin/env bash
# Publishing to object storage (DESIGN §10): how long `exposure-server publish-sync` takes to
# write the peak day's layout (one batch of 2,479,680 elements, its day index, the region
# index and the signing keys) to a local folder (file://) and to moto, a real S3-protocol
# server on loopback (signed PUTs), three times each.
#
#   scripts/bench-object-store.sh [OUTPUT_DIR] [RUNS]
#   SMOKE=1 scripts/bench-object-store.sh OUTPUT_DIR   # a 200-key batch, one run each (CI)
#
# The store: a release server (publish interval 1 s, no release delay) is fed one case, and
# synthetic padding (--pad-min-keys 17220 --pad-jitter 0 --max-keys-per-batch 20000) fills its
# batch to the peak day's 17,220 keys of 144 elements. The server is stopped, as publish-sync
# requires, and each run writes into an empty folder or bucket prefix. The times are the
# command's own ("in … s": store open and catalog load excluded). moto keeps objects in memory,
# so its figure is the client's signing, hashing and HTTP cost, not a disk's. Needs python3
# with moto[server] (.ci/run installs it); OUTPUT_DIR/object-store.md gets the table.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-object-store-results "$@"
runs=${2:-3}
keys=17220
if smoke; then
  runs=${2:-1}
  keys=200
fi
if ! python3 -c 'import moto.server, flask, werkzeug' 2>/dev/null; then
  echo "error: python3 with moto[server] is needed (python3 -m pip install 'moto[server]')" >&2
  exit 1
fi

data=$(mktemp -d)
moto_pid=""
trap 'stop_servers; [[ -n "$moto_pid" ]] && kill "$moto_pid" 2>/dev/null; rm -rf "$data"' EXIT

token=$(add_load_authority "$data/db")
start_server store "$data/db" --publish-interval 1s --release-delay 0s \
  --pad-min-keys "$keys" --pad-jitter 0 --max-keys-per-batch 20000
log="$out/server-store.log"
EXPOSURE_TOKEN="$token" "$loadtest" run --target "http://$started_grpc" --scenario upload \
  --requests 1 --concurrency 1 --format json --output "$out/upload.json" >/dev/null
check_reports "$out/upload.json"
for _ in $(seq 600); do
  grep -q '"batch published"' "$log" && break
  sleep 0.1
done
if ! grep -q '"batch published"' "$log"; then
  echo "error: the store's batch was not published within 60 s; see $log" >&2
  exit 1
fi
grep '"batch published"' "$log" | head -n 1 >"$out/batch.json"
stop_servers

# moto on a free loopback port, with a bucket.
start_moto "$out/moto.log"
curl -fsS -X PUT "$moto/peak" >/dev/null

sync_times() {
  local name=$1 target=$2 run line
  for run in $(seq "$runs"); do
    line=$("$server" publish-sync --data-dir "$data/db" --publish-to "${target}$run")
    echo "$line" >>"$out/publish-sync-$name.txt"
    echo "$line" | grep -o 'in [0-9.]* s' | cut -d' ' -f2
  done
}
file_times=$(sync_times file "file://$data/bucket-")
s3_times=$(AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
  AWS_ENDPOINT="$moto" AWS_ALLOW_HTTP=true sync_times s3 "s3://peak/run")
moto_version=$(python3 -c 'import moto; print(moto.__version__)')
bytes=$(find "$data/bucket-1" -path '*batches*' -type f -printf '%s\n' | sort -n | tail -n 1)

{
  echo "batch: $(tr -d '\n' <"$out/batch.json" | grep -o '"elements":[0-9]*' | cut -d: -f2) elements, $bytes bytes"
  echo
  echo "| target | time to write the layout ($runs runs) |"
  echo "|---|---|"
  echo "| \`file://\` (local disk) | $(echo $file_times | sed 's/ / s, /g') s |"
  echo "| moto $moto_version (loopback, signed PUTs) | $(echo $s3_times | sed 's/ / s, /g') s |"
} | tee "$out/object-store.md"
