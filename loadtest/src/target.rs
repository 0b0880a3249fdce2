//! The server a run drives: the target URL, its TLS settings, and the guard that keeps a load
//! test on this machine unless the operator says otherwise.
//!
//! The code is shared with the staff CLI and lives in `exposure_client::target`; the load test
//! always parses with the loopback guard on (`Target::parse(text, allow_remote)` with
//! `--allow-remote`), because a load test aimed at the wrong host is a denial-of-service attack.

pub use exposure_client::target::{DEFAULT_TARGET, Target, TargetError, is_loopback_host};
