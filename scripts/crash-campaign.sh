#!/usr/bin/env bash
# Crash campaign (issue 11): runs the real exposure-server under authority uploads, upload-code
# uploads and revocations with its publisher and a file:// bucket, SIGKILLs it at a random
# moment KILLS times (default 50), restarts it, and checks after every kill that nothing
# acknowledged is lost, nothing is published twice or skipped, sequences have no gap, every
# published element confirms and no index names a missing object (tests/tests/crash_campaign.rs
# says exactly what). CI runs the same test with 5 kills.
#
#   scripts/crash-campaign.sh [KILLS] [SEED]
#   SMOKE=1 scripts/crash-campaign.sh     # 1 kill, on the test command's build (CI)
#
# The test runs through `cargo nextest run --workspace --release` filtered to the campaign's
# binary, so it reuses the build of the README's test command instead of a build of its own
# (a build of one package resolves features on its own and may recompile).
#
# The per-round lines and the seed (to replay a failure) go to stdout and to
# bench-results/crash-campaign-<date>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SMOKE:-0}" == 1 ]]; then kills="${1:-1}"; else kills="${1:-50}"; fi
export EXPOSURE_CRASH_KILLS="$kills"
if [[ -n "${2:-}" ]]; then
  export EXPOSURE_CRASH_SEED="$2"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/exposure-server/target}"
mkdir -p bench-results
log="bench-results/crash-campaign-$(date -u +%Y%m%dT%H%M%SZ).log"
echo "crash campaign: $kills kills, commit $(git rev-parse --short HEAD), log $log"
cargo nextest run --workspace --release -E 'binary(crash_campaign)' --no-capture 2>&1 |
  grep --line-buffered -E '^(crash campaign|round )|PASS|FAIL|panicked|Summary' | tee "$log"
exit "${PIPESTATUS[0]}"
