//! What a test does when an outside part it needs (python3, moto, a Python package, a tmpfs
//! mount) is missing: under CI (the environment variable `CI` set, to any value) it fails,
//! naming the part and how to install it; elsewhere it prints a loud skip line to stderr and the
//! caller returns without testing.
//!
//! The matcher's integration tests compile this same file (`#[path]` in
//! `matcher/tests/common/mod.rs`): they cannot depend on this crate, which depends on the
//! matcher.

/// Reports that `part` is missing; `install` says how to get it. Panics when `CI` is set;
/// otherwise prints a skip line and returns, and the caller skips its test.
#[track_caller]
pub fn missing(part: &str, install: &str) {
    let message = format!("{part} is missing; {install}");
    if std::env::var_os("CI").is_some() {
        panic!("{message} (CI is set, so a test without its outside part fails)");
    }
    let caller = std::panic::Location::caller();
    eprintln!(
        "\n******** SKIPPED ({caller}): {message}. The test did not run; under CI it fails. \
         ********\n"
    );
}
