//! `zero-window`: readers that ask for a batch and never read it. Each of `attackers` raw HTTP/2
//! connections announces an initial stream window of 0 and keeps `streams` `GetBatch` calls
//! open: the server answers with headers but may send no byte of the batch, so each call holds
//! whatever the server gave it (a phone-class permit, a read of the batch) for as long as the
//! server lets it live. A call the server ends is renewed after a short pause; a connection the
//! server closes is reopened; both within the attempt budget.

use std::sync::Arc;

use bytes::Bytes;
use exposure_proto::v1::GetBatchRequest;
use prost::Message as _;
use tokio::task::JoinSet;

use super::raw::{self, RawConnection};
use super::{AttackPlan, Counters, RENEW_PAUSE, Stop};

const GET_BATCH: &str = "/exposure.v1.Distribution/GetBatch";

/// Starts one task per attacking connection.
pub(super) fn spawn(
    plan: &AttackPlan,
    counters: &Arc<Counters>,
    stop: &Stop,
    tasks: &mut JoinSet<()>,
) {
    let body = raw::frame(
        &GetBatchRequest {
            batch_id: plan.batch_id.clone().unwrap_or_default(),
        }
        .encode_to_vec(),
    );
    for _ in 0..plan.attackers {
        let (slot_plan, body) = (plan.clone(), body.clone());
        tasks.spawn(raw::attack_connection(
            plan.clone(),
            Arc::clone(counters),
            stop.clone(),
            Some(0),
            move |connection, _slot, counters, stop| {
                hold_calls(slot_plan.clone(), connection, counters, stop, body.clone())
            },
        ));
    }
}

/// Keeps one stream slot of `connection` busy with unread `GetBatch` calls until the attack
/// stops, the budget is spent, or the connection is gone.
async fn hold_calls(
    plan: AttackPlan,
    connection: Arc<RawConnection>,
    counters: Arc<Counters>,
    mut stop: Stop,
    body: Bytes,
) {
    while !stop.is_stopped() && !connection.is_closed() && counters.take_attempt() {
        let Ok(request) = raw::grpc_request(&plan.target, GET_BATCH, &[]) else {
            return;
        };
        let Some((response, mut send)) = raw::start_call(&connection, request, &mut stop).await
        else {
            return;
        };
        if send.send_data(body.clone(), true).is_err() {
            return;
        }
        let _held = counters.call_started();
        let response = tokio::select! {
            response = response => response,
            () = stop.wait() => return,
        };
        let outcome = match response {
            Err(error) => raw::error_outcome(&error),
            Ok(response) => {
                let answered = raw::answer_outcome(&response);
                let mut unread = response.into_body();
                // The window is 0 and capacity is never released: nothing but the end of the
                // call (a reset, trailers) can arrive.
                loop {
                    tokio::select! {
                        chunk = unread.data() => match chunk {
                            Some(Ok(_)) => continue,
                            Some(Err(error)) => break raw::error_outcome(&error),
                            None => break answered,
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
