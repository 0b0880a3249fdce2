//! The bad-input matrix: every validation rule of DESIGN.md section 7, violated on its own,
//! gives INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the field; an oversized message
//! is refused; and afterwards the store holds exactly the valid uploads.

use exposure_proto::v1::{DiagnosisKey, UploadDiagnosisKeysRequest};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, bluezone, gaen, key16, static_id};
use exposure_tests::{TEST_NOW, TestServer};
use tonic::Code;
use tonic_types::StatusExt;

const DAY: u64 = 86_400;
const TODAY: u64 = TEST_NOW / DAY;

fn valid_gaen(byte: u8) -> DiagnosisKey {
    gaen(key16(byte), ((TODAY - 1) * 144) as u32, 144)
}

fn with_key(key: DiagnosisKey) -> UploadDiagnosisKeysRequest {
    fixtures::upload("bad", vec![key])
}

/// Every case: a name, the request, and the field the error must name.
fn cases() -> Vec<(&'static str, UploadDiagnosisKeysRequest, &'static str)> {
    let day = TODAY - 1;
    let day_start = day * DAY;
    let mut cases = vec![
        (
            "lowercase region",
            UploadDiagnosisKeysRequest {
                region: "vn-tb".into(),
                ..with_key(valid_gaen(1))
            },
            "region",
        ),
        (
            "region too long",
            UploadDiagnosisKeysRequest {
                region: "VN-ABCD".into(),
                ..with_key(valid_gaen(1))
            },
            "region",
        ),
        (
            "empty upload id",
            UploadDiagnosisKeysRequest {
                upload_id: String::new(),
                ..with_key(valid_gaen(1))
            },
            "upload_id",
        ),
        (
            "upload id of 129 bytes",
            UploadDiagnosisKeysRequest {
                upload_id: "x".repeat(129),
                ..with_key(valid_gaen(1))
            },
            "upload_id",
        ),
        ("no keys", fixtures::upload("bad", vec![]), "keys"),
        (
            "31 keys",
            fixtures::upload("bad", (0..31).map(|i| valid_gaen(i as u8 + 1)).collect()),
            "keys",
        ),
        (
            "unknown report type",
            UploadDiagnosisKeysRequest {
                report_type: 99,
                ..with_key(valid_gaen(1))
            },
            "report_type",
        ),
        (
            "key without scheme",
            with_key(DiagnosisKey {
                key: None,
                transmission_risk_level: 0,
            }),
            "keys[0]",
        ),
        (
            "repeated key",
            fixtures::upload("bad", vec![valid_gaen(1), valid_gaen(1)]),
            "keys[1]",
        ),
        (
            "transmission risk 9",
            with_key(DiagnosisKey {
                transmission_risk_level: 9,
                ..valid_gaen(1)
            }),
            "keys[0].transmission_risk_level",
        ),
        (
            "gaen key of 15 bytes",
            with_key(gaen_with(|g| g.key_data = vec![1; 15])),
            "keys[0].gaen.key_data",
        ),
        (
            "gaen rolling period 0",
            with_key(gaen_with(|g| g.rolling_period = 0)),
            "keys[0].gaen.rolling_period",
        ),
        (
            "gaen rolling period 145",
            with_key(gaen_with(|g| g.rolling_period = 145)),
            "keys[0].gaen.rolling_period",
        ),
        (
            "gaen onset 15 days",
            with_key(gaen_with(|g| g.days_since_onset_of_symptoms = Some(15))),
            "keys[0].gaen.days_since_onset_of_symptoms",
        ),
        (
            "gaen onset -15 days",
            with_key(gaen_with(|g| g.days_since_onset_of_symptoms = Some(-15))),
            "keys[0].gaen.days_since_onset_of_symptoms",
        ),
        (
            "gaen key from the future",
            with_key(gaen_with(|g| {
                g.rolling_start_interval_number = ((TODAY + 1) * 144) as u32
            })),
            "keys[0].gaen.rolling_start_interval_number",
        ),
        (
            "gaen key expired 16 days ago",
            with_key(gaen_with(|g| {
                g.rolling_start_interval_number = ((TODAY - 17) * 144) as u32
            })),
            "keys[0].gaen.rolling_start_interval_number",
        ),
        (
            "bluezone key of 31 bytes",
            with_key(bluezone_with(|b| b.daily_key = vec![1; 31])),
            "keys[0].bluezone.daily_key",
        ),
        (
            "bluezone day in the future",
            with_key(bluezone_with(|b| {
                b.day_number = (TODAY + 1) as u32;
                b.contagious_from = (TODAY + 1) * DAY;
                b.contagious_until = (TODAY + 2) * DAY;
            })),
            "keys[0].bluezone.day_number",
        ),
        (
            "bluezone day 16 days ago",
            with_key(bluezone_with(|b| {
                b.day_number = (TODAY - 16) as u32;
                b.contagious_from = (TODAY - 16) * DAY;
                b.contagious_until = (TODAY - 15) * DAY;
            })),
            "keys[0].bluezone.day_number",
        ),
        (
            "bluezone 7 sub keys a day",
            with_key(bluezone_with(|b| b.sub_keys_per_day = 7)),
            "keys[0].bluezone.sub_keys_per_day",
        ),
        // Divisors of 86,400 that the default --bluezone-sub-keys-per-day (96 only) refuses:
        // one identifier a second or a minute would let one upload expand into millions.
        (
            "bluezone one identifier a second",
            with_key(bluezone_with(|b| b.sub_keys_per_day = 86_400)),
            "keys[0].bluezone.sub_keys_per_day",
        ),
        (
            "bluezone one identifier a minute",
            with_key(bluezone_with(|b| b.sub_keys_per_day = 1440)),
            "keys[0].bluezone.sub_keys_per_day",
        ),
        (
            "bluezone empty window",
            with_key(bluezone_with(|b| b.contagious_until = b.contagious_from)),
            "keys[0].bluezone.contagious_until",
        ),
        (
            "bluezone window before its day",
            with_key(bluezone_with(|b| b.contagious_from = day_start - 1)),
            "keys[0].bluezone.contagious_from",
        ),
        (
            "bluezone window after its day",
            with_key(bluezone_with(|b| b.contagious_until = day_start + DAY + 1)),
            "keys[0].bluezone.contagious_until",
        ),
        (
            "static id empty",
            with_key(static_id(b"", TEST_NOW - 7200, TEST_NOW - 3600)),
            "keys[0].static_id.identifier",
        ),
        (
            "static id of 33 bytes",
            with_key(static_id(&[1; 33], TEST_NOW - 7200, TEST_NOW - 3600)),
            "keys[0].static_id.identifier",
        ),
        (
            "static empty window",
            with_key(static_id(b"AB12CD", TEST_NOW - 3600, TEST_NOW - 3600)),
            "keys[0].static_id.contagious_until",
        ),
        (
            "static window 16 days ago",
            with_key(static_id(
                b"AB12CD",
                TEST_NOW - 16 * DAY,
                TEST_NOW - 15 * DAY - 3600,
            )),
            "keys[0].static_id.contagious_from",
        ),
    ];
    cases.push((
        "static window of 15 days and an hour",
        with_key(static_id(
            b"AB12CD",
            TEST_NOW - 15 * DAY + 600,
            TEST_NOW + 3600 + 600,
        )),
        "keys[0].static_id.contagious_until",
    ));
    // A bad key behind a good one is named by its own index.
    let mut second_bad = fixtures::upload(
        "bad",
        vec![valid_gaen(1), gaen_with(|g| g.rolling_period = 0)],
    );
    second_bad.upload_id = "bad-second".into();
    cases.push(("second key bad", second_bad, "keys[1].gaen.rolling_period"));
    // Issue 18's attack: 30 full-day keys of one identifier a second (2.59 M elements).
    let flood = (0..30u8)
        .map(|byte| {
            bluezone_with(|b| {
                b.daily_key = vec![byte; 32];
                b.sub_keys_per_day = 86_400;
            })
        })
        .collect();
    cases.push((
        "30 keys of one identifier a second",
        fixtures::upload("bad-flood", flood),
        "keys[29].bluezone.sub_keys_per_day",
    ));
    cases
}

fn gaen_with(change: impl FnOnce(&mut exposure_proto::v1::GaenKey)) -> DiagnosisKey {
    let mut key = valid_gaen(1);
    if let Some(exposure_proto::v1::diagnosis_key::Key::Gaen(gaen)) = key.key.as_mut() {
        change(gaen);
    }
    key
}

fn bluezone_with(change: impl FnOnce(&mut exposure_proto::v1::BluezoneKey)) -> DiagnosisKey {
    let day = TODAY - 1;
    let mut key = bluezone([3; 32], day as u32, day * DAY, (day + 1) * DAY);
    if let Some(exposure_proto::v1::diagnosis_key::Key::Bluezone(bluezone)) = key.key.as_mut() {
        change(bluezone);
    }
    key
}

#[tokio::test]
async fn every_rule_names_its_field_and_nothing_invalid_is_stored() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let mut client = server.upload_client().await;

    // Valid uploads before and after the bad ones.
    server
        .upload(fixtures::upload(
            "good-1",
            vec![valid_gaen(100), valid_gaen(101)],
        ))
        .await;

    for (name, request, field) in cases() {
        let status = client
            .upload_diagnosis_keys(server.authorized(request))
            .await
            .expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        let details = status.get_error_details();
        let violations = &details
            .bad_request()
            .unwrap_or_else(|| panic!("{name}: no BadRequest"))
            .field_violations;
        assert!(
            violations.iter().any(|violation| violation.field == field),
            "{name}: expected a violation of {field}, got {violations:?}"
        );
        assert!(
            violations
                .iter()
                .all(|violation| !violation.description.is_empty())
        );
    }

    let mut oversized = fixtures::upload("big", vec![valid_gaen(102)]);
    oversized.padding = vec![0; 70 * 1024];
    let status = client
        .upload_diagnosis_keys(server.authorized(oversized))
        .await
        .expect_err("oversized");
    assert_eq!(
        status.code(),
        Code::OutOfRange,
        "oversized message: {status:?}"
    );

    server
        .upload(fixtures::upload("good-2", vec![valid_gaen(103)]))
        .await;

    let dir = server.stop().await;
    let store = exposure_server::storage::Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.count_keys().expect("count"),
        3,
        "exactly the keys of the valid uploads"
    );
}
