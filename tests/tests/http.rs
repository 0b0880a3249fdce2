//! The HTTP mirror (DESIGN.md section 10) against the real server, through hyper's client: every
//! path answers the bytes gRPC serves, with the exact `Cache-Control`, strong ETags (304),
//! byte ranges (206, 416), HEAD, and 400/404/405 for what is wrong or absent.

use exposure_matcher::BatchFile;
use exposure_proto::v1::{
    BatchKind, GetConfirmBucketRequest, GetSigningKeysRequest, ListBatchesResponse, RegionIndex,
};
use exposure_server::Clock;
use exposure_tests::fixtures::{self, current_signing_key, download, gaen, key16};
use exposure_tests::http_client::{Answer, HttpClient};
use exposure_tests::reference::{self, filter_key};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use http::{Method, StatusCode};
use prost::Message as _;

const DAY: u64 = 86_400;
/// TEST_NOW's UTC day (2026-01-10), written out.
const TODAY: u32 = 20_463;

fn assert_protobuf(answer: &Answer, cache_control: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text_lossy());
    assert_eq!(answer.header("content-type"), "application/x-protobuf");
    assert_eq!(answer.header("cache-control"), cache_control);
    assert_eq!(
        answer.header("content-length"),
        answer.body.len().to_string()
    );
    let etag = answer.header("etag");
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "strong etag {etag}"
    );
}

trait Lossy {
    fn text_lossy(&self) -> String;
}

impl Lossy for Answer {
    fn text_lossy(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Starts a server at TEST_NOW with one published hourly batch.
async fn server_with_a_batch() -> (TestServer, Vec<exposure_proto::v1::DiagnosisKey>) {
    assert_eq!(TEST_NOW / DAY, u64::from(TODAY));
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let keys = vec![gaen(key16(7), (TODAY - 1) * 144, 144)];
    server.upload(fixtures::upload("case", keys.clone())).await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    (server, keys)
}

#[tokio::test]
async fn every_path_serves_the_bytes_grpc_serves() {
    let (server, keys) = server_with_a_batch().await;
    let http = HttpClient::new(&server.http_url);
    let mut grpc = server.distribution_client().await;
    let listing = server.wait_for_batches(|_| true).await;
    let info = &listing.batches[0];

    let answer = http.get("/v1/signing-keys").await;
    assert_protobuf(&answer, "public, max-age=300");
    let grpc_keys = grpc
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .expect("signing keys")
        .into_inner();
    assert_eq!(answer.body, grpc_keys.encode_to_vec());

    let answer = http.get("/v1/regions/VN-TB/index").await;
    assert_protobuf(&answer, "public, max-age=60");
    let index = RegionIndex::decode(answer.body.clone()).expect("index decodes");
    assert_eq!(
        index,
        RegionIndex {
            latest_sequence: 1,
            confirm_prefix_bits: 16,
            days: vec![TODAY],
        }
    );

    let answer = http.get(&format!("/v1/regions/VN-TB/days/{TODAY}")).await;
    assert_protobuf(&answer, "public, max-age=60");
    let day = ListBatchesResponse::decode(answer.body.clone()).expect("day decodes");
    assert_eq!(day.batches, listing.batches);
    assert_eq!(
        (day.latest_sequence, day.more, day.confirm_prefix_bits),
        (1, false, 16)
    );

    let answer = http.get(&format!("/v1/batches/{}", info.batch_id)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "application/octet-stream");
    assert_eq!(
        answer.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(answer.header("etag"), format!("\"{}\"", info.batch_id));
    assert_eq!(answer.header("accept-ranges"), "bytes");
    let file = download(&mut grpc, &info.batch_id).await;
    assert_eq!(answer.body, file, "same bytes as GetBatch");
    assert_eq!(answer.body.len() as u64, info.size_bytes);
    let (_, public_key) = current_signing_key(&mut grpc).await;
    let batch = BatchFile::parse(&answer.body).expect("batch parses");
    batch.verify(&public_key).expect("signature verifies");
    assert!(
        reference::tags(&keys[0])
            .iter()
            .all(|tag| batch.contains_key(filter_key(tag)))
    );

    let digest = reference::confirm_digest(&reference::tags(&keys[0])[0]);
    let prefix = reference::bucket(&digest, 16);
    let answer = http
        .get(&format!("/v1/regions/VN-TB/confirm/16/{prefix}"))
        .await;
    assert_protobuf(&answer, "public, max-age=300");
    let bucket = grpc
        .get_confirm_bucket(GetConfirmBucketRequest {
            region: REGION.into(),
            prefix,
            prefix_bits: 16,
        })
        .await
        .expect("bucket")
        .into_inner();
    assert!(bucket.digests.iter().any(|other| other[..] == digest));
    assert_eq!(answer.body, bucket.encode_to_vec());
    server.stop().await;
}

#[tokio::test]
async fn day_indexes_hold_what_list_batches_lists_and_closed_days_cache_for_a_day() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    let http = HttpClient::new(&server.http_url);
    server
        .upload(fixtures::upload(
            "a",
            vec![gaen(key16(1), (TODAY - 1) * 144, 144)],
        ))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    clock.advance(3600);
    server
        .upload(fixtures::upload(
            "b",
            vec![gaen(key16(2), (TODAY - 2) * 144, 144)],
        ))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;
    // The next day: the roll-up of TODAY is created on TODAY + 1.
    clock.set((u64::from(TODAY) + 1) * DAY + 60);
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 3)
        .await;

    let index =
        RegionIndex::decode(http.get("/v1/regions/VN-TB/index").await.body).expect("index decodes");
    assert_eq!(index.days, vec![TODAY, TODAY + 1]);
    assert_eq!(index.latest_sequence, 3);
    let closed = http.get(&format!("/v1/regions/VN-TB/days/{TODAY}")).await;
    assert_protobuf(&closed, "public, max-age=86400");
    let open = http
        .get(&format!("/v1/regions/VN-TB/days/{}", TODAY + 1))
        .await;
    assert_protobuf(&open, "public, max-age=60");
    let closed = ListBatchesResponse::decode(closed.body).expect("decodes");
    let open = ListBatchesResponse::decode(open.body).expect("decodes");
    let sequences = |day: &ListBatchesResponse| -> Vec<u64> {
        day.batches.iter().map(|info| info.sequence).collect()
    };
    assert_eq!(sequences(&closed), vec![1, 2]);
    assert_eq!(closed.latest_sequence, 2);
    assert_eq!(sequences(&open), vec![3]);
    assert_eq!(open.batches[0].kind, BatchKind::Daily as i32);
    assert_eq!(open.batches[0].day_number, TODAY);
    let mut joined = closed.batches.clone();
    joined.extend(open.batches.clone());
    assert_eq!(
        joined, listing.batches,
        "the day indexes partition ListBatches"
    );
    server.stop().await;
}

#[tokio::test]
async fn etags_answer_304_and_batches_answer_ranges() {
    let (server, _) = server_with_a_batch().await;
    let http = HttpClient::new(&server.http_url);
    let listing = server.wait_for_batches(|_| true).await;
    let id = listing.batches[0].batch_id.clone();
    let path = format!("/v1/batches/{id}");
    let whole = http.get(&path).await.body;
    let etag = format!("\"{id}\"");

    let unchanged = http
        .send(Method::GET, &path, &[("if-none-match", &etag)])
        .await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert!(unchanged.body.is_empty());
    assert_eq!(unchanged.header("etag"), etag);
    let other = http
        .send(
            Method::GET,
            &path,
            &[("if-none-match", "\"something-else\"")],
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);

    for index_path in ["/v1/regions/VN-TB/index", "/v1/signing-keys"] {
        let first = http.get(index_path).await;
        let tag = first.header("etag").to_owned();
        let again = http
            .send(Method::GET, index_path, &[("if-none-match", &tag)])
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{index_path}");
        assert_eq!(again.header("cache-control"), first.header("cache-control"));
    }

    let total = whole.len();
    let part = http
        .send(Method::GET, &path, &[("range", "bytes=0-99")])
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.header("content-range"), format!("bytes 0-99/{total}"));
    assert_eq!(part.body, whole.slice(0..100));
    let resumed = http
        .send(Method::GET, &path, &[("range", "bytes=100-")])
        .await;
    assert_eq!(resumed.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resumed.header("content-range"),
        format!("bytes 100-{}/{total}", total - 1)
    );
    let mut joined = part.body.to_vec();
    joined.extend_from_slice(&resumed.body);
    assert_eq!(joined, whole, "two ranges make the file");
    let tail = http
        .send(Method::GET, &path, &[("range", "bytes=-10")])
        .await;
    assert_eq!(tail.body, whole.slice(total - 10..));

    let beyond = format!("bytes={total}-");
    let unsatisfiable = http.send(Method::GET, &path, &[("range", &beyond)]).await;
    assert_eq!(unsatisfiable.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        unsatisfiable.header("content-range"),
        format!("bytes */{total}")
    );
    // A range on a stale If-Range gets the whole file.
    let stale = http
        .send(
            Method::GET,
            &path,
            &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
        )
        .await;
    assert_eq!((stale.status, stale.body.len()), (StatusCode::OK, total));
    server.stop().await;
}

#[tokio::test]
async fn head_sends_the_headers_of_get_and_no_body() {
    let (server, _) = server_with_a_batch().await;
    let http = HttpClient::new(&server.http_url);
    let listing = server.wait_for_batches(|_| true).await;
    for path in [
        "/v1/signing-keys".to_owned(),
        "/v1/regions/VN-TB/index".to_owned(),
        format!("/v1/regions/VN-TB/days/{TODAY}"),
        format!("/v1/batches/{}", listing.batches[0].batch_id),
        "/v1/regions/VN-TB/confirm/16/0".to_owned(),
    ] {
        let get = http.get(&path).await;
        let head = http.send(Method::HEAD, &path, &[]).await;
        assert_eq!(head.status, StatusCode::OK, "{path}");
        assert!(head.body.is_empty(), "{path}");
        for name in ["content-type", "content-length", "etag", "cache-control"] {
            assert_eq!(head.header(name), get.header(name), "{path} {name}");
        }
        assert_eq!(head.header("content-length"), get.body.len().to_string());
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_paths_are_400_absent_objects_404_and_other_methods_405() {
    let (server, _) = server_with_a_batch().await;
    let http = HttpClient::new(&server.http_url);
    for (path, field) in [
        ("/v1/regions/vn-tb/index", "region: "),
        ("/v1/regions/VIETNAM/days/20463", "region: "),
        ("/v1/regions/VN-TB/days/yesterday", "day: "),
        ("/v1/regions/VN-TB/days/-1", "day: "),
        ("/v1/regions/VN-TB/confirm/8/0", "prefix_bits: must be 16"),
        (
            "/v1/regions/VN-TB/confirm/16/65536",
            "prefix: must be below 2^16",
        ),
        ("/v1/regions/VN-TB/confirm/16/0x10", "prefix: "),
        ("/v1/batches/ABCDEF", "batch_id: "),
    ] {
        let answer = http.get(path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        let text = answer.text();
        assert!(text.starts_with(field), "{path}: {text:?}");
        assert_eq!(text.lines().count(), 1, "{path}: one line");
        assert_eq!(answer.header("cache-control"), "no-store");
    }
    let unknown_batch = format!("/v1/batches/{}", "0".repeat(64));
    for path in [
        "/",
        "/v1/regions/VN-TB",
        "/v1/regions/VN-TB/gossip",
        "/v2/signing-keys",
        "/v1/regions/VN-HN/index",
        "/v1/regions/VN-TB/days/20000",
        unknown_batch.as_str(),
    ] {
        let answer = http.get(path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.text().lines().count(), 1, "{path}");
    }
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let answer = http.send(method.clone(), "/v1/signing-keys", &[]).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.header("allow"), "GET, HEAD");
    }
    server.stop().await;
}
