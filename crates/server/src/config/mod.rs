//! Configuration: command-line flags, environment variables and an optional
//! TOML file, in that order of precedence, over built-in defaults. With no
//! configuration at all the server runs on 127.0.0.1:7777 with an embedded
//! account store in `./plaza-data`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args};
use serde::Deserialize;

use crate::store::HashCost;

/// Every setting. Each is optional here; [`Settings::resolve`] fills in the
/// defaults. In the TOML file the keys are the flag names without `--`.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Address and port for chat clients [default: 127.0.0.1:7777].
    #[arg(long, env = "PLAZA_BIND")]
    pub bind: Option<SocketAddr>,
    /// Directory of the embedded account database [default: ./plaza-data].
    #[arg(long, env = "PLAZA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of rooms, numbered from 0 [default: 1000].
    #[arg(long, env = "PLAZA_ROOMS")]
    pub rooms: Option<u32>,
    /// Members per room [default: 200].
    #[arg(long, env = "PLAZA_ROOM_CAPACITY")]
    pub room_capacity: Option<usize>,
    /// Users logged in at once; the next login is refused with 32 [default: 10000].
    #[arg(long, env = "PLAZA_MAX_USERS")]
    pub max_users: Option<usize>,
    /// TCP connections at once, logged in or not; more are refused at accept
    /// [default: max-users + 1000].
    #[arg(long, env = "PLAZA_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// Connections at once from one IP address; more are refused at accept.
    /// 0: no limit [default: 256].
    #[arg(long, env = "PLAZA_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Login, resume and register attempts per minute from one IP address
    /// (bursts up to the same number); more get 115. 0: no limit [default: 60].
    #[arg(long, env = "PLAZA_LOGIN_RATE_PER_IP")]
    pub login_rate_per_ip: Option<u32>,
    /// Login and resume attempts per minute for one account name (bursts up
    /// to the same number); more get 115. 0: no limit [default: 10].
    #[arg(long, env = "PLAZA_LOGIN_RATE_PER_ACCOUNT")]
    pub login_rate_per_account: Option<u32>,
    /// Chat messages (room chat, whisper, broadcast) per second per
    /// connection, bursts of twice that; more get 115. 0: no limit [default: 20].
    #[arg(long, env = "PLAZA_CHAT_RATE")]
    pub chat_rate: Option<u32>,
    /// Seconds a connection may stay without logging in before it is
    /// closed. 0: no limit [default: 30].
    #[arg(long, env = "PLAZA_LOGIN_TIMEOUT_SECS")]
    pub login_timeout_secs: Option<u64>,
    /// Whether clients may create accounts with REGISTER [default: true].
    #[arg(long, env = "PLAZA_REGISTRATION", action = ArgAction::Set)]
    pub registration: Option<bool>,
    /// File holding the secret that makes any user an administrator with
    /// ADMIN. The secret can also come from PLAZA_ADMIN_SECRET. Without one,
    /// only accounts granted the admin role (`plaza-server grant-admin`) can
    /// elevate.
    #[arg(long, env = "PLAZA_ADMIN_SECRET_FILE")]
    pub admin_secret_file: Option<PathBuf>,
    /// Network worker threads; 0 means one per core [default: 0].
    #[arg(long, env = "PLAZA_WORKERS")]
    pub workers: Option<usize>,
    /// Close connections silent for this many seconds; clients send PING to
    /// stay connected [default: 120].
    #[arg(long, env = "PLAZA_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Unsent bytes allowed per connection at any moment, in KiB; a
    /// connection past it is dropped as a slow consumer at once
    /// [default: 16384].
    #[arg(long, env = "PLAZA_MAX_SEND_QUEUE_KIB")]
    pub max_send_queue_kib: Option<usize>,
    /// The soft limit, in KiB: a connection whose unsent bytes stay over it
    /// for --send-queue-soft-secs is dropped as a slow consumer (a burst
    /// may pass it), and with --slow-consumer-policy drop-oldest the oldest
    /// room messages are dropped to keep it under it [default: 1024].
    #[arg(long, env = "PLAZA_SEND_QUEUE_SOFT_KIB")]
    pub send_queue_soft_kib: Option<usize>,
    /// How long a connection may stay over --send-queue-soft-kib, in
    /// seconds [default: 10].
    #[arg(long, env = "PLAZA_SEND_QUEUE_SOFT_SECS")]
    pub send_queue_soft_secs: Option<u64>,
    /// While the network threads are busy (80% of their time), a connection
    /// is written at most once per tick of a clock beating every this many
    /// milliseconds, and once they are saturated every write waits for the
    /// next tick (and the chat logic holds the writes it makes itself for
    /// up to this long): fewer, larger writes when the CPU is short, for up
    /// to this much latency. 0: always write at once [default: 2].
    #[arg(long, env = "PLAZA_GATHER_MS")]
    pub gather_ms: Option<u64>,
    /// What happens to a connection whose unsent bytes reach the limit:
    /// `disconnect` it, or `drop-oldest` room messages queued for it (it gets
    /// MESSAGES_MISSED_NOTIFY with the count and stays) [default: disconnect].
    #[arg(long, env = "PLAZA_SLOW_CONSUMER_POLICY")]
    pub slow_consumer_policy: Option<String>,
    /// Milliseconds between sendings of each room's enter and leave notices,
    /// gathered meanwhile, so that a room filling up costs each member one
    /// write per interval rather than one per arrival. A room of n members
    /// waits n/10 intervals (1 to 20). Room chat sends what was gathered
    /// first. 0 sends each at once [default: 100].
    #[arg(long, env = "PLAZA_ENTER_LEAVE_DELAY_MS")]
    pub enter_leave_delay_ms: Option<u64>,
    /// Room messages each room keeps for rejoins and scrollback; 0 keeps
    /// none (sequence numbers still count) [default: 100].
    #[arg(long, env = "PLAZA_HISTORY_MESSAGES")]
    pub history_messages: Option<usize>,
    /// Bytes of history each room keeps (each message counts its packet and
    /// 64 bytes) [default: 65536].
    #[arg(long, env = "PLAZA_HISTORY_BYTES")]
    pub history_bytes: Option<usize>,
    /// Seconds a room message is kept in history [default: 3600].
    #[arg(long, env = "PLAZA_HISTORY_SECS")]
    pub history_secs: Option<u64>,
    /// Seconds a client with room history that dropped keeps its room seat
    /// (the room sees no leave if it rejoins in time) and its whispers
    /// (delivered at its next login); 0: it leaves at once [default: 60].
    #[arg(long, env = "PLAZA_RESUME_WINDOW_SECS")]
    pub resume_window_secs: Option<u64>,
    /// Seconds a graceful shutdown may spend flushing queued messages
    /// [default: 10].
    #[arg(long, env = "PLAZA_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Argon2id memory cost in KiB for new password hashes [default: 19456].
    #[arg(long, env = "PLAZA_ARGON2_MEMORY_KIB")]
    pub argon2_memory_kib: Option<u32>,
    /// Argon2id passes for new password hashes [default: 2].
    #[arg(long, env = "PLAZA_ARGON2_ITERATIONS")]
    pub argon2_iterations: Option<u32>,
    /// Address of the operators' control listener [default: 127.0.0.1:7778].
    /// Keep it on loopback or an internal interface.
    #[arg(long, env = "PLAZA_CONTROL_BIND")]
    pub control_bind: Option<SocketAddr>,
    /// File holding the control link's shared secret. Without it,
    /// PLAZA_CONTROL_SECRET is used, or else DATA_DIR/control.secret,
    /// generated (mode 0600) on first start.
    #[arg(long, env = "PLAZA_CONTROL_SECRET_FILE")]
    pub control_secret_file: Option<PathBuf>,
    /// Account store: `embedded` (redb in --data-dir), a Redis URL such as
    /// `redis://127.0.0.1:6379/0`, or the primary Redis Sentinel names:
    /// `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER-NAME[/DB]`, or a
    /// Redis Cluster: `redis+cluster://[USER:PASSWORD@]HOST:PORT[,...]`
    /// [default: embedded].
    #[arg(long, env = "PLAZA_STORE")]
    pub store: Option<String>,
    /// Prefix of every Redis key [default: plaza:].
    #[arg(long, env = "PLAZA_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Time allowed for one Redis call, in milliseconds; a login that cannot
    /// finish in time gets 112 [default: 2000].
    #[arg(long, env = "PLAZA_REDIS_TIMEOUT_MS")]
    pub redis_timeout_ms: Option<u64>,
    /// TTL of a user's logged-in mark in Redis, refreshed every third of it;
    /// a crashed node's users are free again after at most this long
    /// [default: 30].
    #[arg(long, env = "PLAZA_PRESENCE_TTL_SECS")]
    pub presence_ttl_secs: Option<u64>,
    /// Also verify logins against the seed's Redis schema (`GET <name>`
    /// holding a plaintext password), rehashing matches into Plaza's
    /// [default: false].
    #[arg(long, env = "PLAZA_SEED_COMPAT", action = ArgAction::Set)]
    pub seed_compat: Option<bool>,
    /// Lifetime of resume tokens in seconds [default: 600].
    #[arg(long, env = "PLAZA_RESUME_TTL_SECS")]
    pub resume_ttl_secs: Option<u32>,
    /// Address of the HTTP endpoint for Prometheus (/metrics) and health
    /// checks (/livez, /readyz), or `off` [default: 127.0.0.1:7779].
    #[arg(long, env = "PLAZA_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Cluster mode: share users and rooms with the other nodes on the same
    /// Redis (needs a redis:// --store) [default: false].
    #[arg(long, env = "PLAZA_CLUSTER", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub cluster: Option<bool>,
    /// Address and port of the TLS listener for chat clients, beside the
    /// plain one; needs --tls-cert and --tls-key [default: 127.0.0.1:7443
    /// when they are given].
    #[arg(long, env = "PLAZA_TLS_BIND")]
    pub tls_bind: Option<SocketAddr>,
    /// PEM certificate chain for the TLS listener, leaf first. Reloaded,
    /// with the key, on SIGHUP or `plaza-ctl reload-tls`.
    #[arg(long, env = "PLAZA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    #[arg(long, env = "PLAZA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Address and port of the WebSocket listener for browsers: the web
    /// client at `/`, WebSocket (subprotocol plaza.v1) at `/ws`
    /// [default: off; 127.0.0.1:7780 in the examples].
    #[arg(long, env = "PLAZA_WS_BIND")]
    pub ws_bind: Option<SocketAddr>,
    /// The same over TLS (https and wss), beside --ws-bind, with
    /// --tls-cert and --tls-key [default: off].
    #[arg(long, env = "PLAZA_WSS_BIND")]
    pub wss_bind: Option<SocketAddr>,
    /// Origins whose pages may open a WebSocket, comma-separated
    /// (`https://chat.example.com`), or `*` for any; a page's own origin is
    /// always allowed [default: the page's own origin only].
    #[arg(long, env = "PLAZA_WS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub ws_allowed_origins: Option<Vec<String>>,
    /// Address and port of the IRC listener: channels #0.. are the rooms
    /// (docs/IRC.md) [default: off; 127.0.0.1:6667 in the examples].
    #[arg(long, env = "PLAZA_IRC_BIND")]
    pub irc_bind: Option<SocketAddr>,
    /// The IRC listener over TLS, beside --irc-bind, with --tls-cert and
    /// --tls-key [default: off; 127.0.0.1:6697 in the examples].
    #[arg(long, env = "PLAZA_IRC_TLS_BIND")]
    pub irc_tls_bind: Option<SocketAddr>,
    /// Let IRC clients without credentials in as guests, under a nick
    /// that is no account's name [default: false: SASL or PASS needed].
    #[arg(long, env = "PLAZA_ALLOW_GUESTS", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_guests: Option<bool>,
    /// The IRC server's name, in its lines and numerics [default: plaza].
    #[arg(long, env = "PLAZA_IRC_SERVER_NAME")]
    pub irc_server_name: Option<String>,
    /// Log filter, as RUST_LOG [default: info].
    #[arg(long, env = "PLAZA_LOG")]
    pub log: Option<String>,
}

/// The WebSocket listeners' settings.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// The plain listener (http, ws).
    pub bind: SocketAddr,
    /// The TLS listener (https, wss), if on.
    pub tls_bind: Option<SocketAddr>,
    /// `--ws-allowed-origins`: empty for the page's own origin only.
    pub allowed_origins: Vec<String>,
}

/// The IRC listeners' settings.
#[derive(Debug, Clone)]
pub struct IrcSettings {
    /// The plain listener.
    pub bind: SocketAddr,
    /// The TLS listener, if on.
    pub tls_bind: Option<SocketAddr>,
    /// `--allow-guests`.
    pub allow_guests: bool,
    /// `--irc-server-name`.
    pub server_name: String,
}

/// The TLS listener's settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Where it listens.
    pub bind: SocketAddr,
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
}

/// The settings with every default applied.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Client listener.
    pub bind: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Chat limits and policy.
    pub chat: plaza_core::Config,
    /// TCP connections at once.
    pub max_sessions: usize,
    /// Worker threads (0: per core).
    pub workers: usize,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Per-connection unsent-bytes limit.
    pub max_send_queue: usize,
    /// Per-connection unsent bytes allowed for `soft_send_grace`.
    pub soft_send_queue: usize,
    /// How long a connection may stay over `soft_send_queue`.
    pub soft_send_grace: Duration,
    /// The writers' clock while the CPU is short (`None`: write at once).
    pub gather: Option<Duration>,
    /// Graceful shutdown flush time.
    pub shutdown_grace: Duration,
    /// How often each room's gathered enter and leave notices go out.
    pub enter_leave_delay: Duration,
    /// Password hashing cost.
    pub hash_cost: HashCost,
    /// Control listener.
    pub control_bind: SocketAddr,
    /// Control secret file, if given.
    pub control_secret_file: Option<PathBuf>,
    /// Account store.
    pub store: crate::StoreConfig,
    /// Resume token lifetime.
    pub resume_ttl_secs: u32,
    /// Cluster mode, if on.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Drop the oldest room messages of a slow reader instead of
    /// disconnecting it.
    pub drop_oldest: bool,
    /// The metrics and health endpoint, if on.
    pub metrics_bind: Option<SocketAddr>,
    /// Connections per IP address (`None`: no limit).
    pub max_connections_per_ip: Option<usize>,
    /// Login attempts per minute per IP address and per account (0: off).
    pub login_rate: (u32, u32),
    /// The TLS listener, if on.
    pub tls: Option<TlsSettings>,
    /// The WebSocket listeners, if on.
    pub ws: Option<WsSettings>,
    /// The IRC listeners, if on.
    pub irc: Option<IrcSettings>,
    /// Log filter.
    pub log: String,
}

impl Settings {
    /// Fields set here win over `other`'s.
    pub fn or(self, other: Self) -> Self {
        Self {
            bind: self.bind.or(other.bind),
            data_dir: self.data_dir.or(other.data_dir),
            rooms: self.rooms.or(other.rooms),
            room_capacity: self.room_capacity.or(other.room_capacity),
            max_users: self.max_users.or(other.max_users),
            max_sessions: self.max_sessions.or(other.max_sessions),
            registration: self.registration.or(other.registration),
            admin_secret_file: self.admin_secret_file.or(other.admin_secret_file),
            workers: self.workers.or(other.workers),
            idle_timeout_secs: self.idle_timeout_secs.or(other.idle_timeout_secs),
            max_send_queue_kib: self.max_send_queue_kib.or(other.max_send_queue_kib),
            send_queue_soft_kib: self.send_queue_soft_kib.or(other.send_queue_soft_kib),
            send_queue_soft_secs: self.send_queue_soft_secs.or(other.send_queue_soft_secs),
            gather_ms: self.gather_ms.or(other.gather_ms),
            shutdown_grace_secs: self.shutdown_grace_secs.or(other.shutdown_grace_secs),
            enter_leave_delay_ms: self.enter_leave_delay_ms.or(other.enter_leave_delay_ms),
            history_messages: self.history_messages.or(other.history_messages),
            history_bytes: self.history_bytes.or(other.history_bytes),
            history_secs: self.history_secs.or(other.history_secs),
            resume_window_secs: self.resume_window_secs.or(other.resume_window_secs),
            argon2_memory_kib: self.argon2_memory_kib.or(other.argon2_memory_kib),
            argon2_iterations: self.argon2_iterations.or(other.argon2_iterations),
            control_bind: self.control_bind.or(other.control_bind),
            control_secret_file: self.control_secret_file.or(other.control_secret_file),
            store: self.store.or(other.store),
            redis_prefix: self.redis_prefix.or(other.redis_prefix),
            redis_timeout_ms: self.redis_timeout_ms.or(other.redis_timeout_ms),
            presence_ttl_secs: self.presence_ttl_secs.or(other.presence_ttl_secs),
            seed_compat: self.seed_compat.or(other.seed_compat),
            resume_ttl_secs: self.resume_ttl_secs.or(other.resume_ttl_secs),
            cluster: self.cluster.or(other.cluster),
            metrics_bind: self.metrics_bind.or(other.metrics_bind),
            slow_consumer_policy: self.slow_consumer_policy.or(other.slow_consumer_policy),
            max_connections_per_ip: self.max_connections_per_ip.or(other.max_connections_per_ip),
            login_rate_per_ip: self.login_rate_per_ip.or(other.login_rate_per_ip),
            login_rate_per_account: self.login_rate_per_account.or(other.login_rate_per_account),
            chat_rate: self.chat_rate.or(other.chat_rate),
            login_timeout_secs: self.login_timeout_secs.or(other.login_timeout_secs),
            tls_bind: self.tls_bind.or(other.tls_bind),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            ws_bind: self.ws_bind.or(other.ws_bind),
            wss_bind: self.wss_bind.or(other.wss_bind),
            ws_allowed_origins: self.ws_allowed_origins.or(other.ws_allowed_origins),
            irc_bind: self.irc_bind.or(other.irc_bind),
            irc_tls_bind: self.irc_tls_bind.or(other.irc_tls_bind),
            allow_guests: self.allow_guests.or(other.allow_guests),
            irc_server_name: self.irc_server_name.or(other.irc_server_name),
            log: self.log.or(other.log),
        }
    }

    /// Reads a TOML file of settings.
    ///
    /// # Errors
    /// If the file cannot be read or has an unknown key or a bad value.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Applies the defaults and reads the admin secret.
    ///
    /// # Errors
    /// If the admin secret file cannot be read, or a value is out of range.
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let admin_secret = match &self.admin_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading admin secret {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("PLAZA_ADMIN_SECRET").ok(),
        }
        .filter(|s| !s.is_empty());
        let max_users = self.max_users.unwrap_or(10_000);
        let rooms = self.rooms.unwrap_or(1000);
        anyhow::ensure!(rooms > 0, "rooms must be at least 1");
        let store = match self.store.as_deref() {
            None | Some("embedded") => crate::StoreConfig::Embedded,
            Some(url)
                if url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+sentinel://")
                    || url.starts_with("redis+cluster://") =>
            {
                crate::primary::Target::parse(url).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
                crate::StoreConfig::Redis(crate::store::RedisConfig {
                    url: url.to_owned(),
                    prefix: self.redis_prefix.clone().unwrap_or_else(|| "plaza:".into()),
                    timeout: Duration::from_millis(self.redis_timeout_ms.unwrap_or(2000)),
                    presence_ttl: Duration::from_secs(self.presence_ttl_secs.unwrap_or(30).max(3)),
                    seed_compat: self.seed_compat.unwrap_or(false),
                })
            }
            Some(other) => anyhow::bail!(
                "--store must be `embedded`, or a redis://, redis+sentinel:// or redis+cluster:// URL, not {other:?}"
            ),
        };
        let room_capacity = self.room_capacity.unwrap_or(200);
        let cluster = match (&store, self.cluster.unwrap_or(false)) {
            (_, false) => None,
            (crate::StoreConfig::Redis(r), true) => Some(crate::cluster::ClusterConfig {
                url: r.url.clone(),
                prefix: r.prefix.clone(),
                timeout: r.timeout,
                node_ttl: r.presence_ttl,
                presence_ttl: r.presence_ttl,
                room_capacity,
                history: self.history_messages.unwrap_or(100),
            }),
            (crate::StoreConfig::Embedded, true) => {
                anyhow::bail!("--cluster needs the accounts in Redis: --store redis://HOST:PORT/DB")
            }
        };
        let metrics_bind = match self.metrics_bind.as_deref() {
            Some("off") => None,
            Some(a) => Some(a.parse().with_context(|| format!("--metrics-bind {a:?}"))?),
            None => Some("127.0.0.1:7779".parse().expect("valid")),
        };
        let drop_oldest = match self.slow_consumer_policy.as_deref() {
            None | Some("disconnect") => false,
            Some("drop-oldest") => true,
            Some(other) => {
                anyhow::bail!("--slow-consumer-policy must be `disconnect` or `drop-oldest`, not {other:?}")
            }
        };
        let ws = match (self.ws_bind, self.wss_bind) {
            (None, None) => None,
            (Some(bind), tls_bind) => Some(WsSettings {
                bind,
                tls_bind,
                allowed_origins: self.ws_allowed_origins.clone().unwrap_or_default(),
            }),
            (None, Some(_)) => anyhow::bail!("--wss-bind needs --ws-bind beside it"),
        };
        anyhow::ensure!(
            self.wss_bind.is_none() || (self.tls_cert.is_some() && self.tls_key.is_some()),
            "--wss-bind needs --tls-cert and --tls-key"
        );
        let irc = match (self.irc_bind, self.irc_tls_bind) {
            (None, None) => None,
            (Some(bind), tls_bind) => Some(IrcSettings {
                bind,
                tls_bind,
                allow_guests: self.allow_guests.unwrap_or(false),
                server_name: self.irc_server_name.clone().unwrap_or_else(|| "plaza".into()),
            }),
            (None, Some(_)) => anyhow::bail!("--irc-tls-bind needs --irc-bind beside it"),
        };
        if let Some(name) = &self.irc_server_name {
            anyhow::ensure!(
                !name.is_empty()
                    && name.len() <= 63
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)),
                "--irc-server-name must be a host name (letters, digits, '-' and '.'), not {name:?}"
            );
        }
        anyhow::ensure!(
            self.irc_tls_bind.is_none() || (self.tls_cert.is_some() && self.tls_key.is_some()),
            "--irc-tls-bind needs --tls-cert and --tls-key"
        );
        let max_sessions = self.max_sessions.unwrap_or(max_users + 1000);
        anyhow::ensure!(
            max_sessions <= crate::frontend::MAX_SESSIONS,
            "max-sessions must be at most {}",
            crate::frontend::MAX_SESSIONS
        );
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                bind: self
                    .tls_bind
                    .unwrap_or_else(|| "127.0.0.1:7443".parse().expect("valid")),
                cert,
                key,
            }),
            (None, None) if self.tls_bind.is_none() => None,
            _ => anyhow::bail!("TLS needs both --tls-cert and --tls-key"),
        };
        Ok(Resolved {
            tls,
            ws,
            irc,
            drop_oldest,
            metrics_bind,
            cluster,
            max_connections_per_ip: Some(self.max_connections_per_ip.unwrap_or(256)).filter(|n| *n > 0),
            login_rate: (
                self.login_rate_per_ip.unwrap_or(60),
                self.login_rate_per_account.unwrap_or(10),
            ),
            store,
            resume_ttl_secs: self.resume_ttl_secs.unwrap_or(600),
            bind: self
                .bind
                .unwrap_or_else(|| "127.0.0.1:7777".parse().expect("valid")),
            data_dir: self.data_dir.unwrap_or_else(|| "plaza-data".into()),
            chat: plaza_core::Config {
                rooms,
                room_capacity,
                max_users,
                registration: self.registration.unwrap_or(true),
                admin_secret,
                max_pending: 1024,
                chat_rate: self.chat_rate.unwrap_or(20),
                login_timeout: Some(Duration::from_secs(self.login_timeout_secs.unwrap_or(30)))
                    .filter(|d| !d.is_zero()),
                node_tag: 0,
                batch_presence: self.enter_leave_delay_ms != Some(0),
                epoch: new_epoch(),
                history: plaza_core::HistoryLimits {
                    messages: self.history_messages.unwrap_or(100),
                    bytes: self.history_bytes.unwrap_or(64 * 1024),
                    age: Duration::from_secs(self.history_secs.unwrap_or(3600)),
                },
                resume_window: Duration::from_secs(self.resume_window_secs.unwrap_or(60)),
                ..plaza_core::Config::default()
            },
            max_sessions,
            workers: self.workers.unwrap_or(0),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.unwrap_or(120)),
            max_send_queue: self.max_send_queue_kib.unwrap_or(16 * 1024) * 1024,
            soft_send_queue: self.send_queue_soft_kib.unwrap_or(1024) * 1024,
            soft_send_grace: Duration::from_secs(self.send_queue_soft_secs.unwrap_or(10)),
            gather: Some(Duration::from_millis(self.gather_ms.unwrap_or(2))).filter(|d| !d.is_zero()),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs.unwrap_or(10)),
            enter_leave_delay: Duration::from_millis(self.enter_leave_delay_ms.unwrap_or(100)),
            hash_cost: HashCost {
                memory_kib: self.argon2_memory_kib.unwrap_or(HashCost::default().memory_kib),
                iterations: self.argon2_iterations.unwrap_or(HashCost::default().iterations),
            },
            control_bind: self
                .control_bind
                .unwrap_or_else(|| "127.0.0.1:7778".parse().expect("valid")),
            control_secret_file: self.control_secret_file,
            log: self.log.unwrap_or_else(|| "info".into()),
        })
    }
}

/// A random non-zero history epoch for this run (std's hasher keys are
/// random per process; no extra crate for one number).
fn new_epoch() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one(seed).max(1)
}

#[cfg(test)]
mod tests;
