//! A real Redis Cluster on loopback: three masters (`--cluster-enabled`),
//! and optionally a replica each, every server on a free port with its own
//! directory, joined by `redis-cli --cluster create`.

use crate::redis::{cmd, free_port};
use crate::{RedisServer, within};

/// See the module docs. Every server is stopped (by PID) on drop.
pub struct RedisCluster {
    /// Every server: the masters as created first (each owning a third of
    /// the slots), then their replicas.
    pub masters: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters, creates the cluster and waits until every
    /// master says it is ok.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is missing, or the cluster does not
    /// form.
    pub async fn start() -> Self {
        Self::start_with_replicas(0).await
    }

    /// As [`start`](Self::start), with `replicas` replicas a master.
    pub async fn start_with_replicas(replicas: usize) -> Self {
        let mut masters = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            // The cluster bus port is set: the default (port + 10000) may
            // be taken, or past 65535.
            let bus = free_port().to_string();
            masters.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "2000",
                ])
                .await,
            );
        }
        let addrs: Vec<String> = masters.iter().map(|m| format!("127.0.0.1:{}", m.port)).collect();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
                .output()
        })
        .await
        .expect("redis-cli task")
        .expect("redis-cli not found: apt-get install redis-tools (scripts/test.sh does)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = Self { masters };
        c.until_ok().await;
        c
    }

    /// Waits until every server says the cluster is ok, knows every other,
    /// and every replica has synced (one that never did cannot take over).
    async fn until_ok(&self) {
        let all = self.masters.len();
        within("the Redis Cluster to be ok on every server", async {
            loop {
                let mut ok = true;
                for m in &self.masters {
                    let info = cmd(m.port, &["CLUSTER", "INFO"]).await;
                    ok &= info.contains("cluster_state:ok");
                    ok &= info.contains(&format!("cluster_known_nodes:{all}\r\n"));
                    let role = cmd(m.port, &["INFO", "replication"]).await;
                    ok &= role.contains("role:master") || role.contains("master_link_status:up");
                }
                if ok {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    /// Stops every server (an outage).
    pub fn stop(&mut self) {
        for m in &mut self.masters {
            m.stop();
        }
    }

    /// Starts every server again on its port, with its cluster
    /// configuration (`nodes.conf`) and no data, and waits until the
    /// cluster is ok.
    pub async fn restart(&mut self) {
        for m in &mut self.masters {
            m.restart().await;
        }
        self.until_ok().await;
    }

    /// `redis+cluster://` with every server as a seed, for `--store`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Runs one command on the master that owns its key (the others answer
    /// MOVED; stopped servers are skipped).
    pub async fn cmd(&self, args: &[&str]) -> String {
        let mut last = String::new();
        for m in &self.masters {
            match m.try_cmd(args).await {
                Ok(r) if !r.starts_with("-MOVED") => return r,
                Ok(r) => last = r,
                Err(e) => last = e.to_string(),
            }
        }
        last
    }

    /// From now on every server asks for `password` (and replicas give it
    /// to their masters). [`cmd`](Self::cmd) no longer works.
    pub async fn require_password(&self, password: &str) {
        for m in &self.masters {
            assert!(
                m.cmd(&["CONFIG", "SET", "masterauth", password])
                    .await
                    .starts_with("+OK")
            );
            assert!(
                m.cmd(&["CONFIG", "SET", "requirepass", password])
                    .await
                    .starts_with("+OK")
            );
        }
    }

    /// The server that owns `key`'s slot now, by its place in `masters`.
    pub async fn owner(&self, key: &str) -> Option<usize> {
        for (i, m) in self.masters.iter().enumerate() {
            if let Ok(r) = m.try_cmd(&["EXISTS", key]).await
                && r.starts_with(':')
            {
                return Some(i);
            }
        }
        None
    }
}

/// The Redis a cluster test runs on: one server, or a Redis Cluster.
pub enum Engine {
    /// One `redis-server`.
    One(RedisServer),
    /// Three masters in a Redis Cluster.
    Cluster(RedisCluster),
}

impl Engine {
    /// One `redis-server`.
    pub async fn one() -> Self {
        Self::One(RedisServer::start().await)
    }

    /// A three-master Redis Cluster.
    pub async fn cluster() -> Self {
        Self::Cluster(RedisCluster::start().await)
    }

    /// The URL for `--store`.
    pub fn url(&self) -> String {
        match self {
            Self::One(r) => r.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    /// Runs one command (on the master that owns its key).
    pub async fn cmd(&self, args: &[&str]) -> String {
        match self {
            Self::One(r) => r.cmd(args).await,
            Self::Cluster(c) => c.cmd(args).await,
        }
    }

    /// Stops it: every server (an outage).
    pub fn stop(&mut self) {
        match self {
            Self::One(r) => r.stop(),
            Self::Cluster(c) => c.stop(),
        }
    }

    /// Starts it again, empty, and waits until it serves.
    pub async fn restart(&mut self) {
        match self {
            Self::One(r) => r.restart().await,
            Self::Cluster(c) => c.restart().await,
        }
    }
}

/// Runs each named `async fn(Engine)` as two tests, `one_redis::NAME` and
/// `redis_cluster::NAME`.
#[macro_export]
macro_rules! on_each_engine {
    ($($name:ident),* $(,)?) => {
        mod one_redis {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Engine::one().await).await
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Engine::cluster().await).await
                }
            )*
        }
    };
}
