//! Test helpers: a Plaza server on 127.0.0.1:0 with its own temporary data
//! directory, and a client that speaks the protocol over a real socket.
//! Every wait has a generous timeout and fails the test with what it was
//! waiting for; nothing sleeps to synchronise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use plaza_net::link::LinkClient;
use plaza_net::{ClientConfig, Framing};
use plaza_proto::{Event, Request, ResultCode};
use plaza_server::control::{Command, Reply};
use plaza_server::{HashCost, Running, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Cheap password hashing for tests (the production default costs ~19 MiB).
pub const TEST_HASH: HashCost = HashCost {
    memory_kib: 64,
    iterations: 1,
};

/// Waits for `f`, failing the test after [`WAIT`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Repeats `attempt` while it answers `code`, for an answer that changes
/// when the server has processed something asynchronous (a disconnect, a
/// store coming back). Bounded by [`WAIT`]; fails the test if it never
/// changes.
pub async fn retry_while(code: ResultCode, mut attempt: impl AsyncFnMut() -> ResultCode) -> ResultCode {
    within(&format!("the answer to stop being {code:?}"), async {
        loop {
            let c = attempt().await;
            if c != code {
                return c;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// Runs `command` to its end with `input` on its standard input, off the
/// async threads, bounded by [`WAIT`]; returns what it printed and how it
/// exited.
///
/// # Panics
/// If it cannot be started, or does not end in time.
pub async fn run_command(mut command: std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let input = input.to_vec();
    let what = format!("{command:?} to finish");
    within(
        &what,
        tokio::task::spawn_blocking(move || {
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the command");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(&input)
                .expect("write stdin");
            child.wait_with_output().expect("wait for the command")
        }),
    )
    .await
    .expect("join")
}

/// Logs once per test binary, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

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
            LinkClient::connect(ClientConfig::new(addr, Framing::Lan)),
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

/// A protocol client over a real socket. It says HELLO first (Plaza's
/// notifications on) and skips the answer, as Plaza's own clients do;
/// [`TestClient::connect_seed`] is a client written for the seeds, which
/// never does.
pub struct TestClient {
    stream: plaza_net::Stream,
    buf: BytesMut,
    /// HELLO's answer is still to come (and to be skipped).
    hello: bool,
    /// The resume token from the last successful login.
    pub token: Option<String>,
}

impl TestClient {
    /// Connects and says HELLO.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut c = Self::connect_seed(addr).await;
        c.hello().await;
        c
    }

    /// Connects as a client written for the seeds: no HELLO.
    pub async fn connect_seed(addr: SocketAddr) -> Self {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self::over(stream.into())
    }

    /// Sends HELLO asking for Plaza's notifications; its answer is skipped.
    /// (A write error is left for the test's next step to meet: a server
    /// that refuses the connection may have reset it already.)
    pub async fn hello(&mut self) {
        let mut b = BytesMut::new();
        Request::Hello {
            version: plaza_proto::VERSION,
            features: plaza_proto::features::ALL,
        }
        .encode(&mut b);
        let sent = within("send", async {
            self.stream.write_all(&b).await?;
            self.stream.flush().await
        })
        .await;
        self.hello = sent.is_ok();
    }

    /// Connects from a chosen loopback address (127.0.0.x), as another
    /// client machine would.
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .expect("bind source address");
        let stream = within("connect", socket.connect(addr)).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut c = Self::over(stream.into());
        c.hello().await;
        c
    }

    /// Connects with a 4 KiB receive buffer, so that when it stops reading
    /// the server's queue for it fills after a few KiB, not megabytes.
    pub async fn connect_small_window(addr: SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = within("connect", socket.connect(addr)).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut c = Self::over(stream.into());
        c.hello().await;
        c
    }

    /// Connects to a TLS listener, trusting `ca`.
    pub async fn connect_tls(addr: SocketAddr, ca: &std::path::Path) -> Self {
        let tcp = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let tls = within("the TLS handshake", TestCert::connector(ca).connect(tcp))
            .await
            .expect("TLS handshake");
        let mut c = Self::over(tls);
        c.hello().await;
        c
    }

    fn over(stream: plaza_net::Stream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            hello: false,
            token: None,
        }
    }

    /// The socket, for a test that drives it by hand.
    ///
    /// # Panics
    /// If this client speaks TLS.
    pub fn into_stream(self) -> TcpStream {
        match self.stream {
            plaza_net::Stream::Tcp(s) => s,
            _ => panic!("a TLS client has no bare socket"),
        }
    }

    /// Sends one request.
    pub async fn send(&mut self, r: Request) {
        let mut b = BytesMut::new();
        r.encode(&mut b);
        self.send_raw(&b).await;
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within("send", async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("write");
    }

    /// The next raw frame from the server.
    pub async fn recv_raw(&mut self) -> Vec<u8> {
        self.try_recv_raw().await.expect("server closed the connection")
    }

    /// The next raw frame, or `None` when the server closes the connection.
    pub async fn try_recv_raw(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buf.len() >= 2 {
                let len = usize::from(u16::from_le_bytes([self.buf[0], self.buf[1]]));
                if self.buf.len() >= len {
                    let frame = self.buf.split_to(len);
                    if std::mem::take(&mut self.hello)
                        && plaza_proto::packet_id(&frame) == plaza_proto::id::HELLO_RESPONSE
                    {
                        continue;
                    }
                    return Some(frame.to_vec());
                }
            }
            self.buf.reserve(4096);
            let n = within("a packet from the server", self.stream.read_buf(&mut self.buf))
                .await
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// The next event.
    pub async fn recv(&mut self) -> Event {
        let f = self.recv_raw().await;
        Event::decode(&f).unwrap_or_else(|e| panic!("undecodable frame {f:?}: {e}"))
    }

    /// The next event, or `None` when the server closes the connection.
    pub async fn try_recv(&mut self) -> Option<Event> {
        let f = self.try_recv_raw().await?;
        Some(Event::decode(&f).expect("decodable frame"))
    }

    /// Waits for the server to close the connection, returning the events
    /// that came before.
    pub async fn until_closed(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = self.try_recv().await {
            v.push(e);
        }
        v
    }

    /// Sends a request and returns the next event.
    pub async fn call(&mut self, r: Request) -> Event {
        self.send(r).await;
        self.recv().await
    }

    /// Registers `name`, expecting success.
    pub async fn register(&mut self, name: &str, password: &str) {
        let r = self
            .call(Request::Register {
                name: name.into(),
                password: password.into(),
            })
            .await;
        assert_eq!(r, Event::RegisterResult(ResultCode::OK), "register {name}");
    }

    /// Logs in, returning the result code. On success the server follows
    /// the response with a resume token, kept in `self.token`.
    pub async fn try_login(&mut self, name: &str, password: &str) -> ResultCode {
        self.send(Request::Login {
            name: name.into(),
            password: password.into(),
        })
        .await;
        self.login_result().await
    }

    /// Logs in with the resume token from the last login.
    pub async fn try_resume(&mut self, name: &str, token: &str) -> ResultCode {
        self.send(Request::Resume {
            name: name.into(),
            token: token.into(),
        })
        .await;
        self.login_result().await
    }

    /// Reads a login's answer: the result, and the token after success.
    pub async fn login_result(&mut self) -> ResultCode {
        match self.recv().await {
            Event::LoginResult(ResultCode::OK) => match self.recv().await {
                Event::ResumeToken { token, .. } => {
                    self.token = Some(token);
                    ResultCode::OK
                }
                other => panic!("expected a resume token after login, got {other:?}"),
            },
            Event::LoginResult(c) => c,
            other => panic!("expected a login result, got {other:?}"),
        }
    }

    /// Logs in, expecting success.
    pub async fn login(&mut self, name: &str, password: &str) {
        assert_eq!(
            self.try_login(name, password).await,
            ResultCode::OK,
            "login {name}"
        );
    }

    /// Enters a room, returning the member list and the result.
    pub async fn enter(&mut self, room: i32) -> (Vec<(u64, String)>, ResultCode) {
        self.send(Request::RoomEnter { room }).await;
        let mut users = Vec::new();
        loop {
            match self.recv().await {
                Event::RoomUserList { users: u } => users.extend(u),
                Event::RoomEnterResult(c) => return (users, c),
                other => panic!("unexpected {other:?} while entering a room"),
            }
        }
    }
}

/// A real `redis-server` for one test: a free loopback port, its own
/// temporary directory, no persistence, stopped (by its PID) on drop.
pub struct RedisServer {
    child: Option<std::process::Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one and waits until it answers.
    ///
    /// # Panics
    /// If `redis-server` is not installed (`apt-get install redis-server`;
    /// `.ci/run` and `scripts/test.sh` install it) or does not start.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut r = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                // Bound to loopback only; protected mode would also refuse
                // clients from 127.0.0.2 and up (peer-bench spreads its
                // connections over 127.0.0.1-16).
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server not found: apt-get install redis-server (scripts/test.sh does)");
        self.child = Some(child);
        // Wait for it to accept connections (the event we need), bounded.
        within("redis-server to start", async {
            loop {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)).await {
                    let mut buf = [0u8; 7];
                    if s.write_all(b"PING\r\n").await.is_ok()
                        && s.read_exact(&mut buf).await.is_ok()
                        && &buf == b"+PONG\r\n"
                    {
                        return;
                    }
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    /// The redis-server process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops it (an outage); [`restart`](Self::restart) brings it back on the
    /// same port, empty.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Runs one command with redis-cli-like simplicity: raw RESP over TCP.
    pub async fn cmd(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect redis");
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 512];
        let n = within("redis reply", s.read(&mut buf)).await.expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
