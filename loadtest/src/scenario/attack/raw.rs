//! Raw HTTP/2 for the attacks a gRPC client will not make: a connection that announces a stream
//! window of 0 (`zero-window`), a request body that never ends (`stalled-upload`). Plaintext
//! only (`AttackPlan::validate` refuses an https target for these attacks); the TCP connect is
//! shared with `connection-flood`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use h2::SendStream;
use h2::client::{ResponseFuture, SendRequest};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{AttackPlan, Counters, RENEW_PAUSE, Stop};
use crate::target::Target;

/// How long opening one raw connection (TCP and the HTTP/2 handshake) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open raw HTTP/2 connection: the handle that sends requests, and the task that drives the
/// connection (answers the server's pings and settings), aborted when this is dropped.
pub(super) struct RawConnection {
    pub(super) sender: SendRequest<Bytes>,
    driver: JoinHandle<()>,
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl RawConnection {
    /// Returns true once the server closed the connection (or it failed).
    pub(super) fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }
}

/// Opens a plaintext HTTP/2 connection to `target`; `stream_window` is the initial window the
/// client announces for every stream (0: the server may send no data at all).
pub(super) async fn connect(
    target: &Target,
    stream_window: Option<u32>,
) -> anyhow::Result<RawConnection> {
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let tcp = tcp_connect(target).await?;
        tcp.set_nodelay(true)?;
        let mut builder = h2::client::Builder::new();
        if let Some(window) = stream_window {
            builder.initial_window_size(window);
        }
        let (sender, connection) = builder.handshake::<_, Bytes>(tcp).await?;
        anyhow::Ok((sender, connection))
    })
    .await
    .map_err(|_| anyhow::anyhow!("no HTTP/2 handshake within {CONNECT_TIMEOUT:?}"))??;
    let (sender, connection) = opened;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(RawConnection { sender, driver })
}

/// One attacking raw connection, announcing `stream_window`, with `plan.streams` stream slots
/// each kept busy by `slot(connection, index, counters, stop)`; reopened whenever the server
/// closes it, within the attempt budget; held as it is once the budget is spent.
pub(super) async fn attack_connection<Slot, Held>(
    plan: AttackPlan,
    counters: Arc<Counters>,
    mut stop: Stop,
    stream_window: Option<u32>,
    slot: Slot,
) where
    Slot: Fn(Arc<RawConnection>, usize, Arc<Counters>, Stop) -> Held,
    Held: Future<Output = ()>,
{
    while !stop.is_stopped() && counters.take_attempt() {
        let opened = tokio::select! {
            opened = connect(&plan.target, stream_window) => opened,
            () = stop.wait() => return,
        };
        let Ok(connection) = opened else {
            counters.connect_failed();
            if !stop.pause(RENEW_PAUSE).await {
                return;
            }
            continue;
        };
        let connection = Arc::new(connection);
        let _held = counters.connection_opened();
        let slots = (0..plan.streams).map(|index| {
            slot(
                Arc::clone(&connection),
                index,
                Arc::clone(&counters),
                stop.clone(),
            )
        });
        futures::future::join_all(slots).await;
        if stop.is_stopped() {
            return;
        }
        if !connection.is_closed() {
            // The budget is spent: hold the connection as it is until the attack stops.
            stop.wait().await;
            return;
        }
        counters.closed_by_server();
        if !stop.pause(RENEW_PAUSE).await {
            return;
        }
    }
    stop.wait().await;
}

/// Sends the headers of `request` on `connection` once a stream is free; `None` when the
/// attack stopped first or the connection is gone.
pub(super) async fn start_call(
    connection: &RawConnection,
    request: http::Request<()>,
    stop: &mut Stop,
) -> Option<(ResponseFuture, SendStream<Bytes>)> {
    let ready = tokio::select! {
        ready = connection.sender.clone().ready() => ready,
        () = stop.wait() => return None,
    };
    ready.ok()?.send_request(request, false).ok()
}

/// The source address of every attack connection to an IPv4 loopback target: a client network
/// of its own (the server counts an IPv4 address as one network), apart from the legitimate
/// mix's 127.0.0.1, as a real attacker's would be. Otherwise the server's per-network shares
/// would count the attack and the mix as one client.
pub(crate) const ATTACKER_SOURCE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

/// Returns the address attack connections leave from for `target`: [`ATTACKER_SOURCE`] when
/// the target is an IPv4 loopback address, the system's choice otherwise.
pub(crate) fn attacker_source(target: &Target) -> Option<std::net::IpAddr> {
    let host = target.host().trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) if v4.is_loopback() => Some(ATTACKER_SOURCE.into()),
        _ => None,
    }
}

/// Opens a TCP connection to the target's host and port, from [`attacker_source`].
pub(super) async fn tcp_connect(target: &Target) -> std::io::Result<TcpStream> {
    let port = target
        .uri()
        .port_u16()
        .unwrap_or(if target.is_tls() { 443 } else { 80 });
    let host = target.host().trim_start_matches('[').trim_end_matches(']');
    match (attacker_source(target), host.parse::<std::net::IpAddr>()) {
        (Some(source), Ok(address)) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            socket.connect((address, port).into()).await
        }
        _ => TcpStream::connect((host, port)).await,
    }
}

/// Returns the headers of a gRPC call of `path` (`/package.Service/Method`) to `target`, with
/// `extra` headers (a credential, the decoy mark).
pub(super) fn grpc_request(
    target: &Target,
    path: &str,
    extra: &[(&'static str, String)],
) -> anyhow::Result<http::Request<()>> {
    let authority = target
        .uri()
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .unwrap_or_default();
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{authority}{path}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers");
    for (name, value) in extra {
        builder = builder.header(*name, value);
    }
    Ok(builder.body(())?)
}

/// Returns the gRPC length-prefixed frame header announcing a `length`-byte message
/// (uncompressed).
pub(super) fn frame_header(length: u32) -> [u8; 5] {
    let [a, b, c, d] = length.to_be_bytes();
    [0, a, b, c, d]
}

/// Returns `message` as one gRPC frame.
pub(super) fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_slice(&frame_header(
        u32::try_from(message.len()).unwrap_or(u32::MAX),
    ));
    framed.put_slice(message);
    framed.freeze()
}

/// Returns the outcome an answer's headers carry: the gRPC code name of a trailers-only
/// answer, `HTTP <status>` for a non-200 answer, `answered` for a 200 whose status would come
/// in trailers.
pub(super) fn answer_outcome(response: &http::Response<h2::RecvStream>) -> String {
    if response.status() != http::StatusCode::OK {
        return format!("HTTP {}", response.status().as_u16());
    }
    match response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
    {
        Some(code) => exposure_proto::status::code_name(tonic::Code::from_i32(code)).to_owned(),
        None => "answered".to_owned(),
    }
}

/// Returns the outcome of a call the server reset or whose connection went away.
pub(super) fn error_outcome(error: &h2::Error) -> String {
    match error.reason() {
        Some(reason) if error.is_remote() => format!("reset {reason:?}"),
        _ if error.is_go_away() => "goaway".to_owned(),
        _ => "closed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_a_big_endian_length_after_the_uncompressed_flag() {
        assert_eq!(frame_header(60_000), [0, 0, 0, 0xea, 0x60]);
        assert_eq!(&frame(b"abc")[..], b"\x00\x00\x00\x00\x03abc");
    }

    #[test]
    fn requests_are_grpc_posts_to_the_method_path() {
        let target = Target::parse("http://127.0.0.1:50051", false).expect("target");
        let request = grpc_request(
            &target,
            "/exposure.v1.Distribution/GetBatch",
            &[("x-exposure-decoy", "1".to_owned())],
        )
        .expect("request");
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:50051/exposure.v1.Distribution/GetBatch"
        );
        assert_eq!(request.headers()["content-type"], "application/grpc");
        assert_eq!(request.headers()["te"], "trailers");
        assert_eq!(request.headers()["x-exposure-decoy"], "1");
    }
}
