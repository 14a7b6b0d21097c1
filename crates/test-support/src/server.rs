//! A server for a test: in this runtime, or as a process; its control link;
//! a certificate for its TLS listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use plaza_net::ClientConfig;
use plaza_net::link::LinkClient;
use plaza_server::control::{Command, Reply};
use plaza_server::{Running, Settings};

use crate::*;

/// A server running in this test's runtime.
pub struct TestServer {
    /// The running server.
    pub running: Running,
    /// Its address.
    pub addr: SocketAddr,
    /// Its data directory (removed when the last holder drops it).
    pub dir: std::sync::Arc<tempfile::TempDir>,
}

impl TestServer {
    /// A server with default chat settings.
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// A server whose settings `configure` adjusts.
    pub async fn with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::in_dir(
            std::sync::Arc::new(tempfile::tempdir().expect("temp dir")),
            configure,
        )
        .await
    }

    /// A cluster node on the shared store `store` (a `redis://` or
    /// `redis+sentinel://` URL), with rooms of `room_capacity`, a 3 s
    /// presence TTL and a 500 ms Redis timeout.
    pub async fn cluster_node(store: &str, room_capacity: usize) -> Self {
        let store = store.to_owned();
        Self::with(move |s| {
            s.store = Some(store);
            s.cluster = Some(true);
            s.presence_ttl_secs = Some(3);
            s.redis_timeout_ms = Some(500);
            s.room_capacity = Some(room_capacity);
        })
        .await
    }

    /// A server on an existing data directory (for restart tests).
    pub async fn in_dir(
        dir: std::sync::Arc<tempfile::TempDir>,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        init_tracing();
        std::fs::write(dir.path().join("control.secret"), CONTROL_SECRET).expect("write control secret");
        let mut s = Settings {
            bind: Some("127.0.0.1:0".parse().expect("addr")),
            control_bind: Some("127.0.0.1:0".parse().expect("addr")),
            metrics_bind: Some("127.0.0.1:0".into()),
            data_dir: Some(PathBuf::from(dir.path())),
            argon2_memory_kib: Some(TEST_HASH.memory_kib),
            argon2_iterations: Some(TEST_HASH.iterations),
            shutdown_grace_secs: Some(10),
            // Tests log in and chat in tight loops; the tests of the limits
            // turn them back on.
            login_rate_per_ip: Some(0),
            login_rate_per_account: Some(0),
            chat_rate: Some(0),
            ..Settings::default()
        };
        configure(&mut s);
        let running = plaza_server::start(s.resolve().expect("settings"))
            .await
            .expect("server starts");
        let addr = running.local_addr();
        Self { running, addr, dir }
    }

    /// A server with a TLS listener on 127.0.0.1 presenting `cert`.
    pub async fn with_tls(cert: &TestCert, configure: impl FnOnce(&mut Settings)) -> Self {
        let (c, k) = (cert.cert.clone(), cert.key.clone());
        Self::with(|s| {
            s.tls_bind = Some("127.0.0.1:0".parse().expect("addr"));
            s.tls_cert = Some(c);
            s.tls_key = Some(k);
            configure(s);
        })
        .await
    }

    /// The TLS listener's address.
    ///
    /// # Panics
    /// If TLS is off.
    pub fn tls_addr(&self) -> SocketAddr {
        self.running.tls_addr().expect("TLS listener")
    }

    /// A connected client.
    pub async fn client(&self) -> TestClient {
        TestClient::connect(self.addr).await
    }

    /// A registered, logged-in client.
    pub async fn user(&self, name: &str) -> TestClient {
        let mut c = self.client().await;
        c.register(name, "pw").await;
        c.login(name, "pw").await;
        c
    }
}

impl TestServer {
    /// Waits until the server's status field `key` (a number) is `want`,
    /// asking over one control link.
    pub async fn until_status(&self, key: &str, want: u64) {
        let ctl = self.control().await;
        crate::within(&format!("{key} to be {want}"), async {
            while ctl.cmd(Command::Status).await.data[key].as_u64() != Some(want) {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    /// A control-link client, authenticated.
    pub async fn control(&self) -> ControlClient {
        let c = ControlClient::connect(self.running.control_addr()).await;
        let r = c
            .cmd(Command::Auth {
                secret: CONTROL_SECRET.into(),
            })
            .await;
        assert!(r.ok, "control auth: {r:?}");
        c
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, generated for the
/// test, in its own temporary directory.
pub struct TestCert {
    /// The certificate (PEM); a client trusts it as its own CA.
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
    dir: tempfile::TempDir,
}

impl TestCert {
    /// Generates one.
    ///
    /// # Panics
    /// If it cannot be generated or written.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = Self {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            dir,
        };
        c.renew();
        c
    }

    /// Replaces the files with a fresh certificate and key (as an operator
    /// renewing a certificate does); returns a copy of the certificate just
    /// replaced, for a client that trusts only the old one.
    ///
    /// # Panics
    /// If it cannot be generated or written.
    pub fn renew(&self) -> PathBuf {
        let old = self.dir.path().join(format!("old-{}.pem", std::process::id()));
        let _ = std::fs::copy(&self.cert, &old);
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("certificate");
        std::fs::write(&self.key, ck.signing_key.serialize_pem()).expect("write key");
        std::fs::write(&self.cert, ck.cert.pem()).expect("write certificate");
        old
    }

    /// A connector that trusts `ca` and expects 127.0.0.1.
    ///
    /// # Panics
    /// If `ca` is not a usable certificate.
    pub fn connector(ca: &std::path::Path) -> plaza_net::tls::TlsConnector {
        plaza_net::tls::TlsConnector::from_ca_file(ca, "127.0.0.1").expect("CA file")
    }
}

impl Default for TestCert {
    fn default() -> Self {
        Self::new()
    }
}

/// A `plaza-server` process (the binary at `exe`) listening on free loopback
/// ports, with its data in `data_dir`. Killed by its PID when dropped.
pub struct ServerProcess {
    child: Option<std::process::Child>,
    /// The rest of its log (standard output), read to keep its pipe open.
    log: Option<std::io::Lines<std::io::BufReader<std::process::ChildStdout>>>,
    /// Its client listener, read from its first log line.
    pub addr: SocketAddr,
    /// Its TLS listener, if on, from the same line.
    pub tls_addr: Option<SocketAddr>,
}

impl ServerProcess {
    /// A cluster node on the shared store `store` (a `redis://` URL), with a
    /// 3 s presence TTL (a burial comes within a test's wait) and a cheap
    /// password hash: `exe` is the test's `CARGO_BIN_EXE_plaza-server`.
    pub fn cluster_node(exe: &str, data_dir: &std::path::Path, store: &str) -> Self {
        let args = ["--store", store, "--cluster", "--presence-ttl-secs", "3"];
        Self::spawn(
            exe,
            data_dir,
            &[&args[..], &["--argon2-memory-kib", "64"]].concat(),
        )
    }

    /// Starts it with `args` after the listener, data and log settings, and
    /// waits for it to log its address.
    ///
    /// # Panics
    /// If it does not start.
    pub fn spawn(exe: &str, data_dir: &std::path::Path, args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(exe)
            .args(["--bind", "127.0.0.1:0", "--control-bind", "127.0.0.1:0"])
            .args(["--metrics-bind", "127.0.0.1:0", "--log", "info", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start plaza-server");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // The address after `key=` (`ADDR`, `Some(ADDR)` or `None`) on a
        // log line, without colour codes.
        let field = |line: &str, key: &str| -> Option<SocketAddr> {
            let rest = line.split(key).nth(1)?;
            let rest = rest.strip_prefix("Some(").unwrap_or(rest);
            let clean: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ')')
                .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            clean.parse().ok()
        };
        let (addr, tls_addr) = loop {
            let line = lines.next().expect("server log ended").expect("read log");
            if let Some(addr) = field(&line, " addr=") {
                break (addr, field(&line, " tls_addr="));
            }
        };
        Self {
            child: Some(child),
            log: Some(lines),
            addr,
            tls_addr,
        }
    }

    /// Waits (bounded by [`WAIT`]) for it to exit, returning how and the
    /// log lines it wrote after its listening line.
    pub async fn wait_with_log(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let lines = self.log.take().expect("log");
        within(
            "the server to exit",
            tokio::task::spawn_blocking(move || {
                let log: Vec<String> = lines.map_while(Result::ok).collect();
                (child.wait().expect("wait"), log.join("\n"))
            }),
        )
        .await
        .expect("join")
    }

    /// Sends it a signal (`"TERM"`, `"KILL"`), by its PID.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// Waits (bounded by [`WAIT`]) for it to exit.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        within(
            "the server to exit",
            tokio::task::spawn_blocking(move || child.wait().expect("wait")),
        )
        .await
        .expect("join")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The control secret test servers use.
pub const CONTROL_SECRET: &str = "test-control-secret";

/// A client of the operators' control link.
pub struct ControlClient(LinkClient);

impl ControlClient {
    /// Connects without authenticating.
    pub async fn connect(addr: SocketAddr) -> Self {
        let link = within(
            "control connect",
            LinkClient::connect(ClientConfig::new(addr, plaza_net::Lan)),
        )
        .await
        .expect("control connect");
        Self(link)
    }

    /// Sends one command and returns the reply.
    pub async fn cmd(&self, command: Command) -> Reply {
        let body = serde_json::to_vec(&command).expect("serialise");
        let r = self.0.request(&body, WAIT).await.expect("control request");
        serde_json::from_slice(&r).expect("control reply is JSON")
    }

    /// The node's status, typed: a field the server does not send (or
    /// names differently) fails here, not as a silent blank.
    pub async fn status(&self) -> plaza_server::control::Status {
        let reply = self.cmd(Command::Status).await;
        assert!(reply.ok, "status failed: {reply:?}");
        serde_json::from_value(reply.data).expect("status reads as a Status")
    }

    /// Sends one command, returning the link error if the link drops.
    pub async fn try_cmd(&self, command: Command) -> Result<Reply, plaza_net::link::LinkError> {
        let body = serde_json::to_vec(&command).expect("serialise");
        let r = self.0.request(&body, WAIT).await?;
        Ok(serde_json::from_slice(&r).expect("control reply is JSON"))
    }
}
