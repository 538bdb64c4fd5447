//! End to end, through the real proxies: nginx, Caddy and HAProxy on loopback, in front of the
//! example server, with clients that connect from their own 127.x addresses and proxies that
//! connect to the app from theirs. With `e2e_proxy_protocol.rs` (haproxy-proxy-protocol.cfg)
//! and `e2e_proxy_headers.rs`, every configuration file in `examples/proxies/` is used.
//!
//! Each test skips (with a message) only when its proxy is not installed and `CI` is unset;
//! `.ci/run` installs them. Every process a test starts is killed by PID when the test ends,
//! also when it fails (`support::Process`).
//!
//! Address plan: 127.0.<test>.1 the example server, .2 the proxy's listening address, .3 the
//! proxy's source address towards the app, .10 and up the clients.

mod support;

use support::{get, lo, resolves_and_holds_the_quota, Kind, Proxy, Scratch, Server, TwoHops};

/// The headers a client rotates to get a fresh bucket on every request, each one set to a new
/// address per request.
const SPOOFABLE: &[&str] = &[
    "X-Forwarded-For",
    "Forwarded",
    "X-Real-IP",
    "CF-Connecting-IP",
    "True-Client-IP",
];

/// Test `test`'s example server (on .1; `--source <source>`, trusting only the proxy's source
/// address, 5 requests a minute) behind proxy `kind` started from `file`, listening on .2 and
/// connecting from .3. `None` if the proxy is not installed, outside CI.
fn server_behind(
    scratch: &Scratch,
    test: u8,
    kind: Kind,
    file: &str,
    source: &str,
) -> Option<(Server, Proxy)> {
    // Caddy 2.6 cannot choose its source address: on loopback it connects from 127.0.0.1,
    // which no client of these tests uses.
    let bind = (kind != Kind::Caddy).then(|| lo(test, 3));
    let trust = bind.map_or_else(|| "127.0.0.1".to_owned(), |bind| bind.to_string());
    let server = Server::start(
        scratch,
        lo(test, 1),
        &["--source", source, "--trust", &trust, "--quota", "5/min"],
    );
    let proxy = Proxy::in_front_of(kind, scratch, file, lo(test, 2), bind, server.addr)?;
    Some((server, proxy))
}

#[tokio::test]
async fn nginx_xff_resolves_the_client_and_rotation_gets_one_bucket() {
    let test = 1;
    let scratch = Scratch::new("nginx-xff");
    let Some((_server, mut proxy)) =
        server_behind(&scratch, test, Kind::Nginx, "nginx.conf", "xff")
    else {
        return;
    };
    resolves_and_holds_the_quota(&mut proxy, test, "xff", SPOOFABLE).await;
}

#[tokio::test]
async fn nginx_x_real_ip_resolves_the_client_and_rotation_gets_one_bucket() {
    let test = 2;
    let scratch = Scratch::new("nginx-x-real-ip");
    let Some((_server, mut proxy)) = server_behind(
        &scratch,
        test,
        Kind::Nginx,
        "nginx.conf",
        "header:x-real-ip",
    ) else {
        return;
    };
    resolves_and_holds_the_quota(&mut proxy, test, "header", SPOOFABLE).await;
}

#[tokio::test]
async fn caddy_resolves_the_client_and_rotation_gets_one_bucket() {
    let test = 3;
    let scratch = Scratch::new("caddy");
    let Some((_server, mut proxy)) = server_behind(&scratch, test, Kind::Caddy, "Caddyfile", "xff")
    else {
        return;
    };
    let explain = get("/explain").send(lo(test, 9), proxy.addr).await.json();
    assert!(
        explain["peer"]
            .as_str()
            .is_some_and(|peer| peer.starts_with("127.0.0.1:")),
        "Caddy connects from 127.0.0.1: {explain}"
    );
    resolves_and_holds_the_quota(&mut proxy, test, "xff", SPOOFABLE).await;
}

#[tokio::test]
async fn haproxy_resolves_the_client_across_header_lines_and_rotation_gets_one_bucket() {
    let test = 4;
    let scratch = Scratch::new("haproxy");
    let Some((_server, mut proxy)) =
        server_behind(&scratch, test, Kind::Haproxy, "haproxy.cfg", "xff")
    else {
        return;
    };
    // HAProxy adds its own X-Forwarded-For line after the client's: the app must read both
    // lines as one list (ATTACKS.md 16) and still take HAProxy's entry.
    let explain = get("/explain")
        .header("X-Forwarded-For", "6.6.6.6")
        .send(lo(test, 9), proxy.addr)
        .await
        .json();
    let lines: Vec<&str> = explain["forwarding_headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|header| header["name"] == "x-forwarded-for")
        .filter_map(|header| header["value"].as_str())
        .collect();
    assert_eq!(lines, ["6.6.6.6", "127.0.4.9"], "{explain}");
    assert_eq!(explain["result"]["ip"], "127.0.4.9", "{explain}");
    resolves_and_holds_the_quota(&mut proxy, test, "xff", SPOOFABLE).await;
}

/// Edge nginx → internal HAProxy → the example server started with `args(edge's source
/// address, the internal HAProxy's)`.
async fn two_proxies_in_a_row(test: u8, name: &str, args: impl Fn(&str, &str) -> Vec<String>) {
    let scratch = Scratch::new(name);
    let edge_bind = lo(test, 3);
    let lb_bind = lo(test, 5);
    let args = args(&edge_bind.to_string(), &lb_bind.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&scratch, lo(test, 1), &args);
    let Some(mut hops) = TwoHops::start(&scratch, test, server.addr) else {
        return;
    };
    // A client that prepends a trusted-looking chain of its own gains nothing.
    let client = lo(test, 9);
    let response = get("/")
        .header(
            "X-Forwarded-For",
            format!("6.6.6.6, {edge_bind}, {lb_bind}"),
        )
        .send(client, hops.edge.addr)
        .await;
    assert_eq!(response.ip(), client.to_string(), "{response:?}");
    resolves_and_holds_the_quota(&mut hops.edge, test, "xff", SPOOFABLE).await;
    hops.lb.assert_running();
}

#[tokio::test]
async fn two_proxies_in_a_row_with_the_hop_count() {
    two_proxies_in_a_row(5, "two-hops-count", |_edge, lb| {
        ["--source", "xff-hops:2", "--trust", lb, "--quota", "5/min"]
            .map(str::to_owned)
            .to_vec()
    })
    .await;
}

#[tokio::test]
async fn two_proxies_in_a_row_with_the_trusted_ranges() {
    two_proxies_in_a_row(6, "two-hops-ranges", |edge, lb| {
        [
            "--source", "xff", "--trust", edge, "--trust", lb, "--quota", "5/min",
        ]
        .map(str::to_owned)
        .to_vec()
    })
    .await;
}

#[tokio::test]
async fn origin_reached_directly_with_forged_headers_is_not_believed() {
    // The origin of the nginx pairing, reached without nginx: every forwarding header comes
    // from an untrusted peer and is not read at all (ATTACKS.md 1-4).
    let test = 7;
    let scratch = Scratch::new("direct");
    let proxy = lo(test, 3);
    for sources in [
        &["--source", "xff"][..],
        &["--source", "header:x-real-ip"],
        &["--source", "header:cf-connecting-ip"],
        &["--source", "forwarded"],
        &[
            "--source",
            "header:cf-connecting-ip",
            "--source",
            "xff",
            "--source",
            "forwarded",
        ],
    ] {
        let mut args = sources.to_vec();
        let proxy_text = proxy.to_string();
        args.extend(["--trust", &proxy_text, "--on-unresolved", "peer"]);
        let server = Server::start(&scratch, lo(test, 1), &args);
        let client = lo(test, 10);
        let forged = proxy.to_string();
        let response = get("/")
            .header("X-Forwarded-For", format!("203.0.113.66, {forged}"))
            .header("Forwarded", format!("for=203.0.113.66, for={forged}"))
            .header("X-Real-IP", "203.0.113.66")
            .header("CF-Connecting-IP", "203.0.113.66")
            .send(client, server.addr)
            .await;
        assert_eq!(
            response.ip(),
            client.to_string(),
            "{sources:?}: {response:?}"
        );
        assert!(!response.body.contains("203.0.113.66"), "{response:?}");
        drop(server);
    }
}

#[cfg(feature = "signed")]
mod multi_hop {
    //! The Cloudflare multi-hop story on loopback (DESIGN.md, story 3):
    //! browser → "CDN" (nginx) → serverless function → "CDN" again → origin.

    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get as route_get;
    use tower_bouncer::client_ip::{Signer, SigningKey};

    use super::support::{free_addr, get, lo, App, Proxy, Scratch, Server};

    /// 32 bytes, base64url: `abcdefghijklmnopqrstuvwxyz123456`.
    const SECRET: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY";
    const SIGNED_HEADER: &str = "x-client-ip-signed";

    struct Function {
        signer: Signer,
        address: IpAddr,
        cdn: SocketAddr,
    }

    /// The serverless function: it trusts the CDN's CF-Connecting-IP (only the CDN reaches
    /// it), signs that address, and calls the API through the CDN again.
    async fn function(
        State(function): State<Arc<Function>>,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        let Some(browser) = headers
            .get("cf-connecting-ip")
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<IpAddr>().ok())
        else {
            return (StatusCode::BAD_REQUEST, "no CF-Connecting-IP".to_owned());
        };
        let token = function.signer.sign_now(browser);
        let response = get("/")
            .host("api.example.test")
            .header(
                SIGNED_HEADER,
                token.to_str().expect("ascii token").to_owned(),
            )
            .send(function.address, function.cdn)
            .await;
        (
            StatusCode::from_u16(response.status).expect("a status"),
            response.body,
        )
    }

    #[tokio::test]
    async fn cloudflare_multi_hop_story_on_loopback() {
        let test = 8;
        let scratch = Scratch::new("multi-hop");
        let cdn_bind = lo(test, 3);
        let cdn_listen = free_addr(lo(test, 2));
        let key = format!("k1:{SECRET}");
        let origin = Server::start(
            &scratch,
            lo(test, 1),
            &[
                "--source",
                &format!("signed:{SIGNED_HEADER}"),
                "--signing-key",
                &key,
                "--source",
                "header:cf-connecting-ip",
                "--trust",
                &cdn_bind.to_string(),
            ],
        );

        // The function, an in-test Axum app on its own address.
        let function_address = lo(test, 4);
        let listener = tokio::net::TcpListener::bind((function_address, 0))
            .await
            .unwrap();
        let function_addr = listener.local_addr().unwrap();
        let state = Arc::new(Function {
            signer: Signer::from_key(SigningKey::parse_kid_secret(&key).unwrap()),
            address: function_address,
            cdn: cdn_listen,
        });
        let app = axum::Router::new()
            .route("/", route_get(function))
            .with_state(state);
        let _function = App::spawn(function_addr, async move {
            axum::serve(listener, app).await.unwrap();
        });

        let Some(mut cdn) = Proxy::cdn(&scratch, cdn_listen, cdn_bind, function_addr, origin.addr)
        else {
            return;
        };

        // 1. The browser opens the site: the origin sees the browser, through the signature —
        //    although the CF-Connecting-IP it received names the function.
        let browser = lo(test, 10);
        let response = get("/")
            .host("app.example.test")
            .send(browser, cdn.addr)
            .await;
        assert_eq!(response.ip(), browser.to_string(), "{response:?}");
        assert_eq!(response.json()["source"], "signed", "{response:?}");

        // 2. A client calling the API straight through the CDN with a forged signed header:
        //    the CDN passes it on, the origin does not believe it, and the chain stops there
        //    (it never falls back to CF-Connecting-IP): 400.
        let attacker = lo(test, 11);
        for forged in [
            "1.2.3.4".to_owned(),
            "v1.k1.1700000000.1.2.3.4.AAAA".to_owned(),
            signature_under_another_key("203.0.113.66"),
        ] {
            let response = get("/")
                .host("api.example.test")
                .header(SIGNED_HEADER, forged.clone())
                .send(attacker, cdn.addr)
                .await;
            assert_eq!(response.status, 400, "{forged}: {response:?}");
            assert!(!response.body.contains("203.0.113.66"), "{response:?}");
        }

        // 3. The naive fix — an unsigned custom header — is not read at all: the origin falls
        //    to CF-Connecting-IP, which the CDN set to the attacker's own address.
        let response = get("/")
            .host("api.example.test")
            .header("X-Client-IP", "203.0.113.66")
            .header("CF-Connecting-IP", "203.0.113.66")
            .send(attacker, cdn.addr)
            .await;
        assert_eq!(response.ip(), attacker.to_string(), "{response:?}");

        // 4. The origin reached directly, with a header signed by a key it does not hold and a
        //    forged CF-Connecting-IP: neither is believed (the direct peer is not the CDN).
        let response = get("/")
            .header("CF-Connecting-IP", "203.0.113.66")
            .send(attacker, origin.addr)
            .await;
        assert_ne!(response.status, 200, "{response:?}");
        assert!(!response.body.contains("203.0.113.66"), "{response:?}");

        cdn.assert_running();
    }

    /// A well-formed signature of `ip` under a key the origin does not hold.
    fn signature_under_another_key(ip: &str) -> String {
        let signer = Signer::new("k1", [9u8; 32]).unwrap();
        signer
            .sign_now(ip.parse().unwrap())
            .to_str()
            .unwrap()
            .to_owned()
    }
}
