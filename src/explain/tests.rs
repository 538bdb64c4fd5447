use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use serde_json::Value;

use super::service::Explain;
use crate::client_ip::{
    Chain, ClientIp, PeerAddr, SocketPeer, TrustedHeader, TrustedRanges, XForwardedFor,
};

fn explain() -> Explain {
    Explain::new(Arc::new(
        Chain::new()
            .then(XForwardedFor::rightmost_untrusted(TrustedRanges::loopback()))
            .then(TrustedHeader::x_real_ip(TrustedRanges::loopback()))
            .then(SocketPeer::new()),
    ))
}

fn request(peer: &str, headers: &[(&str, &str)], accept: Option<&str>) -> Request<()> {
    let mut builder = Request::builder().uri("/_bouncer/explain");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if let Some(accept) = accept {
        builder = builder.header("accept", accept);
    }
    let mut request = builder.body(()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
    request
}

fn json(explain: &Explain, request: &Request<()>) -> Value {
    let response = explain.respond(request);
    assert_eq!(response.headers()["content-type"], "application/json");
    serde_json::from_str(response.body()).unwrap()
}

#[test]
fn json_names_every_source_and_the_one_that_decided() {
    let request = request(
        "127.0.0.1:5000",
        &[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 127.0.0.2"),
            ("x-real-ip", "198.51.100.1"),
            ("user-agent", "test"),
        ],
        None,
    );
    let body = json(&explain(), &request);
    assert_eq!(body["peer"], "127.0.0.1:5000");
    // The forwarding headers as received; other headers are not shown.
    assert_eq!(
        body["forwarding_headers"],
        serde_json::json!([
            {"name": "x-forwarded-for", "value": "6.6.6.6, 203.0.113.7, 127.0.0.2"},
            {"name": "x-real-ip", "value": "198.51.100.1"},
        ])
    );
    let sources = body["sources"].as_array().unwrap();
    // Every source is shown; the chain stops at the first that resolves, the later ones are
    // marked as not reached.
    let names: Vec<&str> = sources
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["xff", "header:x-real-ip", "peer"]);
    assert_eq!(sources[1]["used"], false);
    assert_eq!(sources[1]["reached"], false);
    assert_eq!(sources[1]["ip"], "198.51.100.1");
    assert_eq!(sources[0]["reached"], true);
    assert_eq!(sources[0]["source"], "xff");
    assert_eq!(sources[0]["outcome"], "resolved");
    assert_eq!(sources[0]["used"], true);
    assert_eq!(sources[0]["ip"], "203.0.113.7");
    let steps = sources[0]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "peer");
    assert_eq!(steps[0]["trusted"], true);
    assert_eq!(steps[1]["value"], "127.0.0.2");
    assert_eq!(steps[1]["verdict"], "trusted_proxy");
    assert_eq!(steps[2]["value"], "203.0.113.7");
    assert_eq!(steps[2]["verdict"], "client");
    assert_eq!(steps.len(), 3, "6.6.6.6 is never read");
    // No ClientIpLayer in front: the result is the source's own answer.
    assert_eq!(body["result"]["ip"], "203.0.113.7");
    assert_eq!(body["key"], Value::Null);
    assert_eq!(body["bucket"], Value::Null);
}

#[test]
fn untrusted_peer_falls_through_to_the_peer_and_says_why() {
    let request = request("198.51.100.9:5000", &[("x-forwarded-for", "1.2.3.4")], None);
    let body = json(&explain(), &request);
    let sources = body["sources"].as_array().unwrap();
    let outcomes: Vec<&str> = sources
        .iter()
        .map(|source| source["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["absent", "absent", "resolved"]);
    assert_eq!(sources[0]["reason"], "peer_not_trusted");
    assert_eq!(sources[0]["used"], false);
    assert_eq!(sources[2]["used"], true);
    assert_eq!(body["result"]["ip"], "198.51.100.9");
}

#[test]
fn the_layer_result_wins_and_unresolved_requests_say_why() {
    let source = Explain::new(Arc::new(XForwardedFor::rightmost_untrusted(
        TrustedRanges::loopback(),
    )));
    let mut request = request("198.51.100.9:5000", &[], None);
    let body = json(&source, &request);
    assert_eq!(body["result"], Value::Null);
    assert_eq!(body["unresolved"]["reason"], "peer_not_trusted");

    request
        .extensions_mut()
        .insert(ClientIp::fallback("198.51.100.9".parse().unwrap()));
    let body = json(&source, &request);
    assert_eq!(
        body["result"],
        serde_json::json!({"ip": "198.51.100.9", "source": "peer", "fallback": true})
    );
}

#[test]
fn script_in_a_header_is_text_in_both_renderings() {
    let evil = "<script>alert(1)</script>\"'&";
    let request = request(
        "127.0.0.1:5000",
        &[("x-forwarded-for", evil), ("x-real-ip", "</td><img src=x>")],
        Some("text/html"),
    );
    let response = explain().respond(&request);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert!(response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let page = response.body();
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
    assert!(page.contains("&lt;/td&gt;&lt;img src=x&gt;"));

    let json_request = self::request("127.0.0.1:5000", &[("x-forwarded-for", evil)], None);
    let response = explain().respond(&json_request);
    assert!(!response.body().contains('<'));
    let body: Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(body["forwarding_headers"][0]["value"], evil);
}

#[test]
fn html_only_when_accept_prefers_it() {
    let chromium =
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
    let cases: &[(Option<&str>, &str, bool)] = &[
        (None, "", false),
        (Some("*/*"), "", false),
        (Some("application/json"), "", false),
        (Some(chromium), "", true),
        (Some("text/html"), "", true),
        (Some("text/*"), "", true),
        (Some("text/html;q=0.5, application/json"), "", false),
        (Some("text/html, application/json;q=0.9"), "", true),
        (Some("text/html;q=0"), "", false),
        (Some("TEXT/HTML"), "", true),
        (Some("text/html;q=garbage"), "", false),
        (Some(chromium), "?format=json", false),
        (None, "?format=html", true),
    ];
    for (accept, query, html) in cases {
        let mut request = request("127.0.0.1:1", &[], *accept);
        *request.uri_mut() = format!("/_bouncer/explain{query}").parse().unwrap();
        let response = explain().respond(&request);
        let is_html = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html");
        assert_eq!(is_html, *html, "{accept:?} {query}");
    }
}

#[cfg(feature = "memory")]
#[test]
fn the_bucket_is_shown_and_never_charged() {
    use std::num::NonZeroU32;

    use crate::client_ip::SourceKind;
    use crate::rate_limit::{IpKey, Quota};
    use crate::store::{MemoryStore, Store};

    let store = MemoryStore::new();
    let quota: Quota = "5/min".parse().unwrap();
    let explain = explain().rate_limit(IpKey::new(), store.clone(), quota);
    let mut request = request("198.51.100.9:5000", &[], None);
    request.extensions_mut().insert(ClientIp::new(
        "198.51.100.9".parse().unwrap(),
        SourceKind::Peer,
    ));
    let key = IpKey::new().mask("198.51.100.9".parse().unwrap());
    for _ in 0..2 {
        store
            .check(&key, &[quota], NonZeroU32::MIN)
            .into_inner()
            .unwrap();
    }
    for _ in 0..3 {
        let body = json(&explain, &request);
        assert_eq!(body["key"], "198.51.100.9");
        assert_eq!(body["bucket"]["remaining"], 3);
        assert_eq!(body["bucket"]["burst"], 5);
        let full = body["bucket"]["full_after_ms"].as_u64().unwrap();
        assert!((23_000..=24_000).contains(&full), "{full}");
    }
}
