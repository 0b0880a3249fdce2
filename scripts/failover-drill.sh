#!/usr/bin/env bash
# Failover drill (DESIGN §15, issue 21): a primary shipping its store continuously to a real
# S3-protocol server (moto on loopback) is SIGKILLed under the load test's upload and poll mix,
# its data directory deleted, a standby restored from the bucket into an empty directory and
# started, and the mix pointed at it. Reports the recovery point (acknowledged uploads the
# standby lacks: how many, and how long before the kill the newest of them was answered), the
# recovery time (kill to the standby's first acknowledged upload: restore seconds + start
# seconds) and the primary's upload throughput with the backup on against off, in this run.
#
#   [ROUNDS=N] scripts/failover-drill.sh [OUTPUT_DIR] [SECONDS] [--keys N]
#   SMOKE=1 scripts/failover-drill.sh OUTPUT_DIR      # a 200-key store, 1 s phases, 2 rounds (CI)
#
# The store: a release server pads one case to N keys of 144 elements in one batch (default
# the peak day's 17,220: 2.48 M confirm digests, as scripts/bench-object-store.sh), publishes
# it and stops. Two copies of it then run side by side, one without the backup, one with
# `--backup-to` (after its first checkpoint is in the bucket), and serve ROUNDS (default 5)
# alternating rounds of SECONDS of closed-loop uploads (16 in flight): off, on, off, on, ...;
# the throughput ratio is the median of the rounds' ratios. Then the mix (speedup 5: 20 uploads/s, 380 requests/s,
# its acknowledged uploads written to a ledger with their answer times) runs 2 x SECONDS
# (at least 10 s) and the primary is SIGKILLed halfway. The primary publishes hourly (the
# default), so no publish run falls in the window (tests/tests/continuous_backup.rs covers the
# log after a publish run's bulk load). Over each throughput round the drill reads the CPU seconds
# of the server, moto and the load generator, and the backup-on server logs its shipper's own
# time when it stops (cpu.txt and failover.md). The standby publishes at once (`--release-delay 0s --publish-interval 1s`), and
# `exposure-loadtest readback` looks for
# every upload the primary acknowledged before the kill in its confirm store over the public
# API. Needs python3 with moto[server] (.ci/run installs it). OUTPUT_DIR/failover.md gets the
# figures; the loads' JSON reports, the ledger, the readback and the servers' logs stay beside.
set -euo pipefail
keys=17220
args=()
while (($#)); do
  case "$1" in
    --keys)
      keys=${2:?--keys needs a number}
      shift 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done
source "$(dirname "$0")/bench-common.sh"
bench_setup failover-drill-results "${args[@]}"
if smoke; then keys=200; fi
mix_seconds=$((seconds * 2 < 10 ? 10 : seconds * 2))
if smoke; then mix_seconds=4; fi
if ! python3 -c 'import moto.server, flask, werkzeug' 2>/dev/null; then
  echo "error: python3 with moto[server] is needed (python3 -m pip install 'moto[server]')" >&2
  exit 1
fi

data=$(mktemp -d)
moto_pid=""
mix_pid=""
trap 'stop_servers; [[ -n "$mix_pid" ]] && kill "$mix_pid" 2>/dev/null; [[ -n "$moto_pid" ]] && kill "$moto_pid" 2>/dev/null; rm -rf "$data"' EXIT

now_ms() { date +%s%3N; }
# Seconds between two millisecond times, three decimals.
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1000 }'; }
# A number field of a JSON report (the first one named so).
json_number() { grep -o "\"$2\": *[0-9.eE+-]*" "$1" | head -n 1 | sed 's/.*: *//'; }
# Waits up to 60 s for a log line holding $2 in $1.
wait_for_log() {
  local _
  for _ in $(seq 600); do
    grep -q "$2" "$1" && return 0
    sleep 0.1
  done
  echo "error: no $2 in $1 within 60 s" >&2
  exit 1
}

# moto on a free loopback port, with a bucket; the servers reach it through the environment.
start_moto "$out/moto.txt"
curl -fsS -X PUT "$moto/drill" >/dev/null
export AWS_ACCESS_KEY_ID=drill AWS_SECRET_ACCESS_KEY=drill AWS_REGION=us-east-1 \
  AWS_ENDPOINT="$moto" AWS_ALLOW_HTTP=true
backup_url=s3://drill/backup
# Sealed, as the runbook ships it: the signing keys travel with the backup.
backup_key="$data/backup.key"
head -c 32 /dev/urandom >"$backup_key"

# The store: one case padded to $keys keys in one published batch.
primary="$data/primary"
token=$(add_load_authority "$primary")
start_server seed "$primary" --publish-interval 1s --release-delay 0s \
  --pad-min-keys "$keys" --pad-jitter 0 --max-keys-per-batch 20000
EXPOSURE_TOKEN="$token" "$loadtest" run --target "http://$started_grpc" --scenario upload \
  --requests 1 --concurrency 1 --format json --output "$out/seed.json" >/dev/null
check_reports "$out/seed.json"
wait_for_log "$out/server-seed.log" '"batch published"'
stop_servers
store_bytes=$(du -sb "$primary/db" | cut -f1)

# Upload throughput, backup off then on, each on a copy of the store (its backup in another
# prefix), so the primary below starts from the peak day's store, not a backlog of their keys.
# Where the time goes: CPU seconds (user + system, from /proc/PID/stat) of the server, of moto
# and of the load generator over each load, and the machine's busy share (/proc/stat), so the
# backup's cost splits into the server's own and the bucket's (moto shares the cores here; a
# real deployment ships to a remote bucket).
clock_ticks=$(getconf CLK_TCK)
cpu_seconds() {
  awk -v hz="$clock_ticks" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}
# The machine's busy and total jiffies.
machine_jiffies() {
  awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8; total = busy + $5 + $6; print busy, total }' /proc/stat
}
# `upload_load NAME PID GRPC [DRAIN]`: SECONDS of closed-loop uploads to the server PID at
# GRPC, its report in NAME.json and its CPU line in cpu.txt; with DRAIN, the CPU is read DRAIN
# seconds after the load ends, so a backup-on round's CPU holds the shipping of its last
# records, and that shipping does not fall into the next round.
upload_load() {
  local name=$1 pid=$2 grpc=$3 drain=${4:-0} server_before moto_before machine_before loadtest_cpu
  server_before=$(cpu_seconds "$pid")
  moto_before=$(cpu_seconds "$moto_pid")
  machine_before=$(machine_jiffies)
  # The subshell's waited-for children's CPU (/proc/PID/stat fields cutime and cstime).
  loadtest_cpu=$(
    EXPOSURE_TOKEN="$token" "$loadtest" run --target "http://$grpc" --scenario upload \
      --duration "${seconds}s" --requests 100000000 --concurrency 16 --warmup "$(warmup 200)" \
      --format json --output "$out/$name.json" >/dev/null
    awk -v hz="$clock_ticks" '{ sub(/^.*\) /, ""); printf "%.2f", ($14 + $15) / hz }' "/proc/$BASHPID/stat"
  )
  check_reports "$out/$name.json"
  sleep "$drain"
  read -r busy_before total_before <<<"$machine_before"
  read -r busy_after total_after <<<"$(machine_jiffies)"
  printf '%s: server %.2f s CPU, moto %.2f s CPU, load generator %s s CPU, machine busy %.0f %%\n' "$name" \
    "$(awk -v a="$server_before" -v b="$(cpu_seconds "$pid")" 'BEGIN { print b - a }')" \
    "$(awk -v a="$moto_before" -v b="$(cpu_seconds "$moto_pid")" 'BEGIN { print b - a }')" \
    "$loadtest_cpu" \
    "$(awk -v a="$busy_before" -v b="$busy_after" -v c="$total_before" -v d="$total_after" \
      'BEGIN { print 100 * (b - a) / (d - c) }')" | tee -a "$out/cpu.txt"
}
# Uploads (the warm-up's included) per CPU second of the server in run NAME.
per_cpu_second() {
  local count cpu
  count=$(json_number "$out/$1.json" count)
  cpu=$(grep "^$1:" "$out/cpu.txt" | sed 's/^[^:]*: server \([0-9.]*\) s CPU.*/\1/')
  awk -v n="$count" -v w="$(warmup 200)" -v c="$cpu" 'BEGIN { printf "%.0f", (n + w) / c }'
}
# The median of the numbers on standard input, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# "min–max" of the numbers on standard input.
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }
# The primary publishes hourly (the default), so its acknowledged uploads reach the bucket as
# log records; the standby publishes every second for the read-back.
common=(--publish-interval 1h --release-delay 0s)
# One 10 s run of each shows the machine's own drift more than the backup's cost (two quiet
# runs of that drill gave 0.90 and 0.79 x): both servers run side by side, idle but for the
# round they serve, and ROUNDS rounds alternate off, on, off, on; each round's pair gives a
# ratio, and the medians are what the drill reports.
rounds=${ROUNDS:-5}
if smoke; then rounds=2; fi
cp -a "$primary" "$data/off"
cp -a "$primary" "$data/on"
start_server off "$data/off" "${common[@]}"
off_pid=$started_pid off_grpc=$started_grpc
start_server on "$data/on" "${common[@]}" --backup-to s3://drill/throughput --backup-key-file "$backup_key"
on_pid=$started_pid on_grpc=$started_grpc
wait_for_log "$out/server-on.log" '"backup checkpoint written"'
: >"$out/rounds.txt"
for round in $(seq "$rounds"); do
  upload_load "upload-backup-off-$round" "$off_pid" "$off_grpc"
  # Two log intervals for the last records to be shipped.
  upload_load "upload-backup-on-$round" "$on_pid" "$on_grpc" 2
  off_rps=$(json_number "$out/upload-backup-off-$round.json" rps)
  on_rps=$(json_number "$out/upload-backup-on-$round.json" rps)
  off_cpu=$(per_cpu_second "upload-backup-off-$round")
  on_cpu=$(per_cpu_second "upload-backup-on-$round")
  echo "$round $off_rps $on_rps $(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN { printf "%.3f", a / b }') $off_cpu $on_cpu $(awk -v a="$on_cpu" -v b="$off_cpu" 'BEGIN { printf "%.3f", a / b }')" >>"$out/rounds.txt"
done
stop_servers "$off_pid" "$on_pid"
rm -rf "$data/off" "$data/on"

start_server primary "$primary" "${common[@]}" --backup-to "$backup_url" --backup-key-file "$backup_key"
primary_pid=$started_pid
wait_for_log "$out/server-primary.log" '"backup checkpoint written"'

# The mix with its ledger; the primary killed halfway, its data directory deleted.
EXPOSURE_TOKEN="$token" "$loadtest" run --target "http://$started_grpc" --scenario mix \
  --speedup 5 --duration "${mix_seconds}s" --ledger "$out/ledger-primary.txt" \
  --format json --output "$out/mix-primary.json" >/dev/null 2>"$out/mix-primary.stderr.txt" &
mix_pid=$!
sleep "$((mix_seconds / 2))"
killed_ms=$(now_ms)
kill -KILL "$primary_pid"
wait "$primary_pid" 2>/dev/null || true
bench_pids=()
rm -rf "$primary"

# The standby: restored from the bucket into an empty directory, started, serving.
standby="$data/standby"
"$server" restore --from "$backup_url" --backup-key-file "$backup_key" --data-dir "$standby" >"$out/restore.txt" 2>&1
restored_ms=$(now_ms)
start_server standby "$standby" --publish-interval 1s --release-delay 0s
EXPOSURE_TOKEN="$token" "$loadtest" run --target "http://$started_grpc" --scenario upload \
  --requests 1 --concurrency 1 --format json --output "$out/first-upload.json" >/dev/null
check_reports "$out/first-upload.json"
serving_ms=$(now_ms)
wait "$mix_pid" || true
mix_pid=""

# The mix pointed at the standby, then the read-back of what the primary acknowledged.
EXPOSURE_TOKEN="$token" "$loadtest" run --target "http://$started_grpc" --scenario mix \
  --speedup 5 --duration "${mix_seconds}s" --format json --output "$out/mix-standby.json" >/dev/null
check_reports "$out/mix-standby.json"
"$loadtest" readback --target "http://$started_grpc" --ledger "$out/ledger-primary.txt" \
  --acknowledged-by "$killed_ms" --wait 60s --output "$out/readback.json"
stop_servers

checked=$(json_number "$out/readback.json" uploads_checked)
missing=$(json_number "$out/readback.json" uploads_missing)
keys_checked=$(json_number "$out/readback.json" keys_checked)
keys_found=$(json_number "$out/readback.json" keys_found)
newest_age=$(json_number "$out/readback.json" newest_missing_age_ms)
moto_version=$(python3 -c 'import moto; print(moto.__version__)')
{
  echo "store: $keys keys padded into one published batch, $store_bytes bytes in db/; moto $moto_version on loopback"
  echo
  echo "| figure | value |"
  echo "|---|---|"
  echo "| recovery point: acknowledged uploads missing on the standby | $missing of $checked (keys found: $keys_found of $keys_checked) |"
  echo "| recovery point: age at the kill of the newest missing upload | ${newest_age:-none missing}${newest_age:+ ms} |"
  echo "| recovery time: kill to the standby's first acknowledged upload | $(seconds_between "$killed_ms" "$serving_ms") s |"
  echo "| of which restore (\`restore --from\`) | $(seconds_between "$killed_ms" "$restored_ms") s |"
  echo "| of which start to the first acknowledged upload | $(seconds_between "$restored_ms" "$serving_ms") s |"
  field() { awk -v c="$1" '{ print $c }' "$out/rounds.txt"; }
  echo "| upload throughput, backup off / on (median of $rounds alternating rounds of ${seconds} s each, 16 in flight) | $(field 2 | median) / $(field 3 | median) uploads/s |"
  echo "| ratio on / off (median of the rounds' ratios; their range) | $(field 4 | median) ($(field 4 | range)) |"
  # What the backup costs the server itself, whatever share of the shared cores other
  # processes took in each round.
  echo "| uploads per server CPU second, backup off / on (medians) | $(field 5 | median) / $(field 6 | median) |"
  echo "| ratio on / off per server CPU second (median; range) | $(field 7 | median) ($(field 7 | range)) |"
  echo
  echo "Rounds (round, uploads/s off, on, ratio; uploads per server CPU second off, on, ratio):"
  echo
  sed 's/^/    /' "$out/rounds.txt"
  echo
  echo "CPU over each throughput run (/proc/PID/stat):"
  echo
  sed 's/^/    /' "$out/cpu.txt"
  echo
  echo "the backup-on server's log shipping (its own time, at stop):"
  echo
  grep '"backup log shipping totals"' "$out/server-on.log" | tail -n 1 | sed 's/^/    /'

} | tee "$out/failover.md"
