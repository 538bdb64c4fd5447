//! Shared by the end-to-end tests: processes that are always stopped, loopback addresses and
//! ports, a raw HTTP/1.1 client that connects from the source address it is told, the example
//! server, and the real proxies (nginx, Caddy, HAProxy) started from `examples/proxies/`.
//!
//! # How the example server binary is found
//!
//! Cargo gives integration tests `CARGO_BIN_EXE_<name>` for binaries only, not for examples.
//! [`example_server`] asks the very cargo that runs the tests (`env!("CARGO")`, with the same
//! target directory and profile) to `build --example server --all-features
//! --message-format=json`, once per test binary, and takes the executable's path from cargo's
//! own report: no guessing of `target/<profile>/examples/`, never a stale binary, and a no-op
//! when `cargo test` already built the example.

#![allow(dead_code)] // Each test file uses its own part of this module.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// How long anything in these tests may take to come up or answer.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

// ---- processes -------------------------------------------------------------------------------

/// A child process that is killed (by its PID, through [`Child::kill`]) and reaped when this
/// guard is dropped — at the end of the test, and also when the test panics. Its stdout and
/// stderr go to files in the test's scratch directory, printed when the test is failing.
#[derive(Debug)]
pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Start `command` with its stdout and stderr in `<dir>/<name>.log`.
    pub(crate) fn spawn(name: &str, command: Command, dir: &Path) -> Process {
        Process::start(name, command, dir, false)
    }

    /// Like [`spawn`](Self::spawn), with stdout piped to the caller ([`take_stdout`](Self::take_stdout)).
    pub(crate) fn spawn_piped(name: &str, command: Command, dir: &Path) -> Process {
        Process::start(name, command, dir, true)
    }

    fn start(name: &str, mut command: Command, dir: &Path, pipe_stdout: bool) -> Process {
        let log = dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).expect("create a log file");
        command
            .stdin(Stdio::null())
            .stderr(file.try_clone().expect("clone the log file"));
        if pipe_stdout {
            command.stdout(Stdio::piped());
        } else {
            command.stdout(file);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Process {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics (with the log) if the process has already exited.
    pub(crate) fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); its log:\n{}",
                self.name,
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// Take the child's piped stdout.
    pub(crate) fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // By PID: `Child::kill` sends SIGKILL to this child only; `wait` reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- log of {} (pid {}) ----\n{}",
                self.name,
                self.child.id(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// A scratch directory for one test (configuration files, logs, pid files), removed on drop
/// unless the test failed (then its path is printed, to look at the logs).
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new, empty directory under the system's temporary directory.
    pub(crate) fn new(test: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tower-bouncer-e2e-{}-{}-{test}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the scratch directory");
        Scratch { path }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("scratch directory kept: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---- addresses -------------------------------------------------------------------------------

/// `127.0.a.b`: every test gives each client, proxy and server its own loopback address, so the
/// trusted ranges can tell them apart (all of 127.0.0.0/8 is loopback on Linux).
pub(crate) fn lo(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
}

/// A port that was free on `ip` a moment ago (the kernel's choice for port 0). The proxies
/// cannot be told to pick their own port and report it, so this small race is accepted.
pub(crate) fn free_port(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// A free address on `ip`.
pub(crate) fn free_addr(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, free_port(ip))
}

/// Wait until `addr` accepts connections, or panic after [`PATIENCE`], checking that
/// `process` is still alive in between.
pub(crate) fn wait_for_port(addr: SocketAddr, process: &mut Process) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        process.assert_running();
        thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing accepts connections on {addr} after {PATIENCE:?}");
}

// ---- HTTP client -----------------------------------------------------------------------------

/// A response, as read off the wire.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// Header names (lowercase) and values, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub(crate) body: String,
}

impl Response {
    /// The first value of header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    /// The `ip` field of the example server's answer.
    pub(crate) fn ip(&self) -> String {
        assert_eq!(self.status, 200, "expected a 200: {self:?}");
        self.json()["ip"]
            .as_str()
            .unwrap_or_else(|| panic!("no ip in {self:?}"))
            .to_owned()
    }
}

/// A request to send: path, Host and extra header lines (sent exactly as given, in order, so
/// a test can repeat a header).
#[derive(Debug, Clone)]
pub(crate) struct Get<'a> {
    path: &'a str,
    host: Option<&'a str>,
    headers: Vec<(&'a str, String)>,
}

/// `GET path`, with the address it is sent to as `Host` (as curl does) unless
/// [`host`](Get::host) says otherwise.
pub(crate) fn get(path: &str) -> Get<'_> {
    Get {
        path,
        host: None,
        headers: Vec::new(),
    }
}

impl<'a> Get<'a> {
    /// Another header line.
    pub(crate) fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The Host header.
    pub(crate) fn host(mut self, host: &'a str) -> Self {
        self.host = Some(host);
        self
    }

    /// Send it over a new connection from `from` (port chosen by the kernel) to `to`, with
    /// `Connection: close`, and read the whole response.
    pub(crate) async fn send(&self, from: IpAddr, to: SocketAddr) -> Response {
        tokio::time::timeout(PATIENCE, self.send_inner(from, to))
            .await
            .unwrap_or_else(|_| panic!("no answer from {to} within {PATIENCE:?}"))
    }

    async fn send_inner(&self, from: IpAddr, to: SocketAddr) -> Response {
        let socket = match from {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .expect("a socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .unwrap_or_else(|error| panic!("bind {from}: {error}"));
        let mut stream = socket
            .connect(to)
            .await
            .unwrap_or_else(|error| panic!("connect {from} -> {to}: {error}"));
        let host = self.host.map_or_else(|| to.to_string(), str::to_owned);
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
            self.path
        );
        for (name, value) in &self.headers {
            request.push_str(name);
            request.push_str(": ");
            request.push_str(value);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut raw = Vec::new();
        // A reset after a complete response (a proxy closing hard) still leaves a response.
        let _ = stream.read_to_end(&mut raw).await;
        parse_response(&raw).unwrap_or_else(|| {
            panic!(
                "not an HTTP response from {to}: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }
}

/// Parse a whole HTTP/1.1 response (Content-Length, chunked, or until close).
pub(crate) fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(body.len());
        body.get(..length)?.to_vec()
    };
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

// ---- the example server ----------------------------------------------------------------------

/// The path of the example server binary, built once per test binary (see the module docs).
pub(crate) fn example_server() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    PATH.get_or_init(|| {
        let _one_at_a_time = BUILDING.lock();
        let mut command = Command::new(env!("CARGO"));
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--example", "server", "--all-features"])
            .args(["--message-format", "json-render-diagnostics"])
            .stderr(Stdio::inherit());
        if !cfg!(debug_assertions) {
            command.arg("--release");
        }
        let output = command.output().expect("run cargo build --example server");
        assert!(
            output.status.success(),
            "cargo build --example server failed"
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["reason"] == "compiler-artifact")
            .filter(|message| message["target"]["name"] == "server")
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the example server's executable")
    })
}

/// Run the example server with `args`, which it must refuse as a usage error (exit code 2,
/// without serving); answer what it wrote to stderr.
pub(crate) fn example_server_refuses(scratch: &Scratch, args: &[&str]) -> String {
    let output = Command::new(example_server())
        .args(args)
        .current_dir(scratch.path())
        .output()
        .expect("run the example server");
    assert_eq!(output.status.code(), Some(2), "{args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running example server and the address it listens on.
#[derive(Debug)]
pub(crate) struct Server {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    process: Process,
}

impl Server {
    /// Start the example server on `listen_ip` (port chosen by the kernel) with `args`, and wait
    /// until it prints `listening on ADDR`.
    pub(crate) fn start(scratch: &Scratch, listen_ip: IpAddr, args: &[&str]) -> Server {
        let mut command = Command::new(example_server());
        command
            .arg("--listen")
            .arg(SocketAddr::new(listen_ip, 0).to_string())
            .args(args);
        let mut process = Process::spawn_piped("server", command, scratch.path());
        let stdout = process.take_stdout().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        // Reads the announcement, then keeps draining stdout so the server never blocks on it.
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sender = Some(sender);
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let addr = match receiver.recv_timeout(PATIENCE) {
            Ok(addr) => addr.parse().expect("the announced address"),
            Err(_) => {
                process.assert_running();
                panic!("the example server did not announce its address ({args:?})");
            }
        };
        Server { addr, process }
    }
}

// ---- in-test apps ----------------------------------------------------------------------------

/// An in-test app, served by a task on the test's runtime, and where it listens. The task is
/// aborted when this is dropped: at the end of the test, and also when the test fails or
/// returns early (a proxy not installed).
#[derive(Debug)]
pub(crate) struct App {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    /// Spawn `serve`, an app already listening on `addr`.
    pub(crate) fn spawn(addr: SocketAddr, serve: impl Future<Output = ()> + Send + 'static) -> App {
        App {
            addr,
            task: tokio::spawn(serve),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- the proxies -----------------------------------------------------------------------------

/// The path of a proxy binary, looked up in `PATH` and the `sbin` directories. When it is
/// missing: outside CI (`CI` unset) the test prints why and is skipped (`None`); in CI it fails.
pub(crate) fn proxy_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed, and CI must run this test (.ci/run installs it)"
        );
        eprintln!("skipping: {name} is not installed (apt-get install {name})");
    }
    found
}

/// The text of `examples/proxies/<file>` with every `__PLACEHOLDER__` replaced, written into
/// the scratch directory; panics if a placeholder is left.
pub(crate) fn render(scratch: &Scratch, file: &str, values: &HashMap<&str, String>) -> PathBuf {
    let template = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/proxies")
        .join(file);
    let mut text = fs::read_to_string(&template)
        .unwrap_or_else(|error| panic!("read {}: {error}", template.display()));
    for (name, value) in values {
        text = text.replace(&format!("__{name}__"), value);
    }
    // Only placeholders outside comments must be filled (the comments name them all).
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or_default();
        assert!(!code.contains("__"), "{file}: placeholder left in `{line}`");
    }
    let out = scratch.path().join(file);
    fs::write(&out, text).expect("write the rendered configuration");
    out
}

/// A running proxy.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// Where clients reach it.
    pub(crate) addr: SocketAddr,
    process: Process,
}

/// Which proxy, and how to start it on a rendered configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// nginx, in the foreground, one process (`master_process off`) so one PID is all of it.
    Nginx,
    /// Caddy, `caddy run` with the Caddyfile adapter.
    Caddy,
    /// HAProxy in the foreground (`-db`), one process.
    Haproxy,
}

impl Kind {
    /// The binary's name.
    pub(crate) fn binary(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
            Kind::Haproxy => "haproxy",
        }
    }
}

impl Proxy {
    /// Start proxy `kind` with `examples/proxies/<file>`, its placeholders filled from
    /// `values` (which must include `LISTEN`, where clients reach it); `None` if the binary is
    /// missing outside CI.
    pub(crate) fn start(
        kind: Kind,
        scratch: &Scratch,
        file: &str,
        values: &HashMap<&str, String>,
    ) -> Option<Proxy> {
        let binary = proxy_binary(kind.binary())?;
        let addr: SocketAddr = values["LISTEN"].parse().expect("LISTEN is ip:port");
        let config = render(scratch, file, values);
        let dir = scratch.path();
        let name = file.replace(['.', '/'], "-");
        let mut command = Command::new(binary);
        match kind {
            Kind::Nginx => {
                let prefix = dir.join(&name);
                fs::create_dir_all(prefix.join("logs")).expect("nginx prefix");
                command
                    .arg("-p")
                    .arg(&prefix)
                    .arg("-c")
                    .arg(&config)
                    .arg("-e")
                    .arg("stderr")
                    .arg("-g")
                    .arg(format!(
                        "daemon off; master_process off; pid {}/nginx.pid; error_log stderr warn;",
                        prefix.display()
                    ));
            }
            Kind::Caddy => {
                // Caddy keeps state under $HOME / $XDG_*: keep it in the scratch directory.
                command
                    .env("HOME", dir)
                    .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
                    .env("XDG_DATA_HOME", dir.join("xdg-data"))
                    .args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(&config);
            }
            Kind::Haproxy => {
                command.arg("-db").arg("-f").arg(&config);
            }
        }
        let mut process = Process::spawn(&name, command, dir);
        wait_for_port(addr, &mut process);
        Some(Proxy { addr, process })
    }

    /// Panics (with the log) if the proxy died.
    pub(crate) fn assert_running(&mut self) {
        self.process.assert_running();
    }

    /// Start proxy `kind` with `examples/proxies/<file>` in front of one `backend`
    /// (`BACKEND`): clients reach it on a free port of `listen` (`LISTEN`), and it connects to
    /// the backend from `bind` (`PROXY_BIND`), or from an address of its own choosing when
    /// `None` (Caddy 2.6 cannot be told). `None` if the binary is missing outside CI.
    pub(crate) fn in_front_of(
        kind: Kind,
        scratch: &Scratch,
        file: &str,
        listen: IpAddr,
        bind: Option<IpAddr>,
        backend: SocketAddr,
    ) -> Option<Proxy> {
        let mut values = values([
            ("LISTEN", free_addr(listen).to_string()),
            ("BACKEND", backend.to_string()),
        ]);
        if let Some(bind) = bind {
            values.insert("PROXY_BIND", bind.to_string());
        }
        Proxy::start(kind, scratch, file, &values)
    }

    /// The CDN (`nginx-cdn.conf`) on `listen`, connecting from `bind`: it sends the
    /// `app.example.test` site to `function` and `api.example.test` to `origin`, and answers
    /// 421 to any other host. `None` if nginx is missing outside CI.
    pub(crate) fn cdn(
        scratch: &Scratch,
        listen: SocketAddr,
        bind: IpAddr,
        function: SocketAddr,
        origin: SocketAddr,
    ) -> Option<Proxy> {
        Proxy::start(
            Kind::Nginx,
            scratch,
            "nginx-cdn.conf",
            &values([
                ("LISTEN", listen.to_string()),
                ("PROXY_BIND", bind.to_string()),
                ("FUNCTION", function.to_string()),
                ("ORIGIN", origin.to_string()),
            ]),
        )
    }
}

/// Two proxies in a row, in test `test`'s address plan: clients reach the edge nginx
/// (`nginx.conf`) on 127.0.<test>.2; it connects from .3 to the internal HAProxy
/// (`haproxy-internal-lb.cfg`) on .4, which connects from .5 to the backend.
#[derive(Debug)]
pub(crate) struct TwoHops {
    /// The edge nginx, where clients connect.
    pub(crate) edge: Proxy,
    /// The internal HAProxy, between the edge and the backend.
    pub(crate) lb: Proxy,
}

impl TwoHops {
    /// Start the internal HAProxy in front of `backend`, then the edge nginx in front of it;
    /// `None` if either binary is missing outside CI (a proxy already started is stopped).
    pub(crate) fn start(scratch: &Scratch, test: u8, backend: SocketAddr) -> Option<TwoHops> {
        let lb = Proxy::in_front_of(
            Kind::Haproxy,
            scratch,
            "haproxy-internal-lb.cfg",
            lo(test, 4),
            Some(lo(test, 5)),
            backend,
        )?;
        let edge = Proxy::in_front_of(
            Kind::Nginx,
            scratch,
            "nginx.conf",
            lo(test, 2),
            Some(lo(test, 3)),
            lb.addr,
        )?;
        Some(TwoHops { edge, lb })
    }
}

/// Placeholder values, as `("NAME", value)` pairs.
pub(crate) fn values<const N: usize>(
    pairs: [(&'static str, String); N],
) -> HashMap<&'static str, String> {
    pairs.into_iter().collect()
}

// ---- the example server's quota, through a proxy -----------------------------------------------

/// Send `count` requests from `client` to `to`, each with a new address (198.51.100.n) in every
/// header of `spoofed` (`for=` form in `Forwarded`); answer how many passed, and check that each
/// one that passed was resolved to `client`.
pub(crate) async fn rotate_and_count(
    client: IpAddr,
    to: SocketAddr,
    count: u8,
    spoofed: &[&str],
) -> usize {
    let mut passed = 0;
    for n in 0..count {
        let spoof = format!("198.51.100.{n}");
        let mut request = get("/");
        for name in spoofed {
            let value = if *name == "Forwarded" {
                format!("for={spoof}")
            } else {
                spoof.clone()
            };
            request = request.header(name, value);
        }
        let response = request.send(client, to).await;
        match response.status {
            200 => {
                assert_eq!(response.ip(), client.to_string(), "{response:?}");
                passed += 1;
            }
            429 => {}
            _ => panic!("unexpected answer: {response:?}"),
        }
    }
    passed
}

/// What a proxy in front of the example server (5 requests a minute) must show, with test
/// `test`'s clients 127.0.<test>.10 to .12: the client's own address is resolved, by `source`;
/// a client rotating the `spoofed` headers gets exactly the quota; another client behind the
/// same proxy has its own bucket; and the proxy is still running.
pub(crate) async fn resolves_and_holds_the_quota(
    proxy: &mut Proxy,
    test: u8,
    source: &str,
    spoofed: &[&str],
) {
    let first = lo(test, 10);
    let response = get("/").send(first, proxy.addr).await;
    assert_eq!(response.ip(), first.to_string(), "{response:?}");
    assert_eq!(response.json()["source"], source, "{response:?}");

    let rotating = lo(test, 11);
    assert_eq!(
        rotate_and_count(rotating, proxy.addr, 20, spoofed).await,
        5,
        "a client rotating forwarding headers must get exactly the quota"
    );
    let other = lo(test, 12);
    let response = get("/").send(other, proxy.addr).await;
    assert_eq!(
        response.ip(),
        other.to_string(),
        "a separate bucket: {response:?}"
    );
    proxy.assert_running();
}
