//! The PROXY protocol, version 2: the binary header a layer-4 proxy or load balancer (HAProxy,
//! nginx's `proxy_protocol`, cloud load balancers, Envoy) sends first on each connection it
//! opens to the server, naming the client's address. It is read at accept, before TLS, and only
//! from a peer inside `--trusted-proxies` ([`TrustedProxies`]): such a peer must send one on every
//! connection. Any other peer's connection that starts with the header is refused, so a client
//! cannot name its own address.
//!
//! The header (from the specification, section 2.2): the 12-byte signature
//! `0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A`; a byte whose high nibble is the version (2) and low
//! nibble the command (0 LOCAL: the proxy's own connection, e.g. a health check, which uses the
//! socket's address; 1 PROXY); a byte whose high nibble is the address family (0 UNSPEC, 1 INET,
//! 2 INET6, 3 UNIX) and low nibble the transport (0 UNSPEC, 1 STREAM, 2 DGRAM); a big-endian
//! 16-bit length of what follows: the addresses (INET: source, destination, source port,
//! destination port, 12 bytes; INET6: 36 bytes; UNIX: two 108-byte paths), then optional TLVs,
//! which are skipped. Only the source address is used; a malformed header closes the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Bytes before the addresses: signature, version and command, family and transport, length.
const FIXED_BYTES: usize = 16;
/// The address block of each family: INET, INET6, UNIX.
const INET_BYTES: usize = 12;
const INET6_BYTES: usize = 36;
const UNIX_BYTES: usize = 216;

/// What a header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// LOCAL: the proxy's own connection (a health check); the socket's address applies.
    Local,
    /// PROXY over TCP from this client address.
    Proxied(IpAddr),
    /// PROXY with an unspecified or UNIX family: no client IP address; the socket's applies.
    NoAddress,
}

/// Why a header was refused. The text never contains an address.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection did not start with the signature.
    #[error("no PROXY protocol v2 signature")]
    Signature,
    /// The version nibble is not 2.
    #[error("PROXY protocol version {0} (only 2 is read)")]
    Version(u8),
    /// The command nibble is neither LOCAL nor PROXY.
    #[error("PROXY protocol command {0:#x} is neither LOCAL nor PROXY")]
    Command(u8),
    /// An unknown family, or an IP family over a transport other than TCP.
    #[error(
        "PROXY protocol family/transport byte {0:#04x} is not TCP over IPv4/IPv6, UNIX or UNSPEC"
    )]
    Family(u8),
    /// The length is shorter than the family's addresses.
    #[error("PROXY protocol length {length} is shorter than the {needed} bytes of its addresses")]
    Length {
        /// The header's length field.
        length: usize,
        /// What the family's addresses take.
        needed: usize,
    },
    /// Reading the header failed (the peer closed, or the socket failed).
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// What the 16 fixed bytes announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fixed {
    local: bool,
    /// Bytes of the family's addresses (0 for UNSPEC or LOCAL).
    address_bytes: usize,
    /// The family byte, to read the addresses.
    family: u8,
    /// The length field: addresses and TLVs.
    length: usize,
}

/// Reads the 16 fixed bytes.
fn parse_fixed(bytes: &[u8; FIXED_BYTES]) -> Result<Fixed, HeaderError> {
    if bytes[..12] != SIGNATURE {
        return Err(HeaderError::Signature);
    }
    let version = bytes[12] >> 4;
    if version != 2 {
        return Err(HeaderError::Version(version));
    }
    let local = match bytes[12] & 0x0F {
        0 => true,
        1 => false,
        other => return Err(HeaderError::Command(other)),
    };
    let family = bytes[13];
    let length = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let address_bytes = match (local, family >> 4, family & 0x0F) {
        // LOCAL: the receiver uses the real endpoints and skips the block, family included.
        (true, _, _) | (false, 0, _) => 0,
        (false, 1, 1) => INET_BYTES,
        (false, 2, 1) => INET6_BYTES,
        (false, 3, 1 | 2) => UNIX_BYTES,
        _ => return Err(HeaderError::Family(family)),
    };
    if length < address_bytes {
        return Err(HeaderError::Length {
            length,
            needed: address_bytes,
        });
    }
    Ok(Fixed {
        local,
        address_bytes,
        family,
        length,
    })
}

/// Returns the client (source) address of an address block.
fn source_address(family: u8, addresses: &[u8]) -> Option<IpAddr> {
    match family >> 4 {
        1 => {
            let octets: [u8; 4] = addresses.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        2 => {
            let octets: [u8; 16] = addresses.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Reads one header from the start of `stream`, exactly its bytes, so what follows (the TLS
/// handshake, or the HTTP/2 preface) stays unread.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Header, HeaderError> {
    let mut fixed = [0_u8; FIXED_BYTES];
    stream.read_exact(&mut fixed).await?;
    let fixed = parse_fixed(&fixed)?;
    let mut addresses = [0_u8; UNIX_BYTES];
    let addresses = &mut addresses[..fixed.address_bytes];
    stream.read_exact(addresses).await?;
    // TLVs (and a LOCAL header's block) are skipped without being kept.
    let mut rest = fixed.length - fixed.address_bytes;
    let mut skipped = [0_u8; 256];
    while rest > 0 {
        let chunk = rest.min(skipped.len());
        stream.read_exact(&mut skipped[..chunk]).await?;
        rest -= chunk;
    }
    if fixed.local {
        return Ok(Header::Local);
    }
    Ok(source_address(fixed.family, addresses).map_or(Header::NoAddress, Header::Proxied))
}

/// One range of `--trusted-proxies`: an address and a prefix length (`10.0.0.0/8`,
/// `2001:db8::/32`; a bare address is the whole address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpCidr {
    network: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// Returns the prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Returns true when `ip` (an IPv4-mapped IPv6 address read as IPv4) is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                mask32(ip.to_bits(), self.prefix) == network.to_bits()
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                mask128(ip.to_bits(), self.prefix) == network.to_bits()
            }
            _ => false,
        }
    }
}

fn mask32(bits: u32, prefix: u8) -> u32 {
    bits & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(bits: u128, prefix: u8) -> u128 {
    bits & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpCidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| {
            format!("{text:?} is not an address range (expected e.g. 10.0.0.0/8 or 2001:db8::/32)")
        })?;
        let network = network.to_canonical();
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..={width}"))?,
        };
        let masked = match network {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(mask32(v4.to_bits(), prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(mask128(v6.to_bits(), prefix))),
        };
        if masked != network {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix (did you mean {masked}/{prefix}?)"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl std::fmt::Display for IpCidr {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.network, self.prefix)
    }
}

/// The ranges of `--trusted-proxies` (empty: no peer is a proxy). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<[IpCidr]>);

impl TrustedProxies {
    /// Returns the set of `ranges`.
    pub fn new(ranges: &[IpCidr]) -> Self {
        Self(ranges.into())
    }

    /// Returns true when the peer `ip` is one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `bytes` as a connection's first bytes; returns the header and what stayed unread.
    fn read(bytes: &[u8]) -> (Result<Header, HeaderError>, Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut stream = bytes;
            let header = read_header(&mut stream).await;
            (header, stream.to_vec())
        })
    }

    // Headers written out byte by byte from the specification's layout (not by an encoder).
    const SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

    #[test]
    fn an_ipv4_header_names_its_source_and_leaves_the_rest_unread() {
        let mut bytes = SIG.to_vec();
        bytes.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        bytes.extend_from_slice(&[203, 0, 113, 7, 10, 0, 0, 5, 0xC3, 0x50, 0x01, 0xBB]);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (header, rest) = read(&bytes);
        assert_eq!(
            header.expect("valid"),
            Header::Proxied("203.0.113.7".parse().expect("ip"))
        );
        assert_eq!(
            rest, b"\x16\x03\x01",
            "the TLS record stays for the handshake"
        );
    }

    #[test]
    fn an_ipv6_header_with_tlvs_names_its_source() {
        let mut bytes = SIG.to_vec();
        // 36 address bytes + a 7-byte TLV (type 0x04 NOOP, length 4).
        bytes.extend_from_slice(&[0x21, 0x21, 0x00, 36 + 7]);
        bytes.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9]);
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&[0x30, 0x39, 0x01, 0xBB]);
        bytes.extend_from_slice(&[0x04, 0x00, 0x04, 1, 2, 3, 4]);
        bytes.extend_from_slice(b"PRI");
        let (header, rest) = read(&bytes);
        assert_eq!(
            header.expect("valid"),
            Header::Proxied("2001:db8:1:2::9".parse().expect("ip"))
        );
        assert_eq!(rest, b"PRI");
    }

    #[test]
    fn local_and_unspecified_headers_name_no_client() {
        let mut local = SIG.to_vec();
        // LOCAL may still carry a block, which is skipped with its family.
        local.extend_from_slice(&[0x20, 0x11, 0x00, 0x0C]);
        local.extend_from_slice(&[1; 12]);
        let (header, rest) = read(&local);
        assert_eq!(header.expect("valid"), Header::Local);
        assert!(rest.is_empty());
        let mut unspec = SIG.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(read(&unspec).0.expect("valid"), Header::NoAddress);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let header = |fixed: [u8; 4], tail: &[u8]| {
            let mut bytes = SIG.to_vec();
            bytes.extend_from_slice(&fixed);
            bytes.extend_from_slice(tail);
            read(&bytes).0
        };
        assert!(matches!(
            header([0x11, 0x11, 0, 12], &[0; 12]),
            Err(HeaderError::Version(1))
        ));
        assert!(matches!(
            header([0x22, 0x11, 0, 12], &[0; 12]),
            Err(HeaderError::Command(2))
        ));
        assert!(matches!(
            header([0x21, 0x12, 0, 12], &[0; 12]),
            Err(HeaderError::Family(0x12)),
        ));
        assert!(matches!(
            header([0x21, 0x41, 0, 12], &[0; 12]),
            Err(HeaderError::Family(0x41))
        ));
        assert!(matches!(
            header([0x21, 0x21, 0, 12], &[0; 12]),
            Err(HeaderError::Length {
                length: 12,
                needed: 36
            })
        ));
        assert!(matches!(
            header([0x21, 0x11, 0, 12], &[0; 5]),
            Err(HeaderError::Io(_))
        ));
        // Version 1's text form, and a TLS ClientHello, are not version 2 headers.
        assert!(matches!(
            read(b"PROXY TCP4 203.0.113.7 10.0.0.5 50000 443\r\n").0,
            Err(HeaderError::Signature)
        ));
        assert!(matches!(
            read(&[
                0x16, 0x03, 0x01, 0, 0xF0, 1, 0, 0, 0xEC, 3, 3, 0, 0, 0, 0, 0
            ])
            .0,
            Err(HeaderError::Signature)
        ));
    }

    #[test]
    fn ranges_parse_and_match_their_addresses() {
        let range = |text: &str| text.parse::<IpCidr>().expect(text);
        let ip = |text: &str| text.parse::<IpAddr>().expect(text);
        assert!(range("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!range("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(range("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(range("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!range("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(range("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!range("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(!range("2001:db8::/32").contains(ip("10.0.0.1")));
        assert!(range("0.0.0.0/0").contains(ip("198.51.100.1")));
        assert_eq!(range("0.0.0.0/0").prefix(), 0);
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "proxy",
            "10.0.0.0/x",
            "",
        ] {
            assert!(bad.parse::<IpCidr>().is_err(), "{bad:?}");
        }
        let proxies = TrustedProxies::new(&[range("127.0.0.0/8"), range("fd00::/8")]);
        assert!(proxies.contains(ip("127.0.0.2")));
        assert!(proxies.contains(ip("fd12::1")));
        assert!(!proxies.contains(ip("::1")));
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
    }
}
