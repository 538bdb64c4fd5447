//! The example server's `--trust` flag (DESIGN.md's contract: a CIDR, or a preset): the presets
//! and CIDRs are believed, `any` is refused with a message that says why (API review item 16).
//! Clients connect from their own 127.x addresses; every process started is killed by PID when
//! the test ends.
//!
//! Address plan: 127.0.<test>.1 the example server, .10 and up the clients.

mod support;

use std::net::IpAddr;

use support::{example_server_refuses, get, lo, Response, Scratch, Server};

#[test]
fn api_review_16_trust_any_is_refused_with_a_clear_message() {
    let scratch = Scratch::new("trust-any");
    for args in [
        &["--source", "xff", "--trust", "any"][..],
        &["--source", "xff", "--trust", "loopback", "--trust", "ANY"][..],
        &["--proxy-protocol", "any"][..],
    ] {
        let stderr = example_server_refuses(&scratch, args);
        assert!(stderr.contains("`any` is refused"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("any client choose its own IP"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("loopback, private, cgnat, cloudflare"),
            "{stderr}"
        );
    }
}

#[test]
fn api_review_16_an_unknown_trust_value_names_the_presets() {
    let scratch = Scratch::new("trust-unknown");
    let stderr = example_server_refuses(&scratch, &["--source", "xff", "--trust", "everyone"]);
    assert!(
        stderr.contains(
            "--trust: `everyone` is neither a CIDR nor a preset (loopback, private, cgnat, cloudflare)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("any"), "{stderr}");
}

#[test]
fn api_review_16_a_header_source_without_trust_does_not_suggest_trusting_everyone() {
    let scratch = Scratch::new("trust-missing");
    let stderr = example_server_refuses(&scratch, &["--source", "xff"]);
    assert!(
        stderr.contains("give --trust with your proxy's addresses"),
        "{stderr}"
    );
    assert!(!stderr.contains("--trust any"), "{stderr}");
}

/// Start the example server on `listen` with `--source xff --trust <trust>`, send it a request
/// from `client` with `X-Forwarded-For: 203.0.113.7`, and stop it.
async fn xff_request_trusting(
    scratch: &Scratch,
    listen: IpAddr,
    trust: &str,
    client: IpAddr,
) -> Response {
    let server = Server::start(scratch, listen, &["--source", "xff", "--trust", trust]);
    get("/")
        .header("X-Forwarded-For", "203.0.113.7")
        .send(client, server.addr)
        .await
}

#[tokio::test]
async fn api_review_16_trust_presets_and_cidrs_still_work() {
    let test = 161;
    let scratch = Scratch::new("trust-presets");
    let client = lo(test, 10);
    // `loopback` (a preset): the client's loopback address is a trusted proxy, so its
    // X-Forwarded-For entry is the client.
    let response = xff_request_trusting(&scratch, lo(test, 1), "loopback", client).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.ip(), "203.0.113.7");

    // A CIDR that does not hold the client: its header is not believed (400, the default).
    let response = xff_request_trusting(&scratch, lo(test, 2), "10.0.0.0/8", client).await;
    assert_eq!(response.status, 400, "{response:?}");
}
