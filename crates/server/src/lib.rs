//! plaza-server: Plaza's chat server, wiring plaza-net to plaza-core.
//!
//! - The **gateway** ([`plaza_net::Handler`]) runs on the network threads.
//!   It decodes each frame and queues it, with connect and disconnect
//!   events, on one bounded channel, so a session's events keep their order.
//!   It never touches chat state.
//! - The **logic task** owns the [`plaza_core::Hub`] and drains that channel.
//!   Its replies go straight into the sessions' outboxes: a fan-out encodes
//!   once and shares the frame. It never waits: credential checks and
//!   registrations run as their own tasks on the blocking pool and come back
//!   as inputs on the same channel.
//! - **Shutdown** is run by the logic task, so everything it acknowledged
//!   before is queued before the network's graceful stop flushes and closes.
#![warn(missing_docs)]

mod cluster;
pub mod config;
pub mod control;
mod hasher;
mod http;
mod limits;
pub mod redis_store;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use plaza_core::{Conn, Effect, Hub, Input, Sink};
use plaza_net::tls::TlsAcceptor;
use plaza_net::{Framing, Handle, Handler, NetError, Server, ServerConfig, SessionId, TlsListener};
use plaza_proto::{Event, Request};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{Cluster, Op, Signal};
use crate::control::{Command, Control, ControlMsg, Reply};

pub use config::{Resolved, Settings};
pub use store::{Accounts, HashCost, Store, StoreConfig, StoreError};

/// Inputs queued for the logic task. Bounded: when the logic falls behind,
/// the gateways wait, and so the sessions stop reading (TCP back-pressure).
const LOGIC_QUEUE: usize = 8192;

/// A running server.
pub struct Running {
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    control_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    tx: mpsc::Sender<Input>,
    done: oneshot::Receiver<()>,
    net: Handle,
}

impl Running {
    /// The client listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS listener's address, if on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.net.tls_addr()
    }

    /// Reads the TLS certificate and key files again; new connections get
    /// the new certificate, sessions already up keep theirs.
    ///
    /// # Errors
    /// If TLS is off, or the files cannot be used (the old certificate
    /// stays).
    pub fn reload_tls(&self) -> anyhow::Result<()> {
        let tls = self.tls.as_ref().context("TLS is not on")?;
        Ok(tls.reload()?)
    }

    /// The control listener's address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The metrics and health endpoint's address, if on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The network layer's handle (counters, sessions).
    pub fn net(&self) -> &Handle {
        &self.net
    }

    /// Starts a graceful shutdown: every client gets a notice, logins are
    /// refused, queued messages are flushed, sessions close.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Input::Shutdown).await;
    }

    /// Waits until the server has shut down and the store is closed.
    pub async fn wait(&mut self) {
        let _ = (&mut self.done).await;
    }
}

/// Opens the store, binds the listener and starts the server on the current
/// runtime.
///
/// # Errors
/// If the data directory cannot be opened or the address cannot be bound.
pub async fn start(mut config: Resolved) -> anyhow::Result<Running> {
    let (tx, rx) = mpsc::channel(LOGIC_QUEUE);
    let (sig_tx, sig_rx) = mpsc::channel(16);
    let metrics = http::Metrics::default();
    let cluster = match config.cluster.clone() {
        Some(c) => {
            let url = without_password(&c.url);
            let cluster = Cluster::start(c, tx.clone(), sig_tx)
                .await
                .with_context(|| format!("cluster mode: cannot use Redis at {url}"))?;
            config.chat.node_tag = cluster.tag();
            tracing::info!(node = cluster.node, "cluster mode");
            Some(Arc::new(cluster))
        }
        None => None,
    };
    let store = Store::open(
        &config.store,
        &config.data_dir,
        config.hash_cost,
        config.resume_ttl_secs,
    )
    .with_context(|| match &config.store {
        StoreConfig::Embedded => format!("opening the account store in {}", config.data_dir.display()),
        StoreConfig::Redis(r) => format!("opening the Redis account store at {}", without_password(&r.url)),
    })?;
    store.spawn_upkeep();
    let secret = control::load_secret(config.control_secret_file.as_deref(), &config.data_dir)?;
    let mut net_config = ServerConfig::new(config.bind, Framing::Chat);
    net_config.max_sessions = config.max_sessions;
    net_config.max_sessions_per_ip = config.max_connections_per_ip;
    net_config.max_frame = plaza_proto::MAX_REQUEST_FRAME;
    net_config.idle_timeout = Some(config.idle_timeout);
    net_config.max_send_queue = config.max_send_queue;
    net_config.gather = config.gather;
    net_config.linger = config.shutdown_grace;
    let tls = match &config.tls {
        Some(t) => {
            let acceptor = TlsAcceptor::from_pem_files(&t.cert, &t.key).context("TLS certificate")?;
            net_config.tls = Some(TlsListener {
                bind: t.bind,
                acceptor: acceptor.clone(),
            });
            Some(acceptor)
        }
        None => None,
    };
    let server = Server::bind(net_config)
        .await
        .context("starting the chat listener")?;
    let addr = server.local_addr();
    let net = server.handle();

    // The control listener: its own socket, session table and limits.
    let mut control_config = ServerConfig::new(config.control_bind, Framing::Lan);
    control_config.max_sessions = 64;
    control_config.max_frame = 64 * 1024;
    control_config.idle_timeout = Some(Duration::from_secs(600));
    let control_server = Server::bind(control_config)
        .await
        .context("starting the control listener")?;
    let control_addr = control_server.local_addr();
    let control_net = control_server.handle();
    let (ctl_tx, ctl_rx) = mpsc::channel(64);
    plaza_net::link::serve(
        control_server,
        Control {
            tx: ctl_tx.clone(),
            secret,
            authed: Mutex::default(),
            handle: control_net.clone(),
        },
    );

    let logins = Arc::new(limits::LoginLimiter::new(
        config.login_rate.0,
        config.login_rate.1,
    ));
    server.start(Gateway {
        tx: tx.clone(),
        net: net.clone(),
        logins: logins.clone(),
    });
    let heartbeat = http::Heartbeat::new();
    let metrics_addr = match config.metrics_bind {
        Some(bind) => Some(
            http::start(bind, ctl_tx.clone(), metrics.clone(), heartbeat.clone())
                .await
                .with_context(|| format!("binding the metrics and health listener on {bind}"))?,
        ),
        None => None,
    };
    let (done_tx, done) = oneshot::channel();
    let logic = Logic {
        hub: Hub::new(config.chat.clone()),
        sink: NetSink {
            net: net.clone(),
            tx: tx.clone(),
            store,
            node: match &cluster {
                Some(c) => c.node.to_string(),
                None => hasher::new_token()[..12].to_owned(),
            },
            cluster,
            metrics,
            drop_oldest: config.drop_oldest,
            shutdown: false,
            sent: 0,
            shared_sent: 0,
        },
        ctl_tx,
        control_net,
        heartbeat,
        logins,
        tls: tls.clone(),
        started: Instant::now(),
        received: 0,
        rates: (0.0, 0.0),
        last_refresh: Instant::now(),
        config,
    };
    tokio::spawn(logic.run(rx, ctl_rx, sig_rx, done_tx));
    let tls_addr = net.tls_addr();
    tracing::info!(%addr, ?tls_addr, %control_addr, ?metrics_addr, "plaza-server listening");
    Ok(Running {
        addr,
        tls,
        control_addr,
        metrics_addr,
        tx,
        done,
        net,
    })
}

/// The network-side handler: decode, then queue for the logic task.
struct Gateway {
    tx: mpsc::Sender<Input>,
    net: Handle,
    logins: Arc<limits::LoginLimiter>,
}

impl Gateway {
    /// Login, resume, register and ADMIN attempts past the limits are
    /// answered here, without reaching the logic task or the password
    /// hasher. (ADMIN's secret could otherwise be guessed at full speed.)
    fn allowed(&self, id: SessionId, request: &Request) -> bool {
        let account = match request {
            Request::Login { name, .. } | Request::Resume { name, .. } => Some(name.as_str()),
            Request::Register { .. } | Request::Admin { .. } => None,
            _ => return true,
        };
        let Some(peer) = self.net.peer_addr(id) else {
            return true;
        };
        let ok = self.logins.allow(peer.ip(), account);
        if !ok {
            tracing::info!(session = %id, %peer, account, "login attempt refused by the rate limit");
        }
        ok
    }
}

impl Handler for Gateway {
    async fn on_join(&self, id: SessionId, peer: SocketAddr) {
        tracing::debug!(session = %id, %peer, "connected");
        let _ = self.tx.send(Input::Connect { conn: id.as_u64() }).await;
    }

    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let conn = id.as_u64();
        let input = match Request::decode(frame) {
            Ok(request) if !self.allowed(id, &request) => Input::Invalid {
                conn,
                request_id: plaza_proto::packet_id(frame),
                result: plaza_proto::ResultCode::RATE_LIMITED,
            },
            Ok(request) => Input::Request { conn, request },
            Err(e) => {
                tracing::debug!(session = %id, error = %e, "bad request");
                Input::Invalid {
                    conn,
                    request_id: plaza_proto::packet_id(frame),
                    result: e.result(),
                }
            }
        };
        // The full channel's wait is boxed: this future sits in every
        // session's task, and the wait (the logic is behind) is rare. (A
        // `let else`, not an `if let`: the try's result would be kept across
        // the wait, in every session's task.)
        let Err(mpsc::error::TrySendError::Full(input)) = self.tx.try_send(input) else {
            return;
        };
        let _ = Box::pin(self.tx.send(input)).await;
    }

    async fn on_peer_closed(&self, id: SessionId) -> bool {
        // The hub closes it once the requests before are answered (a
        // client may send its requests and shut its side at once). The
        // wait, as in `on_recv`, is boxed: this future sits in every
        // session's task.
        // (The try's result is taken apart before the wait, not matched
        // around it: a match would keep it across the wait, in every
        // session's task.)
        let input = match self.tx.try_send(Input::PeerClosed { conn: id.as_u64() }) {
            Ok(()) => return false,
            Err(mpsc::error::TrySendError::Closed(_)) => return true,
            Err(mpsc::error::TrySendError::Full(input)) => input,
        };
        Box::pin(self.tx.send(input)).await.is_err()
    }

    async fn on_leave(&self, id: SessionId) {
        tracing::debug!(session = %id, "disconnected");
        let _ = self.tx.send(Input::Disconnect { conn: id.as_u64() }).await;
    }

    fn on_dropped(&self, id: SessionId, count: u64) {
        tracing::debug!(session = %id, count, "room messages dropped for a slow reader");
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let _ = self.net.send_with(id, |b| Event::Missed { count }.encode(b));
    }

    fn on_error(&self, id: Option<SessionId>, error: &NetError) {
        match id {
            Some(id) => tracing::info!(session = %id, %error, "closing session"),
            None => tracing::warn!(%error, "listener error"),
        }
    }
}

/// The hub's output, into the network and the effect tasks.
struct NetSink {
    net: Handle,
    tx: mpsc::Sender<Input>,
    store: Store,
    /// This process's id in the store's logged-in marks.
    node: String,
    /// Cluster mode.
    cluster: Option<Arc<Cluster>>,
    metrics: http::Metrics,
    /// Room chat goes out droppable (the drop-oldest slow-consumer policy).
    drop_oldest: bool,
    shutdown: bool,
    /// Packets handed to the network.
    sent: u64,
    /// Of those, shared fan-out frames.
    shared_sent: u64,
}

impl Sink for NetSink {
    fn send(&mut self, to: Conn, event: &Event) {
        self.sent += 1;
        // A session that left or is closing just misses it.
        let _ = self.net.send_with(SessionId::from_u64(to), |b| event.encode(b));
    }

    fn send_shared(&mut self, to: Conn, frame: &Bytes) {
        self.sent += 1;
        self.shared_sent += 1;
        let _ = self.net.send(SessionId::from_u64(to), frame.clone());
    }

    fn send_droppable(&mut self, to: Conn, frame: &Bytes) {
        if !self.drop_oldest {
            return self.send_shared(to, frame);
        }
        self.sent += 1;
        self.shared_sent += 1;
        let _ = self.net.send_droppable(SessionId::from_u64(to), frame.clone());
    }

    fn send_with(&mut self, to: Conn, encode: impl FnOnce(&mut BytesMut)) {
        self.sent += 1;
        let _ = self.net.send_with(SessionId::from_u64(to), encode);
    }

    fn disconnect(&mut self, conn: Conn) {
        let _ = self.net.disconnect(SessionId::from_u64(conn));
    }

    fn effect(&mut self, effect: Effect) {
        let (tx, store) = (self.tx.clone(), self.store.clone());
        match effect {
            Effect::Authenticate {
                conn,
                ticket,
                name,
                credential,
            } => {
                let owner = self.owner(conn);
                let latency = self.metrics.store_latency.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let outcome = store.login(name, credential, owner).await;
                    latency.observe(t.elapsed().as_secs_f64());
                    let _ = tx
                        .send(Input::AuthDone {
                            conn,
                            ticket,
                            outcome,
                        })
                        .await;
                });
            }
            Effect::Register { conn, name, password } => {
                let latency = self.metrics.store_latency.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let outcome = store.register(name, password).await;
                    latency.observe(t.elapsed().as_secs_f64());
                    let _ = tx.send(Input::RegisterDone { conn, outcome }).await;
                });
            }
            Effect::Release { conn, name } => {
                let owner = self.owner(conn);
                tokio::spawn(async move { store.release(name, owner).await });
            }
            Effect::Mute { name, seconds } => store.set_mute(name, seconds),
            Effect::Shutdown => self.shutdown = true,
            Effect::Publish { msg, ack } => self.cluster_op(Op::Publish { msg, ack }),
            Effect::ClaimSeat {
                conn,
                name,
                uid,
                room,
            } => {
                self.cluster_op(Op::Seat {
                    conn,
                    name,
                    uid,
                    room,
                });
            }
        }
    }
}

/// A Redis URL fit for a log or an error: without its password.
fn without_password(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

/// Ends a binary's `main`: on an error, prints it and each of its causes on
/// a line of its own (never a backtrace, whatever `RUST_BACKTRACE` says) and
/// exits with 1.
pub fn exit_code(r: anyhow::Result<()>) -> std::process::ExitCode {
    let Err(e) = r else {
        return std::process::ExitCode::SUCCESS;
    };
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    std::process::ExitCode::FAILURE
}

/// Who holds a login in a shared store: the node and the session.
pub(crate) fn owner(node: &str, conn: Conn) -> String {
    format!("{node}:{conn}")
}

impl NetSink {
    fn owner(&self, conn: Conn) -> String {
        owner(&self.node, conn)
    }

    fn cluster_op(&self, op: Op) {
        match &self.cluster {
            Some(c) => c.send(op),
            None => tracing::error!(?op, "cluster operation without cluster mode"),
        }
    }
}

/// The logic task: owns the hub, drains the input and control channels.
struct Logic {
    hub: Hub,
    sink: NetSink,
    ctl_tx: mpsc::Sender<ControlMsg>,
    control_net: Handle,
    /// Read by /livez.
    heartbeat: http::Heartbeat,
    logins: Arc<limits::LoginLimiter>,
    tls: Option<TlsAcceptor>,
    started: Instant,
    /// Requests processed.
    received: u64,
    /// Requests in and packets out per second, over the last second.
    rates: (f64, f64),
    last_refresh: Instant,
    config: Resolved,
}

impl Logic {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        mut ctl_rx: mpsc::Receiver<ControlMsg>,
        mut signals: mpsc::Receiver<Signal>,
        done: oneshot::Sender<()>,
    ) {
        let (stopped_tx, mut stopped) = oneshot::channel::<()>();
        let mut stopped_tx = Some(stopped_tx);
        let mut batch = Vec::with_capacity(256);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Room presence news goes out on this tick (see plaza-core's room.rs).
        let batching = self.config.chat.batch_presence;
        let mut presence = tokio::time::interval(self.config.enter_leave_delay.max(Duration::from_millis(1)));
        presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = (self.received, self.sink.sent);
        loop {
            self.heartbeat.beat();
            tokio::select! {
                // Operators first: a flood of users cannot starve the control link.
                biased;
                Some((command, reply)) = ctl_rx.recv() => {
                    let r = self.control(command);
                    let _ = reply.send(r);
                }
                Some(signal) = signals.recv() => self.signal(signal),
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    let now = Instant::now();
                    for input in batch.drain(..) {
                        if matches!(input, Input::Request { .. }) {
                            self.received += 1;
                        }
                        self.hub.handle(input, now, &mut self.sink);
                    }
                }
                _ = presence.tick(), if batching => self.hub.flush_presence(&mut self.sink),
                _ = tick.tick() => {
                    let now = (self.received, self.sink.sent);
                    self.rates = ((now.0 - last.0) as f64, (now.1 - last.1) as f64);
                    last = now;
                    self.hub.expire_guests(Instant::now(), &mut self.sink);
                    self.refresh_presence();
                }
                _ = &mut stopped => break,
            }
            if self.sink.shutdown {
                if let Some(stopped_tx) = stopped_tx.take() {
                    // Everything acknowledged so far is queued: flush and close.
                    tracing::info!(
                        sessions = self.hub.sessions(),
                        users = self.hub.users_online(),
                        "shutting down"
                    );
                    let (net, control, grace) = (
                        self.sink.net.clone(),
                        self.control_net.clone(),
                        self.config.shutdown_grace,
                    );
                    tokio::spawn(async move {
                        net.stop(grace).await;
                        control.stop(Duration::from_secs(1)).await;
                        let _ = stopped_tx.send(());
                    });
                }
            }
        }
        // Leave the cluster: the other nodes drop this node's users now
        // instead of when its heartbeat runs out.
        if let Some(c) = &self.sink.cluster {
            let (bury, buried) = oneshot::channel();
            c.send(Op::Bury(bury));
            let _ = tokio::time::timeout(Duration::from_secs(2), buried).await;
        }
        // The store is closed when the last reference (effect tasks included)
        // is dropped; redb commits are durable at commit time.
        drop(self);
        tracing::info!("plaza-server stopped");
        let _ = done.send(());
    }

    fn signal(&mut self, signal: Signal) {
        match signal {
            Signal::Resync => {
                let users = self
                    .hub
                    .local_entries()
                    .into_iter()
                    .map(|(name, conn, uid, room)| (name, self.sink.owner(conn), uid, room))
                    .collect();
                self.sink.cluster_op(Op::Replace(users));
            }
            Signal::Drain(seconds) => {
                tracing::info!(seconds, "cluster-wide drain requested");
                self.start_drain(seconds);
            }
            Signal::Notice { room, message } => {
                self.hub.notice(room, &message, &mut self.sink);
            }
            Signal::Lost(names) => {
                for name in names {
                    self.hub.operator_kick(&name, &mut self.sink);
                }
            }
        }
    }

    fn start_drain(&mut self, seconds: u64) {
        self.hub.refuse_logins();
        let (ctl, tx) = (self.ctl_tx.clone(), self.sink.tx.clone());
        tokio::spawn(drain(seconds, ctl, tx));
    }

    /// Keeps this node's logged-in marks alive in a shared store.
    fn refresh_presence(&mut self) {
        let Some(every) = self.sink.store.refresh_every() else {
            return;
        };
        if self.last_refresh.elapsed() < every {
            return;
        }
        self.last_refresh = Instant::now();
        // Names shared, not copied: the store writes the marks a chunk at a
        // time, so a refresh of many users holds little memory at once.
        let entries: Vec<(Arc<str>, Conn)> = self.hub.local_users().map(|(n, c)| (n.clone(), c)).collect();
        let (store, node) = (self.sink.store.clone(), self.sink.node.clone());
        tokio::spawn(async move { store.refresh(&node, entries).await });
    }

    fn control(&mut self, command: Command) -> Reply {
        let now = Instant::now();
        let user_json = |u: &plaza_core::UserInfo, net: &Handle| {
            let id = SessionId::from_u64(u.conn);
            json!({
                "name": u.name,
                "session": u.conn,
                "room": u.room,
                "admin": u.admin,
                "address": net.peer_addr(id).map(|a| a.to_string()),
                "send_queue_bytes": net.pending_bytes(id),
                "muted": match u.muted {
                    None => Value::Null,
                    Some(None) => json!("indefinitely"),
                    Some(Some(d)) => json!(d.as_secs()),
                },
            })
        };
        match command {
            Command::Auth { .. } => Reply::ok(json!("authenticated")),
            Command::Status => {
                let net = &self.sink.net;
                let stats = net.stats();
                Reply::ok(json!({
                    "uptime_secs": self.started.elapsed().as_secs(),
                    "sessions": net.session_count(),
                    "users_online": self.hub.users_online(),
                    "rooms_in_use": self.hub.rooms_in_use(),
                    "requests_per_sec": self.rates.0,
                    "packets_out_per_sec": self.rates.1,
                    "requests_total": self.received,
                    "packets_out_total": self.sink.sent,
                    "deliveries_total": self.sink.shared_sent,
                    "accepted_total": stats.accepted,
                    "frames_in_total": stats.frames_in,
                    "bytes_in_total": stats.bytes_in,
                    "bytes_out_total": stats.bytes_out,
                    "writes_total": stats.writes,
                    "writes_held_total": stats.writes_held,
                    "writes_gathering": stats.gathering,
                    "logins": self.hub.login_results().0.iter()
                        .map(|(code, n)| (plaza_proto::ResultCode(*code).name().to_owned(), json!(n)))
                        .collect::<serde_json::Map<_, _>>(),
                    "logic_queue_depth": LOGIC_QUEUE - self.sink.tx.capacity(),
                    "send_queue_bytes": net.pending_bytes_total(),
                    "refused_connections": stats.refused_full,
                    "refused_connections_per_ip": stats.refused_per_ip,
                    "slow_consumer_disconnects": stats.slow_consumers,
                    "room_messages_dropped": stats.dropped,
                    "logins_rate_limited": self.logins.refused.load(std::sync::atomic::Ordering::Relaxed),
                    "chat_rate_limited": self.hub.drops().chat_rate_limited,
                    "login_timeouts": self.hub.drops().login_timeouts,
                    "queue_overflows": self.hub.drops().queue_overflows,
                    "bad_frames": stats.bad_frames,
                    "idle_timeouts": stats.idle_timeouts,
                    "write_timeouts": stats.write_timeouts,
                    "tls_handshake_failures": stats.tls_handshake_failures,
                    "tls": net.tls_addr().map(|a| json!({
                        "addr": a.to_string(),
                        "handshakes_total": stats.tls_accepted,
                    })),
                    "slow_rooms": self.hub.slow_rooms().iter()
                        .map(|(r, d)| json!({ "room": r, "seconds": d.as_secs() }))
                        .collect::<Vec<_>>(),
                    "store": match self.sink.store.health() {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => format!("down: {e}"),
                    },
                    "draining": self.hub.is_draining(),
                    "cluster": self.sink.cluster.as_ref().map(|c| json!({
                        "node": c.node,
                        "bus": match c.health() {
                            Ok(()) => "ok".to_owned(),
                            Err(e) => format!("down: {e}"),
                        },
                        "remote_users": self.hub.remote_users(),
                    })),
                }))
            }
            Command::Users => Reply::ok(Value::Array(
                self.hub
                    .users(now)
                    .iter()
                    .map(|u| user_json(u, &self.sink.net))
                    .collect(),
            )),
            Command::Rooms => Reply::ok(Value::Array(
                self.hub
                    .rooms()
                    .into_iter()
                    .map(|(room, members)| json!({ "room": room, "members": members }))
                    .collect(),
            )),
            Command::User { name } => match self.hub.user(&name, now) {
                Some(u) => Reply::ok(user_json(&u, &self.sink.net)),
                None => match self.hub.remote_user(&name) {
                    Some((node, room)) => Reply::ok(json!({
                        "name": name,
                        "node": node,
                        "room": room,
                        "remote": true,
                    })),
                    None => Reply::err(format!("{name} is not logged in")),
                },
            },
            Command::Kick { name } => {
                if self.hub.operator_kick(&name, &mut self.sink) {
                    Reply::ok(json!(format!("kicked {name}")))
                } else {
                    Reply::err(format!("{name} is not logged in"))
                }
            }
            Command::Mute { name, seconds } => self.mute(&name, seconds, now),
            Command::Unmute { name } => self.mute(&name, 0, now),
            Command::Slow { room, seconds } => {
                if self.hub.set_slow_mode(room, Some(Duration::from_secs(seconds))) {
                    Reply::ok(json!({ "room": room, "seconds": seconds }))
                } else {
                    Reply::err("no such room")
                }
            }
            Command::Notice { room, message, local } => {
                if message.len() > plaza_proto::limits::NOTICE {
                    return Reply::err("notice longer than 1024 bytes");
                }
                let Some(n) = self.hub.notice(room, &message, &mut self.sink) else {
                    return Reply::err("no such room");
                };
                // In cluster mode, every node's users (each node tells its own).
                let cluster = !local && self.sink.cluster.is_some();
                if cluster {
                    self.sink.cluster_op(Op::Notice { room, message });
                }
                Reply::ok(json!({ "delivered_to": n, "other_nodes": cluster }))
            }
            Command::Drain { seconds, cluster } => {
                if cluster {
                    if self.sink.cluster.is_none() {
                        return Reply::err("this node is not in cluster mode");
                    }
                    self.sink.cluster_op(Op::Drain(seconds));
                }
                self.start_drain(seconds);
                Reply::ok(json!({ "shutdown_in_secs": seconds, "cluster": cluster }))
            }
            Command::Shutdown => {
                self.hub.handle(Input::Shutdown, now, &mut self.sink);
                Reply::ok(json!("shutting down"))
            }
            Command::ReloadTls => match &self.tls {
                None => Reply::err("TLS is not on"),
                Some(tls) => match tls.reload() {
                    Ok(()) => Reply::ok(json!("TLS certificate reloaded")),
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS reload failed; the old certificate stays");
                        Reply::err(format!("reload failed, the old certificate stays: {e}"))
                    }
                },
            },
        }
    }

    fn mute(&mut self, name: &str, seconds: u32, now: Instant) -> Reply {
        if self.hub.operator_mute(name, seconds, now, &mut self.sink) {
            Reply::ok(json!(if seconds == 0 {
                format!("unmuted {name}")
            } else {
                format!("muted {name}")
            }))
        } else {
            Reply::err(format!("{name} is not logged in"))
        }
    }
}

/// Counts down with notices to every user, then shuts down.
async fn drain(seconds: u64, ctl: mpsc::Sender<ControlMsg>, tx: mpsc::Sender<Input>) {
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let marks: std::collections::BTreeSet<u64> = [seconds, 60, 30, 10, 5, 1]
        .into_iter()
        .filter(|m| *m <= seconds && *m > 0)
        .collect();
    for left in marks.into_iter().rev() {
        tokio::time::sleep_until(end - Duration::from_secs(left)).await;
        let (reply, _) = oneshot::channel();
        let message = format!("server shutting down in {left} seconds");
        // Each draining node counts down for its own users.
        let notice = Command::Notice {
            room: None,
            message,
            local: true,
        };
        let _ = ctl.send((notice, reply)).await;
    }
    tokio::time::sleep_until(end).await;
    let _ = tx.send(Input::Shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection's task is the session driver's future with this
    /// gateway in it. At 528 bytes (release) the whole task takes
    /// jemalloc's 640-byte class; 16 more bytes took the 768-byte one and
    /// cost each idle connection 128 B (docs/BENCHMARKS.md, issue #26's
    /// section). Test builds lay futures out larger than release ones: the
    /// bound here is the test build's size when the release size was 528.
    #[tokio::test]
    async fn a_session_task_stays_in_its_allocation_class() {
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Framing::Chat);
        let server = Server::bind(config).await.unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let gateway = Gateway {
            tx,
            net: server.handle(),
            logins: Arc::new(limits::LoginLimiter::new(0, 0)),
        };
        let size = server.session_task_size(gateway).await.unwrap();
        println!("session task future: {size} bytes");
        assert!(
            size <= DEBUG_SIZE_AT_528,
            "the session future grew to {size} bytes"
        );
    }

    /// Measured with this test (a test build), on the commit whose release
    /// build measured 528.
    const DEBUG_SIZE_AT_528: usize = 536;
}
