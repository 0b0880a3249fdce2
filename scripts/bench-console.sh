#!/usr/bin/env bash
# The staff console's figures for docs/BENCHMARKS.md (issue 19), in one run against release
# servers on loopback:
#
# 1. Staff latency: ACCOUNTS accounts are added with `user add` and enrolled through their links
#    by a small independent client (Python's urllib, RFC 6238 computed here); each then signs in
#    once (password + TOTP, timed) and issues ISSUES codes one at a time (timed), on the default
#    settings. Sign-in is Argon2id with the chosen parameters plus a session write.
# 2. Sign-ins beside the phones: `exposure-loadtest attack --attack console-login` posts sign-in
#    forms as fast as the console answers (32 connections) beside the legitimate upload-and-poll
#    mix, first on the default `--console-password-checks 1`, then with 64 checks at once (the
#    gate open) for comparison. The per-network sign-in budget is lifted on both, so every form
#    reaches Argon2id, as an attacker's from many networks would.
#
# Writes console.md (the tables, with the commit and the machine's state), staff.json and one
# attack-console-CHECKS.json per run to the output folder.
#
#   scripts/bench-console.sh [OUTPUT_DIR] [SECONDS_PER_PHASE]
#   SMOKE=1 scripts/bench-console.sh OUTPUT_DIR    # 3 accounts, 1 s phases, built binaries (CI)
set -euo pipefail
source "$(dirname "$0")/bench-common.sh"
bench_setup bench-console-results "$@"

if smoke; then
  accounts=3
  issues=2
  settle=300ms
  attackers=4
else
  accounts=100
  issues=5
  settle=2s
  attackers=32
fi

data=$(mktemp -d)
trap 'stop_servers; rm -rf "$data"' EXIT
token=$(add_load_authority "$data")
authority=$("$server" authority list --data-dir "$data" | awk 'NR == 2 { print $1 }')
if [[ -z "$authority" ]]; then
  echo "error: no authority id in 'authority list'" >&2
  exit 1
fi

# 1. Staff latency, default console settings (code issuing unlimited per minute, so the issues
#    measure issuing, not the authority's rate limit).
for n in $(seq "$accounts"); do
  link=$("$server" user add --data-dir "$data" --authority "$authority" \
    --email "staff-$n@bench.invalid" --role issuer | tail -n 1)
  echo "staff-$n@bench.invalid $link"
done >"$out/links.txt"
BENCH_CONSOLE_ADDR=127.0.0.1:0 start_server console-staff "$data" --authority-codes-per-minute 0
console="http://$started_console"
python3 - "$console" "$out/links.txt" "$issues" "$out/staff.json" <<'PY'
import base64, hashlib, hmac, html, http.cookiejar, json, re, struct, sys, time
import urllib.error, urllib.parse, urllib.request

console, links_file, issues, output = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
PASSWORD = "bench console passphrase 7"

def totp(secret, at):
    """RFC 6238 with HMAC-SHA1, 30-second steps, 6 digits."""
    mac = hmac.new(secret, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000)

class Keep3xx(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a sign-in's redirect is its answer: it is timed alone

def client():
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), Keep3xx())

def send(opener, path, fields=None):
    data = urllib.parse.urlencode(fields).encode() if fields is not None else None
    try:
        with opener.open(console + path, data=data, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()

def field(page, name):
    return html.unescape(re.search(r'name="%s"[^>]*value="([^"]*)"' % name, page).group(1))

def text_of(page, cls):
    found = re.search(r'class="%s"[^>]*>([^<]*)<' % cls, page)
    return html.unescape(found.group(1)).strip() if found else None

def timed(opener, path, fields):
    started = time.perf_counter()
    status, page = send(opener, path, fields)
    return status, page, (time.perf_counter() - started) * 1000

def summary(values):
    ordered = sorted(values)
    rank = lambda q: ordered[max(1, -(-len(ordered) * q // 100)) - 1]
    return {"count": len(ordered), "p50_ms": round(rank(50), 2), "p99_ms": round(rank(99), 2),
            "max_ms": round(ordered[-1], 2)}

pairs = [line.split() for line in open(links_file) if line.strip()]
if not pairs or any(len(pair) != 2 or "/enrol?token=" not in pair[1] for pair in pairs):
    sys.exit("error: %s does not hold an e-mail address and an enrolment link a line" % links_file)
logins, issue_times, codes = [], [], set()
for email, link in pairs:
    opener = client()
    status, page = send(opener, link[link.index("/enrol"):])
    if status != 200:
        sys.exit("error: the enrolment page answered %d" % status)
    secret = base64.b32decode(text_of(page, "secret").replace(" ", "").upper())
    now = time.time()
    status, page = send(opener, "/enrol", {"token": field(page, "token"), "password": PASSWORD,
                                           "password_again": PASSWORD, "totp": totp(secret, now)})
    if status != 200:
        sys.exit("error: enrolment answered %d: %s" % (status, text_of(page, "error")))
    # Enrolment spent this step's code; a sign-in takes the next step's, accepted a step early.
    status, page, ms = timed(opener, "/login", {"email": email, "password": PASSWORD,
                                                "totp": totp(secret, now + 30)})
    if status not in (302, 303):
        sys.exit("error: sign-in answered %d: %s" % (status, text_of(page, "error")))
    logins.append(ms)
    status, home = send(opener, "/")
    csrf = field(home, "csrf")
    for _ in range(issues):
        status, page, ms = timed(opener, "/codes", {"csrf": csrf, "region": "VN-TB",
                                                    "report_type": "confirmed_test", "valid_hours": "24"})
        code = text_of(page, "code")
        if status != 200 or not code:
            sys.exit("error: issuing answered %d: %s" % (status, text_of(page, "notice")))
        codes.add(code)
        issue_times.append(ms)
    send(opener, "/logout", {"csrf": csrf})
if len(codes) != len(issue_times):
    sys.exit("error: %d codes issued, %d distinct" % (len(issue_times), len(codes)))
report = {"accounts": len(pairs), "login": summary(logins), "issue": summary(issue_times)}
json.dump(report, open(output, "w"), indent=2)
print("staff: sign-in %(login)s, issue %(issue)s" % report)
PY
stop_servers

# 2. Sign-in forms beside the mix, with the per-network budget lifted. A batch is published
#    first (the mix downloads one).
run_attack() {
  local checks=$1
  BENCH_CONSOLE_ADDR=127.0.0.1:0 start_server "console-$checks" "$data" --publish-interval 2s \
    --release-delay 0s --authority-codes-per-minute 0 \
    --console-logins-per-network-per-hour 1000000000 --console-password-checks "$checks"
  local url="http://$started_grpc" pid=$started_pid
  if [[ ! -s "$out/seed.json" ]]; then
    EXPOSURE_TOKEN="$token" "$loadtest" run --target "$url" --scenario upload --requests 20 \
      --concurrency 2 --format json --output "$out/seed.json"
    check_reports "$out/seed.json"
  fi
  local _
  for _ in $(seq 60); do
    "$loadtest" run --target "$url" --scenario download --requests 1 --format json \
      --output /dev/null 2>/dev/null && break
    sleep 0.5
  done
  EXPOSURE_TOKEN="$token" "$loadtest" attack --target "$url" --attack console-login \
    --console "http://$started_console" --attackers "$attackers" --phase "${seconds}s" \
    --settle "$settle" --server-pid "$pid" --format json \
    --output "$out/attack-console-$checks.json"
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: the server died under the sign-in forms; see $out/server-console-$checks.log" >&2
    exit 1
  fi
  stop_servers "$pid"
}
run_attack 1
run_attack 64

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo " (uncommitted changes)" || true)
python3 - "$out" "$commit$dirty" "$seconds" "$attackers" <<'PY'
import json, os, pathlib, sys, time
out, commit, seconds, attackers = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
staff = json.loads((out / "staff.json").read_text())
lines = [
    f"Recorded {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, "
    f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
    f"`scripts/bench-console.sh`.",
    "",
    "| staff action (default settings) | count | p50 ms | p99 ms | max ms |",
    "|---|---|---|---|---|",
]
for name, key in (("sign-in (password + TOTP, Argon2id)", "login"), ("issue one code", "issue")):
    row = staff[key]
    lines.append(f"| {name} | {row['count']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.1f} |")
lines += [
    "",
    f"Sign-in forms from {attackers} connections beside the mix, phases of {seconds} s, "
    "per-network sign-in budget lifted:",
    "",
    "| --console-password-checks | sign-ins answered /s | sign-in p50 / p99 ms | answers | "
    "mix success quiet → beside | mix p99 ms quiet → beside | p99 × quiet |",
    "|---|---|---|---|---|---|---|",
]
for checks in (1, 64):
    report = json.loads((out / f"attack-console-{checks}.json").read_text())
    quiet, beside, stats = report["quiet"], report["attacked"], report["attack_stats"]
    answers = stats.get("answers")
    if not answers or quiet["legit"]["count"] == 0 or beside["legit"]["count"] == 0:
        sys.exit(f"error: attack-console-{checks}.json lacks a figure")
    outcomes = ", ".join(f"{code}: {count}" for code, count in sorted(stats["outcomes"].items()))
    q99, b99 = quiet["legit"]["latency_ms"]["p99"], beside["legit"]["latency_ms"]["p99"]
    lines.append(
        f"| {checks}{' (default)' if checks == 1 else ''} | {answers['per_second']:.1f} | "
        f"{answers['p50_ms']:.1f} / {answers['p99_ms']:.1f} | {outcomes} | "
        f"{quiet['success_rate'] * 100:.2f} % → {beside['success_rate'] * 100:.2f} % | "
        f"{q99:.2f} → {b99:.2f} | {b99 / q99:.2f} |")
(out / "console.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
