//! A real `redis-server` on a free loopback port.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::*;

/// A real `redis-server` for one test: a free loopback port, its own
/// temporary directory, no persistence, stopped (by its PID) on drop.
pub struct RedisServer {
    child: Option<std::process::Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    /// More arguments (a replica's `--replicaof`).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one and waits until it answers.
    ///
    /// # Panics
    /// If `redis-server` is not installed (`apt-get install redis-server`;
    /// `.ci/run` and `scripts/test.sh` install it) or does not start.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts one with more arguments (`["--replicaof", "127.0.0.1", port]`).
    pub async fn start_with(extra: &[&str]) -> Self {
        let mut r = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
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
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server not found: apt-get install redis-server (scripts/test.sh does)");
        self.child = Some(child);
        answers_ping(self.port).await;
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
        cmd(self.port, args).await
    }

    /// As [`cmd`](Self::cmd), with a connection error returned instead of
    /// failing the test.
    pub async fn try_cmd(&self, args: &[&str]) -> std::io::Result<String> {
        try_cmd(self.port, args).await
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits until the server on `port` answers PING (the event a test needs),
/// bounded.
pub(crate) async fn answers_ping(port: u16) {
    within("redis-server to start", async {
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
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

/// One command as raw RESP to the server on `port`; the first reply read,
/// as text (up to 4 KiB).
pub(crate) async fn cmd(port: u16, args: &[&str]) -> String {
    try_cmd(port, args)
        .await
        .unwrap_or_else(|e| panic!("redis on port {port}, {args:?}: {e}"))
}

/// As [`cmd`], with a connection error returned: a server changing role
/// (a primary demoted by Sentinel) closes its clients' connections.
pub(crate) async fn try_cmd(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 4096];
    let n = within("redis reply", s.read(&mut buf)).await?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
