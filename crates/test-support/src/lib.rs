//! Test helpers: a Plaza server on 127.0.0.1:0 with its own temporary data
//! directory, and a client that speaks the protocol over a real socket.
//! Every wait has a generous timeout and fails the test with what it was
//! waiting for; nothing sleeps to synchronise.

mod client;
mod redis;
mod redis_cluster;
mod relay;
mod sentinel;
mod server;

use std::time::Duration;

use plaza_proto::ResultCode;
use plaza_server::HashCost;

pub use client::TestClient;
pub use redis::RedisServer;
pub use redis_cluster::{Engine, RedisCluster};
pub use relay::Relay;
pub use sentinel::Sentinels;
pub use server::{CONTROL_SECRET, ControlClient, ServerProcess, TestCert, TestServer};

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

/// `GET path` over HTTP/1.1 with extra header lines (each ending in CRLF),
/// returning (status code, lower-cased head, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = String::new();
    within("the HTTP answer", s.read_to_string(&mut out))
        .await
        .expect("read");
    let code = out[9..12].parse().expect("a status code");
    let (head, body) = out.split_once("\r\n\r\n").expect("a head and a body");
    (code, head.to_ascii_lowercase(), body.to_owned())
}

/// Logs once per test binary, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
