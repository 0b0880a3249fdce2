//! `odd-upload`: uploads of shapes the server must refuse, sent back to back by `attackers`
//! workers, each on its own connection. The shapes, in turn:
//!
//! - `too-many-keys`: 1,000 valid GAEN keys (the default limit is 30 an upload);
//! - `huge-key`: one GAEN key of 60,000 bytes (under the 64 KiB message limit, so validation
//!   sees it);
//! - `oversized`: a case padded to 1 MiB, over the message limit;
//! - `bad-fields`: 14 keys broken alike, one way per upload in turn: a 15-byte key, a rolling
//!   period of 0 or 145, a start 30 days ahead, a risk level of 99, Bluezone keys with 86,400
//!   sub-keys a day, an unknown report type, a 10,000-character upload id, a 300-character
//!   region.
//!
//! Every second upload is a decoy (`x-exposure-decoy: 1`, no credential), the others carry the
//! authority's bearer token when one is given (a broken or compromised authority client), else
//! they are decoys too. Outcomes are counted by shape, credential and gRPC code; an `OK` that
//! accepted keys is a finding.

use std::sync::Arc;
use std::time::Duration;

use exposure_client::credential::mark_decoy;
use exposure_proto::status::code_name;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{
    BluezoneKey, DiagnosisKey, GaenKey, UploadDiagnosisKeysRequest, diagnosis_key,
};
use rand::RngCore as _;
use tokio::task::JoinSet;
use tonic::Request;

use super::{AttackPlan, Counters, Stop, open_channel};
use crate::scenario::upload::{
    INTERVALS_PER_DAY, KEYS_PER_UPLOAD, UploadIds, case_request, random_daily_key, today,
};

/// How long one odd upload may take before it counts as `timeout`.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The shapes, in the order a worker sends them.
const SHAPES: [&str; 4] = ["too-many-keys", "huge-key", "oversized", "bad-fields"];

/// The ways `bad-fields` breaks its keys, in turn.
const BAD_FIELDS: usize = 9;

/// Starts `attackers` workers.
pub(super) fn spawn(
    plan: &AttackPlan,
    counters: &Arc<Counters>,
    stop: &Stop,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let endpoint = plan.endpoint()?;
    let upload_ids = Arc::new(UploadIds::new());
    for worker in 0..plan.attackers {
        let endpoint = endpoint.clone();
        let plan = plan.clone();
        let counters = Arc::clone(counters);
        let upload_ids = Arc::clone(&upload_ids);
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let Some((channel, _held)) = open_channel(&endpoint, &counters, &mut stop).await else {
                return;
            };
            let mut client = KeyUploadClient::new(channel);
            let mut turn = worker;
            while !stop.is_stopped() && counters.take_attempt() {
                let shape = turn % SHAPES.len();
                let decoy = plan.token.is_none() || (turn / SHAPES.len()).is_multiple_of(2);
                let body = odd_request(shape, turn / SHAPES.len(), &plan.region, &upload_ids);
                let mut request = Request::new(body);
                match (&plan.token, decoy) {
                    (Some(token), false) => token.authorize(&mut request),
                    _ => mark_decoy(&mut request),
                }
                let _call = counters.call_started();
                let answer = tokio::select! {
                    answer = tokio::time::timeout(CALL_TIMEOUT, client.upload_diagnosis_keys(request)) => answer,
                    () = stop.wait() => return,
                };
                let code = match answer {
                    Err(_) => "timeout",
                    Ok(Err(status)) => code_name(status.code()),
                    Ok(Ok(response)) if response.get_ref().keys_accepted > 0 => {
                        "OK, keys accepted"
                    }
                    Ok(Ok(_)) => "OK, no key accepted",
                };
                let credential = if decoy { "decoy" } else { "bearer" };
                counters.outcome(&format!("{}/{credential}: {code}", SHAPES[shape]));
                turn += plan.attackers;
            }
            stop.wait().await;
        });
    }
    Ok(())
}

/// Returns upload `round` of shape `shape` (an index into [`SHAPES`]).
fn odd_request(
    shape: usize,
    round: usize,
    region: &str,
    upload_ids: &UploadIds,
) -> UploadDiagnosisKeysRequest {
    let mut rng = rand::thread_rng();
    let day = today();
    let mut request = case_request(&mut rng, region, upload_ids.next_id(), day);
    match SHAPES[shape] {
        "too-many-keys" => {
            request.keys = (0..1000)
                .map(|index| random_daily_key(&mut rng, day.saturating_sub(index % 2)))
                .collect();
        }
        "huge-key" => {
            let mut key_data = vec![0_u8; 60_000];
            rng.fill_bytes(&mut key_data);
            request.keys.truncate(1);
            if let Some(diagnosis_key::Key::Gaen(gaen)) = &mut request.keys[0].key {
                gaen.key_data = key_data;
            }
        }
        "oversized" => request.padding = vec![0_u8; 1 << 20],
        _ => break_fields(&mut request, round % BAD_FIELDS, day),
    }
    request
}

/// Applies `change` to every GAEN key of `request`.
fn each_gaen(request: &mut UploadDiagnosisKeysRequest, change: impl Fn(&mut GaenKey)) {
    for key in &mut request.keys {
        if let Some(diagnosis_key::Key::Gaen(gaen)) = &mut key.key {
            change(gaen);
        }
    }
}

/// Breaks every key of `request`, or the request itself, in way `way` of [`BAD_FIELDS`].
fn break_fields(request: &mut UploadDiagnosisKeysRequest, way: usize, day: u32) {
    match way {
        0 => each_gaen(request, |gaen| gaen.key_data.truncate(15)),
        1 => each_gaen(request, |gaen| gaen.rolling_period = 0),
        2 => each_gaen(request, |gaen| gaen.rolling_period = INTERVALS_PER_DAY + 1),
        3 => each_gaen(request, |gaen| {
            gaen.rolling_start_interval_number = (day + 30) * INTERVALS_PER_DAY;
        }),
        4 => {
            for key in &mut request.keys {
                key.transmission_risk_level = 99;
            }
        }
        5 => {
            let from = u64::from(day.saturating_sub(1)) * 86_400;
            request.keys = (0..KEYS_PER_UPLOAD)
                .map(|_| {
                    let mut daily_key = vec![0_u8; 32];
                    rand::thread_rng().fill_bytes(&mut daily_key);
                    DiagnosisKey {
                        key: Some(diagnosis_key::Key::Bluezone(BluezoneKey {
                            daily_key,
                            day_number: day.saturating_sub(1),
                            sub_keys_per_day: 86_400,
                            contagious_from: from,
                            contagious_until: from + 86_400,
                        })),
                        transmission_risk_level: 1,
                    }
                })
                .collect();
        }
        6 => request.report_type = 99,
        7 => request.upload_id = "u".repeat(10_000),
        _ => request.region = "X".repeat(300),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn every_shape_is_what_it_says() {
        let ids = UploadIds::new();
        let too_many = odd_request(0, 0, "VN-TB", &ids);
        assert_eq!(too_many.keys.len(), 1000);
        assert!(
            too_many.encoded_len() < 64 * 1024,
            "under the message limit"
        );
        let huge = odd_request(1, 0, "VN-TB", &ids);
        assert_eq!(huge.keys.len(), 1);
        assert!(huge.encoded_len() > 60_000 && huge.encoded_len() < 64 * 1024);
        let oversized = odd_request(2, 0, "VN-TB", &ids);
        assert!(oversized.encoded_len() > 1 << 20);
        let zero_period = odd_request(3, 1, "VN-TB", &ids);
        assert!(zero_period.keys.iter().all(|key| matches!(
            &key.key,
            Some(diagnosis_key::Key::Gaen(gaen)) if gaen.rolling_period == 0
        )));
        let sub_keys = odd_request(3, 5, "VN-TB", &ids);
        assert!(sub_keys.keys.iter().all(|key| matches!(
            &key.key,
            Some(diagnosis_key::Key::Bluezone(bluezone)) if bluezone.sub_keys_per_day == 86_400
        )));
        assert_eq!(odd_request(3, 6, "VN-TB", &ids).report_type, 99);
        assert_eq!(odd_request(3, 7, "VN-TB", &ids).upload_id.len(), 10_000);
        let short = odd_request(3, 0, "VN-TB", &ids);
        let Some(diagnosis_key::Key::Gaen(gaen)) = &short.keys[0].key else {
            panic!("GAEN key")
        };
        assert_eq!(gaen.key_data.len(), 15);
        let region = odd_request(3, 8, "VN-TB", &ids);
        assert_eq!(region.region.len(), 300);
    }
}
