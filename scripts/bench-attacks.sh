#!/usr/bin/env bash
# Runs every attack of issue 18 beside the legitimate mix, each with its own quiet baseline, in
# one run against one release server on a fresh data directory (loopback only), and records what
# docs/RELIABILITY.md's "Under attack" table reports: the mix's success rate and p99 alone and
# beside the attack, and the server's resident memory and open descriptors (sampled from /proc
# with --server-pid). Writes attacks.md (the table, with the commit and the machine's state),
# attacks.json (every report) and one attack-NAME.json per attack to the output folder.
#
#   scripts/bench-attacks.sh [OUTPUT_DIR] [SECONDS_PER_PHASE]
#   SMOKE=1 scripts/bench-attacks.sh OUTPUT_DIR    # 1 s phases, a few attackers, built binaries (CI)
#
# The full run uses each attack's default size (the numbers issue 18 names: 64 zero-window
# connections of 64 streams, 1,024 flooding sockets, 8 stalled-upload connections of 64 streams,
# one connection of 64 Watch streams, 8 odd-upload workers). Goals are judged in the table's
# verdict column, not by the exit status: the script fails only when a run cannot start or a
# report is missing a figure.
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-attacks-results "$@"

# The flood holds a thousand sockets and the server answers as many: raise this shell's
# descriptor limit (inherited by both) as far as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
if [[ "$limit" != unlimited ]] && ((limit < 4096)) && ! smoke; then
  echo "error: the connection flood needs 4,096 descriptors; ulimit -n allows $limit" >&2
  exit 1
fi

data=$(mktemp -d)
trap 'stop_servers; rm -rf "$data"' EXIT
# The mix uploads and issues codes a few times a second: the bench authority's limits are set
# for load, and code issuing is not limited per minute. Every listener takes a port the kernel
# picks.
token=$(add_load_authority "$data")
start_server attacks "$data" --publish-interval 2s --release-delay 0s --authority-codes-per-minute 0
url="http://$started_grpc"
server_pid=$started_pid

# Seed: a few cases (half of each case's keys are yesterday's, so they publish at once), then
# wait until a batch is published: the mix downloads it and zero-window asks for it.
EXPOSURE_TOKEN="$token" "$loadtest" run --target "$url" --scenario upload --requests 20 \
  --concurrency 2 --format json --output "$out/seed.json"
check_reports "$out/seed.json"
published=0
for _ in $(seq 60); do
  if "$loadtest" run --target "$url" --scenario download --requests 1 --format json \
      --output /dev/null 2>/dev/null; then
    published=1
    break
  fi
  sleep 0.5
done
if ((published == 0)); then
  echo "error: no batch was published 30 s after the seed; see $out/server-attacks.log" >&2
  exit 1
fi

if smoke; then
  settle=300ms
  sizes=(zero-window:4:8 connection-flood:64:1 stalled-upload:2:8 watch-flood:1:16 odd-upload:2:1)
else
  settle=2s
  sizes=(zero-window:: connection-flood:: stalled-upload:: watch-flood:: odd-upload::)
fi
# Code guessing from many client networks (issue 18, hole 4) joins this list when its attack
# lands in the load-test tool.
names=()
for size in "${sizes[@]}"; do
  IFS=: read -r attack attackers streams <<<"$size"
  names+=("$attack")
  echo "== $attack" >&2
  extra=()
  [[ -n "$attackers" ]] && extra+=(--attackers "$attackers")
  [[ -n "$streams" ]] && extra+=(--streams "$streams")
  EXPOSURE_TOKEN="$token" "$loadtest" attack --target "$url" --attack "$attack" \
    --phase "${seconds}s" --settle "$settle" --server-pid "$server_pid" "${extra[@]}" \
    --check-acknowledged 30s --format json --output "$out/attack-$attack.json"
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: the server died during the $attack attack; see $out/server-attacks.log" >&2
    exit 1
  fi
done

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo " (uncommitted changes)" || true)
python3 - "$out" "$commit$dirty" "$seconds" "${names[@]}" <<'PY'
import json, os, pathlib, sys, time
out, commit, seconds, names = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
reports = []
for name in names:
    report = json.loads((out / f"attack-{name}.json").read_text())
    for phase in ("quiet", "attacked"):
        legit, server = report[phase]["legit"], report[phase].get("server")
        if legit["count"] == 0 or not server or server["rss_kib"]["max"] <= 0 or server["fds"]["max"] <= 0:
            sys.exit(f"error: attack-{name}.json: the {phase} phase lacks a figure")
    if not report.get("acknowledged", {}).get("keys_checked"):
        sys.exit(f"error: attack-{name}.json: no acknowledged upload was read back")
    reports.append(report)
(out / "attacks.json").write_text(json.dumps(reports, indent=2) + "\n")

def mib(kib):
    return f"{kib / 1024:,.0f}"

lines = [
    f"Recorded {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, "
    f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
    f"phases of {seconds} s; `scripts/bench-attacks.sh`.",
    "",
    "| attack | size | legit success quiet → attacked | p99 ms quiet → attacked | p99 × quiet "
    "| RSS MiB quiet → attacked (after) | fds quiet → attacked (after) | attack held (peak) "
    "| acknowledged keys found | verdict |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for report in reports:
    quiet, attacked, stats = report["quiet"], report["attacked"], report["attack_stats"]
    after = report.get("after") or {}
    size = f"{stats['attackers']}" + (f" × {stats['streams_per_connection']}" if stats["streams_per_connection"] > 1 else "")
    held = f"{stats['connections_held_peak']} conns, {stats['streams_held_peak']} streams"
    verdict = report["verdict"]
    acknowledged = report["acknowledged"]
    lines.append(
        f"| {report['attack']} | {size} "
        f"| {quiet['success_rate'] * 100:.2f} % → {attacked['success_rate'] * 100:.2f} % "
        f"| {quiet['legit']['latency_ms']['p99']:.2f} → {attacked['legit']['latency_ms']['p99']:.2f} "
        f"| {verdict['p99_ratio']:.2f} "
        f"| {mib(quiet['server']['rss_kib']['max'])} → {mib(attacked['server']['rss_kib']['max'])} ({mib(after.get('rss_kib', 0))}) "
        f"| {quiet['server']['fds']['max']} → {attacked['server']['fds']['max']} ({after.get('fds', '-')}) "
        f"| {held} | {acknowledged['keys_found']:,} of {acknowledged['keys_checked']:,} "
        f"({acknowledged['uploads_acknowledged']} uploads) | {'pass' if verdict['passed'] else 'MISS'} |")
table = "\n".join(lines) + "\n"
(out / "attacks.md").write_text(table)
print(table)
for report in reports:
    print(f"{report['attack']}: {report['verdict']['line']}")
PY
