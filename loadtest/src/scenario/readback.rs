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
//!
//! A failover drill checks another server than the one that answered: `run --ledger FILE`
//! writes the ledger (each upload's answer time and keys, [`Ledger::write`]), and `readback`
//! looks for its uploads on the standby ([`check_uploads`]): which acknowledged uploads the
//! failover lost, and how long before the primary's loss the newest of them was answered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;

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

/// An upload the server acknowledged: when, and its keys of past days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgedUpload {
    /// When its answer came (Unix milliseconds).
    pub acknowledged_ms: u64,
    /// Its keys of days before the one it was sent on.
    pub keys: Vec<AcknowledgedKey>,
}

/// The keys of past days of every acknowledged upload; shared by a run's workers.
#[derive(Debug, Default)]
pub struct Ledger {
    uploads: Mutex<(u64, Vec<AcknowledgedKey>, Vec<AcknowledgedUpload>)>,
}

/// Returns the time as Unix milliseconds.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Ledger {
    /// Notes an upload the server acknowledged; `today` is the UTC day it was sent on.
    pub fn acknowledged(&self, request: &UploadDiagnosisKeysRequest, today: u32) {
        let acknowledged_ms = unix_ms();
        let first_of_today = today.saturating_mul(144);
        let keys = request.keys.iter().filter_map(|key| match &key.key {
            Some(Key::Gaen(gaen)) => Some(AcknowledgedKey {
                key_data: gaen.key_data.as_slice().try_into().ok()?,
                rolling_start_interval_number: gaen.rolling_start_interval_number,
                rolling_period: gaen.rolling_period,
            }),
            _ => None,
        });
        let past: Vec<AcknowledgedKey> = keys
            .filter(|key| key.rolling_start_interval_number + key.rolling_period <= first_of_today)
            .collect();
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        uploads.0 += 1;
        uploads.1.extend(past.iter().copied());
        uploads.2.push(AcknowledgedUpload {
            acknowledged_ms,
            keys: past,
        });
    }

    /// Returns how many uploads were acknowledged and their keys of past days.
    pub fn taken(&self) -> (u64, Vec<AcknowledgedKey>) {
        let uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        (uploads.0, uploads.1.clone())
    }

    /// Returns every acknowledged upload, in the order of their answers.
    pub fn uploads(&self) -> Vec<AcknowledgedUpload> {
        let uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list = uploads.2.clone();
        list.sort_by_key(|upload| upload.acknowledged_ms);
        list
    }

    /// Writes the acknowledged uploads to `path`, one a line: the answer's Unix milliseconds,
    /// then per key of a past day `{key hex}:{rolling start interval}:{rolling period}`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = String::new();
        for upload in self.uploads() {
            text.push_str(&upload.acknowledged_ms.to_string());
            for key in &upload.keys {
                text.push_str(&format!(
                    " {}:{}:{}",
                    hex::encode(key.key_data),
                    key.rolling_start_interval_number,
                    key.rolling_period
                ));
            }
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// Reads a ledger [`Ledger::write`] wrote; an error names the line.
pub fn read_ledger(path: &Path) -> anyhow::Result<Vec<AcknowledgedUpload>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            parse_ledger_line(line)
                .with_context(|| format!("{} line {}: {line:?}", path.display(), index + 1))
        })
        .collect()
}

/// Parses one line of a ledger.
fn parse_ledger_line(line: &str) -> anyhow::Result<AcknowledgedUpload> {
    let mut parts = line.split(' ');
    let acknowledged_ms = parts
        .next()
        .unwrap_or_default()
        .parse()
        .context("the answer time is not Unix milliseconds")?;
    let keys = parts
        .map(|part| {
            let mut fields = part.split(':');
            let (Some(key), Some(start), Some(period), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                anyhow::bail!("a key is not `hex:start:period`");
            };
            let key_data: [u8; 16] = hex::decode(key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .context("a key is not 32 hex digits")?;
            Ok(AcknowledgedKey {
                key_data,
                rolling_start_interval_number: start.parse().context("a rolling start")?,
                rolling_period: period.parse().context("a rolling period")?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(AcknowledgedUpload {
        acknowledged_ms,
        keys,
    })
}

/// What `readback` found of a ledger's uploads on a server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UploadsCheck {
    /// Only uploads answered at or before this Unix millisecond were looked for (the loss
    /// of the primary), when given.
    pub acknowledged_by_ms: Option<u64>,
    /// Uploads looked for (those with keys of past days).
    pub uploads_checked: u64,
    /// Uploads with a key not found: lost.
    pub uploads_missing: u64,
    /// Their keys looked for.
    pub keys_checked: u64,
    /// Keys found.
    pub keys_found: u64,
    /// When the newest lost upload was answered (Unix milliseconds).
    pub newest_missing_acknowledged_ms: Option<u64>,
    /// How long before `acknowledged_by_ms` the newest lost upload was answered (ms).
    pub newest_missing_age_ms: Option<u64>,
    /// Seconds from the first look until the last key was found (or the wait ran out).
    pub seconds: f64,
}

/// Looks for the keys of `uploads` (those answered by `acknowledged_by_ms`) in `region`'s
/// confirm store, asking again once a second for at most `wait`; reports the uploads lost.
pub async fn check_uploads(
    clients: &mut Clients,
    region: &str,
    prefix_bits: u32,
    uploads: &[AcknowledgedUpload],
    acknowledged_by_ms: Option<u64>,
    wait: Duration,
) -> anyhow::Result<UploadsCheck> {
    let looked_for: Vec<&AcknowledgedUpload> = uploads
        .iter()
        .filter(|upload| !upload.keys.is_empty())
        .filter(|upload| acknowledged_by_ms.is_none_or(|by| upload.acknowledged_ms <= by))
        .collect();
    let keys: Vec<AcknowledgedKey> = looked_for
        .iter()
        .flat_map(|upload| upload.keys.iter().copied())
        .collect();
    let (readback, missing) = find_keys(clients, region, prefix_bits, &keys, wait).await?;
    let missing: BTreeSet<[u8; 16]> = missing.iter().map(|key| key.key_data).collect();
    let lost: Vec<&&AcknowledgedUpload> = looked_for
        .iter()
        .filter(|upload| {
            upload
                .keys
                .iter()
                .any(|key| missing.contains(&key.key_data))
        })
        .collect();
    let newest = lost.iter().map(|upload| upload.acknowledged_ms).max();
    Ok(UploadsCheck {
        acknowledged_by_ms,
        uploads_checked: looked_for.len() as u64,
        uploads_missing: lost.len() as u64,
        keys_checked: readback.keys_checked,
        keys_found: readback.keys_found,
        newest_missing_acknowledged_ms: newest,
        newest_missing_age_ms: newest
            .zip(acknowledged_by_ms)
            .map(|(newest, by)| by.saturating_sub(newest)),
        seconds: readback.seconds,
    })
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
    let mut uploads_acknowledged = 0;
    let mut keys = Vec::new();
    for ledger in ledgers {
        let (uploads, taken) = ledger.taken();
        uploads_acknowledged += uploads;
        keys.extend(taken);
    }
    let (mut readback, _) = find_keys(clients, region, prefix_bits, &keys, wait).await?;
    readback.uploads_acknowledged = uploads_acknowledged;
    Ok(readback)
}

/// Looks for `keys` in `region`'s confirm store, asking again once a second for at most
/// `wait`; returns the counts and the keys not found.
async fn find_keys(
    clients: &mut Clients,
    region: &str,
    prefix_bits: u32,
    keys: &[AcknowledgedKey],
    wait: Duration,
) -> anyhow::Result<(Readback, Vec<AcknowledgedKey>)> {
    let mut readback = Readback::default();
    // Missing digests by bucket, with their keys.
    let mut missing: BTreeMap<u32, Vec<(ConfirmDigest, AcknowledgedKey)>> = BTreeMap::new();
    for key in keys {
        let digest = first_digest(key)?;
        missing
            .entry(digest.prefix(prefix_bits))
            .or_default()
            .push((digest, *key));
        readback.keys_checked += 1;
    }
    let started = Instant::now();
    loop {
        let mut still = BTreeMap::new();
        for (prefix, digests) in missing {
            let bucket = super::confirm::fetch(clients, region, prefix, prefix_bits).await?;
            let left: Vec<_> = digests
                .into_iter()
                .filter(|(digest, _)| {
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
    let left: Vec<AcknowledgedKey> = missing
        .into_values()
        .flatten()
        .map(|(_, key)| key)
        .collect();
    readback.keys_found = readback.keys_checked - left.len() as u64;
    readback.seconds = started.elapsed().as_secs_f64();
    Ok((readback, left))
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
    fn a_written_ledger_reads_back() {
        let today = 20_000;
        let request = case_request(&mut rand::thread_rng(), "VN-TB", "id".into(), today);
        let ledger = Ledger::default();
        ledger.acknowledged(&request, today);
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ledger");
        ledger.write(&path).expect("write");
        assert_eq!(read_ledger(&path).expect("read"), ledger.uploads());
        // A line as the format says, written by hand.
        let line = format!("1765000000123 {}:2879856:144", "0f".repeat(16));
        assert_eq!(
            parse_ledger_line(&line).expect("parses"),
            AcknowledgedUpload {
                acknowledged_ms: 1_765_000_000_123,
                keys: vec![AcknowledgedKey {
                    key_data: [0x0f; 16],
                    rolling_start_interval_number: 2_879_856,
                    rolling_period: 144,
                }],
            }
        );
        assert!(parse_ledger_line("soon 0f:1:1").is_err());
        assert!(parse_ledger_line("1 0f:1:1").is_err());
    }

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
