//! Drives the explain endpoint (`explain::Explain::respond`) with client-chosen query strings,
//! `Accept` headers and forwarding headers, for a chain of every kind of source (signed header,
//! custom trusted header, `Forwarded`, `X-Forwarded-For`, `True-Client-IP`, the peer).
//!
//! Run: `cargo +nightly fuzz run explain_request` (from the crate root).
//!
//! The input's first byte picks the peer and whether a `ClientIp` is already in the request;
//! the rest is split at `\n` into lines, each line's first byte picking what the line is: the
//! query string, an `Accept` line (as written, or from media-range and `q=` tokens), a line
//! of one of the forwarding headers, or an unrelated header. Besides "no panic", it checks:
//! - the answer is one of the two documented formats (`application/json`,
//!   `text/html; charset=utf-8`), with `Vary: accept`, `no-store` and `nosniff`;
//! - `format=html` / `format=json` in the query decides alone, whatever `Accept` says (the
//!   query as sent, or with the pair appended); with neither, no `Accept` means JSON, an
//!   `Accept: text/html` alone means HTML, and an `Accept: application/json` line added to any
//!   others means JSON;
//! - the JSON is valid JSON with the documented fields, and shows every forwarding header line
//!   exactly as received (lossy UTF-8), in order, and nothing else;
//! - the HTML page has only the page's own elements (no markup from the request: every
//!   client byte is escaped), and shows every forwarding header line, escaped.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, VARY, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderName, HeaderValue, Request, Response, Uri};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_bouncer::client_ip::{
    Chain, ClientIp, Forwarded, PeerAddr, SignedHeader, SigningKey, SigningKeys, SocketPeer,
    TrustedHeader, TrustedRanges, XForwardedFor,
};
use tower_bouncer::explain::{Explain, DEFAULT_PATH};

const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// What a line can be, by its first byte: `None` is the query string, `"accept"` an `Accept`
/// line as written, `"accept-tokens"` one written with [`ACCEPT_TOKENS`].
const LINES: [Option<&str>; 12] = [
    None,
    Some("accept"),
    Some("accept-tokens"),
    Some("x-forwarded-for"),
    Some("forwarded"),
    Some("x-real-ip"),
    Some("x-client-address"),
    Some("x-signed-client-ip"),
    Some("cf-connecting-ip"),
    Some("cf-connecting-ipv6"),
    Some("true-client-ip"),
    Some("user-agent"),
];

/// The pieces of an `Accept` line written from tokens, one byte each.
const ACCEPT_TOKENS: [&str; 16] = [
    "text/html",
    "application/json",
    "text/*",
    "application/*",
    "*/*",
    "TEXT/HTML",
    "Application/JSON",
    ";q=0",
    ";q=0.5",
    "; q=1",
    ";q=0.999",
    ";q=1.000",
    ";q=",
    ";level=1",
    ",",
    " ",
];

/// The headers the page shows: the standard forwarding headers and those the sources read.
const SHOWN: [&str; 11] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "true-client-ip",
    "fastly-client-ip",
    "fly-client-ip",
    "cloudfront-viewer-address",
    "x-client-address",
    "x-signed-client-ip",
];

/// The elements the page is written with; anything else would come from the request.
const ELEMENTS: [&str; 19] = [
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "section", "div",
    "table", "tr", "th", "td", "code", "b", "span",
];

fn explain() -> &'static Explain {
    static EXPLAIN: OnceLock<Explain> = OnceLock::new();
    EXPLAIN.get_or_init(|| {
        let trusted = TrustedRanges::parse("127.0.0.0/8\n10.0.0.0/8\n::1/128").unwrap();
        let keys = SigningKeys::new(SigningKey::new("k1", [7u8; 32]).unwrap());
        let chain = Chain::new()
            .then(SignedHeader::new(
                HeaderName::from_static("x-signed-client-ip"),
                keys,
            ))
            .then(TrustedHeader::from_name("X-Client-Address", trusted.clone()).unwrap())
            .then(Forwarded::rightmost_untrusted(trusted.clone()))
            .then(XForwardedFor::rightmost_untrusted(trusted.clone()))
            // (Not the Cloudflare preset: its range list, in every body, would slow each run.)
            .then(TrustedHeader::true_client_ip(trusted))
            .then(SocketPeer::new());
        Explain::new(Arc::new(chain))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut query: Option<&[u8]> = None;
    let mut headers = Vec::new();
    for line in rest.split(|&byte| byte == b'\n') {
        let Some((&kind, value)) = line.split_first() else {
            continue;
        };
        match LINES[usize::from(kind) % LINES.len()] {
            None => query = Some(value),
            Some("accept-tokens") => {
                let text: String = value
                    .iter()
                    .map(|&token| ACCEPT_TOKENS[usize::from(token) % ACCEPT_TOKENS.len()])
                    .collect();
                headers.push((ACCEPT, HeaderValue::try_from(text).unwrap()));
            }
            Some(name) => {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    headers.push((HeaderName::from_static(name), value));
                }
            }
        }
    }
    let peer: Option<SocketAddr> = match selector % 4 {
        0 => None,
        1 => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 5000))),
        2 => Some("[::ffff:10.1.2.3]:5000".parse().unwrap()),
        _ => Some(SocketAddr::from((Ipv4Addr::new(203, 0, 113, 7), 5000))),
    };
    let layer_answer = (selector & 4 != 0).then(|| {
        ClientIp::fallback(peer.map_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), |peer| peer.ip()))
    });
    let build = |query: Option<&[u8]>, extra: Option<(HeaderName, HeaderValue)>| {
        let mut target = DEFAULT_PATH.as_bytes().to_vec();
        if let Some(query) = query {
            target.push(b'?');
            target.extend_from_slice(query);
        }
        let uri = Uri::try_from(target).ok()?;
        let mut request = Request::builder().uri(uri).body(()).ok()?;
        for (name, value) in headers.iter().cloned().chain(extra) {
            request.headers_mut().append(name, value);
        }
        if let Some(peer) = peer {
            request.extensions_mut().insert(PeerAddr(peer));
        }
        if let Some(client) = layer_answer {
            request.extensions_mut().insert(client);
        }
        Some(request)
    };
    // A query that is not a valid URI is dropped: no server would hand it over.
    let (query, request) = match build(query, None) {
        Some(request) => (query, request),
        None => (None, build(None, None).unwrap()),
    };

    let response = explain().respond(&request);
    let format = check_response(&request, &response, true);

    // The query decides alone.
    let pairs: Vec<&str> = request.uri().query().unwrap_or("").split('&').collect();
    let asks_html = pairs.contains(&"format=html");
    let asks_json = pairs.contains(&"format=json");
    match (asks_html, asks_json) {
        (true, false) => assert_eq!(format, HTML),
        (false, true) => assert_eq!(format, JSON),
        (true, true) => {}
        (false, false) => {
            if !request.headers().contains_key(ACCEPT) {
                assert_eq!(format, JSON, "no accept, no format");
                // A browser's `Accept: text/html` gets the page.
                let html = (ACCEPT, HeaderValue::from_static("text/html"));
                let request = build(query, Some(html)).unwrap();
                let response = explain().respond(&request);
                assert_eq!(check_response(&request, &response, false), HTML);
            }
            for (pair, expected) in [("format=html", HTML), ("format=json", JSON)] {
                // Appended to the query the server saw (a `#` in the bytes starts a fragment).
                let mut forced = request.uri().query().unwrap_or("").as_bytes().to_vec();
                forced.extend_from_slice(b"&");
                forced.extend_from_slice(pair.as_bytes());
                let request = build(Some(&forced), None).unwrap();
                let response = explain().respond(&request);
                assert_eq!(
                    check_response(&request, &response, false),
                    expected,
                    "{pair}"
                );
            }
            // Nothing weighs more than application/json at q=1.
            let json = (ACCEPT, HeaderValue::from_static("application/json"));
            let request = build(query, Some(json)).unwrap();
            let response = explain().respond(&request);
            assert_eq!(check_response(&request, &response, false), JSON);
        }
    }
});

/// Checks one response for `request` (its body too when `body`); answers its format.
fn check_response(request: &Request<()>, response: &Response<String>, body: bool) -> &'static str {
    let headers = response.headers();
    assert_eq!(headers[VARY], "accept");
    assert_eq!(headers[CACHE_CONTROL], "no-store");
    assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    let format = match headers[CONTENT_TYPE].to_str().unwrap() {
        JSON => JSON,
        HTML => HTML,
        other => panic!("content type {other}"),
    };
    if body {
        let shown: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter(|(name, _)| SHOWN.contains(&name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        if format == JSON {
            check_json(response.body(), &shown);
        } else {
            check_html(response.body(), &shown);
        }
    }
    format
}

fn check_json(body: &str, shown: &[(String, String)]) {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"));
    for field in [
        "peer",
        "forwarding_headers",
        "sources",
        "result",
        "key",
        "bucket",
    ] {
        assert!(json.get(field).is_some(), "no {field} in {body}");
    }
    let forwarding: Vec<(String, String)> = json["forwarding_headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|header| {
            (
                header["name"].as_str().unwrap().to_owned(),
                header["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(forwarding, shown);
    for source in json["sources"].as_array().unwrap() {
        let outcome = source["outcome"].as_str().unwrap();
        assert!(["resolved", "absent", "untrustworthy"].contains(&outcome));
        assert!(source["used"].is_boolean() && source["reached"].is_boolean());
        if outcome == "resolved" {
            source["ip"].as_str().unwrap().parse::<IpAddr>().unwrap();
        } else {
            assert!(source["reason"].is_string() && source["why"].is_string());
        }
    }
    if let Some(result) = json["result"].as_object() {
        result["ip"].as_str().unwrap().parse::<IpAddr>().unwrap();
    }
}

fn check_html(body: &str, shown: &[(String, String)]) {
    assert!(body.starts_with("<!DOCTYPE html>"));
    for (at, _) in body.match_indices('<').skip(1) {
        let tag = body[at + 1..].strip_prefix('/').unwrap_or(&body[at + 1..]);
        let name: String = tag
            .chars()
            .take_while(|character| character.is_ascii_alphanumeric())
            .collect();
        assert!(
            ELEMENTS.contains(&name.as_str()),
            "element {:?} in the page",
            &body[at..body.len().min(at + 40)]
        );
    }
    for (name, value) in shown {
        let row = format!(
            "<tr><td><code>{}</code></td><td class=\"v\">{}</td></tr>",
            escape(name),
            escape(value)
        );
        assert!(body.contains(&row), "{row} not in the page");
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            character => out.push(character),
        }
    }
    out
}
