//! `stalled-upload`: upload calls whose body never finishes. Each of `attackers` raw HTTP/2
//! connections keeps `streams` `UploadDiagnosisKeys` calls open; each call's body announces a
//! 60,000-byte message (under the default 64 KiB limit, so the server waits for it), sends 16
//! bytes of it, then one more byte every `--trickle`, so a pure idle timeout never fires. A
//! third of the calls carry no credential, a third a wrong bearer token, a third the decoy mark:
//! the server should refuse the first two from their headers alone and not let decoys hold the
//! permits of real uploads. A call the server answers or resets is renewed after a short pause.

use std::sync::Arc;

use bytes::Bytes;
use rand::RngCore as _;
use tokio::task::JoinSet;

use super::raw::{self, RawConnection};
use super::{AttackPlan, Counters, RENEW_PAUSE, Stop};

const UPLOAD: &str = "/exposure.v1.KeyUpload/UploadDiagnosisKeys";

/// The message length each stalled body announces: under the server's default 64 KiB message
/// limit, so the announcement alone is not refused.
const ANNOUNCED_BYTES: u32 = 60_000;

/// Bytes of the announced message sent at once, before the trickle.
const FIRST_BYTES: usize = 16;

/// Starts one task per attacking connection.
pub(super) fn spawn(
    plan: &AttackPlan,
    counters: &Arc<Counters>,
    stop: &Stop,
    tasks: &mut JoinSet<()>,
) {
    for _ in 0..plan.attackers {
        let slot_plan = plan.clone();
        tasks.spawn(raw::attack_connection(
            plan.clone(),
            Arc::clone(counters),
            stop.clone(),
            None,
            move |connection, slot, counters, stop| {
                hold_calls(slot_plan.clone(), connection, slot, counters, stop)
            },
        ));
    }
}

/// Returns the headers of slot `slot`'s calls: none, a wrong bearer token, or the decoy mark.
fn credential(slot: usize) -> Vec<(&'static str, String)> {
    match slot % 3 {
        0 => Vec::new(),
        1 => {
            let mut wrong = [0_u8; 24];
            rand::thread_rng().fill_bytes(&mut wrong);
            vec![("authorization", format!("Bearer {}", hex::encode(wrong)))]
        }
        _ => vec![("x-exposure-decoy", "1".to_owned())],
    }
}

/// Keeps one stream slot of `connection` busy with a stalled upload until the attack stops,
/// the budget is spent, or the connection is gone.
async fn hold_calls(
    plan: AttackPlan,
    connection: Arc<RawConnection>,
    slot: usize,
    counters: Arc<Counters>,
    mut stop: Stop,
) {
    while !stop.is_stopped() && !connection.is_closed() && counters.take_attempt() {
        let Ok(request) = raw::grpc_request(&plan.target, UPLOAD, &credential(slot)) else {
            return;
        };
        let Some((response, mut send)) = raw::start_call(&connection, request, &mut stop).await
        else {
            return;
        };
        let mut first = raw::frame_header(ANNOUNCED_BYTES).to_vec();
        first.resize(first.len() + FIRST_BYTES, 0x0a);
        if send.send_data(Bytes::from(first), false).is_err() {
            return;
        }
        let _held = counters.call_started();
        let mut sent = FIRST_BYTES as u32;
        tokio::pin!(response);
        let outcome = loop {
            tokio::select! {
                answered = &mut response => break match answered {
                    Ok(response) => raw::answer_outcome(&response),
                    Err(error) => raw::error_outcome(&error),
                },
                () = tokio::time::sleep(plan.trickle) => {
                    // One more byte, never the last one: the body stays unfinished.
                    if sent + 1 < ANNOUNCED_BYTES {
                        if send.send_data(Bytes::from_static(b"\n"), false).is_err() {
                            break "closed".to_owned();
                        }
                        sent += 1;
                    }
                },
                () = stop.wait() => return,
            }
        };
        counters.ended_by_server(&outcome);
        if !stop.pause(RENEW_PAUSE).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_rotate_through_three_credentials() {
        assert!(credential(0).is_empty());
        let wrong = credential(1);
        assert_eq!(wrong[0].0, "authorization");
        assert!(wrong[0].1.starts_with("Bearer "));
        assert_ne!(credential(4), wrong, "every wrong token is fresh");
        assert_eq!(credential(2), vec![("x-exposure-decoy", "1".to_owned())]);
    }
}
