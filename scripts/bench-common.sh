# Sourced by the bench-*.sh scripts.
#
# `bench_setup DEFAULT_OUTPUT_DIR "$@"` reads the two arguments every bench takes (OUTPUT_DIR,
# SECONDS), creates the output folder, builds the release server and load-test tool, and sets
# $out, $seconds, $server and $loadtest.
#
# Smoke mode (`SMOKE=1`, what scripts/smoke.sh and CI run): SECONDS defaults to 1, warm-ups
# shrink (`warmup N`), nothing is built: the release binaries the README's test command already
# built in $CARGO_TARGET_DIR are used, and their absence is an error.
#
# `start_server NAME DATA_DIR [FLAGS...]` starts a server on loopback with every listener on a
# port the kernel picks (gRPC, HTTP mirror, metrics), logs to $out/server-NAME.log, waits until
# it answers, and sets $started_pid, $started_grpc and $started_http (host:port). The staff
# console is off unless BENCH_CONSOLE_ADDR gives its address (then $started_console is set).
# `stop_servers [PID...]` stops the given servers, or every one started (the benches' EXIT trap).
# `add_load_authority DATA_DIR` creates an upload authority whose limits are set for load (a
# bench's uploads must measure uploads, not refusals) and prints its token.
# `check_reports FILE...` fails, naming the file, when a load-test report counts errors.
# `start_moto LOG` starts moto (python3 -m moto.server, a real S3-protocol server) on a free
# loopback port with its output in LOG, waits until it answers, and sets $moto (its URL) and
# $moto_pid (the caller's EXIT trap stops it).

# Admission shares for a load generator that plays many phones over one connection from one
# address (the loopback benches' closed loops keep 50 calls in flight on one HTTP/2
# connection): the health class's whole limit, which the default per-connection share of 4
# would otherwise refuse. Attack benches leave the defaults: there the shares are under test.
LOAD_GENERATOR_SHARES=(--max-health-requests-per-connection 64 --max-health-requests-per-network 64)

smoke() {
  [[ "${SMOKE:-0}" == 1 ]]
}

# Prints the warm-up requests to leave out: N, or 10 in smoke mode.
warmup() {
  if smoke; then echo 10; else echo "$1"; fi
}

bench_setup() {
  local default_out=$1
  shift
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  out=${1:-$default_out}
  if smoke; then seconds=${2:-1}; else seconds=${2:-10}; fi
  mkdir -p "$out"
  local target_dir=${CARGO_TARGET_DIR:-target}
  server="$target_dir/release/exposure-server"
  loadtest="$target_dir/release/exposure-loadtest"
  if smoke; then
    local binary
    for binary in "$server" "$loadtest"; do
      if [[ ! -x "$binary" ]]; then
        echo "error: smoke mode reuses the release binaries of the README's test command; $binary is missing (run cargo nextest run --workspace --release with CARGO_TARGET_DIR=$target_dir first)" >&2
        exit 1
      fi
    done
    echo "smoke mode: ${seconds}s runs, small warm-ups, binaries from $target_dir/release (not rebuilt)" >&2
  else
    cargo build --release --bin exposure-server --bin exposure-loadtest
  fi
}

bench_pids=()
stop_servers() {
  local pid stop=("$@") kept=()
  ((${#stop[@]})) || stop=("${bench_pids[@]}")
  for pid in "${stop[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for pid in "${bench_pids[@]}"; do
    [[ " ${stop[*]} " == *" $pid "* ]] || kept+=("$pid")
  done
  bench_pids=("${kept[@]}")
}

add_load_authority() {
  "$server" authority add --data-dir "$1" --name bench --region VN-TB \
    --uploads-per-minute 100000000 --keys-per-day 100000000000 | tail -n 1
}

start_server() {
  local name=$1 data=$2
  shift 2
  local log="$out/server-$name.log"
  "$server" --data-dir "$data" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
    --console-addr "${BENCH_CONSOLE_ADDR:-}" --metrics-addr 127.0.0.1:0 --log-format json "$@" \
    2>"$log" &
  started_pid=$!
  bench_pids+=("$started_pid")
  started_grpc=""
  started_http=""
  local _
  for _ in $(seq 100); do
    if ! kill -0 "$started_pid" 2>/dev/null; then
      echo "error: server $name exited at start; its log ($log):" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    started_grpc=$(grep -o '"grpc":"[^"]*"' "$log" | head -n 1 | cut -d'"' -f4 || true)
    started_http=$(grep -o '"http":"[^"]*"' "$log" | head -n 1 | cut -d'"' -f4 || true)
    started_console=$(grep -o '"console":"[^"]*"' "$log" | head -n 1 | cut -d'"' -f4 || true)
    [[ -n "$started_grpc" ]] && break
    sleep 0.1
  done
  if [[ -z "$started_grpc" ]]; then
    echo "error: server $name did not report its addresses in 10 s; see $log" >&2
    exit 1
  fi
}

check_reports() {
  local report failed=0
  for report in "$@"; do
    if ! grep -q '"errors": 0,' "$report"; then
      echo "error: $report counts failed requests: $(grep -o '"errors": [0-9]*' "$report")" \
        "$(tr -d '\n' <"$report" | grep -o '"error_distribution": *{[^}]*}' | head -c 300)" >&2
      failed=1
    fi
  done
  return "$failed"
}

start_moto() {
  local port _
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m moto.server -H 127.0.0.1 -p "$port" >"$1" 2>&1 &
  moto_pid=$!
  moto="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -fsS "$moto/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "error: moto did not answer on $moto within 10 s; see $1" >&2
  exit 1
}
