//! A real Redis Sentinel deployment on loopback: a primary, a replica and
//! three sentinels (`redis-server --sentinel`, the program Debian's
//! `redis-sentinel` runs), each on a free port with its own directory.

use crate::redis::{answers_ping, cmd, free_port};
use crate::{RedisServer, within};

/// The name the sentinels monitor the primary under.
pub(crate) const MASTER: &str = "plaza";

/// See the module docs. Everything is stopped (by PID) on drop.
pub struct Sentinels {
    /// The primary at the start.
    pub primary: RedisServer,
    /// Its replica, promoted when the primary dies.
    pub replica: RedisServer,
    sentinels: Vec<(u16, std::process::Child)>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    /// Starts the five processes and waits until the sentinels know the
    /// replica and each other (before then a failover cannot happen).
    pub async fn start() -> Self {
        let primary = RedisServer::start().await;
        let port = primary.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let p = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            // Fast detection for tests: down after 1 s of silence.
            let text = format!(
                "port {p}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 10000\n",
                dir = dir.path().display(),
            );
            std::fs::write(&conf, text).expect("write sentinel config");
            let child = std::process::Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server not found: apt-get install redis-server (scripts/test.sh does)");
            sentinels.push((p, child));
            answers_ping(p).await;
        }
        let s = Self {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        within("the sentinels to know the replica and each other", async {
            loop {
                if s.ready().await {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        s
    }

    async fn ready(&self) -> bool {
        let synced = cmd(self.replica.port, &["INFO", "replication"])
            .await
            .contains("master_link_status:up");
        let mut all = synced;
        for (p, _) in &self.sentinels {
            let quorum = cmd(*p, &["SENTINEL", "CKQUORUM", MASTER]).await;
            let replicas = cmd(*p, &["SENTINEL", "REPLICAS", MASTER]).await;
            all &= quorum.starts_with("+OK 3 usable") && !replicas.starts_with("*0");
        }
        all
    }

    /// `redis+sentinel://` with the three sentinels, for `--store`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}/0", hosts.join(","))
    }

    /// Asks the sentinels for a failover while the primary runs: it is
    /// demoted to a replica (as when a partition heals), and the replica
    /// promoted.
    pub async fn failover(&self) {
        let r = cmd(self.sentinels[0].0, &["SENTINEL", "FAILOVER", MASTER]).await;
        assert!(r.starts_with("+OK"), "SENTINEL FAILOVER: {r}");
    }

    /// The port of the primary the first sentinel names now.
    pub async fn primary_port(&self) -> Option<u16> {
        let r = cmd(
            self.sentinels[0].0,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
        )
        .await;
        // *2 $9 127.0.0.1 $N port
        r.lines().nth(4).and_then(|l| l.trim().parse().ok())
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for (_, c) in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
