//! The Redis primary a node writes to: one fixed address
//! (`redis://host:port/db`), whichever server Redis Sentinel names
//! (`redis+sentinel://host:port,host:port/master-name/db`), or a Redis
//! Cluster (`redis+cluster://host:port,host:port`), whose masters each own
//! a share of the hash slots.
//!
//! Redis Cluster is redis-rs's cluster connection: it learns the slots from
//! any seed, follows MOVED answers and failovers by itself, and reconnects.
//! A command goes to its key's master; a pipeline must stay within one slot,
//! so [`Conn::run`] splits a batch by slot and sends the parts at once.
//!
//! A fixed address is one redis-rs `ConnectionManager`, which reconnects by
//! itself. Behind Sentinel a reconnect to the same address is not enough:
//! after a failover the old primary is dead, or back as a replica that
//! refuses writes (READONLY). So a caller that meets a lost connection or
//! READONLY reports it ([`Primary::failed`]), the connection is dropped, and
//! the next call asks the sentinels again (redis-rs's `Sentinel`, which also
//! checks with ROLE that the server it names is a primary). Lookups are
//! serialised, and after a failed one the next waits [`RETRY`], so an outage
//! costs the sentinels a few lookups a second, not one per call.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Cmd, Pipeline, RedisConnectionInfo, RedisError, RedisFuture, Value};

/// Time between sentinel lookups while none succeeds.
const RETRY: Duration = Duration::from_millis(100);

/// Where the primary is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `redis://` or `rediss://`: this server.
    Direct(String),
    /// `redis+sentinel://`: the primary these sentinels name `master`.
    Sentinel {
        /// `redis://host:port` of each sentinel.
        sentinels: Vec<String>,
        /// The name the sentinels monitor it under.
        master: String,
        /// The database on the primary.
        db: i64,
    },
    /// `redis+cluster://`: a Redis Cluster, found from these seeds.
    Cluster(Seeds),
}

/// A Redis Cluster's seeds, and the credentials its servers ask for.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Seeds {
    /// `host:port` of each.
    pub(crate) hosts: Vec<String>,
    /// AUTH's user name (Redis's `default` when none).
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

impl std::fmt::Debug for Seeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Seeds")
            .field("hosts", &self.hosts)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "..."))
            .finish()
    }
}

impl Seeds {
    /// `[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]`.
    fn parse(rest: &str) -> Option<Self> {
        let rest = rest.trim_end_matches('/');
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (Some(auth.split_once(':')?), hosts),
            None => (None, rest),
        };
        let hosts: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if hosts.is_empty() || hosts.iter().any(|h| h.contains('/') || !h.contains(':')) {
            return None;
        }
        let (user, password) = match auth {
            Some((user, password)) => (
                (!user.is_empty()).then(|| user.to_owned()),
                Some(password.to_owned()),
            ),
            None => (None, None),
        };
        Some(Self {
            hosts,
            user,
            password,
        })
    }
}

impl Target {
    /// Parses a store URL.
    ///
    /// # Errors
    /// If it is neither a `redis://`/`rediss://` URL nor a well-formed
    /// `redis+sentinel://h:p[,h:p...]/master[/db]`.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Self::Direct(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            return Seeds::parse(rest).map(Self::Cluster).ok_or_else(|| {
                "expected redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]".to_owned()
            });
        }
        let rest = url
            .strip_prefix("redis+sentinel://")
            .ok_or_else(|| format!("not a redis://, redis+sentinel:// or redis+cluster:// URL: {url:?}"))?;
        let mut parts = rest.splitn(3, '/');
        let hosts = parts.next().unwrap_or_default();
        let master = parts.next().unwrap_or_default();
        let db = match parts.next().map(|d| d.trim_end_matches('/')) {
            None | Some("") => 0,
            Some(d) => d
                .parse()
                .map_err(|_| format!("bad database number {d:?} in {url:?}"))?,
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{h}"))
            .collect();
        if sentinels.is_empty() || master.is_empty() {
            return Err(format!(
                "{url:?}: expected redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER-NAME[/DB]"
            ));
        }
        Ok(Self::Sentinel {
            sentinels,
            master: master.to_owned(),
            db,
        })
    }

    fn is_sentinel(&self) -> bool {
        matches!(self, Self::Sentinel { .. })
    }

    /// Whether this is a Redis Cluster: keys are hash-tagged, channels are
    /// sharded (SPUBLISH), and no script or pipeline may span two slots.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// A connection to one primary, or to a Redis Cluster's masters.
#[derive(Clone)]
pub(crate) enum Conn {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

/// One command of a batch: `route` is a key (or shard channel) in its slot.
/// Only the answers of `keep` steps are returned.
pub(crate) struct Step {
    pub(crate) cmd: Cmd,
    pub(crate) route: String,
    pub(crate) keep: bool,
}

impl Step {
    pub(crate) fn new(cmd: Cmd, route: impl Into<String>, keep: bool) -> Self {
        Self {
            cmd,
            route: route.into(),
            keep,
        }
    }
}

impl Conn {
    /// Runs `steps` and returns the kept answers in order. One pipeline on a
    /// single primary; on a Redis Cluster one pipeline per hash tag, sent at
    /// once (steps with the same tag keep their order; steps in different
    /// slots are unordered).
    pub(crate) async fn run(&mut self, steps: Vec<Step>) -> redis::RedisResult<Vec<Value>> {
        match self {
            Self::One(c) => {
                let mut pipe = redis::pipe();
                for s in steps {
                    pipe.add_command(s.cmd);
                    if !s.keep {
                        pipe.ignore();
                    }
                }
                if pipe.is_empty() {
                    return Ok(Vec::new());
                }
                pipe.query_async(c).await
            }
            Self::Cluster(c) => {
                // Per tag: its pipeline, and where its kept answers go.
                let mut groups: Vec<(Pipeline, Vec<usize>)> = Vec::new();
                let mut by_tag: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
                let mut kept = 0;
                for s in steps {
                    let i = *by_tag.entry(hash_tag(&s.route).to_owned()).or_insert_with(|| {
                        groups.push((redis::pipe(), Vec::new()));
                        groups.len() - 1
                    });
                    let g = &mut groups[i];
                    g.0.add_command(s.cmd);
                    if s.keep {
                        g.1.push(kept);
                        kept += 1;
                    } else {
                        g.0.ignore();
                    }
                }
                let parts = groups.iter().map(|(pipe, _)| {
                    let mut c = c.clone();
                    async move { pipe.query_async::<Vec<Value>>(&mut c).await }
                });
                let answers = futures_util::future::try_join_all(parts).await?;
                let mut out = vec![Value::Nil; kept];
                for ((_, places), values) in groups.iter().zip(answers) {
                    for (at, v) in places.iter().zip(values) {
                        out[*at] = v;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// The part of `key` that decides its slot: the text between the first
/// `{` and the next `}` when not empty, else the whole key.
pub(crate) fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::One(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::One(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::One(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection to the primary, tagged with which one it was (for
/// [`Primary::failed`]).
pub(crate) struct PrimaryConn {
    pub(crate) conn: Conn,
    generation: u64,
}

#[derive(Default)]
struct Current {
    conn: Option<Conn>,
    generation: u64,
    /// When the last sentinel lookup failed.
    failed_at: Option<Instant>,
    last_error: String,
}

/// The primary, found and followed; see the module docs.
pub(crate) struct Primary {
    target: Target,
    timeout: Duration,
    current: Mutex<Current>,
    /// Held while connecting, so that one caller looks up and the rest wait.
    connecting: tokio::sync::Mutex<()>,
}

impl Primary {
    pub(crate) fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            current: Mutex::default(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the primary is found.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The time allowed for one call.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client for the primary as of now (for a pub/sub connection, which
    /// the caller opens and reopens itself).
    ///
    /// # Errors
    /// If the URL is bad, or no sentinel names a primary that answers.
    pub(crate) async fn client(&self) -> Result<redis::Client, RedisError> {
        match &self.target {
            Target::Direct(url) => redis::Client::open(url.as_str()),
            Target::Cluster(_) => Err(unavailable("a Redis Cluster has no one primary")),
            Target::Sentinel {
                sentinels,
                master,
                db,
            } => {
                let mut s = Sentinel::build(sentinels.clone())?;
                let info = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(RedisConnectionInfo::default().set_db(*db));
                let lookup = s.async_master_for(master, Some(&info));
                match tokio::time::timeout(self.timeout, lookup).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no sentinel answered in time",
                    )
                    .into()),
                }
            }
        }
    }

    /// The multiplexed connection to the primary, opened (and behind
    /// Sentinel, looked up) when there is none.
    ///
    /// # Errors
    /// As [`client`](Self::client), or if the primary does not answer.
    pub(crate) async fn conn(&self) -> Result<PrimaryConn, RedisError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        {
            let cur = lock(&self.current);
            if cur.failed_at.is_some_and(|at| at.elapsed() < RETRY) {
                return Err(unavailable(&cur.last_error));
            }
        }
        let opened = async {
            if let Target::Cluster(seeds) = &self.target {
                return tokio::time::timeout(
                    self.timeout,
                    cluster_client(seeds, self.timeout)?.get_async_connection(),
                )
                .await
                .unwrap_or_else(|_| Err(unavailable("connect timed out")))
                .map(Conn::Cluster);
            }
            let client = self.client().await?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1);
            match tokio::time::timeout(self.timeout, client.get_connection_manager_with_config(config)).await
            {
                Ok(r) => r.map(Conn::One),
                Err(_) => Err(unavailable("connect timed out")),
            }
        }
        .await;
        let mut cur = lock(&self.current);
        match opened {
            Ok(conn) => {
                cur.generation += 1;
                cur.conn = Some(conn.clone());
                cur.failed_at = None;
                Ok(PrimaryConn {
                    conn,
                    generation: cur.generation,
                })
            }
            Err(e) => {
                cur.failed_at = Some(Instant::now());
                cur.last_error = e.to_string();
                Err(e)
            }
        }
    }

    fn cached(&self) -> Option<PrimaryConn> {
        let cur = lock(&self.current);
        cur.conn.clone().map(|conn| PrimaryConn {
            conn,
            generation: cur.generation,
        })
    }

    /// A call on `conn` failed with `e`. Behind Sentinel, a lost connection
    /// or a READONLY answer means the primary may have moved: the next call
    /// looks it up again. (A fixed address reconnects by itself.)
    pub(crate) fn failed(&self, conn: &PrimaryConn, e: &RedisError) {
        if !self.target.is_sentinel() || !moved(e) {
            return;
        }
        let mut cur = lock(&self.current);
        if cur.generation == conn.generation && cur.conn.take().is_some() {
            tracing::info!(error = %e, "redis primary lost; asking the sentinels again");
        }
    }

    /// Behind Sentinel, a timed-out call also drops the connection.
    pub(crate) fn timed_out(&self, conn: &PrimaryConn) {
        if self.target.is_sentinel() {
            let mut cur = lock(&self.current);
            if cur.generation == conn.generation {
                cur.conn = None;
            }
        }
    }
}

/// Whether `e` says the primary is gone or is no longer the primary.
fn moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("READONLY")
        || e.to_string().contains("READONLY")
}

/// A Redis Cluster client from `seeds` (commands only: the subscriber
/// holds its own connections, `cluster::shards`).
fn cluster_client(seeds: &Seeds, timeout: Duration) -> Result<redis::cluster::ClusterClient, RedisError> {
    let mut b = redis::cluster::ClusterClientBuilder::new(seeds.hosts.iter().map(|h| format!("redis://{h}")))
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(2);
    if let Some(user) = &seeds.user {
        b = b.username(user);
    }
    if let Some(password) = &seeds.password {
        b = b.password(password);
    }
    b.build()
}

fn unavailable(why: &str) -> RedisError {
    std::io::Error::new(std::io::ErrorKind::NotConnected, why.to_owned()).into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_into_targets() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:7000/2"),
            Ok(Target::Direct("redis://127.0.0.1:7000/2".into()))
        );
        assert_eq!(
            Target::parse("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/plaza/3"),
            Ok(Target::Sentinel {
                sentinels: vec!["redis://10.0.0.1:26379".into(), "redis://10.0.0.2:26380".into()],
                master: "plaza".into(),
                db: 3,
            })
        );
        assert_eq!(
            Target::parse("redis+sentinel://h:1/main"),
            Ok(Target::Sentinel {
                sentinels: vec!["redis://h:1".into()],
                master: "main".into(),
                db: 0,
            })
        );
        assert_eq!(
            Target::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"),
            Ok(Target::Cluster(Seeds {
                hosts: vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()],
                user: None,
                password: None,
            }))
        );
        let with = Target::parse("redis+cluster://plaza:p@ss:w@10.0.0.5:6379").unwrap();
        assert_eq!(
            with,
            Target::Cluster(Seeds {
                hosts: vec!["10.0.0.5:6379".into()],
                user: Some("plaza".into()),
                password: Some("p@ss:w".into()),
            })
        );
        assert!(!format!("{with:?}").contains("p@ss"), "a password in a log");
        let Ok(Target::Cluster(s)) = Target::parse("redis+cluster://:secret@h:1") else {
            panic!()
        };
        assert_eq!((s.user, s.password.as_deref()), (None, Some("secret")));
        assert_eq!(hash_tag("plaza:seats:{5}"), "5");
        assert_eq!(hash_tag("plaza:room:{5}"), "5");
        assert_eq!(hash_tag("plaza:{}x"), "plaza:{}x");
        assert_eq!(hash_tag("plaza:bus"), "plaza:bus");
        for bad in [
            "redis+cluster://",
            "redis+cluster://h",
            "redis+cluster://nocolon@h:1",
            "redis+cluster://h:1/0",
            "redis+sentinel://h:1",
            "redis+sentinel:///plaza",
            "redis+sentinel://h:1/plaza/x",
            "http://h:1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
