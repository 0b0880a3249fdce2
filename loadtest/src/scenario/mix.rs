//! The `mix` scenario: the legitimate traffic an attack run measures (issue 18), every kind of
//! caller the server has, each as its own fixed-rate stream so that a stall shows in every
//! request it delayed (coordinated omission corrected, see `schedule`):
//!
//! | RPC | rate at speedup 1 | who |
//! |---|---|---|
//! | `UploadDiagnosisKeys` (bearer) | 2/s | health-authority staff uploading a case |
//! | `UploadDiagnosisKeys` (code) | 2/s | a patient's phone uploading with its one-time code |
//! | `ListBatches` | 40/s | phones polling |
//! | `GetBatch` | 20/s | phones downloading a new batch |
//! | `Health/Check` | 10/s | load balancers and probes |
//! | connect + `Health/Check` | 2/s | phones arriving on a new connection |
//!
//! 76 requests a second: enough that a 10 s phase measures 760 requests (a 99.9 % success rate
//! allows none to fail), few enough that the mix alone never loads the server. `--speedup`
//! multiplies every rate.

use crate::scenario::RpcKind;

/// The mix's streams at speedup 1, in the order they start.
pub const MIX_RATES: [(RpcKind, f64); 6] = [
    (RpcKind::Upload, 2.0),
    (RpcKind::CodeUpload, 2.0),
    (RpcKind::ListBatches, 40.0),
    (RpcKind::GetBatch, 20.0),
    (RpcKind::HealthCheck, 10.0),
    (RpcKind::Arrival, 2.0),
];

/// Returns the mix's streams at `speedup` times the table's rates.
pub fn rates(speedup: f64) -> Vec<(RpcKind, f64)> {
    MIX_RATES
        .iter()
        .map(|(kind, rate)| (*kind, rate * speedup))
        .collect()
}

/// Returns the upload codes a mix run of `duration_s` seconds at `speedup` uses at most: one
/// per code upload the schedule can hand out (the first is due at t = 0), plus one.
pub fn codes_needed(speedup: f64, duration_s: f64) -> u64 {
    let rate = MIX_RATES
        .iter()
        .filter(|(kind, _)| *kind == RpcKind::CodeUpload)
        .map(|(_, rate)| rate * speedup)
        .sum::<f64>();
    (rate * duration_s).ceil() as u64 + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_76_requests_a_second() {
        let total: f64 = rates(1.0).iter().map(|(_, rate)| rate).sum();
        assert_eq!(total, 76.0);
        let doubled: f64 = rates(2.0).iter().map(|(_, rate)| rate).sum();
        assert_eq!(doubled, 152.0);
    }

    #[test]
    fn a_run_issues_a_code_for_every_code_upload_it_can_send() {
        // 2 code uploads a second for 10 s: due at 0, 0.5, ..., 9.5 s and possibly 10 s.
        assert_eq!(codes_needed(1.0, 10.0), 22);
        assert_eq!(codes_needed(0.5, 1.0), 3);
    }
}
