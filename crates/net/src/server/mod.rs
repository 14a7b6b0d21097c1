//! The server: an accept loop, the session table, and the [`Handler`] that
//! receives every event.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ServerConfig;
use crate::config::SessionLimits;
use crate::gather::{self, Gather};
use crate::session;
use crate::stats::Counters;
use crate::table::Table;

mod accept;
mod handle;
mod handler;
mod preamble;

pub use handle::Handle;
pub use handler::Handler;
pub use preamble::{Preamble, PreambleFuture};

/// What a listener adds to TCP: a TLS handshake, or nothing. (Without the
/// `tls` feature no listener has one.)
#[cfg(feature = "tls")]
type Tls = crate::tls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
type Tls = std::convert::Infallible;

/// State shared by the listener, the sessions and every [`Handle`].
struct Shared {
    table: Table,
    limits: SessionLimits,
    counters: Counters,
    /// The writers' shared clock while the CPU is short (`ServerConfig::gather`).
    gather: Option<Arc<Gather>>,
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    /// Time for the TLS handshake and the preamble, each.
    handshake_timeout: std::time::Duration,
    preamble: Option<Arc<dyn Preamble>>,
    /// Sent to every session at stop.
    farewell: Option<bytes::Bytes>,
    /// What every session's outbox shares (the drop counter, a slow
    /// consumer's last words).
    outbox: Arc<crate::outbox::Common>,
    sessions: AtomicUsize,
    /// Cancelled by [`Handle::stop`]: the listeners stop accepting.
    stop: CancellationToken,
    /// The accept loops and every session's task (which ends after its
    /// `on_leave`).
    tasks: TaskTracker,
    /// Sessions per peer address, when `max_sessions_per_ip` is set.
    per_ip: Option<(
        usize,
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    )>,
}

impl Shared {
    /// Counts a session from `ip`, or refuses it at the per-address limit.
    fn admit_ip(&self, ip: std::net::IpAddr) -> bool {
        let Some((max, map)) = &self.per_ip else {
            return true;
        };
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= *max {
            return false;
        }
        *n += 1;
        true
    }

    fn release_ip(&self, ip: std::net::IpAddr) {
        let Some((_, map)) = &self.per_ip else { return };
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// A bound server, not yet accepting. Take a [`Handle`] from it to give to
/// your handler, then [`start`](Self::start) it.
///
/// # Examples
/// ```no_run
/// use plaza_net::{Handle, Handler, Lan, Server, ServerConfig, SessionId};
///
/// struct Echo(Handle);
/// impl Handler for Echo {
///     async fn on_recv(&self, id: SessionId, frame: &[u8]) {
///         let _ = self.0.send_slice(id, frame);
///     }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let server = Server::bind(ServerConfig::new("127.0.0.1:7000".parse().unwrap(), Lan)).await?;
/// let handle = server.handle();
/// server.start(Echo(handle.clone()));
/// // ... later
/// handle.stop(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
pub struct Server {
    /// The plain listener first, then the TLS one if configured.
    listeners: Vec<(TcpListener, Option<Tls>)>,
    config: ServerConfig,
    shared: Arc<Shared>,
}

/// Binds and listens; the error names the address.
fn listen(bind: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if bind.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    socket
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(bind)?;
            s.listen(backlog)
        })
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {bind}: {e}")))
}

impl Server {
    /// Binds the listening sockets: the plain one, and the TLS one if
    /// `config.tls` is set.
    ///
    /// # Errors
    /// If an address cannot be bound.
    pub async fn bind(config: ServerConfig) -> io::Result<Self> {
        let listener = listen(config.bind, config.backlog)?;
        let local_addr = listener.local_addr()?;
        #[cfg(feature = "tls")]
        let tls = match &config.tls {
            Some(t) => Some((listen(t.bind, config.backlog)?, Some(t.acceptor.clone()))),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls = None;
        let listeners: Vec<_> = std::iter::once((listener, None)).chain(tls).collect();
        let tls_addr = match listeners.get(1) {
            Some((l, _)) => Some(l.local_addr()?),
            None => None,
        };
        let counters = Counters::default();
        let outbox = Arc::new(crate::outbox::Common {
            dropped: counters.dropped.clone(),
            writes: counters.writes.clone(),
            bytes_out: counters.bytes_out.clone(),
            last_words: (config.slow_farewell.clone()).map(|words| (words, config.linger)),
            drop_tag: config.drop_tag,
        });
        let shared = Arc::new(Shared {
            table: Table::new(config.max_sessions),
            limits: config.session_limits(),
            counters,
            outbox,
            gather: config.gather.map(|every| Arc::new(Gather::new(every))),
            local_addr,
            tls_addr,
            handshake_timeout: config.handshake_timeout,
            preamble: config.preamble.clone(),
            farewell: config.farewell.clone(),
            sessions: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            per_ip: config
                .max_sessions_per_ip
                .map(|m| (m, std::sync::Mutex::default())),
        });
        Ok(Self {
            listeners,
            config,
            shared,
        })
    }

    /// A handle for sending, disconnecting and stopping.
    pub fn handle(&self) -> Handle {
        Handle(self.shared.clone())
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.shared.tls_addr
    }

    /// Starts accepting on the current tokio runtime and returns a handle.
    pub fn start<H: Handler>(self, handler: H) -> Handle {
        let handle = self.handle();
        let handler = Arc::new(handler);
        let config = Arc::new(self.config);
        for (listener, tls) in self.listeners {
            self.shared.tasks.spawn(accept::run(
                listener,
                tls,
                config.clone(),
                self.shared.clone(),
                handler.clone(),
            ));
        }
        tokio::spawn(watch(Arc::downgrade(&self.shared)));
        if let Some(g) = &self.shared.gather {
            gather::start(g, tokio::runtime::Handle::current().metrics());
        }
        handle
    }
}

/// The sessions' watchdog: a few times a second, looks at every session
/// for its timeouts ([`SessionShared::look`]). One task per server, so a
/// session needs no timer of its own.
async fn watch(shared: std::sync::Weak<Shared>) {
    let Some(every) = shared.upgrade().map(|s| session::watch_interval(&s.limits)) else {
        return;
    };
    let mut tick = crate::ticker(every);
    loop {
        tick.tick().await;
        // Ends with the server: the handles and tasks hold it, this does not.
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        shared
            .table
            .for_each(|s| s.look(&shared.limits, every, now, &shared.counters));
    }
}
