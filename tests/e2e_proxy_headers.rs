//! What each shipped proxy configuration actually sends to the app, checked against what
//! docs/proxies.md promises: an in-test echo app behind real nginx, Caddy and HAProxy reports
//! the socket peer and the forwarding headers it received, for a client that forges them all.
//!
//! Each test skips (with a message) only when its proxy is not installed and `CI` is unset.

mod support;

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::routing::get as route_get;
use serde_json::{json, Value};

use support::{free_addr, get, lo, App, Kind, Proxy, Scratch, TwoHops};

/// An app that answers the peer and every header line it received, in order.
async fn echo_app(listen: IpAddr) -> App {
    let router = axum::Router::new().route(
        "/",
        route_get(
            |ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap| async move {
                let lines: Vec<Value> = headers
                    .iter()
                    .map(|(name, value)| {
                        json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())])
                    })
                    .collect();
                axum::Json(json!({"peer": peer.ip().to_string(), "headers": lines}))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind((listen, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    App::spawn(addr, async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    })
}

/// What the app received: its peer, and the values of every line of `name`, in order.
struct Received(Value);

impl Received {
    fn peer(&self) -> &str {
        self.0["peer"].as_str().unwrap_or_default()
    }

    fn lines(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|pair| pair[0] == name)
            .filter_map(|pair| pair[1].as_str().map(str::to_owned))
            .collect()
    }
}

/// A client at `client` sends every forwarding header, forged, through `proxy`.
async fn forge_through(proxy: SocketAddr, client: IpAddr) -> Received {
    let response = get("/")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Real-IP", "6.6.6.6")
        .header("Forwarded", "for=6.6.6.6")
        .header("CF-Connecting-IP", "6.6.6.6")
        .header("True-Client-IP", "6.6.6.6")
        .header("Fly-Client-IP", "6.6.6.6")
        .send(client, proxy)
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    Received(response.json())
}

/// Test `test`'s echo app (on .1) behind proxy `kind` started from `file`, listening on .2 and
/// connecting from `bind`; a client on .10 forges every header through it, and the proxy must
/// still be running after. What the app received; `None` if the proxy is not installed,
/// outside CI.
async fn forge_through_one_proxy(
    scratch: &Scratch,
    test: u8,
    kind: Kind,
    file: &str,
    bind: Option<IpAddr>,
) -> Option<Received> {
    let app = echo_app(lo(test, 1)).await;
    let mut proxy = Proxy::in_front_of(kind, scratch, file, lo(test, 2), bind, app.addr)?;
    let received = forge_through(proxy.addr, lo(test, 10)).await;
    proxy.assert_running();
    Some(received)
}

/// What every shipped single-proxy configuration promises besides X-Forwarded-For: X-Real-IP
/// overwritten with the client, and the other forwarding headers removed.
fn assert_x_real_ip_overwritten_and_the_rest_removed(received: &Received, client: IpAddr) {
    assert_eq!(received.lines("x-real-ip"), [client.to_string()]);
    for name in [
        "forwarded",
        "cf-connecting-ip",
        "true-client-ip",
        "fly-client-ip",
    ] {
        assert!(
            received.lines(name).is_empty(),
            "{name} must not reach the app: {}",
            received.0
        );
    }
}

#[tokio::test]
async fn nginx_appends_xff_overwrites_x_real_ip_removes_the_rest_and_binds_its_address() {
    let test = 30;
    let scratch = Scratch::new("headers-nginx");
    let bind = lo(test, 3);
    let client = lo(test, 10);
    let Some(received) =
        forge_through_one_proxy(&scratch, test, Kind::Nginx, "nginx.conf", Some(bind)).await
    else {
        return;
    };
    assert_eq!(received.peer(), bind.to_string());
    assert_eq!(
        received.lines("x-forwarded-for"),
        [format!("6.6.6.6, {client}")]
    );
    assert_x_real_ip_overwritten_and_the_rest_removed(&received, client);
}

#[tokio::test]
async fn caddy_replaces_xff_overwrites_x_real_ip_and_removes_the_rest() {
    let test = 31;
    let scratch = Scratch::new("headers-caddy");
    let client = lo(test, 10);
    // Caddy 2.6 cannot pin its source address (no bind): on loopback it is 127.0.0.1.
    let Some(received) =
        forge_through_one_proxy(&scratch, test, Kind::Caddy, "Caddyfile", None).await
    else {
        return;
    };
    assert_eq!(received.peer(), "127.0.0.1");
    assert_eq!(received.lines("x-forwarded-for"), [client.to_string()]);
    assert_x_real_ip_overwritten_and_the_rest_removed(&received, client);
}

#[tokio::test]
async fn haproxy_adds_an_xff_line_overwrites_x_real_ip_removes_the_rest_and_binds_its_address() {
    let test = 32;
    let scratch = Scratch::new("headers-haproxy");
    let bind = lo(test, 3);
    let client = lo(test, 10);
    let Some(received) =
        forge_through_one_proxy(&scratch, test, Kind::Haproxy, "haproxy.cfg", Some(bind)).await
    else {
        return;
    };
    assert_eq!(received.peer(), bind.to_string());
    assert_eq!(
        received.lines("x-forwarded-for"),
        ["6.6.6.6".to_owned(), client.to_string()]
    );
    assert_x_real_ip_overwritten_and_the_rest_removed(&received, client);
}

#[tokio::test]
async fn internal_lb_behind_the_edge_adds_the_edge_as_a_line() {
    let test = 33;
    let scratch = Scratch::new("headers-two-hops");
    let edge_bind = lo(test, 3);
    let lb_bind = lo(test, 5);
    let app = echo_app(lo(test, 1)).await;
    let Some(hops) = TwoHops::start(&scratch, test, app.addr) else {
        return;
    };
    let client = lo(test, 10);
    let received = forge_through(hops.edge.addr, client).await;
    assert_eq!(received.peer(), lb_bind.to_string());
    assert_eq!(
        received.lines("x-forwarded-for"),
        [format!("6.6.6.6, {client}"), edge_bind.to_string()]
    );
}

#[tokio::test]
async fn cdn_sets_cf_connecting_ip_from_its_peer_and_passes_unknown_headers() {
    let test = 34;
    let scratch = Scratch::new("headers-cdn");
    let bind = lo(test, 3);
    let app = echo_app(lo(test, 1)).await;
    let Some(cdn) = Proxy::cdn(&scratch, free_addr(lo(test, 2)), bind, app.addr, app.addr) else {
        return;
    };
    let client = lo(test, 10);
    for host in ["app.example.test", "api.example.test"] {
        let response = get("/")
            .host(host)
            .header("CF-Connecting-IP", "6.6.6.6")
            .header("X-Client-IP", "6.6.6.6")
            .send(client, cdn.addr)
            .await;
        let received = Received(response.json());
        assert_eq!(received.peer(), bind.to_string());
        assert_eq!(received.lines("cf-connecting-ip"), [client.to_string()]);
        // Like the real CDN: a custom header goes through untouched. This is why the
        // serverless function's client-IP header must be signed.
        assert_eq!(received.lines("x-client-ip"), ["6.6.6.6"]);
    }
    let unknown = get("/").host("other.test").send(client, cdn.addr).await;
    assert_eq!(unknown.status, 421);
}
