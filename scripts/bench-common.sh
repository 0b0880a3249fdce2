# Sourced by the bench-*.sh scripts: `bench_setup DEFAULT_OUTPUT_DIR "$@"` reads the two
# arguments every bench takes (OUTPUT_DIR, SECONDS), creates the output folder, builds the
# release server and load-test tool, and sets $out, $seconds, $server and $loadtest.
bench_setup() {
  local default_out=$1
  shift
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  out=${1:-$default_out}
  seconds=${2:-10}
  mkdir -p "$out"
  local target_dir=${CARGO_TARGET_DIR:-target}
  cargo build --release --bin exposure-server --bin exposure-loadtest
  server="$target_dir/release/exposure-server"
  loadtest="$target_dir/release/exposure-loadtest"
}
