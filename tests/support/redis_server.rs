//! Real `redis-server` processes for the Redis tests, one per test, on free loopback ports.
//!
//! Each server is a guard: dropping it (also while a test panics) kills the process by its PID
//! and removes its working directory. The servers never persist anything (`--save ''`,
//! `--appendonly no`). When `redis-server` is not installed the tests print why and return,
//! unless the `CI` environment variable is set: in CI a missing server fails the test.

#![allow(dead_code)] // every test binary uses a different part of this module

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Is `redis-server` usable here? `false` means "skip this test" (the reason is printed); in CI
/// (`CI` set) a missing server is a failure, never a skip.
pub(crate) fn redis_available(test: &str) -> bool {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if installed {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: redis-server is not installed, and CI is set: .ci/run must install it"
    );
    eprintln!("skipping {test}: redis-server is not installed (apt-get install redis-server)");
    false
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// One `redis-server` process on `127.0.0.1`, killed when dropped.
#[derive(Debug)]
pub(crate) struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    cluster: bool,
}

impl RedisServer {
    /// Starts a standalone server on a free port and waits until it answers `PING`.
    pub(crate) fn start() -> Self {
        Self::start_on(free_port(false), false)
    }

    /// Starts a cluster-enabled node (its bus port, `port + 10000`, is free too).
    pub(crate) fn start_cluster_node() -> Self {
        Self::start_on(free_port(true), true)
    }

    fn start_on(port: u16, cluster: bool) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-bouncer-redis-{}-{}-{port}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut server = Self {
            port,
            dir,
            child: None,
            cluster,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .current_dir(&self.dir)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--enable-debug-command", "local"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "2000"]);
        }
        let child = command.spawn().expect("start redis-server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.command(&["PING"]).is_ok_and(|reply| reply == "+PONG") {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("redis-server on port {} exited: {status}", self.port);
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process (by PID) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)), empty.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends one command over a fresh connection and returns the raw reply, read until the
    /// reply is complete (simple strings, errors, integers, bulk strings; arrays of those).
    pub(crate) fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut reader = Reply::new(stream);
        reader.read_value()
    }

    /// `DEBUG SLEEP seconds`, sent without waiting for the reply: the server is unresponsive
    /// for that long from about now on.
    pub(crate) fn debug_sleep(&self, seconds: f64) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut stream = TcpStream::connect(addr).expect("connect for DEBUG SLEEP");
        let seconds = seconds.to_string();
        let request = format!(
            "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n${}\r\n{seconds}\r\n",
            seconds.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("send DEBUG SLEEP");
        // Keep the connection open until the reply comes, so the server reads the command
        // rather than seeing a closed connection.
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
            let _ = stream.read(&mut sink);
        });
    }

    /// Every key whose name starts with `prefix`, found with `SCAN` (bounded loop).
    pub(crate) fn scan(&self, prefix: &str) -> Vec<String> {
        let pattern = format!("{prefix}*");
        let mut cursor = "0".to_owned();
        let mut keys = Vec::new();
        for _ in 0..100_000 {
            let reply = self
                .command(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])
                .expect("SCAN");
            let mut lines = reply.lines();
            cursor = lines.next().expect("a cursor").to_owned();
            keys.extend(lines.map(str::to_owned));
            if cursor == "0" {
                return keys;
            }
        }
        panic!("SCAN did not finish");
    }

    /// `calls` of one command in `INFO commandstats` (e.g. `evalsha`), 0 when never called.
    pub(crate) fn command_calls(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]).expect("INFO");
        let needle = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().expect("a call count"))
    }

    /// The server's working directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-master Redis Cluster on loopback, created with `redis-cli --cluster create`.
#[derive(Debug)]
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, joins them and waits until the cluster state is `ok` everywhere.
    pub(crate) fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_cluster_node()).collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(node.addr());
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = node.command(&["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes }
    }

    /// The nodes' URLs (`redis://127.0.0.1:PORT/`).
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub(crate) fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

/// A port where nothing listens on `127.0.0.1` (and, for a cluster node, `port + 10000` too).
fn free_port(with_bus: bool) -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("a local address").port();
        if !with_bus {
            return port;
        }
        if port < 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair found");
}

/// A minimal RESP reader: enough for the test commands (nested arrays flattened to lines).
struct Reply {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Reply {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    fn read_value(&mut self) -> std::io::Result<String> {
        let line = self.line()?;
        match line.as_bytes().first() {
            Some(b'$') => {
                let len: i64 = line[1..].parse().unwrap_or(-1);
                if len < 0 {
                    return Ok(String::new());
                }
                let len = len as usize;
                while self.buffer.len() < len + 2 {
                    self.fill()?;
                }
                let value = String::from_utf8_lossy(&self.buffer[..len]).into_owned();
                self.buffer.drain(..len + 2);
                Ok(value)
            }
            Some(b'*') => {
                let count: i64 = line[1..].parse().unwrap_or(-1);
                let mut items = Vec::new();
                for _ in 0..count.max(0) {
                    items.push(self.read_value()?);
                }
                Ok(items.join("\n"))
            }
            Some(b':') => Ok(line[1..].to_owned()),
            _ => Ok(line),
        }
    }
}
