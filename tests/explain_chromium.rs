//! The explain page in a real browser (issue 8 item 2): headless Chromium loads it from an
//! Axum server on 127.0.0.1, its DOM shows the resolved IP and every source, and its
//! screenshot is a real, non-blank 1200×900 PNG.
//!
//! Needs Debian's `chromium`. Without it the test prints why and passes, unless `CI` is set
//! (then a missing browser fails the test).
#![cfg(all(feature = "axum", feature = "memory"))]

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tower::ServiceBuilder;
use tower_bouncer::client_ip::{Chain, ClientIpLayer, SocketPeer, TrustedRanges, XForwardedFor};
use tower_bouncer::explain::{Explain, DEFAULT_PATH};
use tower_bouncer::rate_limit::{Quota, RateLimitLayer};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 900;
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "tower-bouncer-chromium-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A browser process, killed (by its PID, through the handle) and reaped on drop.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs headless Chromium with `extra` arguments on `url`, with a fresh profile; waits at most
/// [`BROWSER_TIMEOUT`]. Standard output goes to `stdout`.
fn chromium(profile: &Path, extra: &[String], url: &str, stdout: &Path) {
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut browser = Browser(child);
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    loop {
        if let Some(status) = browser.0.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not finish within {BROWSER_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes a screenshot of `url`; answers the PNG bytes.
fn screenshot(url: &str) -> Vec<u8> {
    let dir = TempDir::new();
    let file = dir.0.join("shot.png");
    chromium(
        &dir.0.join("profile"),
        &[
            format!("--screenshot={}", file.display()),
            format!("--window-size={WIDTH},{HEIGHT}"),
        ],
        url,
        &dir.0.join("stdout"),
    );
    std::fs::read(&file).expect("chromium wrote the screenshot")
}

fn dump_dom(url: &str) -> String {
    let dir = TempDir::new();
    let stdout = dir.0.join("dom.html");
    chromium(
        &dir.0.join("profile"),
        &["--dump-dom".to_owned()],
        url,
        &stdout,
    );
    std::fs::read_to_string(&stdout).unwrap()
}

/// The width and height in a PNG's IHDR chunk, after checking the signature.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 33, "too short for a PNG: {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[8..12], [0, 0, 0, 13], "IHDR length");
    assert_eq!(&png[12..16], b"IHDR", "first chunk is IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height)
}

fn browser_available() -> bool {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `chromium` is not installed (apt-get install chromium)"
        );
        println!("skipped: `chromium` is not installed and CI is unset");
    }
    found
}

/// The application: the chain a deployment behind a local proxy would use, both layers, and
/// the explain endpoint; a stand-in for that proxy adds `X-Forwarded-For` to every request.
fn app() -> Router {
    let source = Chain::new()
        .then(XForwardedFor::rightmost_untrusted(TrustedRanges::loopback()))
        .then(SocketPeer::new());
    let client_ip = ClientIpLayer::new(source);
    let limit = RateLimitLayer::new("60/min".parse::<Quota>().unwrap());
    let explain = Explain::from_layer(&client_ip).rate_limit_layer(&limit);
    Router::new()
        .route("/", get(|| async { "hello" }))
        .merge(explain.router())
        .layer(
            ServiceBuilder::new()
                .map_request(|mut request: axum::extract::Request| {
                    request.headers_mut().insert(
                        "x-forwarded-for",
                        "<script>document.title='owned'</script>, 203.0.113.7, 127.0.0.9"
                            .parse()
                            .unwrap(),
                    );
                    request
                })
                .layer(client_ip)
                .layer(limit),
        )
}

#[test]
fn explain_page_renders_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = runtime.spawn(async move {
        axum::serve(
            listener,
            app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let url = format!("http://{addr}{DEFAULT_PATH}");

    let dom = dump_dom(&url);
    assert!(dom.contains("How this server sees your request"), "{dom}");
    // The resolved IP, in its own element.
    assert!(
        dom.contains("<div class=\"big\" id=\"client-ip\">203.0.113.7</div>"),
        "{dom}"
    );
    // Every source, the walk's verdicts, the bucket.
    assert!(dom.contains("<b>xff</b>"), "{dom}");
    assert!(dom.contains("<b>peer</b>"), "{dom}");
    assert!(dom.contains("trusted proxy: skipped"), "{dom}");
    assert!(dom.contains("(this source decided)"), "{dom}");
    assert!(dom.contains("cells left"), "{dom}");
    // The client's part of the header is shown as text, never run.
    assert!(
        dom.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<title>owned"), "{dom}");
    assert!(!dom.contains("<script"), "{dom}");

    let png = screenshot(&url);
    assert_eq!(png_size(&png), (WIDTH, HEIGHT));
    // Not blank: the same browser's screenshot of an empty page is a few kilobytes of one
    // colour; the explain page, full of text, compresses far worse.
    let blank = screenshot("data:text/html,<body style='background:%23f4f5f7'></body>");
    assert_eq!(png_size(&blank), (WIDTH, HEIGHT));
    assert!(
        png.len() > 4 * blank.len() && png.len() > 20_000,
        "the screenshot looks blank: {} bytes, an empty page is {} bytes",
        png.len(),
        blank.len()
    );
    if let Some(path) = std::env::var_os("EXPLAIN_SCREENSHOT") {
        std::fs::write(path, &png).unwrap();
    }
    server.abort();
}
