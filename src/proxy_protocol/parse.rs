//! Recognising a PROXY protocol header at the start of a byte buffer: pure, no I/O.
//!
//! The byte-level grammar is checked by the `ppp` crate; this module decides *when* a buffer
//! holds a whole header, enforces the size bounds before any parsing, and turns the result
//! into the one thing the acceptor needs: the client's address, or none (`LOCAL`, `UNKNOWN`,
//! an address family that is not IP).

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use super::error::ErrorKind;

/// The 12 bytes every version 2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// What every version 1 header starts with.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The fixed part of a version 2 header: signature, version/command, family/protocol, length.
pub(crate) const V2_FIXED_LEN: usize = 16;
/// The longest version 1 header the specification allows, `\r\n` included.
pub(crate) const V1_MAX_LEN: usize = 107;

/// A whole header was found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// How many bytes of the buffer the header takes; the bytes after it belong to the
    /// application protocol.
    pub(crate) len: usize,
    /// The client address the header announces; `None` for `LOCAL`, `UNKNOWN`, `AF_UNSPEC`
    /// and `AF_UNIX`, where the socket peer stands.
    pub(crate) source: Option<SocketAddr>,
}

/// What the bytes so far say.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not enough bytes yet to decide; read more (the caller bounds how much and how long).
    Incomplete,
    /// A whole header.
    Complete(Header),
}

/// A parse failure: what kind, and the `ppp` error behind it when there is one.
pub(crate) type Failure = (ErrorKind, Option<Box<dyn std::error::Error + Send + Sync>>);

/// Look for a PROXY protocol header (v1 or v2) at the start of `buf`.
///
/// `max_v2_len` bounds a version 2 header as a whole (fixed part, addresses and TLVs); a
/// version 1 header is bounded by the specification's 107 bytes. Never panics, on any input.
pub(crate) fn parse(buf: &[u8], max_v2_len: usize) -> Result<Parsed, Failure> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'\r') => parse_v2(buf, max_v2_len),
        Some(b'P') => parse_v1(buf),
        Some(_) => Err((ErrorKind::MissingHeader, None)),
    }
}

fn parse_v2(buf: &[u8], max_v2_len: usize) -> Result<Parsed, Failure> {
    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf[..seen] != V2_SIGNATURE[..seen] {
        return Err((ErrorKind::MissingHeader, None));
    }
    let Some(length) = buf.get(V2_FIXED_LEN - 2..V2_FIXED_LEN) else {
        return Ok(Parsed::Incomplete);
    };
    let total = V2_FIXED_LEN + usize::from(u16::from_be_bytes([length[0], length[1]]));
    if total > max_v2_len {
        return Err((ErrorKind::TooLong, None));
    }
    // `ppp` checks version, command, family and protocol as soon as the fixed part is there,
    // so a bad header fails before we wait for the rest of it.
    let header = match ppp::v2::Header::try_from(&buf[..buf.len().min(total)]) {
        Ok(header) => header,
        Err(ppp::v2::ParseError::Partial(..) | ppp::v2::ParseError::Incomplete(..)) => {
            return Ok(Parsed::Incomplete)
        }
        Err(error) => return Err((ErrorKind::Invalid, Some(Box::new(error)))),
    };
    // `ppp` reads TLVs lazily: walk them once so a malformed TLV area is an error now.
    for tlv in header.tlvs() {
        if let Err(error) = tlv {
            return Err((ErrorKind::Invalid, Some(Box::new(error))));
        }
    }
    let source = match (header.command, header.addresses) {
        (ppp::v2::Command::Local, _) => None,
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(ip)) => Some(SocketAddr::V4(
            SocketAddrV4::new(ip.source_address, ip.source_port),
        )),
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(ip)) => Some(SocketAddr::V6(
            SocketAddrV6::new(ip.source_address, ip.source_port, 0, 0),
        )),
        (ppp::v2::Command::Proxy, _) => None,
    };
    Ok(Parsed::Complete(Header { len: total, source }))
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, Failure> {
    let seen = buf.len().min(V1_PREFIX.len());
    if buf[..seen] != V1_PREFIX[..seen] {
        return Err((ErrorKind::MissingHeader, None));
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err((ErrorKind::TooLong, None))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    // The line's `\r\n` cannot fit: too long, whatever follows — decided before looking at the
    // next byte, so the answer does not depend on whether it came in the same read.
    let len = end + 2;
    if len > V1_MAX_LEN {
        return Err((ErrorKind::TooLong, None));
    }
    match buf.get(end..len) {
        Some(b"\r\n") => {}
        // A lone `\r` at the very end of what arrived: the `\n` may be on its way.
        None if buf[end] == b'\r' => return Ok(Parsed::Incomplete),
        _ => return Err((ErrorKind::Invalid, None)),
    }
    let header = ppp::v1::Header::try_from(&buf[..len])
        .map_err(|error| (ErrorKind::Invalid, Some(Box::new(error) as _)))?;
    let source = match header.addresses {
        ppp::v1::Addresses::Tcp4(ip) => Some(SocketAddr::V4(SocketAddrV4::new(
            ip.source_address,
            ip.source_port,
        ))),
        ppp::v1::Addresses::Tcp6(ip) => Some(SocketAddr::V6(SocketAddrV6::new(
            ip.source_address,
            ip.source_port,
            0,
            0,
        ))),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Parsed::Complete(Header { len, source }))
}
