//! Connection accounting shared by every listener (gRPC, HTTP mirror, metrics): a cap on the
//! listener's open connections and a smaller cap per client network (an IPv4 address, an IPv6
//! /64), so neither a flood of idle connections nor one client can use up the process's file
//! descriptors, which RocksDB needs to open its files.
//!
//! At a listener's cap the accept loop stops accepting: new connections wait in the kernel's
//! listen backlog (bounded) until a slot frees, rather than being dropped. A connection from a
//! network at its cap is held unread for `--refusal-delay` in its slot and then closed
//! ([`RefusalDelay`]: at most a quarter of the listener's slots, and at least the per-network
//! cap, held at once; later ones closed at once), so a client that reconnects as soon as it is
//! closed cannot keep the accept loop busy. Each accepted connection holds a [`ConnectionSlot`] until it closes. Client addresses are only counted here, never logged or kept past their
//! connections.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::proxy_protocol::{IpCidr, TrustedProxies};
use super::refusal::RefusalDelay;
use crate::config::ServerConfig;
use crate::metrics;

/// Descriptors always left to everything but connections (RocksDB keeps every table and blob
/// file open, plus its log, the signing keys, the object-store clients): at least this many,
/// and at least a quarter of the limit.
pub const RESERVED_DESCRIPTORS: u64 = 1024;
/// The fewest connections a derived default gives a listener, whatever the limit.
const MIN_DERIVED_CONNECTIONS: u64 = 64;
/// Derived gRPC caps stop here: each idle TLS connection also costs tens of kilobytes.
const MAX_DERIVED_GRPC_CONNECTIONS: u64 = 32_768;
/// Derived HTTP mirror caps stop here.
const MAX_DERIVED_HTTP_CONNECTIONS: u64 = 16_384;
/// A derived per-network cap is a 32nd of the gRPC cap, within these bounds.
const DERIVED_PER_NETWORK: (u64, u64) = (64, 512);
/// Bytes a gRPC client sends first: the HTTP/2 connection preface (RFC 9113 section 3.4).
pub const HTTP2_PREFACE_BYTES: usize = 24;
/// Most TLS handshakes one listener runs at once; later ones wait for a turn (within their
/// handshake timeout), so silent or slow clients cannot make the server refuse handshakes.
pub const MAX_HANDSHAKES: usize = 1024;

/// Default connection caps, derived from the process's descriptor limit (`RLIMIT_NOFILE`, which
/// the binary first raises to its hard limit): the limit less a reserve of
/// max(1,024, limit / 4) is the budget; the gRPC listener gets half of it (at most 32,768), the
/// HTTP mirror a quarter (at most 16,384), each at least 64; the rest stays free for the
/// metrics listener and outgoing connections. A client network may hold a 32nd of the gRPC
/// cap, between 64 and 512 (a carrier NAT puts many phones behind one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DerivedCaps {
    /// Default of `--max-grpc-connections`.
    pub grpc: usize,
    /// Default of `--max-http-connections`.
    pub http: usize,
    /// Default of `--max-connections-per-network`.
    pub per_network: usize,
}

impl DerivedCaps {
    /// Returns the caps for a descriptor limit (`None`: unlimited).
    pub fn for_limit(limit: Option<u64>) -> Self {
        let limit = limit.unwrap_or(u64::MAX);
        let reserve = RESERVED_DESCRIPTORS.max(limit / 4);
        let budget = limit.saturating_sub(reserve);
        let grpc = (budget / 2).clamp(MIN_DERIVED_CONNECTIONS, MAX_DERIVED_GRPC_CONNECTIONS);
        let http = (budget / 4).clamp(MIN_DERIVED_CONNECTIONS, MAX_DERIVED_HTTP_CONNECTIONS);
        let per_network = (grpc / 32).clamp(DERIVED_PER_NETWORK.0, DERIVED_PER_NETWORK.1);
        let size = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        Self {
            grpc: size(grpc),
            http: size(http),
            per_network: size(per_network),
        }
    }

    /// Returns the caps for this process's current descriptor limit.
    pub fn of_process() -> Self {
        Self::for_limit(crate::sys::open_file_limit())
    }
}

/// The `listener` labels of the connection metrics: the gRPC listener, the HTTP mirror, the
/// metrics listener and the staff console.
pub const LISTENERS: [&str; 4] = ["grpc", "http", "metrics", "console"];

/// The connection limits of one listener.
#[derive(Clone, Debug)]
pub struct ListenerLimits {
    /// The listener's `listener` label in metrics, one of [`LISTENERS`].
    pub name: &'static str,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client network.
    pub max_per_network: usize,
    /// Longest from accept until the TLS handshake is done and `first_bytes` have arrived.
    pub handshake_timeout: Duration,
    /// Bytes the client must send within the handshake timeout: the HTTP/2 preface for gRPC,
    /// the first byte of a request for HTTP/1.1 (hyper's header timeout covers the rest).
    pub first_bytes: usize,
    /// A write that makes no progress for this long closes the connection.
    pub send_stall_timeout: Duration,
    /// How long a connection refused for its network's cap is held before it is closed.
    pub refusal_delay: Duration,
    /// A connection still open this long after it was accepted is closed, whatever streams it
    /// still carries (gRPC: `--max-connection-age`, when tonic sends GOAWAY and lets the
    /// streams finish, plus the grace); `None`: the server ends connections itself.
    pub max_age: Option<Duration>,
    /// Peers that must start each connection with a PROXY protocol v2 header naming the
    /// client, whose address then counts (`--trusted-proxies`; empty on the metrics listener).
    pub trusted_proxies: TrustedProxies,
}

impl ListenerLimits {
    /// Returns the limits of the gRPC listener.
    pub fn grpc(config: &ServerConfig) -> Self {
        Self {
            max_age: Some(
                config
                    .max_connection_age
                    .saturating_add(config.shutdown_grace),
            ),
            ..Self::from_config(LISTENERS[0], config.max_grpc_connections, config)
                .first_bytes(HTTP2_PREFACE_BYTES)
                .behind(&config.trusted_proxies)
        }
    }

    /// Returns the limits of the HTTP mirror.
    pub fn http(config: &ServerConfig) -> Self {
        Self::from_config(LISTENERS[1], config.max_http_connections, config)
            .behind(&config.trusted_proxies)
    }

    /// Returns the limits of the staff console (behind the same proxies as the HTTP mirror).
    pub fn console(config: &ServerConfig) -> Self {
        Self::from_config(LISTENERS[3], config.max_console_connections, config)
            .behind(&config.trusted_proxies)
    }

    /// Returns the limits of the metrics listener (scraped directly, never through a proxy).
    pub fn metrics(config: &ServerConfig) -> Self {
        Self::from_config(LISTENERS[2], config.max_metrics_connections, config)
    }

    fn from_config(name: &'static str, max_connections: usize, config: &ServerConfig) -> Self {
        Self {
            name,
            max_connections,
            max_per_network: config.max_connections_per_network.min(max_connections),
            handshake_timeout: config.handshake_timeout,
            first_bytes: 1,
            send_stall_timeout: config.send_stall_timeout,
            refusal_delay: config.refusal_delay,
            max_age: None,
            trusted_proxies: TrustedProxies::default(),
        }
    }

    fn first_bytes(self, first_bytes: usize) -> Self {
        Self {
            first_bytes,
            ..self
        }
    }

    fn behind(self, proxies: &[IpCidr]) -> Self {
        Self {
            trusted_proxies: TrustedProxies::new(proxies),
            ..self
        }
    }
}

/// A client network, the unit of the per-network cap: an IPv4 address (an IPv4-mapped IPv6
/// address counts as its IPv4 address), or the /64 prefix of an IPv6 address, as one
/// subscriber usually holds a whole /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientNetwork {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl ClientNetwork {
    /// Returns the network of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientNetwork::V4(v4),
            IpAddr::V6(v6) => ClientNetwork::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

/// Returns how many refused connections a listener holds at most: a quarter of its slots, at
/// least its per-network cap. Each keeps its slot, so the descriptors stay within the cap.
fn held_refusals(limits: &ListenerLimits) -> usize {
    (limits.max_connections / 4).max(limits.max_per_network)
}

/// Counts the open connections of one listener, in all and per client network.
#[derive(Debug)]
pub struct ConnectionLimiter {
    limits: ListenerLimits,
    slots: Arc<Semaphore>,
    /// Open connections per network; a network leaves the map with its last connection, so
    /// the map never holds more entries than there are connections.
    networks: Mutex<HashMap<ClientNetwork, usize>>,
    /// Holds refused connections.
    refusals: RefusalDelay,
}

impl ConnectionLimiter {
    /// Returns a limiter for `limits`.
    pub fn new(limits: ListenerLimits) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            refusals: RefusalDelay::new(limits.refusal_delay, held_refusals(&limits)),
            limits,
            networks: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the limits.
    pub fn limits(&self) -> &ListenerLimits {
        &self.limits
    }

    /// Waits until the listener is below its cap; the accept loop calls it before accepting,
    /// so connections beyond the cap wait in the kernel's backlog.
    pub async fn free_slot(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return permit;
        }
        ::metrics::counter!(metrics::CONNECTION_CAP_WAITS_TOTAL, "listener" => self.limits.name)
            .increment(1);
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the slot semaphore is never closed"),
        }
    }

    /// Admits a connection from `ip` into the slot `permit` reserved; gives the slot back
    /// (and counts the refusal) when its client network is at its cap: pass it to
    /// [`ConnectionLimiter::refuse`] with the socket.
    pub fn admit(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        ip: Option<IpAddr>,
    ) -> Result<ConnectionSlot, OwnedSemaphorePermit> {
        let network = ip.map(ClientNetwork::of);
        if let Some(network) = network {
            let mut networks = self.networks.lock().unwrap_or_else(PoisonError::into_inner);
            let open = networks.entry(network).or_insert(0);
            if *open >= self.limits.max_per_network {
                drop(networks);
                self.count_closed(CloseReason::NetworkCap);
                return Err(permit);
            }
            *open += 1;
        }
        ::metrics::gauge!(metrics::CONNECTIONS, "listener" => self.limits.name).increment(1.0);
        Ok(ConnectionSlot {
            limiter: self.clone(),
            network,
            _permit: permit,
        })
    }

    /// Closes a refused connection (its socket and the slot [`ConnectionLimiter::admit`] gave
    /// back) after `--refusal-delay`, unread, or at once when the most are held.
    pub fn refuse<T: Send + 'static>(&self, socket: T, slot: OwnedSemaphorePermit) {
        self.refusals.hold((socket, slot));
    }

    /// Counts a connection closed by a limit.
    pub fn count_closed(&self, reason: CloseReason) {
        ::metrics::counter!(metrics::CONNECTIONS_CLOSED_TOTAL,
            "listener" => self.limits.name, "reason" => reason.label())
        .increment(1);
    }
}

/// Why a limit closed a connection (the `reason` label of
/// `exposure_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Its client network was at `--max-connections-per-network`.
    NetworkCap,
    /// No TLS handshake, or not its first bytes, within `--handshake-timeout`.
    HandshakeTimeout,
    /// A write made no progress for `--send-stall-timeout`.
    SendStalled,
    /// It reached its age: `--http-connection-lifetime`, or a gRPC connection
    /// `--max-connection-age` plus the grace with streams still open.
    Lifetime,
    /// A PROXY protocol header was malformed, missing from a trusted proxy, or sent by a
    /// peer that is not one.
    ProxyHeader,
}

impl CloseReason {
    /// Every reason, for the metrics that exist from startup.
    pub const ALL: [CloseReason; 5] = [
        CloseReason::NetworkCap,
        CloseReason::HandshakeTimeout,
        CloseReason::SendStalled,
        CloseReason::Lifetime,
        CloseReason::ProxyHeader,
    ];

    /// Returns the metrics label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::NetworkCap => "network_cap",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::SendStalled => "send_stalled",
            CloseReason::Lifetime => "lifetime",
            CloseReason::ProxyHeader => "proxy_header",
        }
    }
}

/// One open connection's place in its listener's counts, given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    network: Option<ClientNetwork>,
    _permit: OwnedSemaphorePermit,
}

impl ConnectionSlot {
    /// Returns the limiter the slot belongs to.
    pub fn limiter(&self) -> &ConnectionLimiter {
        &self.limiter
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(network) = self.network {
            let mut networks = self
                .limiter
                .networks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(open) = networks.get_mut(&network) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    networks.remove(&network);
                }
            }
        }
        ::metrics::gauge!(metrics::CONNECTIONS, "listener" => self.limiter.limits.name)
            .decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_descriptor_limit() {
        // 20,000: reserve 5,000, budget 15,000.
        assert_eq!(
            DerivedCaps::for_limit(Some(20_000)),
            DerivedCaps {
                grpc: 7_500,
                http: 3_750,
                per_network: 234
            }
        );
        // The common 1,024 leaves nothing above the reserve: the floors apply.
        assert_eq!(
            DerivedCaps::for_limit(Some(1_024)),
            DerivedCaps {
                grpc: 64,
                http: 64,
                per_network: 64
            }
        );
        // A container's 1,048,576 or no limit: the ceilings apply.
        for limit in [Some(1_048_576), None] {
            assert_eq!(
                DerivedCaps::for_limit(limit),
                DerivedCaps {
                    grpc: 32_768,
                    http: 16_384,
                    per_network: 512
                }
            );
        }
    }

    #[test]
    fn networks_are_ipv4_addresses_and_ipv6_slash_64s() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("address");
        assert_eq!(
            ClientNetwork::of(ip("192.0.2.7")),
            ClientNetwork::V4(Ipv4Addr::new(192, 0, 2, 7))
        );
        assert_eq!(
            ClientNetwork::of(ip("::ffff:192.0.2.7")),
            ClientNetwork::of(ip("192.0.2.7"))
        );
        assert_ne!(
            ClientNetwork::of(ip("192.0.2.7")),
            ClientNetwork::of(ip("192.0.2.8"))
        );
        assert_eq!(
            ClientNetwork::of(ip("2001:db8:1:2::1")),
            ClientNetwork::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(
            ClientNetwork::of(ip("2001:db8:1:2::1")),
            ClientNetwork::V6(0x2001_0db8_0001_0002)
        );
        assert_ne!(
            ClientNetwork::of(ip("2001:db8:1:2::1")),
            ClientNetwork::of(ip("2001:db8:1:3::1"))
        );
    }

    #[tokio::test]
    async fn a_network_at_its_cap_is_refused_until_one_of_its_connections_closes() {
        let limiter = ConnectionLimiter::new(ListenerLimits {
            name: "test",
            max_connections: 10,
            max_per_network: 2,
            handshake_timeout: Duration::from_secs(5),
            first_bytes: 1,
            send_stall_timeout: Duration::from_secs(5),
            refusal_delay: Duration::from_millis(300),
            max_age: None,
            trusted_proxies: TrustedProxies::default(),
        });
        let first_network = Some("10.0.0.1".parse().expect("address"));
        let second_network = Some("10.0.0.2".parse().expect("address"));
        let first = limiter.admit(limiter.free_slot().await, first_network);
        let second = limiter.admit(limiter.free_slot().await, first_network);
        assert!(first.is_ok() && second.is_ok());
        let refused = limiter
            .admit(limiter.free_slot().await, first_network)
            .expect_err("a third connection from the network");
        // The refused connection keeps its slot for the refusal delay, then gives it back.
        limiter.refuse("socket", refused);
        assert_eq!(limiter.slots.available_permits(), 10 - 3);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(limiter.slots.available_permits(), 10 - 2);
        let other = limiter.admit(limiter.free_slot().await, second_network);
        assert!(other.is_ok());
        drop(first);
        let again = limiter.admit(limiter.free_slot().await, first_network);
        assert!(again.is_ok());
        assert_eq!(limiter.slots.available_permits(), 10 - 3);
    }
}
