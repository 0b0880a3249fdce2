//! Over days and restarts: daily roll-ups supersede the day's hourly batches, retention
//! deletes old data, a restarted server keeps everything and continues its sequences, and the
//! standard health and reflection services answer.

use exposure_matcher::BatchFile;
use exposure_proto::v1::BatchKind;
use exposure_server::Clock;
use exposure_tests::fixtures::{self, confirmed, current_signing_key, download, gaen, key16};
use exposure_tests::reference::{self, filter_key};
use exposure_tests::{TEST_NOW, TestServer};

const DAY: u64 = 86_400;
const TODAY: u64 = TEST_NOW / DAY;

#[tokio::test]
async fn the_daily_roll_up_supersedes_the_days_hourly_batches() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |config| config.fingerprint_bits = 32).await;
    let first = gaen(key16(1), ((TODAY - 1) * 144) as u32, 144);
    let second = gaen(key16(2), ((TODAY - 2) * 144) as u32, 144);
    server
        .upload(fixtures::upload("a", vec![first.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    clock.advance(3600);
    server
        .upload(fixtures::upload("b", vec![second.clone()]))
        .await;
    server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;

    clock.set((TODAY + 1) * DAY + 60);
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 3)
        .await;
    let daily = &listing.batches[2];
    assert_eq!(daily.kind, BatchKind::Daily as i32);
    assert_eq!(daily.sequence, 3);
    assert_eq!(daily.supersedes, vec![1, 2]);
    assert_eq!(daily.day_number as u64, TODAY);
    let mut distribution = server.distribution_client().await;
    let file = download(&mut distribution, &daily.batch_id).await;
    let batch = BatchFile::parse(&file).expect("parses");
    batch
        .verify(&current_signing_key(&mut distribution).await.1)
        .expect("signed");
    assert!(
        reference::tags(&first)
            .iter()
            .chain(reference::tags(&second).iter())
            .all(|tag| batch.contains_key(filter_key(tag))),
        "every element of the day"
    );

    // No second roll-up of the same day, however often the publisher runs: two more keys
    // published one after the other mean at least one whole publisher run after the roll-up.
    for (byte, hourly) in [(3, 3), (4, 4)] {
        let key = gaen(key16(byte), (TODAY * 144) as u32, 144);
        server
            .upload(fixtures::upload(&format!("later-{byte}"), vec![key]))
            .await;
        server
            .wait_for_batches(|listing| {
                listing
                    .batches
                    .iter()
                    .filter(|batch| batch.kind == BatchKind::Hourly as i32)
                    .count()
                    == hourly
            })
            .await;
    }
    let listing = server.wait_for_batches(|_| true).await;
    let kinds: Vec<i32> = listing.batches.iter().map(|batch| batch.kind).collect();
    let (hourly, daily) = (BatchKind::Hourly as i32, BatchKind::Daily as i32);
    assert_eq!(
        kinds,
        [hourly, hourly, daily, hourly, hourly],
        "one roll-up of the day: {listing:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn retention_deletes_keys_batches_and_digests() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    // Valid 13 days ago: inside the 15-day upload window, near the end of the 14-day retention.
    let old = gaen(key16(1), ((TODAY - 13) * 144) as u32, 144);
    server
        .upload(fixtures::upload("old", vec![old.clone()]))
        .await;
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    let mut distribution = server.distribution_client().await;
    assert!(confirmed(&mut distribution, &reference::tags(&old)[0], 16).await);

    clock.advance(2 * DAY);
    let after = server
        .wait_for_batches(|listing| listing.batches.is_empty())
        .await;
    assert!(
        after.latest_sequence >= listing.latest_sequence,
        "the cursor never goes back"
    );
    assert!(
        !confirmed(&mut distribution, &reference::tags(&old)[0], 16).await,
        "digests are deleted"
    );
    let missing = distribution
        .get_batch(exposure_proto::v1::GetBatchRequest {
            batch_id: listing.batches[0].batch_id.clone(),
        })
        .await;
    let status = match missing {
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .expect_err("no chunk of a deleted batch"),
        Err(status) => status,
    };
    assert_eq!(status.code(), tonic::Code::NotFound);
    let dir = server.stop().await;
    let store = exposure_server::storage::Store::open(dir.path()).expect("reopen");
    assert_eq!(store.count_keys().expect("count"), 0, "keys are deleted");
}

#[tokio::test]
async fn a_restarted_server_keeps_its_state_and_continues_its_sequences() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    let config = server.config.clone();
    let token = server.token.clone();
    let first = gaen(key16(1), ((TODAY - 1) * 144) as u32, 144);
    server
        .upload(fixtures::upload("a", vec![first.clone()]))
        .await;
    let before = server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await;
    let (key_id, _) = current_signing_key(&mut server.distribution_client().await).await;
    let dir = server.stop().await;

    let server = TestServer::restart(&dir, token, clock.clone(), config).await;
    let listing = server.wait_for_batches(|_| true).await;
    assert_eq!(
        listing.batches, before.batches,
        "batches survive the restart"
    );
    let mut distribution = server.distribution_client().await;
    assert_eq!(
        current_signing_key(&mut distribution).await.0,
        key_id,
        "same signing key"
    );
    assert!(
        confirmed(&mut distribution, &reference::tags(&first)[0], 16).await,
        "digests survive"
    );

    let replay = server
        .upload(fixtures::upload("a", vec![first.clone()]))
        .await;
    assert!(replay.replay, "idempotency records survive");
    let second = gaen(key16(2), ((TODAY - 1) * 144) as u32, 144);
    let answer = server
        .upload(fixtures::upload("b", vec![first.clone(), second]))
        .await;
    assert_eq!(
        (answer.keys_accepted, answer.keys_already_known),
        (1, 1),
        "stored keys survive"
    );
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;
    assert_eq!(
        listing
            .batches
            .iter()
            .map(|b| b.sequence)
            .collect::<Vec<_>>(),
        vec![1, 2],
        "no gap, no repeat"
    );
    server.stop_kept().await;
}

#[tokio::test]
async fn health_serves_and_reflection_lists_the_services() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let channel = channel_for(&server).await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "exposure.v1.KeyUpload", "exposure.v1.Distribution"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::Serving as i32,
            "health of {service:?}"
        );
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list")
    };
    let names: Vec<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in [
        "exposure.v1.KeyUpload",
        "exposure.v1.Distribution",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} listed in {names:?}"
        );
    }

    // The older v1alpha protocol (what grpcurl and Python's grpcio-reflection speak) serves the
    // API's file descriptor by symbol, which is all a dynamic client needs.
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "exposure.v1.KeyUpload".into(),
            )),
        };
        let mut responses = reflection
            .server_reflection_info(futures::stream::iter(vec![request]))
            .await
            .expect("v1alpha reflection")
            .into_inner();
        let response = responses
            .message()
            .await
            .expect("answer")
            .expect("one answer");
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("not a file descriptor answer");
        };
        let descriptor = files.file_descriptor_proto.first().expect("a file");
        let file =
            <prost_types::FileDescriptorProto as prost::Message>::decode(descriptor.as_slice())
                .expect("decodes");
        assert_eq!(file.package(), "exposure.v1");
        let services: Vec<&str> = file.service.iter().map(|service| service.name()).collect();
        assert!(
            services.contains(&"KeyUpload") && services.contains(&"Distribution"),
            "{services:?}"
        );
    }
    server.stop().await;
}

async fn channel_for(server: &TestServer) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(server.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_rotated_signing_key_signs_new_batches_and_the_old_one_stays_listed() {
    let clock = Clock::manual(TEST_NOW);
    let server = TestServer::start_with(clock.clone(), |_| {}).await;
    let (config, token) = (server.config.clone(), server.token.clone());
    server
        .upload(fixtures::upload(
            "a",
            vec![gaen(key16(1), ((TODAY - 1) * 144) as u32, 144)],
        ))
        .await;
    let first = server
        .wait_for_batches(|listing| listing.batches.len() == 1)
        .await
        .batches[0]
        .clone();
    let (old_id, old_key) = current_signing_key(&mut server.distribution_client().await).await;
    let dir = server.stop().await;

    let store = exposure_server::storage::Store::open(dir.path()).expect("open");
    let rotated = exposure_server::signing::add_new_key(&store, dir.path(), "v2", TEST_NOW)
        .expect("rotate")
        .signer;
    drop(store);

    let server = TestServer::restart(&dir, token, clock, config).await;
    let mut distribution = server.distribution_client().await;
    let keys = distribution
        .get_signing_keys(exposure_proto::v1::GetSigningKeysRequest {})
        .await
        .expect("keys")
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 2, "both keys are listed");
    assert!(
        keys[0].current && keys[0].key_id == rotated.key_id(),
        "the new key comes first and is current"
    );
    assert!(keys.iter().any(|key| key.key_id == old_id && !key.current));

    server
        .upload(fixtures::upload(
            "b",
            vec![gaen(key16(2), ((TODAY - 1) * 144) as u32, 144)],
        ))
        .await;
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 2)
        .await;
    let second = &listing.batches[1];
    assert_eq!(second.key_id, rotated.key_id());
    let new_file = download(&mut distribution, &second.batch_id).await;
    BatchFile::parse(&new_file)
        .expect("parses")
        .verify(&keys[0].public_key_der)
        .expect("new batch verifies with the new key");
    let old_file = download(&mut distribution, &first.batch_id).await;
    let old_batch = BatchFile::parse(&old_file).expect("parses");
    old_batch
        .verify(&old_key)
        .expect("old batch still verifies with the old key");
    assert!(
        old_batch.verify(&keys[0].public_key_der).is_err(),
        "and not with the new one"
    );
    server.stop_kept().await;
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.max_concurrent_uploads = 1
    })
    .await;
    let client = server.upload_client().await;
    let uploads = (0..64u8).map(|index| {
        let mut client = client.clone();
        let request = server.authorized(fixtures::upload(
            &format!("u{index}"),
            vec![gaen(key16(index), ((TODAY - 1) * 144) as u32, 144)],
        ));
        tokio::spawn(async move { client.upload_diagnosis_keys(request).await })
    });
    let mut stored = 0;
    let mut shed = 0;
    for upload in futures::future::join_all(uploads).await {
        match upload.expect("task") {
            Ok(_) => stored += 1,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => shed += 1,
            Err(status) => panic!("unexpected status {status:?}"),
        }
    }
    assert!(stored >= 1, "the first request is served");
    assert!(
        shed >= 1,
        "concurrent requests past the limit are shed ({stored} stored)"
    );
    let dir = server.stop().await;
    let store = exposure_server::storage::Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.count_keys().expect("count"),
        stored,
        "exactly the acknowledged uploads are stored"
    );
}

#[tokio::test]
async fn a_backlog_larger_than_one_batch_is_published_as_several() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.max_keys_per_batch = 2;
        config.fingerprint_bits = 32;
    })
    .await;
    let keys: Vec<_> = (1..=5)
        .map(|byte| gaen(key16(byte), ((TODAY - 1) * 144) as u32, 144))
        .collect();
    server
        .upload(fixtures::upload("backlog", keys.clone()))
        .await;
    let listing = server
        .wait_for_batches(|listing| listing.batches.len() == 3)
        .await;
    let mut distribution = server.distribution_client().await;
    let mut files = Vec::new();
    for info in &listing.batches {
        files.push(download(&mut distribution, &info.batch_id).await);
    }
    let batches: Vec<BatchFile> = files
        .iter()
        .map(|file| BatchFile::parse(file).expect("parses"))
        .collect();
    for key in &keys {
        let tags = reference::tags(key);
        let holding = batches
            .iter()
            .filter(|batch| tags.iter().all(|tag| batch.contains_key(filter_key(tag))))
            .count();
        assert_eq!(holding, 1, "each key is in exactly one of the batches");
    }
    server.stop().await;
}
