//! The accept loop, and each accepted connection's task: TLS handshake,
//! join, the session, leave.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::{Handler, Server, Shared, Tls};
use crate::Dropped;
use crate::outbox::Close;
use crate::session::{self, Events, SessionShared};
use crate::{NetError, ServerConfig, SessionId, Stream};

struct ServerEvents<H>(Arc<H>);

impl<H: Handler> Events for ServerEvents<H> {
    fn recv(&self, id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send {
        self.0.on_recv(id, frame)
    }
    fn eof(&self, id: SessionId) -> impl Future<Output = bool> + Send {
        self.0.on_peer_closed(id)
    }
    // A server reports no write: some are made by a `Writes` outside the
    // session's task (the counters count them all).
    fn sent(&self, _: SessionId, _: usize) {}
    fn dropped(&self, id: SessionId, dropped: Dropped) {
        self.0.on_dropped(id, dropped);
    }
}

/// Accepts on one listener until the server stops.
pub(super) async fn run<H: Handler>(
    listener: TcpListener,
    tls: Option<Tls>,
    config: Arc<ServerConfig>,
    shared: Arc<Shared>,
    handler: Arc<H>,
) {
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                shared.counters.accept_errors.incr();
                if !out_of_resources(&e) {
                    // One client's trouble (it reset before it was
                    // accepted, say): the next one is not kept waiting.
                    tracing::debug!(error = %e, "accept failed");
                    handler.on_error(None, &NetError::Accept(e));
                    continue;
                }
                // Out of descriptors, buffers or memory: back off instead of
                // spinning; sessions that leave meanwhile free them.
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                handler.on_error(None, &NetError::Accept(e));
                tokio::select! {
                    () = shared.stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        backoff = Duration::ZERO;
        if !handler.on_connection_request(peer) {
            shared.counters.refused_by_handler.incr();
            tracing::debug!(%peer, "connection refused by handler");
            continue;
        }
        if !shared.admit_ip(peer.ip()) {
            shared.counters.refused_per_ip.incr();
            tracing::debug!(%peer, "connection refused: too many from this address");
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            continue;
        }
        let Some(id) = shared.table.reserve() else {
            shared.release_ip(peer.ip());
            shared.counters.refused_full.incr();
            tracing::debug!(%peer, max = config.max_sessions, "connection refused: server full");
            // Reset instead of FIN so a flood does not leave TIME_WAIT here.
            // (A zero linger resets at once; it never blocks on close.)
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            continue;
        };
        if let Err(e) = configure(&stream, &config) {
            shared.table.unreserve(id);
            shared.release_ip(peer.ip());
            handler.on_error(None, &NetError::Io(e));
            continue;
        }
        shared.counters.accepted.incr();
        let session = Arc::new(SessionShared::new(
            id,
            peer,
            &shared.limits,
            shared.outbox.clone(),
        ));
        shared.sessions.fetch_add(1, Ordering::AcqRel);
        shared.table.insert(session.clone());
        if shared.stop.is_cancelled() {
            // stop() may have swept the table before this insert.
            session.close(Close::Flush(Instant::now() + shared.limits.linger));
        }
        shared.tasks.spawn(run_session(
            shared.clone(),
            handler.clone(),
            session,
            Stream::Tcp(stream),
            tls.clone(),
        ));
    }
}

/// Whether an accept error means the process or the system ran out of
/// something that only time (sessions leaving) gives back.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn configure(stream: &TcpStream, config: &ServerConfig) -> io::Result<()> {
    stream.set_nodelay(config.nodelay)?;
    if let Some(idle) = config.keepalive {
        let ka = socket2::TcpKeepalive::new().with_time(idle);
        socket2::SockRef::from(stream).set_tcp_keepalive(&ka)?;
    }
    Ok(())
}

// Not an async fn: that would keep the arguments twice in every
// session's task (rust-lang/rust#62958).
#[expect(clippy::manual_async_fn, reason = "smaller session tasks")]
fn run_session<H: Handler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    session: Arc<SessionShared>,
    mut stream: Stream,
    tls: Option<Tls>,
) -> impl Future<Output = ()> + Send {
    // The stream stays in this one place (taken for the handshake, put
    // back, lent to the session): each move to a new binding would keep
    // another copy of the socket in every session's task.
    // (Nothing is kept twice: the handler moves into the events, the id is
    // read from the session. A copy would sit in every session's task.)
    async move {
        if tls.is_some() || shared.preamble.is_some() {
            // Boxed: the handshake's and the preamble's state is large and
            // lasts a moment; inline, it would size every session's task.
            match Box::pin(prelude(&shared, &session, tls, stream)).await {
                Some(s) => stream = s,
                // A failed handshake or preamble never joined: no events.
                None => return shared.forget(&session),
            }
        }
        handler.on_join(session.id, session.peer).await;
        let events = ServerEvents(handler);
        let mut held = session.hold(stream);
        let error = match session.io(&mut held) {
            Some(io) => {
                session::run(
                    &session,
                    io,
                    &events,
                    &shared.limits,
                    &shared.counters,
                    shared.gather.as_deref(),
                )
                .await
            }
            None => Some(NetError::Io(io::Error::other("the session has no socket"))),
        };
        drop(held);
        if let Some(e) = error {
            if matches!(e, NetError::SlowConsumer { .. }) {
                shared.counters.slow_consumers.incr();
            }
            tracing::debug!(session = %session.id, peer = %session.peer, error = %e, "session closed on error");
            events.0.on_error(Some(session.id), &e);
        }
        shared.forget(&session);
        // A plain TCP socket closes with the session's last reference:
        // this one, once the table's is gone (a `Writes` may hold one for
        // a moment).
        let id = session.id;
        drop(session);
        events.0.on_leave(id).await;
    }
}

impl Server {
    /// The size of one plain-TCP session's task future with `handler`: what
    /// the session driver costs every connection, for a test that guards it
    /// (a byte over an allocator size class costs the whole next class per
    /// connection). The future is built on a loopback socket and dropped
    /// unpolled. Not part of the API.
    ///
    /// # Errors
    /// If the loopback socket cannot be made.
    #[doc(hidden)]
    pub async fn session_task_size<H: Handler>(self, handler: H) -> io::Result<usize> {
        let stream = TcpStream::connect(self.shared.local_addr).await?;
        let id = self
            .shared
            .table
            .reserve()
            .ok_or_else(|| io::Error::other("no slot"))?;
        let peer = stream.local_addr()?;
        let session = Arc::new(SessionShared::new(
            id,
            peer,
            &self.shared.limits,
            self.shared.outbox.clone(),
        ));
        let task = run_session(
            self.shared.clone(),
            Arc::new(handler),
            session,
            Stream::Tcp(stream),
            None,
        );
        Ok(std::mem::size_of_val(&self.shared.tasks.track_future(task)))
    }
}

/// Runs the TLS handshake, bounded by the handshake timeout and cut short
/// by a disconnect or stop. `None` (counted and logged): the connection is
/// dropped.
#[cfg(feature = "tls")]
async fn handshake(shared: &Shared, session: &SessionShared, tls: &Tls, stream: Stream) -> Option<Stream> {
    let Stream::Tcp(tcp) = stream else {
        return Some(stream);
    };
    let accept = tokio::time::timeout(shared.handshake_timeout, tls.accept(tcp));
    let error = tokio::select! {
        biased;
        () = session.closed() => "closed during the handshake".to_owned(),
        r = accept => match r {
            Ok(Ok(stream)) => {
                shared.counters.tls_accepted.incr();
                return Some(stream);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no handshake within {:?}", shared.handshake_timeout),
        },
    };
    shared.counters.tls_handshake_failures.incr();
    tracing::debug!(session = %session.id, peer = %session.peer, %error, "TLS handshake failed");
    None
}

/// What comes before the frames: the TLS handshake, then the preamble.
async fn prelude(
    shared: &Shared,
    session: &SessionShared,
    tls: Option<Tls>,
    mut stream: Stream,
) -> Option<Stream> {
    if let Some(tls) = tls {
        stream = handshake(shared, session, &tls, stream).await?;
    }
    match &shared.preamble {
        Some(preamble) => preface(shared, session, preamble.run(stream, session.peer)).await,
        None => Some(stream),
    }
}

/// Runs the preamble, bounded by the handshake timeout and cut short by a
/// disconnect or stop. `None`: the connection ends (the preamble answered
/// it, or it failed, which is logged).
async fn preface(shared: &Shared, session: &SessionShared, run: super::PreambleFuture) -> Option<Stream> {
    tokio::select! {
        biased;
        () = session.closed() => None,
        r = tokio::time::timeout(shared.handshake_timeout, run) => r.unwrap_or_else(|_| {
            tracing::debug!(session = %session.id, peer = %session.peer, timeout = ?shared.handshake_timeout, "no preamble within the handshake timeout");
            None
        }),
    }
}

#[cfg(not(feature = "tls"))]
async fn handshake(_: &Shared, _: &SessionShared, tls: &Tls, _: Stream) -> Option<Stream> {
    match *tls {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_out_of_resources_backs_off() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(out_of_resources(&io::Error::from_raw_os_error(code)), "{code}");
        }
        for code in [libc::ECONNABORTED, libc::ECONNRESET, libc::EPROTO, libc::EPERM] {
            assert!(!out_of_resources(&io::Error::from_raw_os_error(code)), "{code}");
        }
        assert!(!out_of_resources(&io::Error::other("not an OS error")));
    }
}
