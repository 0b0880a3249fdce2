//! GAEN export files end to end (DESIGN §11): uploads through gRPC, the publisher, and
//! `gaen/index.txt` and the zips over the HTTP mirror, verified with the key from
//! GetSigningKeys. Other schemes stay out, revocations come back as `revised_keys`, the embargo
//! holds, retention drops old files, and a restart neither re-exports nor skips a key.

use std::time::Duration;

use exposure_matcher::gaen::GaenExport;
use exposure_matcher::gaen::proto::TemporaryExposureKey;
use exposure_proto::v1::{DiagnosisKey, ReportType, diagnosis_key::Key};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, bluezone, gaen, key16, static_id};
use exposure_tests::http_client::HttpClient;
use exposure_tests::{REGION, TEST_NOW, TestServer};

const TODAY: u64 = TEST_NOW / 86_400;
const INDEX_PATH: &str = "/v1/regions/VN-TB/gaen/index.txt";

/// A GAEN key valid all of yesterday, with its onset.
fn yesterday_key(byte: u8, onset: Option<i32>) -> DiagnosisKey {
    let mut key = gaen(key16(byte), ((TODAY - 1) * 144) as u32, 144);
    if let Some(Key::Gaen(inner)) = key.key.as_mut() {
        inner.days_since_onset_of_symptoms = onset;
    }
    key
}

/// Returns the lines of the region's index, waiting (at most 20 s) until there are `count`.
async fn wait_for_index(server: &TestServer, count: usize) -> Vec<String> {
    server.wait_for_gaen_index(count).await
}

/// Downloads a zip the index names and verifies it with the current key from GetSigningKeys.
async fn fetch_verified(server: &TestServer, path: &str) -> GaenExport {
    let answer = HttpClient::new(&server.http_url)
        .get(&format!("/{path}"))
        .await;
    assert_eq!(answer.status, 200, "{path}");
    assert_eq!(answer.header("cache-control"), "public, max-age=86400");
    assert_eq!(answer.header("content-type"), "application/zip");
    let (_, public_key_der) =
        fixtures::current_signing_key(&mut server.distribution_client().await).await;
    let export = GaenExport::parse(&answer.body).expect("a well-formed export zip");
    export.verify(&public_key_der).expect("signature verifies");
    export
}

fn find(keys: &[TemporaryExposureKey], byte: u8) -> Option<&TemporaryExposureKey> {
    keys.iter()
        .find(|key| key.key_data.as_deref() == Some(&key16(byte)[..]))
}

#[tokio::test]
async fn uploads_become_verified_export_files_and_revocations_revised_keys() {
    // No synthetic keys (the test configuration's default): padding has its own tests.
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let http = HttpClient::new(&server.http_url);

    // Bluezone and static identifiers are published as filters but never exported.
    let from = (TODAY - 1) * 86_400;
    server
        .upload(fixtures::upload(
            "other-schemes",
            vec![
                bluezone([7; 32], (TODAY - 1) as u32, from, from + 3_600),
                static_id(b"static-id", from, from + 3_600),
            ],
        ))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    assert_eq!(http.get(INDEX_PATH).await.status, 404);

    let mut upload = fixtures::upload(
        "gaen",
        vec![yesterday_key(1, Some(-3)), yesterday_key(2, None)],
    );
    upload.report_type = ReportType::ConfirmedClinicalDiagnosis as i32;
    server.upload(upload).await;
    let lines = wait_for_index(&server, 1).await;
    // The publish window (1 s in the tests, the interval's floor) closing at TEST_NOW.
    assert_eq!(
        lines[0],
        format!(
            "v1/regions/{REGION}/gaen/{}-{TEST_NOW}-00001.zip",
            TEST_NOW - 1
        )
    );
    let index = http.get(INDEX_PATH).await;
    assert_eq!(index.header("cache-control"), "no-cache");
    assert!(index.header("content-type").starts_with("text/plain"));
    let etag = index.header("etag").to_owned();
    let again = http
        .send(http::Method::GET, INDEX_PATH, &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status, 304);

    let export = fetch_verified(&server, &lines[0]).await;
    let body = export.export();
    assert_eq!(body.region.as_deref(), Some(REGION));
    assert_eq!((body.batch_num, body.batch_size), (Some(1), Some(1)));
    assert_eq!(body.keys.len(), 2, "the two keys, unpadded");
    let info = &body.signature_infos[0];
    assert_eq!(info.verification_key_id.as_deref(), Some("452"));
    assert_eq!(info.verification_key_version.as_deref(), Some("v1"));
    for (byte, onset) in [(1, Some(-3)), (2, None)] {
        let key = find(&body.keys, byte).expect("uploaded key exported");
        assert_eq!(
            key.rolling_start_interval_number,
            Some(((TODAY - 1) * 144) as i32)
        );
        assert_eq!(key.rolling_period, Some(144));
        assert_eq!(key.transmission_risk_level, Some(4));
        assert_eq!(key.report_type, Some(2), "CONFIRMED_CLINICAL_DIAGNOSIS");
        assert_eq!(key.days_since_onset_of_symptoms, onset);
    }
    assert!(body.revised_keys.is_empty());

    // Revoked after its export: the next file carries it as REVOKED.
    server.clock.advance(60);
    let mut revocation = fixtures::upload("revoke", vec![yesterday_key(1, Some(-3))]);
    revocation.report_type = ReportType::Revoked as i32;
    server.upload(revocation).await;
    let lines = wait_for_index(&server, 2).await;
    let later = fetch_verified(&server, &lines[1]).await;
    let revised = find(&later.export().revised_keys, 1).expect("revoked key revised");
    assert_eq!(revised.report_type, Some(5));
    assert_eq!(
        revised.rolling_start_interval_number,
        Some(((TODAY - 1) * 144) as i32)
    );
    assert!(find(&later.export().keys, 1).is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_embargo_holds_keys_back_until_they_are_released() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| {
        config.release_delay = Duration::from_secs(2 * 3_600);
    })
    .await;
    // Still valid today: released two hours after midnight tonight.
    let today_key = gaen(key16(9), (TODAY * 144) as u32, 144);
    server
        .upload(fixtures::upload(
            "both",
            vec![yesterday_key(8, None), today_key],
        ))
        .await;
    let lines = wait_for_index(&server, 1).await;
    let first = fetch_verified(&server, &lines[0]).await;
    assert_eq!(first.export().keys.len(), 1);
    assert!(find(&first.export().keys, 8).is_some());

    clock.set((TODAY + 1) * 86_400 + 2 * 3_600);
    let lines = wait_for_index(&server, 2).await;
    let second = fetch_verified(&server, &lines[1]).await;
    assert_eq!(second.export().keys.len(), 1);
    assert!(find(&second.export().keys, 9).is_some());
    server.stop().await;
}

#[tokio::test]
async fn a_restart_neither_reexports_nor_skips_and_retention_drops_old_files() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    let token = server.token.clone();
    let config = server.config.clone();
    server
        .upload(fixtures::upload("first", vec![yesterday_key(1, None)]))
        .await;
    wait_for_index(&server, 1).await;
    let dir = server.stop().await;

    clock.advance(60);
    let server = TestServer::restart(&dir, token, clock.clone(), config).await;
    server
        .upload(fixtures::upload("second", vec![yesterday_key(2, None)]))
        .await;
    let lines = wait_for_index(&server, 2).await;
    let first = fetch_verified(&server, &lines[0]).await;
    let second = fetch_verified(&server, &lines[1]).await;
    let bytes = |export: &GaenExport| -> Vec<Vec<u8>> {
        export
            .export()
            .keys
            .iter()
            .map(|key| key.key_data.clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(bytes(&first), [key16(1).to_vec()]);
    assert_eq!(bytes(&second), [key16(2).to_vec()]);

    // Fifteen days on, both files are past the 14-day retention; a fresh key's file stays.
    let later = TEST_NOW + 15 * 86_400;
    clock.set(later);
    let fresh = gaen(key16(3), ((later / 86_400 - 1) * 144) as u32, 144);
    server.upload(fixtures::upload("fresh", vec![fresh])).await;
    let lines = wait_for_index(&server, 1).await;
    assert!(
        lines[0].ends_with(&format!("-{later}-00001.zip")),
        "{lines:?}"
    );
    let old = HttpClient::new(&server.http_url)
        .get(&format!(
            "/v1/regions/{REGION}/gaen/{}-{TEST_NOW}-00001.zip",
            TEST_NOW - 1
        ))
        .await;
    assert_eq!(old.status, 404);
    server.stop_kept().await;
    drop(dir);
}

#[tokio::test]
async fn gaen_export_false_publishes_filters_only() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.gaen_export = false;
    })
    .await;
    server
        .upload(fixtures::upload(
            "only-filters",
            vec![yesterday_key(1, None)],
        ))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    let http = HttpClient::new(&server.http_url);
    assert_eq!(http.get(INDEX_PATH).await.status, 404);
    server.stop().await;
}
