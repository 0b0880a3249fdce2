//! The `upload` scenario: a health authority uploading one case's keys.
//!
//! Every upload carries [`KEYS_PER_UPLOAD`] fresh random GAEN keys (so the server's dedup never
//! short-cuts the write) under a unique upload id (so idempotency never replays). Each key covers a
//! whole recent UTC day (`rolling_start_interval_number = day * 144`, `rolling_period = 144`),
//! alternating yesterday and today: yesterday's keys become publishable after the release delay,
//! today's stay embargoed, as in a real case (DESIGN.md sections 2 and 6).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use exposure_proto::v1::{
    DiagnosisKey, GaenKey, ReportType, UploadDiagnosisKeysRequest, diagnosis_key,
};
use prost::Message as _;
use rand::{Rng, RngCore as _};
use tonic::{Request, Status};

use super::readback::Ledger;
use crate::client::{BearerToken, Clients};

/// Keys per upload: one case's 14 days of GAEN keys (DESIGN.md section 9).
pub const KEYS_PER_UPLOAD: usize = 14;

/// GAEN intervals per day: 10-minute intervals (DESIGN.md section 2).
pub const INTERVALS_PER_DAY: u32 = 144;

/// Seconds per UTC day.
const SECONDS_PER_DAY: u64 = 86_400;

/// Hands out upload ids unique to this process run: a random run prefix and a counter.
#[derive(Debug)]
pub struct UploadIds {
    prefix: String,
    next: AtomicU64,
}

impl UploadIds {
    /// Starts a sequence with a fresh random prefix.
    pub fn new() -> Self {
        UploadIds {
            prefix: format!("loadtest-{:016x}", rand::thread_rng().next_u64()),
            next: AtomicU64::new(0),
        }
    }

    /// Returns the next id.
    pub fn next_id(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Default for UploadIds {
    fn default() -> Self {
        UploadIds::new()
    }
}

/// Returns the current UTC day number (Unix seconds / 86,400).
pub fn today() -> u32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    u32::try_from(seconds / SECONDS_PER_DAY).unwrap_or(u32::MAX)
}

/// Returns one GAEN key with random key material covering the whole UTC day `day`.
pub fn random_daily_key(rng: &mut impl Rng, day: u32) -> DiagnosisKey {
    let mut key_data = vec![0_u8; 16];
    rng.fill_bytes(&mut key_data);
    DiagnosisKey {
        key: Some(diagnosis_key::Key::Gaen(GaenKey {
            key_data,
            rolling_start_interval_number: day.saturating_mul(INTERVALS_PER_DAY),
            rolling_period: INTERVALS_PER_DAY,
            days_since_onset_of_symptoms: None,
        })),
        transmission_risk_level: rng.gen_range(0..=8),
    }
}

/// Builds one case's upload for `region`: [`KEYS_PER_UPLOAD`] random keys, alternating
/// yesterday and `today`.
pub fn case_request(
    rng: &mut impl Rng,
    region: &str,
    upload_id: String,
    today: u32,
) -> UploadDiagnosisKeysRequest {
    let keys = (0..KEYS_PER_UPLOAD)
        .map(|index| random_daily_key(rng, today.saturating_sub((index % 2) as u32)))
        .collect();
    UploadDiagnosisKeysRequest {
        region: region.to_owned(),
        upload_id,
        keys,
        report_type: ReportType::ConfirmedTest as i32,
        padding: Vec::new(),
    }
}

/// Uploads one fresh case; returns the payload received, the encoded size of the answer (2
/// bytes when all 14 keys are accepted: `keys_accepted`'s tag and value). An acknowledged
/// upload goes into `ledger`.
pub async fn call(
    clients: &mut Clients,
    region: &str,
    token: &BearerToken,
    upload_ids: &UploadIds,
    ledger: &Ledger,
) -> Result<u64, Status> {
    send_case(clients, region, upload_ids, ledger, |request| {
        token.authorize(request)
    })
    .await
}

/// Uploads one fresh case, authorized by `authorize`; an acknowledged upload goes into
/// `ledger`.
pub(crate) async fn send_case(
    clients: &mut Clients,
    region: &str,
    upload_ids: &UploadIds,
    ledger: &Ledger,
    authorize: impl FnOnce(&mut Request<UploadDiagnosisKeysRequest>),
) -> Result<u64, Status> {
    let day = today();
    let body = case_request(&mut rand::thread_rng(), region, upload_ids.next_id(), day);
    let mut request = Request::new(body.clone());
    authorize(&mut request);
    let answered = send(clients, request).await?;
    ledger.acknowledged(&body, day);
    Ok(answered)
}

/// Sends an upload; returns the encoded size of the answer, the payload the call received.
pub(crate) async fn send(
    clients: &mut Clients,
    request: Request<UploadDiagnosisKeysRequest>,
) -> Result<u64, Status> {
    let answer = clients.upload.upload_diagnosis_keys(request).await?;
    Ok(answer.get_ref().encoded_len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn upload_ids_are_unique() {
        let ids = UploadIds::new();
        let other = UploadIds::new();
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(ids.next_id()));
            assert!(seen.insert(other.next_id()));
        }
    }

    #[test]
    fn a_case_has_fourteen_distinct_whole_day_keys() {
        let today = 20_454;
        let request = case_request(&mut rand::thread_rng(), "VN-TB", "id".to_owned(), today);
        assert_eq!(request.keys.len(), KEYS_PER_UPLOAD);
        assert_eq!(request.region, "VN-TB");
        let mut materials = HashSet::new();
        for key in &request.keys {
            let Some(diagnosis_key::Key::Gaen(gaen)) = &key.key else {
                panic!("GAEN key expected")
            };
            assert_eq!(gaen.key_data.len(), 16);
            assert!(materials.insert(gaen.key_data.clone()), "repeated key");
            assert_eq!(gaen.rolling_period, 144);
            assert_eq!(gaen.rolling_start_interval_number % 144, 0);
            let day = gaen.rolling_start_interval_number / 144;
            assert!(day == today || day == today - 1, "{day}");
            assert!(key.transmission_risk_level <= 8);
        }
    }

    #[test]
    fn today_is_a_plausible_day_number() {
        // 2024-01-01 is day 19,723; a run's clock is later than that.
        assert!(today() > 19_723);
    }
}
