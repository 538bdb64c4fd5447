//! The example server's policies (issue 9, item 4), end to end: several `--quota` windows, and
//! the demo tier table (`--tier-header`, `--tier`). Clients connect from their own 127.x
//! addresses; every process started is killed by PID when the test ends.
//!
//! Address plan: 127.0.<test>.1 the example server, .10 and up the clients.

mod support;

use support::{example_server_refuses, get, lo, Scratch, Server};

#[tokio::test]
async fn issue_9_server_several_quota_flags_are_windows_that_all_must_admit() {
    let test = 90;
    let scratch = Scratch::new("policies-windows");
    let server = Server::start(
        &scratch,
        lo(test, 1),
        &["--quota", "3/s", "--quota", "5/min", "--ratelimit-headers"],
    );
    let client = lo(test, 10);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get("/").send(client, server.addr).await);
    }
    let passed = statuses.iter().filter(|r| r.status == 200).count();
    // Within one second only the per-second window binds (3), unless the second ticked over
    // mid-burst; never more than the per-minute window's 5.
    assert!((3..=5).contains(&passed), "{passed} passed: {statuses:?}");
    let first = &statuses[0];
    assert_eq!(
        first.header("ratelimit-policy"),
        Some(r#""per-second";q=3;w=1, "per-minute";q=5;w=60"#)
    );
    assert_eq!(
        first.header("ratelimit"),
        Some(r#""per-second";r=2;t=1, "per-minute";r=4;t=12"#)
    );
    let denied = statuses.iter().find(|r| r.status == 429).expect("a 429");
    assert!(denied.header("retry-after").is_some(), "{denied:?}");
    // Another client has its own windows.
    assert_eq!(get("/").send(lo(test, 11), server.addr).await.status, 200);
}

#[tokio::test]
async fn issue_9_server_demo_tiers_from_a_header() {
    let test = 91;
    let scratch = Scratch::new("policies-tiers");
    let server = Server::start(
        &scratch,
        lo(test, 1),
        &[
            "--quota",
            "1/min",
            "--tier-header",
            "x-demo-tier",
            "--tier",
            "free=2/min",
            "--tier",
            "paid=10/min",
            "--ratelimit-headers",
        ],
    );
    let passed = |tier: Option<&'static str>, client: u8, tries: usize| {
        let addr = server.addr;
        async move {
            let mut passed = 0;
            for _ in 0..tries {
                let mut request = get("/");
                if let Some(tier) = tier {
                    request = request.header("x-demo-tier", tier);
                }
                if request.send(lo(test, client), addr).await.status == 200 {
                    passed += 1;
                }
            }
            passed
        }
    };
    assert_eq!(passed(Some("free"), 10, 5).await, 2);
    assert_eq!(passed(Some("paid"), 11, 15).await, 10);
    // Unknown and absent tiers: the --quota default.
    assert_eq!(passed(Some("gold"), 12, 5).await, 1);
    assert_eq!(passed(None, 13, 5).await, 1);
    // Tiers never share buckets: the same client, another tier, a fresh bucket.
    assert_eq!(passed(Some("paid"), 10, 3).await, 3);
    let response = get("/")
        .header("x-demo-tier", "free")
        .send(lo(test, 14), server.addr)
        .await;
    assert_eq!(
        response.header("ratelimit-policy"),
        Some(r#""free";q=2;w=60"#)
    );
}

#[test]
fn issue_9_server_rejects_inconsistent_tier_and_burst_flags() {
    let scratch = Scratch::new("policies-errors");
    for (args, message) in [
        (
            &["--quota", "1/s", "--quota", "1/min", "--burst", "5"][..],
            "exactly one --quota",
        ),
        (
            &["--tier", "free=1/min", "--quota", "1/s"][..],
            "--tier-header",
        ),
        (
            &["--tier-header", "x-tier", "--quota", "1/s"][..],
            "--tier NAME=QUOTA",
        ),
        (
            &["--tier-header", "x-tier", "--tier", "free=1/s"][..],
            "needs a --quota",
        ),
        (
            &[
                "--tier-header",
                "x-tier",
                "--tier",
                "free",
                "--quota",
                "1/s",
            ][..],
            "NAME=QUOTA",
        ),
        (&["--quota", "1/s", "--quota", "2/s"][..], "different unit"),
    ] {
        let stderr = example_server_refuses(&scratch, args);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
