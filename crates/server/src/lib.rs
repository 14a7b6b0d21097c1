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

pub mod config;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use plaza_core::{Conn, Effect, Hub, Input, Sink};
use plaza_net::{Framing, Handle, Handler, NetError, Server, ServerConfig, SessionId};
use plaza_proto::{Event, Request};
use tokio::sync::{mpsc, oneshot};

pub use config::{Resolved, Settings};
pub use store::{Accounts, HashCost, StoreError};

/// Inputs queued for the logic task. Bounded: when the logic falls behind,
/// the gateways wait, and so the sessions stop reading (TCP back-pressure).
const LOGIC_QUEUE: usize = 8192;

/// A running server.
pub struct Running {
    addr: SocketAddr,
    tx: mpsc::Sender<Input>,
    done: oneshot::Receiver<()>,
    net: Handle,
}

impl Running {
    /// The client listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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
pub async fn start(config: Resolved) -> anyhow::Result<Running> {
    let accounts = Arc::new(Accounts::open(&config.data_dir, config.hash_cost)?);
    let mut net_config = ServerConfig::new(config.bind, Framing::Chat);
    net_config.max_sessions = config.max_sessions;
    net_config.max_frame = plaza_proto::MAX_REQUEST_FRAME;
    net_config.idle_timeout = Some(config.idle_timeout);
    net_config.max_send_queue = config.max_send_queue;
    net_config.linger = config.shutdown_grace;
    let server = Server::bind(net_config).await?;
    let addr = server.local_addr();
    let net = server.handle();
    let (tx, rx) = mpsc::channel(LOGIC_QUEUE);
    server.start(Gateway { tx: tx.clone() });
    let (done_tx, done) = oneshot::channel();
    let hub = Hub::new(config.chat.clone());
    tokio::spawn(logic(hub, rx, tx.clone(), net.clone(), accounts, config, done_tx));
    tracing::info!(%addr, "plaza-server listening");
    Ok(Running { addr, tx, done, net })
}

/// The network-side handler: decode, then queue for the logic task.
struct Gateway {
    tx: mpsc::Sender<Input>,
}

impl Handler for Gateway {
    async fn on_join(&self, id: SessionId, peer: SocketAddr) {
        tracing::debug!(session = %id, %peer, "connected");
        let _ = self.tx.send(Input::Connect { conn: id.as_u64() }).await;
    }

    async fn on_recv(&self, id: SessionId, frame: &[u8]) {
        let conn = id.as_u64();
        let input = match Request::decode(frame) {
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
        let _ = self.tx.send(input).await;
    }

    async fn on_leave(&self, id: SessionId) {
        tracing::debug!(session = %id, "disconnected");
        let _ = self.tx.send(Input::Disconnect { conn: id.as_u64() }).await;
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
    accounts: Arc<Accounts>,
    shutdown: bool,
}

impl Sink for NetSink {
    fn send(&mut self, to: Conn, event: &Event) {
        // A session that left or is closing just misses it.
        let _ = self.net.send_with(SessionId::from_u64(to), |b| event.encode(b));
    }

    fn send_shared(&mut self, to: Conn, frame: &Bytes) {
        let _ = self.net.send(SessionId::from_u64(to), frame.clone());
    }

    fn disconnect(&mut self, conn: Conn) {
        let _ = self.net.disconnect(SessionId::from_u64(conn));
    }

    fn effect(&mut self, effect: Effect) {
        let (tx, accounts) = (self.tx.clone(), self.accounts.clone());
        match effect {
            Effect::Authenticate {
                conn,
                ticket,
                name,
                password,
            } => {
                tokio::spawn(async move {
                    let outcome = accounts.verify(name, password).await;
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
                tokio::spawn(async move {
                    let outcome = accounts.register(name, password).await;
                    let _ = tx.send(Input::RegisterDone { conn, outcome }).await;
                });
            }
            Effect::Shutdown => self.shutdown = true,
        }
    }
}

async fn logic(
    mut hub: Hub,
    mut rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    net: Handle,
    accounts: Arc<Accounts>,
    config: Resolved,
    done: oneshot::Sender<()>,
) {
    let mut sink = NetSink {
        net: net.clone(),
        tx,
        accounts,
        shutdown: false,
    };
    let (stopped_tx, mut stopped) = oneshot::channel::<()>();
    let mut stopped_tx = Some(stopped_tx);
    let mut batch = Vec::with_capacity(256);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 256) => {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                for input in batch.drain(..) {
                    hub.handle(input, now, &mut sink);
                }
            }
            _ = &mut stopped => break,
        }
        if sink.shutdown {
            if let Some(stopped_tx) = stopped_tx.take() {
                // Everything acknowledged so far is queued: flush and close.
                tracing::info!(
                    sessions = hub.sessions(),
                    users = hub.users_online(),
                    "shutting down"
                );
                let (net, grace) = (net.clone(), config.shutdown_grace);
                tokio::spawn(async move {
                    net.stop(grace).await;
                    let _ = stopped_tx.send(());
                });
            }
        }
    }
    // The store is closed when the last reference (effect tasks included)
    // is dropped; redb commits are durable at commit time.
    drop(sink);
    tracing::info!("plaza-server stopped");
    let _ = done.send(());
}
