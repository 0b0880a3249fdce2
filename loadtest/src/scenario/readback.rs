//! Whether what the server acknowledged was kept: the "nothing acknowledged lost" goal of an
//! attack run (issue 18).
//!
//! Every upload the server answers OK is noted in a [`Ledger`]: its keys of days before today,
//! which a server without a release delay publishes at its next run. After the run, [`check`]
//! looks for each such key in the published confirm store over the public API: the confirm
//! digest of the key's first identifier (DESIGN.md §3, computed here by the matcher library, not
//! by the server) must be in the `GetConfirmBucket` answer for its prefix. A key is stored in
//! one write, so one of its digests found means the key was kept. Keys still missing are asked
//! for again, once a second, until the wait runs out: the publisher needs a run to publish them.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use exposure_matcher::{ConfirmDigest, DiagnosisKey as MatcherKey, GaenKey as MatcherGaenKey};
use exposure_proto::v1::UploadDiagnosisKeysRequest;
use exposure_proto::v1::diagnosis_key::Key;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::client::Clients;

/// A GAEN key an acknowledged upload held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcknowledgedKey {
    /// The 16-byte key.
    pub key_data: [u8; 16],
    /// Its first interval.
    pub rolling_start_interval_number: u32,
    /// Its intervals.
    pub rolling_period: u32,
}

/// The keys of past days of every acknowledged upload; shared by a run's workers.
#[derive(Debug, Default)]
pub struct Ledger {
    uploads: Mutex<(u64, Vec<AcknowledgedKey>)>,
}

impl Ledger {
    /// Notes an upload the server acknowledged; `today` is the UTC day it was sent on.
    pub fn acknowledged(&self, request: &UploadDiagnosisKeysRequest, today: u32) {
        let first_of_today = today.saturating_mul(144);
        let keys = request.keys.iter().filter_map(|key| match &key.key {
            Some(Key::Gaen(gaen)) => Some(AcknowledgedKey {
                key_data: gaen.key_data.as_slice().try_into().ok()?,
                rolling_start_interval_number: gaen.rolling_start_interval_number,
                rolling_period: gaen.rolling_period,
            }),
            _ => None,
        });
        let past = keys
            .filter(|key| key.rolling_start_interval_number + key.rolling_period <= first_of_today);
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        uploads.0 += 1;
        uploads.1.extend(past);
    }

    /// Returns how many uploads were acknowledged and their keys of past days.
    pub fn taken(&self) -> (u64, Vec<AcknowledgedKey>) {
        self.uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the read-back found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Readback {
    /// Uploads answered OK.
    pub uploads_acknowledged: u64,
    /// Their keys of past days, looked for.
    pub keys_checked: u64,
    /// Keys found in the confirm store.
    pub keys_found: u64,
    /// Seconds from the first look until the last key was found (or the wait ran out).
    pub seconds: f64,
}

impl Readback {
    /// Returns true when every key looked for was found.
    pub fn nothing_lost(&self) -> bool {
        self.keys_found == self.keys_checked
    }
}

/// Looks for every key of `ledgers` in `region`'s confirm store (buckets of `prefix_bits`),
/// asking again once a second for at most `wait`.
pub async fn check(
    clients: &mut Clients,
    region: &str,
    prefix_bits: u32,
    ledgers: &[&Ledger],
    wait: Duration,
) -> anyhow::Result<Readback> {
    let mut readback = Readback::default();
    // Missing digests by bucket.
    let mut missing: BTreeMap<u32, Vec<ConfirmDigest>> = BTreeMap::new();
    for ledger in ledgers {
        let (uploads, keys) = ledger.taken();
        readback.uploads_acknowledged += uploads;
        for key in keys {
            let digest = first_digest(&key)?;
            missing
                .entry(digest.prefix(prefix_bits))
                .or_default()
                .push(digest);
            readback.keys_checked += 1;
        }
    }
    let started = Instant::now();
    loop {
        let mut still = BTreeMap::new();
        for (prefix, digests) in missing {
            let bucket = super::confirm::fetch(clients, region, prefix, prefix_bits).await?;
            let left: Vec<_> = digests
                .into_iter()
                .filter(|digest| {
                    !bucket
                        .digests
                        .iter()
                        .any(|held| held.as_slice() == digest.0.as_slice())
                })
                .collect();
            if !left.is_empty() {
                still.insert(prefix, left);
            }
        }
        missing = still;
        if missing.is_empty() || started.elapsed() >= wait {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let left: usize = missing.values().map(Vec::len).sum();
    readback.keys_found = readback.keys_checked - left as u64;
    readback.seconds = started.elapsed().as_secs_f64();
    Ok(readback)
}

/// Returns the confirm digest of the key's first identifier.
fn first_digest(key: &AcknowledgedKey) -> anyhow::Result<ConfirmDigest> {
    let matcher_key = MatcherKey::Gaen(MatcherGaenKey {
        key_data: key.key_data,
        rolling_start_interval_number: key.rolling_start_interval_number,
        rolling_period: key.rolling_period,
    });
    let elements = matcher_key
        .tagged_elements()
        .map_err(|error| anyhow::anyhow!("an acknowledged key does not expand: {error}"))?;
    let first = elements
        .first()
        .ok_or_else(|| anyhow::anyhow!("an acknowledged key has no identifier"))?;
    Ok(first.tag.confirm_digest())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::upload::case_request;

    #[test]
    fn the_ledger_keeps_the_keys_of_past_days_only() {
        let today = 20_000;
        let request = case_request(&mut rand::thread_rng(), "VN-TB", "id".into(), today);
        let ledger = Ledger::default();
        ledger.acknowledged(&request, today);
        let (uploads, keys) = ledger.taken();
        assert_eq!(uploads, 1);
        // A case is 14 keys alternating today and yesterday.
        assert_eq!(keys.len(), 7);
        assert!(
            keys.iter()
                .all(|key| key.rolling_start_interval_number == (today - 1) * 144)
        );
    }
}
