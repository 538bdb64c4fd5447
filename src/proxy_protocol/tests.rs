//! Hand-built v1 and v2 headers through the parser, the handshake and the listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::ErrorKind;
use super::parse::{parse, Header, Parsed};
use super::*;
use crate::client_ip::TrustedRanges;

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A version 2 header: `command` 0 = LOCAL, 1 = PROXY; `family_protocol` e.g. 0x11 = TCP over
/// IPv4; `body` = addresses and TLVs.
fn v2(command: u8, family_protocol: u8, body: &[u8]) -> Vec<u8> {
    let mut header = SIGNATURE.to_vec();
    header.push(0x20 | command);
    header.push(family_protocol);
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(body);
    header
}

fn v2_tcp4(source: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut body = source.to_vec();
    body.extend_from_slice(&[127, 0, 0, 1]);
    body.extend_from_slice(&port.to_be_bytes());
    body.extend_from_slice(&8080u16.to_be_bytes());
    body.extend_from_slice(tlvs);
    v2(1, 0x11, &body)
}

fn v2_tcp6(source: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut body = source.octets().to_vec();
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&port.to_be_bytes());
    body.extend_from_slice(&8080u16.to_be_bytes());
    v2(1, 0x21, &body)
}

fn sock(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

const MAX_V2: usize = 536;

fn complete(buf: &[u8]) -> Header {
    match parse(buf, MAX_V2) {
        Ok(Parsed::Complete(header)) => header,
        other => panic!("expected a complete header, got {other:?}"),
    }
}

fn failure(buf: &[u8]) -> ErrorKind {
    match parse(buf, MAX_V2) {
        Err((kind, _)) => kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn incomplete(buf: &[u8]) -> bool {
    matches!(parse(buf, MAX_V2), Ok(Parsed::Incomplete))
}

// ---- the parser ------------------------------------------------------------------------------

#[test]
fn v1_tcp4_names_the_client_and_its_length() {
    let line = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\n";
    let mut buf = line.to_vec();
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let header = complete(&buf);
    assert_eq!(header.len, line.len());
    assert_eq!(header.source, Some(sock("203.0.113.7:51234")));
}

#[test]
fn v1_tcp6_names_the_client() {
    let header = complete(b"PROXY TCP6 2001:db8::7 ::1 51234 8080\r\n");
    assert_eq!(header.source, Some(sock("[2001:db8::7]:51234")));
}

#[test]
fn v1_unknown_keeps_the_socket_peer() {
    for line in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\n",
    ] {
        assert_eq!(complete(line).source, None, "{line:?}");
        assert_eq!(complete(line).len, line.len());
    }
}

#[test]
fn v1_longest_legal_header_is_accepted() {
    let line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(line.len(), 104);
    assert!(complete(line).source.is_some());
}

#[test]
fn v1_every_prefix_of_a_header_is_incomplete() {
    let line = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\n";
    for end in 0..line.len() {
        assert!(incomplete(&line[..end]), "prefix of {end} bytes");
    }
}

#[test]
fn v1_garbage_is_a_typed_error() {
    let cases: &[(&[u8], ErrorKind)] = &[
        (b"GET / HTTP/1.1\r\n", ErrorKind::MissingHeader),
        (b"PROXZ TCP4", ErrorKind::MissingHeader),
        (
            b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            ErrorKind::MissingHeader,
        ),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ErrorKind::Invalid),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", ErrorKind::Invalid),
        (b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", ErrorKind::Invalid),
        (
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            ErrorKind::Invalid,
        ),
        (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", ErrorKind::Invalid),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
            ErrorKind::Invalid,
        ),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ErrorKind::Invalid),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ErrorKind::Invalid),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", ErrorKind::Invalid),
        (b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n", ErrorKind::Invalid),
        (b"PROXY \r\n", ErrorKind::Invalid),
    ];
    for (input, kind) in cases {
        assert_eq!(
            failure(input),
            *kind,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn v1_oversized_header_is_too_long() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(107, b'x');
    assert_eq!(failure(&line), ErrorKind::TooLong);
    // 106 bytes and `\r`: the `\n` would make it 108.
    line.truncate(105);
    line.extend_from_slice(b"x\r");
    assert_eq!(failure(&line), ErrorKind::TooLong);
    // Exactly 107 with its `\r\n` is legal.
    line.truncate(105);
    line.extend_from_slice(b"\r\n");
    assert_eq!(complete(&line).len, 107);
}

/// Found by the `proxy_protocol` fuzz target: a v1 line whose `\r` is its 107th byte was
/// `TooLong` when the bytes arrived up to the `\r`, `Invalid` when the next byte came in the
/// same read. The answer must not depend on how the bytes arrive.
#[test]
fn v1_cr_at_byte_107_is_too_long_however_the_bytes_arrive() {
    let mut line = b"PROXY ".to_vec();
    line.resize(106, 0xbb);
    for terminator in [b'\r', b'\n'] {
        for next in [&b""[..], b"\x8f", b"\n", b"xGET / HTTP/1.1\r\n"] {
            let mut buf = line.clone();
            buf.push(terminator);
            buf.extend_from_slice(next);
            // Every prefix that reaches the terminator: as if it arrived there.
            for end in 107..=buf.len() {
                assert_eq!(
                    failure(&buf[..end]),
                    ErrorKind::TooLong,
                    "{terminator:?} then {next:?}, {end} bytes"
                );
            }
        }
    }
    // One byte earlier the line fits: `\r` then anything but `\n` is invalid, at once or not.
    line.truncate(105);
    line.extend_from_slice(b"\r\x8f");
    assert_eq!(failure(&line), ErrorKind::Invalid);
    assert!(incomplete(&line[..106]));
}

#[test]
fn v2_tcp4_names_the_client() {
    let header = v2_tcp4([198, 51, 100, 9], 40000, &[]);
    let mut buf = header.clone();
    buf.extend_from_slice(b"GET /");
    let parsed = complete(&buf);
    assert_eq!(parsed.len, header.len());
    assert_eq!(parsed.source, Some(sock("198.51.100.9:40000")));
}

#[test]
fn v2_tcp6_names_the_client() {
    let parsed = complete(&v2_tcp6("2001:db8::9".parse().unwrap(), 40000));
    assert_eq!(parsed.source, Some(sock("[2001:db8::9]:40000")));
}

#[test]
fn v2_with_tlvs_skips_them() {
    // NOOP (0x04) of 3 bytes, AWS (0xEA) of 5 bytes.
    let tlvs = [0x04, 0, 3, 1, 2, 3, 0xEA, 0, 5, 1, b'v', b'p', b'c', b'e'];
    let header = v2_tcp4([198, 51, 100, 9], 40000, &tlvs);
    let parsed = complete(&header);
    assert_eq!(parsed.len, header.len());
    assert_eq!(parsed.source, Some(sock("198.51.100.9:40000")));
}

#[test]
fn v2_local_keeps_the_socket_peer() {
    assert_eq!(complete(&v2(0, 0x00, &[])).source, None);
    // LOCAL with addresses (HAProxy's health checks may send them): still the socket peer.
    let mut header = v2_tcp4([198, 51, 100, 9], 40000, &[]);
    header[12] = 0x20;
    assert_eq!(complete(&header).source, None);
}

#[test]
fn v2_unspec_and_unix_keep_the_socket_peer() {
    assert_eq!(complete(&v2(1, 0x00, &[])).source, None);
    assert_eq!(complete(&v2(1, 0x31, &[0u8; 216])).source, None);
}

#[test]
fn v2_every_prefix_of_a_header_is_incomplete() {
    let header = v2_tcp4([198, 51, 100, 9], 40000, &[0x04, 0, 1, 0]);
    for end in 0..header.len() {
        assert!(incomplete(&header[..end]), "prefix of {end} bytes");
    }
}

#[test]
fn v2_garbage_is_a_typed_error() {
    let mut bad_signature = v2_tcp4([1, 2, 3, 4], 1, &[]);
    bad_signature[5] = b'X';
    let mut bad_version = v2_tcp4([1, 2, 3, 4], 1, &[]);
    bad_version[12] = 0x11;
    let mut bad_command = v2_tcp4([1, 2, 3, 4], 1, &[]);
    bad_command[12] = 0x2F;
    let mut bad_family = v2_tcp4([1, 2, 3, 4], 1, &[]);
    bad_family[13] = 0x41;
    let short_addresses = v2(1, 0x11, &[1, 2, 3, 4]);
    let truncated_tlv = v2_tcp4([1, 2, 3, 4], 1, &[0x04, 0, 9, 1]);
    let cases: &[(&[u8], ErrorKind)] = &[
        (&bad_signature, ErrorKind::MissingHeader),
        (b"\r\n\r\nGET", ErrorKind::MissingHeader),
        (&bad_version, ErrorKind::Invalid),
        (&bad_command, ErrorKind::Invalid),
        (&bad_family, ErrorKind::Invalid),
        (&short_addresses, ErrorKind::Invalid),
        (&truncated_tlv, ErrorKind::Invalid),
    ];
    for (input, kind) in cases {
        assert_eq!(failure(input), *kind, "{input:?}");
    }
}

#[test]
fn v2_bad_version_fails_before_the_rest_arrives() {
    let mut header = v2_tcp4([1, 2, 3, 4], 1, &[]);
    header[12] = 0x11;
    assert_eq!(failure(&header[..16]), ErrorKind::Invalid);
}

#[test]
fn v2_oversized_header_fails_on_its_length_field_alone() {
    let mut header = SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11]);
    header.extend_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(failure(&header), ErrorKind::TooLong);
    // At the bound exactly: accepted (12 address bytes + TLV padding up to 536).
    let padding = MAX_V2 - 16 - 12 - 3;
    let mut tlv = vec![0x04];
    tlv.extend_from_slice(&u16::try_from(padding).unwrap().to_be_bytes());
    tlv.resize(3 + padding, 0);
    let header = v2_tcp4([1, 2, 3, 4], 1, &tlv);
    assert_eq!(header.len(), MAX_V2);
    assert_eq!(complete(&header).len, MAX_V2);
    assert!(matches!(
        parse(&header, MAX_V2 - 1),
        Err((ErrorKind::TooLong, _))
    ));
}

#[test]
fn other_first_bytes_are_no_header() {
    for input in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x16\x03\x01",
        b"\0",
        b" PROXY",
    ] {
        assert_eq!(failure(input), ErrorKind::MissingHeader, "{input:?}");
    }
}

// ---- the handshake ---------------------------------------------------------------------------

fn trusting_loopback() -> ProxyProtocolConfig {
    ProxyProtocolConfig::new(TrustedRanges::loopback())
}

const PROXY_PEER: &str = "127.0.0.1:40001";
const STRANGER: &str = "192.0.2.50:40002";

async fn handshake(
    bytes: &[u8],
    peer: &str,
    config: &ProxyProtocolConfig,
) -> Result<(SocketAddr, Vec<u8>), ProxyProtocolError> {
    let (stream, client) = read_proxy_header(bytes, sock(peer), config).await?;
    let (rest, buffered) = stream.into_parts();
    let mut all = buffered;
    all.extend_from_slice(rest);
    Ok((client, all))
}

#[tokio::test]
async fn trusted_peer_v1_gives_the_client_and_keeps_the_request_bytes() {
    let input = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\nGET / HTTP/1.1\r\n\r\n";
    let (client, rest) = handshake(input, PROXY_PEER, &trusting_loopback())
        .await
        .unwrap();
    assert_eq!(client, sock("203.0.113.7:51234"));
    assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn trusted_peer_v2_gives_the_client_and_keeps_the_request_bytes() {
    let mut input = v2_tcp6("2001:db8::7".parse().unwrap(), 443);
    input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let (client, rest) = handshake(&input, PROXY_PEER, &trusting_loopback())
        .await
        .unwrap();
    assert_eq!(client, sock("[2001:db8::7]:443"));
    assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn trusted_peer_local_and_unknown_keep_the_socket_peer() {
    for input in [v2(0, 0x00, b""), b"PROXY UNKNOWN\r\n".to_vec()] {
        let (client, rest) = handshake(&input, PROXY_PEER, &trusting_loopback())
            .await
            .unwrap();
        assert_eq!(client, sock(PROXY_PEER));
        assert!(rest.is_empty());
    }
}

#[tokio::test]
async fn untrusted_peer_header_is_not_read_and_not_believed() {
    // A client writing a header of its own: its bytes stay what they are, its peer stays.
    let input = b"PROXY TCP4 10.9.9.9 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n";
    let (client, rest) = handshake(input, STRANGER, &trusting_loopback())
        .await
        .unwrap();
    assert_eq!(client, sock(STRANGER));
    assert_eq!(rest, input);
}

#[tokio::test]
async fn untrusted_peer_plain_http_passes_untouched() {
    let input = b"GET / HTTP/1.1\r\n\r\n";
    let (client, rest) = handshake(input, STRANGER, &trusting_loopback())
        .await
        .unwrap();
    assert_eq!((client, rest.as_slice()), (sock(STRANGER), &input[..]));
}

#[tokio::test]
async fn trusted_peer_without_header_is_dropped() {
    let error = handshake(b"GET / HTTP/1.1\r\n\r\n", PROXY_PEER, &trusting_loopback())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ProxyProtocolErrorKind::MissingHeader);
    assert_eq!(error.peer(), sock(PROXY_PEER));
    assert!(error
        .to_string()
        .starts_with("proxy protocol header from 127.0.0.1:40001: "));
}

#[tokio::test]
async fn ipv4_mapped_trusted_peer_must_send_a_header() {
    let error = handshake(b"GET /", "[::ffff:127.0.0.1]:40001", &trusting_loopback())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ProxyProtocolErrorKind::MissingHeader);
}

#[tokio::test]
async fn truncated_header_is_an_error() {
    let full = v2_tcp4([1, 2, 3, 4], 1, &[]);
    for input in [&b""[..], b"PROXY TCP4 1.2.3.4", &full[..full.len() - 1]] {
        let error = handshake(input, PROXY_PEER, &trusting_loopback())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ProxyProtocolErrorKind::Truncated, "{input:?}");
    }
}

#[tokio::test]
async fn invalid_header_error_names_its_cause() {
    let error = handshake(
        b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
        PROXY_PEER,
        &trusting_loopback(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ProxyProtocolErrorKind::Invalid);
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn oversized_v2_header_is_refused_at_the_configured_bound() {
    let config = trusting_loopback().max_header_len(300).unwrap();
    // 16 + 12 address bytes + a 291-byte TLV = 319 bytes: over 300, under the default 536.
    let mut tlv = vec![0x04, 0x01, 0x20];
    tlv.resize(3 + 288, 0);
    let header = v2_tcp4([1, 2, 3, 4], 1, &tlv);
    let error = handshake(&header, PROXY_PEER, &config).await.unwrap_err();
    assert_eq!(error.kind(), ProxyProtocolErrorKind::TooLong);
    let (client, _) = handshake(&header, PROXY_PEER, &trusting_loopback())
        .await
        .unwrap();
    assert_eq!(client, sock("1.2.3.4:1"));
}

/// Endless bytes after a prefix, counting how many were read.
#[derive(Debug)]
struct Endless {
    prefix: &'static [u8],
    fill: u8,
    served: usize,
}

impl tokio::io::AsyncRead for Endless {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        while buf.remaining() > 0 {
            let byte = self.prefix.get(self.served).copied().unwrap_or(self.fill);
            buf.put_slice(&[byte]);
            self.served += 1;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn endless_header_is_refused_after_bounded_reading() {
    for (prefix, fill) in [
        (&b"PROXY "[..], b'x'),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", b' '),
    ] {
        let mut endless = Endless {
            prefix,
            fill,
            served: 0,
        };
        let error = read_proxy_header(&mut endless, sock(PROXY_PEER), &trusting_loopback())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ProxyProtocolErrorKind::TooLong);
        assert!(endless.served <= 4096, "read {} bytes", endless.served);
    }
}

#[tokio::test]
async fn header_arriving_one_byte_at_a_time_is_assembled() {
    let (mut proxy, server) = tokio::io::duplex(1);
    let mut input = v2_tcp4([198, 51, 100, 9], 40000, &[0x04, 0, 2, 7, 7]);
    input.extend_from_slice(b"GET /");
    // The writer ends (and closes its side) once the reader took every byte.
    let writer = tokio::spawn(async move { proxy.write_all(&input).await.unwrap() });
    let (mut stream, client) = read_proxy_header(server, sock(PROXY_PEER), &trusting_loopback())
        .await
        .unwrap();
    assert_eq!(client, sock("198.51.100.9:40000"));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"GET /");
    writer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn slowloris_header_times_out() {
    let config = trusting_loopback().timeout(Duration::from_secs(5)).unwrap();
    let (mut proxy, server) = tokio::io::duplex(64);
    // Half a header, then nothing, with the connection held open.
    proxy.write_all(b"PROXY TCP4 203.0.").await.unwrap();
    let started = tokio::time::Instant::now();
    let error = read_proxy_header(server, sock(PROXY_PEER), &config)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ProxyProtocolErrorKind::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(error.to_string().ends_with("no complete header within 5s"));
    drop(proxy);
}

#[tokio::test(start_paused = true)]
async fn slowloris_drip_cannot_extend_the_timeout() {
    // One byte every second: the deadline counts from the start, not from the last byte.
    let config = trusting_loopback().timeout(Duration::from_secs(3)).unwrap();
    let (mut proxy, server) = tokio::io::duplex(64);
    let drip = tokio::spawn(async move {
        for byte in b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2" {
            proxy.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        proxy
    });
    let error = read_proxy_header(server, sock(PROXY_PEER), &config)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ProxyProtocolErrorKind::Timeout);
    drip.abort();
}

// ---- the listener ----------------------------------------------------------------------------

async fn listener(config: ProxyProtocolConfig) -> (ProxyProtocolListener, SocketAddr) {
    let listener = ProxyProtocolListener::bind("127.0.0.1:0", config)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn next(
    listener: &mut ProxyProtocolListener,
) -> (ProxiedStream<tokio::net::TcpStream>, SocketAddr) {
    tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the listener answered in time")
}

#[tokio::test]
async fn listener_answers_the_client_of_a_trusted_proxy() {
    let (mut listener, addr) = listener(trusting_loopback()).await;
    let mut proxy = tokio::net::TcpStream::connect(addr).await.unwrap();
    proxy
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\nping")
        .await
        .unwrap();
    let (mut stream, client) = next(&mut listener).await;
    assert_eq!(client, sock("203.0.113.7:51234"));
    let mut ping = [0u8; 4];
    stream.read_exact(&mut ping).await.unwrap();
    assert_eq!(&ping, b"ping");
}

#[tokio::test]
async fn listener_keeps_the_socket_peer_of_an_untrusted_client() {
    let config = ProxyProtocolConfig::new(TrustedRanges::parse("10.0.0.0/8").unwrap());
    let (mut listener, addr) = listener(config).await;
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = client.local_addr().unwrap();
    client
        .write_all(b"PROXY TCP4 10.9.9.9 127.0.0.1 1 2\r\n")
        .await
        .unwrap();
    let (mut stream, peer) = next(&mut listener).await;
    assert_eq!(peer, local);
    let mut first = [0u8; 6];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(
        &first, b"PROXY ",
        "the client's bytes reach the application unchanged"
    );
}

#[tokio::test]
async fn listener_drops_garbage_and_goes_on() {
    let (mut listener, addr) = listener(trusting_loopback()).await;
    let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut good = tokio::net::TcpStream::connect(addr).await.unwrap();
    good.write_all(b"PROXY TCP6 2001:db8::1 ::1 5 6\r\n")
        .await
        .unwrap();
    let (_stream, client) = next(&mut listener).await;
    assert_eq!(client, sock("[2001:db8::1]:5"));
    // The bad connection was closed by the server.
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), bad.read(&mut byte))
        .await
        .unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)));
}

#[tokio::test]
async fn listener_is_not_held_up_by_a_silent_proxy_connection() {
    let (mut listener, addr) = listener(trusting_loopback()).await;
    // Opens, sends nothing, stays open (slowloris on the accept loop).
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut good = tokio::net::TcpStream::connect(addr).await.unwrap();
    good.write_all(&v2_tcp4([198, 51, 100, 9], 40000, &[]))
        .await
        .unwrap();
    // Well before the 5 s header timeout of the silent one.
    let (_stream, client) = tokio::time::timeout(Duration::from_secs(3), listener.accept())
        .await
        .expect("a silent connection must not block the next one");
    assert_eq!(client, sock("198.51.100.9:40000"));
}

#[tokio::test]
async fn listener_at_its_pending_bound_waits_for_a_handshake_to_end() {
    let config = trusting_loopback()
        .timeout(Duration::from_millis(200))
        .unwrap();
    let (listener, addr) = listener(config).await;
    let mut listener = listener.max_pending_handshakes(std::num::NonZeroUsize::MIN);
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut good = tokio::net::TcpStream::connect(addr).await.unwrap();
    good.write_all(b"PROXY TCP4 203.0.113.8 127.0.0.1 1 2\r\n")
        .await
        .unwrap();
    // The silent one times out (200 ms), freeing the single slot; then the good one is read.
    let (_stream, client) = next(&mut listener).await;
    assert_eq!(client.ip(), IpAddr::V4(Ipv4Addr::new(203, 0, 113, 8)));
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_serve_with_peer_addr_connect_info_sees_the_announced_client() {
    use crate::client_ip::{ClientIpLayer, PeerAddr, SocketPeer};
    use axum::routing::get;

    let app = axum::Router::new()
        .route(
            "/",
            get(|client: crate::ClientIp| async move { client.ip().to_string() }),
        )
        .layer(ClientIpLayer::new(SocketPeer::new()));
    let (listener, addr) = listener(trusting_loopback()).await;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerAddr>(),
        )
        .await
        .unwrap();
    });
    let mut proxy = tokio::net::TcpStream::connect(addr).await.unwrap();
    proxy
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\nGET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), proxy.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    server.abort();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("203.0.113.7"), "{response}");
}

// ---- no input panics -------------------------------------------------------------------------

fn header_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let v1 = proptest::collection::vec(any::<u8>(), 0..120).prop_map(|tail| {
        let mut bytes = b"PROXY ".to_vec();
        bytes.extend(tail);
        bytes
    });
    let v2 = (
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(version_command, family, len, tail)| {
            let mut bytes = SIGNATURE.to_vec();
            bytes.extend([version_command, family]);
            bytes.extend(len.to_be_bytes());
            bytes.extend(tail);
            bytes
        });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..700), v1, v2]
}

proptest! {
    #[test]
    fn no_byte_sequence_panics_the_parser(bytes in header_like_bytes(), max in 232usize..2000) {
        if let Ok(Parsed::Complete(header)) = parse(&bytes, max) {
            prop_assert!(header.len <= bytes.len());
            prop_assert!(header.len <= max.max(107));
        }
    }

    #[test]
    fn no_byte_sequence_panics_the_handshake_and_no_byte_is_lost(bytes in header_like_bytes()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = trusting_loopback();
            if let Ok((stream, _client)) =
                read_proxy_header(&bytes[..], sock(PROXY_PEER), &config).await
            {
                let (rest, buffered) = stream.into_parts();
                let mut after = buffered;
                after.extend_from_slice(rest);
                let header_len = bytes.len() - after.len();
                prop_assert_eq!(&bytes[header_len..], &after[..]);
            }
            Ok(())
        })?;
    }
}
