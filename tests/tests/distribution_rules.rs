//! The phone API's answers to bad or unusual requests: bad region or prefix is
//! INVALID_ARGUMENT naming the field, an unknown batch is NOT_FOUND, and listing pages by
//! cursor and limit.

use exposure_proto::v1::{GetBatchRequest, GetConfirmBucketRequest, ListBatchesRequest};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, gaen, key16};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use tonic::Code;
use tonic_types::StatusExt;

const TODAY: u64 = TEST_NOW / 86_400;

fn names_field(status: &tonic::Status, field: &str) -> bool {
    status.code() == Code::InvalidArgument
        && status.get_error_details().bad_request().is_some_and(|bad| {
            bad.field_violations
                .iter()
                .any(|violation| violation.field == field)
        })
}

#[tokio::test]
async fn bad_requests_name_their_field_and_unknown_batches_are_not_found() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let mut client = server.distribution_client().await;

    let status = client
        .list_batches(ListBatchesRequest {
            region: "vn".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad region");
    assert!(names_field(&status, "region"), "{status:?}");

    let status = client
        .get_batch(GetBatchRequest {
            batch_id: "not-hex".into(),
        })
        .await
        .expect_err("malformed id");
    assert!(names_field(&status, "batch_id"), "{status:?}");
    let status = client
        .get_batch(GetBatchRequest {
            batch_id: "ab".repeat(32),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(status.code(), Code::NotFound);

    let bucket = |prefix, prefix_bits| GetConfirmBucketRequest {
        region: REGION.into(),
        prefix,
        prefix_bits,
    };
    let status = client
        .get_confirm_bucket(bucket(1, 12))
        .await
        .expect_err("other prefix width");
    assert!(names_field(&status, "prefix_bits"), "{status:?}");
    let status = client
        .get_confirm_bucket(bucket(1 << 16, 16))
        .await
        .expect_err("prefix too large");
    assert!(names_field(&status, "prefix"), "{status:?}");
    let status = client
        .get_confirm_bucket(GetConfirmBucketRequest {
            region: "VN_TB".into(),
            prefix: 0,
            prefix_bits: 16,
        })
        .await
        .expect_err("bad region");
    assert!(names_field(&status, "region"), "{status:?}");

    let empty = client
        .get_confirm_bucket(bucket(0xffff, 16))
        .await
        .expect("last bucket")
        .into_inner();
    assert!(empty.digests.is_empty());
    let unknown_region = client
        .list_batches(ListBatchesRequest {
            region: "VN-HN".into(),
            ..Default::default()
        })
        .await
        .expect("a region without batches lists nothing")
        .into_inner();
    assert!(
        unknown_region.batches.is_empty()
            && unknown_region.latest_sequence == 0
            && !unknown_region.more
    );
    server.stop().await;
}

#[tokio::test]
async fn listing_pages_by_cursor_and_limit() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    for index in 0..3u8 {
        let key = gaen(key16(index + 1), ((TODAY - 1) * 144) as u32, 144);
        server
            .upload(fixtures::upload(&format!("u{index}"), vec![key]))
            .await;
        server
            .wait_for_batches(|listing| listing.batches.len() == usize::from(index) + 1)
            .await;
        clock.advance(60);
    }
    let mut client = server.distribution_client().await;
    let page = |after_sequence, limit| ListBatchesRequest {
        region: REGION.into(),
        after_sequence,
        limit,
    };
    let first = client
        .list_batches(page(0, 2))
        .await
        .expect("page")
        .into_inner();
    assert_eq!(
        first.batches.iter().map(|b| b.sequence).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(first.more);
    assert_eq!(first.latest_sequence, 3);
    let second = client
        .list_batches(page(2, 2))
        .await
        .expect("page")
        .into_inner();
    assert_eq!(
        second
            .batches
            .iter()
            .map(|b| b.sequence)
            .collect::<Vec<_>>(),
        vec![3]
    );
    assert!(!second.more);
    let caught_up = client
        .list_batches(page(3, 0))
        .await
        .expect("page")
        .into_inner();
    assert!(caught_up.batches.is_empty() && !caught_up.more && caught_up.latest_sequence == 3);
    server.stop().await;
}
