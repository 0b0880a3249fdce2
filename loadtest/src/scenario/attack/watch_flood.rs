//! `watch-flood`: `streams` `grpc.health.v1.Health/Watch` streams on each of `attackers`
//! connections (issue 18: one connection with 64 of them held every health permit). Each stream
//! is read as a real watcher would (the server sends the current status, then changes); a stream
//! the server ends is reopened after a short pause, within the attempt budget. A plain gRPC
//! client, so TLS targets work too.

use std::sync::Arc;

use futures::future::join_all;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::{AttackPlan, Counters, RENEW_PAUSE, Stop, open_channel};
use exposure_proto::status::code_name;

/// Starts one task per attacking connection.
pub(super) fn spawn(
    plan: &AttackPlan,
    counters: &Arc<Counters>,
    stop: &Stop,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let endpoint = plan.endpoint()?;
    for _ in 0..plan.attackers {
        let endpoint = endpoint.clone();
        let streams = plan.streams;
        let counters = Arc::clone(counters);
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let Some((channel, _held)) = open_channel(&endpoint, &counters, &mut stop).await else {
                return;
            };
            let watchers =
                (0..streams).map(|_| watch(channel.clone(), Arc::clone(&counters), stop.clone()));
            join_all(watchers).await;
            stop.wait().await;
        });
    }
    Ok(())
}

/// Keeps one `Watch` stream open on `channel` until the attack stops or the budget is spent.
async fn watch(channel: Channel, counters: Arc<Counters>, mut stop: Stop) {
    let mut client = HealthClient::new(channel);
    while !stop.is_stopped() && counters.take_attempt() {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let _held = counters.call_started();
        let opened = tokio::select! {
            opened = client.watch(request) => opened,
            () = stop.wait() => return,
        };
        let outcome = match opened {
            Err(status) => code_name(status.code()).to_owned(),
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    tokio::select! {
                        message = stream.message() => match message {
                            Ok(Some(_)) => counters.message_received(),
                            Ok(None) => break "OK".to_owned(),
                            Err(status) => break code_name(status.code()).to_owned(),
                        },
                        () = stop.wait() => return,
                    }
                }
            }
        };
        counters.ended_by_server(&outcome);
        if !stop.pause(RENEW_PAUSE).await {
            return;
        }
    }
}
