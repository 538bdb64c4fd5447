//! Drives the PROXY protocol v1/v2 handshake through its public entry point,
//! `proxy_protocol::read_proxy_header`, over an in-memory connection: a reader that hands out
//! the fuzzer's bytes in fuzzer-chosen chunks and then either ends (EOF) or waits (pending
//! forever), polled on a current-thread Tokio runtime built once (nothing ever sleeps: a
//! waiting handshake is seen as `Pending` and dropped).
//!
//! Run: `cargo +nightly fuzz run proxy_protocol` (from the crate root).
//!
//! The input's first byte picks the mode, the peer (trusted IPv4, IPv6, IPv4-mapped, or
//! untrusted) and the configured v2 bound (536, the minimum 232, the maximum 65 551 bytes);
//! the second picks the chunk sizes. Then:
//! - **arbitrary bytes**: the rest is the connection's bytes, after a start the first byte
//!   picks (nothing, the v2 signature, the signature and a `PROXY` TCP over IPv4 / IPv6 byte
//!   pair, or `PROXY `) so the fuzzer need not guess it;
//! - **a valid header**: the fuzzer picks a v1 header (`TCP4`, `TCP6` in short or long,
//!   upper-case form, `UNKNOWN`) or a v2 header (`PROXY` / `LOCAL`, every family and protocol,
//!   its addresses, well-formed TLVs of any type), the bytes that follow it, and a cut point.
//!
//! Besides "no panic", it checks:
//! - an untrusted peer's bytes are not read: the answer is the peer and every byte, untouched;
//! - the answer does not depend on how the bytes are split into reads (whole, one byte at a
//!   time, fuzzer-chosen chunks);
//! - incomplete input asks for more: where the connection ends with a truncated header,
//!   the same bytes with the connection still open leave the handshake waiting (never an
//!   error, never an early success); any strict prefix of a valid header waits, or fails as
//!   truncated at EOF;
//! - an accepted header is at most 107 bytes (v1, ending in CRLF) or the configured bound
//!   (v2), and the address answered is the one its bytes announce (the source address and
//!   port; the peer for `UNKNOWN`, `LOCAL` and non-IP families);
//! - a valid header built from fuzzer-chosen addresses round-trips to those addresses, or is
//!   refused as too long exactly when it exceeds the bound;
//! - the bytes after the header are passed through untouched.
#![no_main]

use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Runtime;
use tower_bouncer::client_ip::TrustedRanges;
use tower_bouncer::proxy_protocol::{
    read_proxy_header, ProxyProtocolConfig, ProxyProtocolErrorKind,
};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_MAX_LEN: usize = 107;
const V2_BOUNDS: [usize; 3] = [536, 232, 65_551];

/// How the connection behaves once its bytes are all handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The peer closed the connection.
    Eof,
    /// The peer is still there, sending nothing more.
    Pending,
}

/// How the bytes are split into reads.
#[derive(Debug, Clone, Copy)]
enum Chunks {
    /// As much as the reader asks for.
    Whole,
    /// Alternately `a` and `b` bytes (1 to 16 each).
    Sizes(usize, usize),
}

/// An in-memory connection.
struct Connection<'a> {
    data: &'a [u8],
    at: usize,
    chunks: Chunks,
    reads: usize,
    end: End,
}

impl AsyncRead for Connection<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = &this.data[this.at..];
        if left.is_empty() {
            return match this.end {
                End::Eof => Poll::Ready(Ok(())),
                End::Pending => Poll::Pending,
            };
        }
        let chunk = match this.chunks {
            Chunks::Whole => left.len(),
            Chunks::Sizes(a, b) => [a, b][this.reads % 2],
        };
        let n = chunk.min(left.len()).min(buf.remaining());
        assert!(n > 0, "the handshake read into a full buffer");
        buf.put_slice(&left[..n]);
        this.at += n;
        this.reads += 1;
        Poll::Ready(Ok(()))
    }
}

/// What the handshake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The client address, and every byte the stream gave afterwards.
    Accepted {
        client: SocketAddr,
        rest: Vec<u8>,
    },
    Failed(ProxyProtocolErrorKind),
    /// Still waiting for bytes.
    Waiting,
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

/// The handshake over `data`, polled once: a connection that hands out everything it has
/// without waiting lets it run to its end or to a wait for more bytes.
fn handshake(
    data: &[u8],
    chunks: Chunks,
    end: End,
    peer: SocketAddr,
    config: &ProxyProtocolConfig,
) -> Outcome {
    let connection = Connection {
        data,
        at: 0,
        chunks,
        reads: 0,
        end,
    };
    runtime().block_on(async {
        let mut accept = pin!(read_proxy_header(connection, peer, config));
        poll_fn(|cx| {
            Poll::Ready(match accept.as_mut().poll(cx) {
                Poll::Pending => Outcome::Waiting,
                Poll::Ready(Err(error)) => {
                    assert_eq!(error.peer(), peer);
                    Outcome::Failed(error.kind())
                }
                Poll::Ready(Ok((mut stream, client))) => {
                    let mut rest = Vec::new();
                    let mut chunk = [0u8; 512];
                    loop {
                        let mut buf = ReadBuf::new(&mut chunk);
                        match Pin::new(&mut stream).poll_read(cx, &mut buf) {
                            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                            Poll::Ready(Ok(())) => rest.extend_from_slice(buf.filled()),
                            Poll::Ready(Err(error)) => panic!("{error}"),
                            Poll::Pending => break,
                        }
                    }
                    Outcome::Accepted { client, rest }
                }
            })
        })
        .await
    })
}

struct Setup {
    peer: SocketAddr,
    trusted: bool,
    config: ProxyProtocolConfig,
    max_v2_len: usize,
    chunks: Chunks,
}

fuzz_target!(|data: &[u8]| {
    let [selector, chunking, rest @ ..] = data else {
        return;
    };
    let (peer, trusted) = match (selector >> 1) % 4 {
        0 => (SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 40_000)), true),
        1 => ("[2001:db8:ffff::2]:40000".parse().unwrap(), true),
        2 => ("[::ffff:10.0.0.3]:40000".parse().unwrap(), true),
        _ => (
            SocketAddr::from((Ipv4Addr::new(203, 0, 113, 9), 40_000)),
            false,
        ),
    };
    let max_v2_len = V2_BOUNDS[usize::from((selector >> 3) & 3) % V2_BOUNDS.len()];
    let ranges = TrustedRanges::parse("10.0.0.0/8\n2001:db8:ffff::/48").unwrap();
    let config = ProxyProtocolConfig::new(ranges)
        .max_header_len(max_v2_len)
        .unwrap();
    let setup = Setup {
        peer,
        trusted,
        config,
        max_v2_len,
        chunks: Chunks::Sizes(
            usize::from(chunking & 15) + 1,
            usize::from(chunking >> 4) + 1,
        ),
    };
    if selector % 2 == 0 {
        // A start the fuzzer would take long to guess, for it to mutate what follows.
        let start: &[u8] = match selector >> 5 {
            0 | 1 => b"",
            2 | 3 => V2_SIGNATURE,
            4 => b"\r\n\r\n\0\r\nQUIT\n\x21\x11",
            5 => b"\r\n\r\n\0\r\nQUIT\n\x21\x21",
            _ => b"PROXY ",
        };
        arbitrary_bytes(&setup, &[start, rest].concat());
    } else {
        let _ = valid_header(&setup, &mut Unstructured::new(rest));
    }
});

fn arbitrary_bytes(setup: &Setup, data: &[u8]) {
    let run = |chunks, end| handshake(data, chunks, end, setup.peer, &setup.config);
    let outcome = run(Chunks::Whole, End::Eof);
    assert_eq!(
        run(Chunks::Sizes(1, 1), End::Eof),
        outcome,
        "one byte per read"
    );
    assert_eq!(run(setup.chunks, End::Eof), outcome, "{:?}", setup.chunks);

    // The same bytes on a connection that stays open.
    let open = run(setup.chunks, End::Pending);
    match &outcome {
        Outcome::Failed(ProxyProtocolErrorKind::Truncated) => {
            assert_eq!(
                open,
                Outcome::Waiting,
                "a truncated header must wait for more"
            );
        }
        _ => assert_eq!(open, outcome),
    }

    if !setup.trusted {
        let everything = data.to_vec();
        assert_eq!(
            outcome,
            Outcome::Accepted {
                client: setup.peer,
                rest: everything
            }
        );
        return;
    }
    match outcome {
        Outcome::Accepted { client, rest } => {
            assert!(data.ends_with(&rest), "the bytes after the header changed");
            let header = &data[..data.len() - rest.len()];
            assert_eq!(client, announced(header, setup), "{header:?}");
        }
        Outcome::Failed(kind) => assert!(
            matches!(
                kind,
                ProxyProtocolErrorKind::MissingHeader
                    | ProxyProtocolErrorKind::Invalid
                    | ProxyProtocolErrorKind::TooLong
                    | ProxyProtocolErrorKind::Truncated
            ),
            "{kind:?}"
        ),
        Outcome::Waiting => panic!("waiting on a closed connection"),
    }
}

/// The client address an accepted `header` announces, read from its bytes here, independently
/// of the crate (and of `ppp`).
fn announced(header: &[u8], setup: &Setup) -> SocketAddr {
    match header.first() {
        Some(b'P') => {
            assert!(
                header.len() <= V1_MAX_LEN,
                "a v1 header of {} bytes",
                header.len()
            );
            let line = header
                .strip_suffix(b"\r\n")
                .expect("a v1 header ends in CRLF");
            let line = std::str::from_utf8(line).expect("a v1 header is text");
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["PROXY", "UNKNOWN", ..] => setup.peer,
                ["PROXY", "TCP4" | "TCP6", source, _, port, _] => {
                    SocketAddr::new(source.parse().unwrap(), port.parse().unwrap())
                }
                _ => panic!("accepted v1 header {line:?}"),
            }
        }
        Some(b'\r') => {
            assert!(
                header.len() <= setup.max_v2_len,
                "a v2 header of {} bytes",
                header.len()
            );
            assert!(header.len() >= 16 && header.starts_with(V2_SIGNATURE));
            let body_len = usize::from(u16::from_be_bytes([header[14], header[15]]));
            assert_eq!(header.len(), 16 + body_len);
            assert_eq!(header[12] >> 4, 2, "version 2");
            let body = &header[16..];
            match (header[12] & 15, header[13] >> 4) {
                (1, 1) => SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&body[..4]).unwrap())),
                    u16::from_be_bytes([body[8], body[9]]),
                ),
                (1, 2) => SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&body[..16]).unwrap())),
                    u16::from_be_bytes([body[32], body[33]]),
                ),
                (0 | 1, _) => setup.peer,
                (command, _) => panic!("accepted a v2 header with command {command}"),
            }
        }
        _ => panic!("accepted a header starting {header:?}"),
    }
}

/// A valid header, built from fuzzer-chosen parts, and what it must answer.
fn valid_header(setup: &Setup, u: &mut Unstructured<'_>) -> Result<()> {
    let (header, client) = if u.arbitrary()? {
        v1_header(u, setup.peer)?
    } else {
        v2_header(u, setup.peer)?
    };
    let cut = u.choose_index(header.len())?;
    let payload_len = u.int_in_range(0..=64)?;
    let payload = u.bytes(payload_len)?;
    let mut data = header.clone();
    data.extend_from_slice(payload);

    let too_long = header[0] == b'\r' && header.len() > setup.max_v2_len;
    let expected = if !setup.trusted {
        Outcome::Accepted {
            client: setup.peer,
            rest: data.clone(),
        }
    } else if too_long {
        Outcome::Failed(ProxyProtocolErrorKind::TooLong)
    } else {
        Outcome::Accepted {
            client,
            rest: payload.to_vec(),
        }
    };
    let run = |data: &[u8], chunks, end| handshake(data, chunks, end, setup.peer, &setup.config);
    for chunks in [Chunks::Whole, setup.chunks] {
        for end in [End::Eof, End::Pending] {
            assert_eq!(run(&data, chunks, end), expected, "{chunks:?} {end:?}");
        }
    }

    // A strict prefix of the header: more is needed (or it is already too long).
    let prefix = &header[..cut];
    let (at_eof, open) = match () {
        () if !setup.trusted => {
            let everything = Outcome::Accepted {
                client: setup.peer,
                rest: prefix.to_vec(),
            };
            (everything.clone(), everything)
        }
        () if too_long && cut >= 16 => {
            let failed = Outcome::Failed(ProxyProtocolErrorKind::TooLong);
            (failed.clone(), failed)
        }
        () => (
            Outcome::Failed(ProxyProtocolErrorKind::Truncated),
            Outcome::Waiting,
        ),
    };
    assert_eq!(run(prefix, setup.chunks, End::Eof), at_eof, "cut at {cut}");
    assert_eq!(
        run(prefix, setup.chunks, End::Pending),
        open,
        "cut at {cut}"
    );
    Ok(())
}

fn v1_header(u: &mut Unstructured<'_>, peer: SocketAddr) -> Result<(Vec<u8>, SocketAddr)> {
    let source_port: u16 = u.arbitrary()?;
    let destination_port: u16 = u.arbitrary()?;
    let (text, client) = match u.int_in_range(0..=3)? {
        0 => {
            let source = Ipv4Addr::from(u.arbitrary::<u32>()?);
            let destination = Ipv4Addr::from(u.arbitrary::<u32>()?);
            (
                format!("PROXY TCP4 {source} {destination} {source_port} {destination_port}\r\n"),
                SocketAddr::new(IpAddr::V4(source), source_port),
            )
        }
        kind @ (1 | 2) => {
            let source = Ipv6Addr::from(u.arbitrary::<u128>()?);
            let destination = Ipv6Addr::from(u.arbitrary::<u128>()?);
            let (source_text, destination_text) = if kind == 1 {
                (source.to_string(), destination.to_string())
            } else {
                (long_form(source), long_form(destination))
            };
            (
                format!(
                    "PROXY TCP6 {source_text} {destination_text} {source_port} {destination_port}\r\n"
                ),
                SocketAddr::new(IpAddr::V6(source), source_port),
            )
        }
        _ => {
            let text = if u.arbitrary()? {
                "PROXY UNKNOWN\r\n".to_owned()
            } else {
                // What HAProxy may send: the addresses of an unknown protocol follow.
                format!(
                    "PROXY UNKNOWN {} {} {source_port} {destination_port}\r\n",
                    Ipv6Addr::from(u.arbitrary::<u128>()?),
                    Ipv6Addr::from(u.arbitrary::<u128>()?)
                )
            };
            (text, peer)
        }
    };
    Ok((text.into_bytes(), client))
}

/// Eight groups of four upper-case hex digits: the longest spelling of an IPv6 address.
fn long_form(ip: Ipv6Addr) -> String {
    let groups: Vec<String> = ip
        .segments()
        .iter()
        .map(|group| format!("{group:04X}"))
        .collect();
    groups.join(":")
}

fn v2_header(u: &mut Unstructured<'_>, peer: SocketAddr) -> Result<(Vec<u8>, SocketAddr)> {
    let proxy: bool = u.arbitrary()?;
    let family = *u.choose(&[0x00u8, 0x10, 0x20, 0x30])?;
    let protocol = *u.choose(&[0x00u8, 0x01, 0x02])?;
    let address_len = match family {
        0x10 => 12,
        0x20 => 36,
        0x30 => 216,
        _ => 0,
    };
    let addresses = u.bytes(address_len)?;
    let mut body = addresses.to_vec();
    for _ in 0..u.int_in_range(0..=4)? {
        let kind: u8 = u.arbitrary()?;
        let value_len = u.int_in_range(0..=80)?;
        let value = u.bytes(value_len)?;
        body.push(kind);
        body.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        body.extend_from_slice(value);
    }
    let client = match (proxy, family) {
        (true, 0x10) => SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&addresses[..4]).unwrap(),
            )),
            u16::from_be_bytes([addresses[8], addresses[9]]),
        ),
        (true, 0x20) => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&addresses[..16]).unwrap(),
            )),
            u16::from_be_bytes([addresses[32], addresses[33]]),
        ),
        _ => peer,
    };
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | u8::from(proxy));
    header.push(family | protocol);
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(&body);
    Ok((header, client))
}
