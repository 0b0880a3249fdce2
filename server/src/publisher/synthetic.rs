//! Synthetic keys (DESIGN §14): the padding that hides how many keys a publish run holds.
//!
//! Padding must survive every public object at once. A random filter element has no confirm
//! digest and no GAEN key behind it, and a random GAEN key has no tags in the filter, so anyone
//! who cross-checks the channels could tell padding from cases. A synthetic key is therefore a
//! GAEN-shaped key like any upload's: OS-random key data, the interval, period, transmission
//! risk, report type and days since onset of a random real key of the run, expanded into tags,
//! filter elements and confirm digests, and exported with the run's GAEN keys. It is stored under
//! a sequence of its own ([`SYNTHETIC_SEQUENCES`]) in the batch's commit, so daily roll-ups hold
//! it and retention expires it like a real key, while nothing counts, dedups or revokes it.

use exposure_proto::v1::{DiagnosisKey, GaenKey, ReportType, diagnosis_key::Key};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};

use super::{PublishError, Publisher};
use crate::storage::keys::SYNTHETIC_SEQUENCES;
use crate::storage::records::StoredKey;

/// GAEN intervals (10 minutes) in a day.
const INTERVALS_PER_DAY: u32 = 144;

/// Seconds of one GAEN interval.
const INTERVAL_SECONDS: u64 = 600;

/// What a synthetic key copies from a real key.
struct Template {
    rolling_start_interval_number: u32,
    rolling_period: u32,
    transmission_risk_level: u32,
    days_since_onset_of_symptoms: Option<i32>,
    report_type: i32,
}

impl Template {
    /// Returns what a synthetic key copies from `key`: every field of a GAEN key; of a key of
    /// another scheme, its report type and risk, with the whole UTC day of its last slot.
    fn of(key: &StoredKey) -> Template {
        let diagnosis_key = key.key.as_ref();
        let transmission_risk_level = diagnosis_key.map_or(0, |key| key.transmission_risk_level);
        match diagnosis_key.and_then(|key| key.key.as_ref()) {
            Some(Key::Gaen(gaen)) => Template {
                rolling_start_interval_number: gaen.rolling_start_interval_number,
                rolling_period: gaen.rolling_period,
                transmission_risk_level,
                days_since_onset_of_symptoms: gaen.days_since_onset_of_symptoms,
                report_type: key.report_type,
            },
            _ => Template {
                rolling_start_interval_number: day_start_interval(
                    key.last_slot_end.saturating_sub(1),
                ),
                rolling_period: INTERVALS_PER_DAY,
                transmission_risk_level,
                days_since_onset_of_symptoms: None,
                report_type: key.report_type,
            },
        }
    }

    /// The fixed defaults of a run with no key to copy: all of yesterday, a confirmed test.
    fn fallback(now: u64) -> Template {
        Template {
            rolling_start_interval_number: day_start_interval(now.saturating_sub(86_400)),
            rolling_period: INTERVALS_PER_DAY,
            transmission_risk_level: 0,
            days_since_onset_of_symptoms: None,
            report_type: ReportType::ConfirmedTest as i32,
        }
    }
}

/// Returns the first GAEN interval of the UTC day holding `unix_seconds`.
fn day_start_interval(unix_seconds: u64) -> u32 {
    let day = unix_seconds / 86_400;
    u32::try_from(day * u64::from(INTERVALS_PER_DAY)).unwrap_or(u32::MAX)
}

impl Publisher {
    /// Returns how many keys a region's run of `real` keys is published as: `pad_min_keys`
    /// plus a uniform random 0..=`pad_jitter` when the run holds fewer, else `real` itself.
    pub(super) fn padded_total(&self, real: usize) -> usize {
        let jitter = OsRng.gen_range(0..=self.settings.pad_jitter);
        let target = self.settings.pad_min_keys.saturating_add(jitter);
        real.max(target)
    }

    /// Returns `count` synthetic keys for `region`, each copying a random key of `real` (the
    /// GAEN ones when there are any) or the fixed defaults when `real` is empty, under
    /// consecutive synthetic sequences from the store's next one.
    pub(super) fn synthetic_keys(
        &self,
        region: &str,
        real: &[(u64, StoredKey)],
        count: usize,
        now: u64,
    ) -> Result<Vec<(u64, StoredKey)>, PublishError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let first = self.store.next_synthetic_sequence()?;
        debug_assert!(first >= SYNTHETIC_SEQUENCES);
        let gaen: Vec<&StoredKey> = real
            .iter()
            .map(|(_, key)| key)
            .filter(|key| {
                matches!(
                    key.key.as_ref().and_then(|key| key.key.as_ref()),
                    Some(Key::Gaen(_))
                )
            })
            .collect();
        let others: Vec<&StoredKey> = real.iter().map(|(_, key)| key).collect();
        let templates = if gaen.is_empty() { others } else { gaen };
        let mut keys = Vec::with_capacity(count);
        for offset in 0..count as u64 {
            let template = match templates.len() {
                0 => Template::fallback(now),
                len => Template::of(templates[OsRng.gen_range(0..len)]),
            };
            keys.push((first + offset, synthetic_key(region, &template, now)));
        }
        Ok(keys)
    }
}

/// Returns a synthetic key of `region` with OS-random key data and `template`'s fields.
fn synthetic_key(region: &str, template: &Template, now: u64) -> StoredKey {
    let mut key_data = vec![0u8; 16];
    OsRng.fill_bytes(&mut key_data);
    let last_interval_end =
        u64::from(template.rolling_start_interval_number) + u64::from(template.rolling_period);
    StoredKey {
        region: region.to_owned(),
        key: Some(DiagnosisKey {
            key: Some(Key::Gaen(GaenKey {
                key_data,
                rolling_start_interval_number: template.rolling_start_interval_number,
                rolling_period: template.rolling_period,
                days_since_onset_of_symptoms: template.days_since_onset_of_symptoms,
            })),
            transmission_risk_level: template.transmission_risk_level,
        }),
        received_at: now,
        release_at: now,
        last_slot_end: last_interval_end * INTERVAL_SECONDS,
        report_type: template.report_type,
        dedup_key: Vec::new(),
        authority_id: String::new(),
        synthetic: true,
    }
}
