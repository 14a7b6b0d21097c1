//! plaza-server: Plaza's chat server, wiring plaza-net to plaza-core.
//!
//! - A **front end** (`frontend/`) speaks one wire format. Its gateway
//!   ([`plaza_net::Handler`]) runs on the network threads: it decodes each
//!   frame and queues it, with connect and disconnect events, on one
//!   bounded channel, so a session's events keep their order. It never
//!   touches chat state. Outbound, it encodes the hub's events.
//! - The **logic task** (`logic.rs`) owns the [`plaza_core::Hub`] and
//!   drains that channel. The hub's output goes through the **sink**
//!   (`sink.rs`) straight into the sessions' outboxes: a fan-out is encoded
//!   once per front end and shared. It never waits: credential checks and
//!   registrations run as their own tasks on the blocking pool and come back
//!   as inputs on the same channel.
//! - **Shutdown** is run by the logic task, so everything it acknowledged
//!   before is queued before the network's graceful stop flushes and closes.
//!
//! This file only wires them together.
#![warn(missing_docs)]

mod cluster;
pub mod config;
pub mod control;
mod frontend;
mod http;
mod keys;
mod limits;
mod logic;
mod primary;
mod sink;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use plaza_core::{Hub, Input};
use plaza_net::tls::TlsAcceptor;
use plaza_net::{Handle, Server, ServerConfig, TlsListener};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::Cluster;
use crate::control::Control;
use crate::frontend::binary::Gateway;
use crate::frontend::ws::WsGateway;
use crate::frontend::{Front, Fronts};
use crate::logic::{LOGIC_QUEUE, Logic};
use crate::sink::NetSink;

pub use config::{Resolved, Settings};
pub use store::{Accounts, HashCost, Store, StoreConfig, StoreError};

/// A running server.
pub struct Running {
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    control_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    tx: mpsc::Sender<Input>,
    done: oneshot::Receiver<()>,
    net: Handle,
    ws: Option<Handle>,
    irc: Option<Handle>,
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

    /// The WebSocket listener's address, if on.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws.as_ref().map(Handle::local_addr)
    }

    /// The WebSocket TLS listener's address, if on.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.ws.as_ref().and_then(Handle::tls_addr)
    }

    /// The IRC listener's address, if on.
    pub fn irc_addr(&self) -> Option<SocketAddr> {
        self.irc.as_ref().map(Handle::local_addr)
    }

    /// The IRC TLS listener's address, if on.
    pub fn irc_tls_addr(&self) -> Option<SocketAddr> {
        self.irc.as_ref().and_then(Handle::tls_addr)
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
            let cluster = Cluster::start(c, tx.clone(), sig_tx, metrics.bus_delivery.clone())
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
    let mut net_config = ServerConfig::new(config.bind, plaza_proto::ChatFraming);
    net_config.max_sessions = config.max_sessions;
    net_config.max_sessions_per_ip = config.max_connections_per_ip;
    net_config.max_frame = plaza_proto::MAX_REQUEST_FRAME;
    net_config.idle_timeout = Some(config.idle_timeout);
    net_config.max_send_queue = config.max_send_queue;
    net_config.soft_send_queue = config.soft_send_queue;
    net_config.soft_send_grace = config.soft_send_grace;
    net_config.gather = config.gather;
    net_config.linger = config.shutdown_grace;
    net_config.drop_tag = Some(plaza_proto::room_message_seq);
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
    let ws_config = config
        .ws
        .as_ref()
        .map(|ws| ws_config(&net_config, ws, tls.as_ref()));
    let irc_config = config
        .irc
        .as_ref()
        .map(|irc| irc_config(&net_config, irc, tls.as_ref()));
    let server = Server::bind(net_config)
        .await
        .context("starting the chat listener")?;
    let ws_server = match ws_config {
        Some(c) => Some(Server::bind(c).await.context("starting the WebSocket listener")?),
        None => None,
    };
    let irc_server = match irc_config {
        Some(c) => Some(Server::bind(c).await.context("starting the IRC listener")?),
        None => None,
    };
    let addr = server.local_addr();
    let net = server.handle();

    // The control listener: its own socket, session table and limits.
    let mut control_config = ServerConfig::new(config.control_bind, plaza_net::Lan);
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
        front: Front::Binary,
    });
    let ws = ws_server.map(|server| {
        let handle = server.handle();
        server.start(WsGateway::new(Gateway {
            tx: tx.clone(),
            net: handle.clone(),
            logins: logins.clone(),
            front: Front::Ws,
        }));
        handle
    });
    let hub = Hub::new(config.chat.clone());
    let irc = irc_server.map(|server| {
        let irc = frontend::irc::Irc::new(
            server.handle(),
            config.chat.rooms,
            config.irc.as_ref().is_some_and(|i| i.allow_guests),
            config
                .irc
                .as_ref()
                .map_or(frontend::irc::line::SERVER, |i| &i.server_name),
            hub.epochs(),
        );
        server.start(frontend::irc::IrcGateway {
            gateway: Gateway {
                tx: tx.clone(),
                net: irc.net.clone(),
                logins: logins.clone(),
                front: Front::Irc,
            },
            irc: irc.clone(),
        });
        irc
    });
    let irc_net = irc.as_ref().map(|irc| irc.net.clone());
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
        hub,
        sink: NetSink {
            net: Fronts {
                binary: net.clone(),
                ws: ws.clone(),
                irc,
            },
            tx: tx.clone(),
            store,
            node: match &cluster {
                Some(c) => c.node.to_string(),
                None => store::hasher::new_token()[..12].to_owned(),
            },
            cluster,
            metrics,
            drop_oldest: config.drop_oldest,
            shutdown: false,
            sent: 0,
            shared_sent: 0,
            effects: tokio_util::task::TaskTracker::new(),
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
    let ws_addr = ws.as_ref().map(Handle::local_addr);
    let wss_addr = ws.as_ref().and_then(Handle::tls_addr);
    let irc_addr = irc_net.as_ref().map(Handle::local_addr);
    tracing::info!(%addr, ?tls_addr, ?ws_addr, ?wss_addr, ?irc_addr, %control_addr, ?metrics_addr, "plaza-server listening");
    Ok(Running {
        addr,
        tls,
        control_addr,
        metrics_addr,
        tx,
        done,
        net,
        ws,
        irc: irc_net,
    })
}

/// The IRC front end's network: the chat listener's limits, its own
/// addresses and lines.
fn irc_config(chat: &ServerConfig, irc: &config::IrcSettings, tls: Option<&TlsAcceptor>) -> ServerConfig {
    let mut c = ServerConfig::new(irc.bind, frontend::irc::Lines);
    c.max_sessions = chat.max_sessions;
    c.max_sessions_per_ip = chat.max_sessions_per_ip;
    c.idle_timeout = chat.idle_timeout;
    c.max_send_queue = chat.max_send_queue;
    c.soft_send_queue = chat.soft_send_queue;
    c.soft_send_grace = chat.soft_send_grace;
    c.gather = chat.gather;
    c.linger = chat.linger;
    if let (Some(bind), Some(acceptor)) = (irc.tls_bind, tls) {
        c.tls = Some(TlsListener {
            bind,
            acceptor: acceptor.clone(),
        });
    }
    frontend::irc::configure(&mut c);
    c
}

/// The WebSocket front end's network: the chat listener's limits, its own
/// addresses, frames and preamble.
fn ws_config(chat: &ServerConfig, ws: &config::WsSettings, tls: Option<&TlsAcceptor>) -> ServerConfig {
    let mut c = ServerConfig::new(ws.bind, plaza_net::ws::WebSocket);
    c.max_sessions = chat.max_sessions;
    c.max_sessions_per_ip = chat.max_sessions_per_ip;
    // A client message holds one request packet.
    c.max_frame = 2 + 2 + 4 + plaza_proto::MAX_REQUEST_FRAME;
    c.idle_timeout = chat.idle_timeout;
    c.max_send_queue = chat.max_send_queue;
    c.soft_send_queue = chat.soft_send_queue;
    c.soft_send_grace = chat.soft_send_grace;
    c.gather = chat.gather;
    c.linger = chat.linger;
    if let (Some(bind), Some(acceptor)) = (ws.tls_bind, tls) {
        c.tls = Some(TlsListener {
            bind,
            acceptor: acceptor.clone(),
        });
    }
    let origins = frontend::ws::http::Origins::parse(&ws.allowed_origins);
    frontend::ws::configure(
        &mut c,
        Arc::new(frontend::ws::http::Web {
            origins: Arc::new(origins),
        }),
    );
    c
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
