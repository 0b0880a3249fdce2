//! The PROXY protocol v2 header a layer-4 proxy sends first on each connection to the server,
//! and gRPC channels whose connections start with one: how the load test and the integration
//! tests pose as a trusted proxy (`exposure-server --trusted-proxies`) passing on clients from
//! many networks. Written from the specification (HAProxy's `proxy-protocol.txt`, section 2.2),
//! independently of the server's reader.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Channel, Endpoint};

/// The 12 bytes every version 2 header starts with: `\r\n\r\n\0\r\nQUIT\n`.
pub const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Returns a PROXY header for a TCP connection from `client` to `server`: version 2, command
/// PROXY, family INET (both IPv4) or INET6 (IPv4 addresses written IPv4-mapped), no TLVs.
pub fn proxy(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut header = SIGNATURE.to_vec();
    header.push(0x21);
    match (client.ip(), server.ip()) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            header.extend_from_slice(&[0x11, 0, 12]);
            header.extend_from_slice(&from.octets());
            header.extend_from_slice(&to.octets());
        }
        (from, to) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            header.extend_from_slice(&[0x21, 0, 36]);
            header.extend_from_slice(&v6(from).octets());
            header.extend_from_slice(&v6(to).octets());
        }
    }
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&server.port().to_be_bytes());
    header
}

/// Returns a LOCAL header: the proxy's own connection (a health check), no client named.
pub fn local() -> Vec<u8> {
    let mut header = SIGNATURE.to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0, 0]);
    header
}

/// Opens TCP connections that send `header` first, from `local_ip` when given.
#[derive(Clone, Debug)]
pub struct HeaderConnector {
    header: Vec<u8>,
    local_ip: Option<IpAddr>,
}

impl HeaderConnector {
    /// Returns a connector that sends `header` first on each connection.
    pub fn new(header: Vec<u8>, local_ip: Option<IpAddr>) -> Self {
        Self { header, local_ip }
    }

    async fn connect(self, uri: Uri) -> io::Result<TokioIo<TcpStream>> {
        let host = uri
            .host()
            .ok_or_else(|| io::Error::other("the target has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let address = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((host, port))
                .await?
                .next()
                .ok_or_else(|| io::Error::other("the target's host has no address"))?,
        };
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(local_ip) = self.local_ip {
            socket.bind(SocketAddr::new(local_ip, 0))?;
        }
        let mut stream = socket.connect(address).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&self.header).await?;
        Ok(TokioIo::new(stream))
    }
}

impl tonic::codegen::Service<Uri> for HeaderConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// Opens a channel to `endpoint` whose connections (reconnections too) start with `header`.
pub async fn channel(
    endpoint: &Endpoint,
    header: Vec<u8>,
    local_ip: Option<IpAddr>,
) -> Result<Channel, tonic::transport::Error> {
    endpoint
        .connect_with_connector(HeaderConnector::new(header, local_ip))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_specifications_layout() {
        let ipv4 = proxy(
            "203.0.113.7:50000".parse().expect("addr"),
            "10.0.0.5:443".parse().expect("addr"),
        );
        assert_eq!(
            hex::encode(&ipv4),
            "0d0a0d0a000d0a515549540a\
             2111000c\
             cb007107\
             0a000005\
             c350\
             01bb"
        );
        let ipv6 = proxy(
            "[2001:db8:1:2::9]:12345".parse().expect("addr"),
            "[::1]:443".parse().expect("addr"),
        );
        assert_eq!(
            hex::encode(&ipv6),
            "0d0a0d0a000d0a515549540a\
             21210024\
             20010db8000100020000000000000009\
             00000000000000000000000000000001\
             3039\
             01bb"
        );
        assert_eq!(hex::encode(local()), "0d0a0d0a000d0a515549540a20000000");
    }
}
