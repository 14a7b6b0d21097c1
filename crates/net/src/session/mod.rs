//! One session: a reader and a writer driven together in one task.
//!
//! The reader reads into the session's [`RecvBuf`] and hands every
//! complete frame to the handler in place, in order. The writer is the
//! only one that writes to the stream (1-send): it takes
//! the whole outbox at once and writes it with one vectored write, then
//! flushes (which TLS needs and TCP answers at once). Both stop when the
//! session is closed, from inside (EOF, bad frame, write error) or outside
//! (disconnect, slow consumer, timeout, server stop); the first reason to
//! close wins, except that an abort overrides a pending flush.
//!
//! A session holds no timer. Its halves leave progress marks, and a
//! watchdog (`watchdog.rs`, the one owner of session time, on tokio's
//! clock) that looks at every session of a server a few times a second
//! closes those idle, stalled on a write, or lingering past their deadline.
//! An idle session so holds little more than its socket: no buffer, no
//! timer, one waker.
//!
//! `read.rs` is the reader, `write.rs` the writer.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::config::SessionLimits;
use crate::gather::Gather;
use crate::outbox::{Close, MAX_IOV, Outbox};
use crate::stats::Counters;
use crate::stream::Sock;
use crate::{NetError, SendError, SessionId, Stream};

mod read;
mod watchdog;
mod write;

use read::read_loop;
use watchdog::Marks;
pub(crate) use watchdog::{watch_interval, watch_one};
use write::write_loop;

/// What the session driver reports to its owner (server or client).
pub(crate) trait Events: Send + Sync + 'static {
    fn recv(&self, id: SessionId, frame: &[u8]) -> impl Future<Output = ()> + Send;
    /// The peer finished sending. `true`: close the session now (after
    /// what is queued); `false`: the owner closes it when it is done.
    fn eof(&self, id: SessionId) -> impl Future<Output = bool> + Send;
    fn sent(&self, id: SessionId, bytes: usize);
    fn dropped(&self, id: SessionId, dropped: crate::Dropped);
}

/// The part of a session other threads reach: its outbox, its doorbell,
/// the marks its watchdog reads, and a plain TCP session's socket (which
/// [`Writes::flush`](crate::Writes::flush) writes to from other threads).
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) peer: SocketAddr,
    outbox: Mutex<Outbox>,
    /// Set once the session runs over plain TCP (never for TLS: its
    /// stream is the task's own).
    sock: OnceLock<TcpStream>,
    /// Rung for queued packets and for a close. The writer always listens
    /// (idle or mid-write); the reader learns of a close because both
    /// halves are polled whenever the task wakes (see `Both`).
    wake: Doorbell,
    closing: AtomicBool,
    aborted: AtomicBool,
    marks: Marks,
}

/// A doorbell with one listener: a flag and the listener's waker. A ring
/// with no one listening is kept for the next look, and several rings
/// before a look are one. (tokio's `Notify` takes a lock per ring with a
/// waiter and puts a 64-byte `Notified` in the listener's task.)
#[derive(Default)]
struct Doorbell {
    rung: AtomicBool,
    waker: AtomicWaker,
}

impl Doorbell {
    fn ring(&self) {
        self.rung.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Makes the next ring wake this task, without taking a ring meant for
    /// the listener: for the reader draining after a close, which shares
    /// the writer's task (and so its waker).
    fn listen(&self, cx: &mut Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// Ready, once, after a ring since the last time it was ready.
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Register before the second look, so a ring between the two is seen.
        if !self.rung.swap(false, Ordering::AcqRel) {
            self.waker.register(cx.waker());
            if !self.rung.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }
}

impl SessionShared {
    pub(crate) fn new(
        id: SessionId,
        peer: SocketAddr,
        limits: &SessionLimits,
        common: std::sync::Arc<crate::outbox::Common>,
    ) -> Self {
        Self {
            id,
            peer,
            outbox: Mutex::new(Outbox::new(limits.max_send_queue, limits.soft_send_queue, common)),
            sock: OnceLock::new(),
            wake: Doorbell::default(),
            closing: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            marks: Marks::default(),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding this lock leaves the queue consistent (every
        // update is a single push or swap), so poisoning is ignored.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a shared packet.
    pub(crate) fn send(self: &Arc<Self>, packet: Bytes) -> Result<(), SendError> {
        let r = self.outbox().push_shared(packet);
        self.after_push(r)
    }

    /// Queues a packet that may be dropped (oldest first) when the session
    /// falls behind.
    pub(crate) fn send_droppable(self: &Arc<Self>, packet: Bytes) -> Result<(), SendError> {
        let r = self.outbox().push_droppable(packet);
        self.after_push(r)
    }

    /// Encodes straight into this session's outbox.
    pub(crate) fn send_with(self: &Arc<Self>, encode: impl FnOnce(&mut BytesMut)) -> Result<(), SendError> {
        let r = self.outbox().push_with(encode);
        self.after_push(r)
    }

    /// Wakes the writer if the push asked for it, unless a plain TCP
    /// session is noted for the thread's [`Writes`](crate::Writes) to write;
    /// on a full queue (the outbox recorded the abort, or the last words
    /// to flush) wakes the task to act on it.
    fn after_push(self: &Arc<Self>, r: Result<bool, SendError>) -> Result<(), SendError> {
        if r == Err(SendError::QueueFull) {
            let abort = self.outbox().is_aborting();
            self.signal_close(abort);
        }
        if r? && (self.sock.get().is_none() || !crate::writes::note(self)) {
            self.wake.ring();
        }
        Ok(())
    }

    /// Writes what is queued from the caller's thread, in one non-blocking
    /// `send`, if the writer is not writing and the socket takes it;
    /// whatever is left (the socket is full, a close or drops to report,
    /// TLS) is the writer's, woken for it. For a session
    /// [`crate::writes::note`] took.
    pub(crate) fn write_now(&self) {
        let mut o = self.outbox();
        if !o.signalled || o.writing {
            // The writer took the queue since, or will on its next look.
            return;
        }
        let direct = self
            .sock
            .get()
            .filter(|_| o.close.is_none() && o.missed.count == 0);
        if let Some(sock) = direct {
            let sent = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let n = o.queue.slices(&mut iov);
                sock.try_io(Interest::WRITABLE, || {
                    let s = socket2::SockRef::from(sock);
                    match &iov[..n] {
                        [one] => s.send(one),
                        many => s.send_vectored(many),
                    }
                })
            };
            match sent {
                Ok(0) => {
                    drop(o);
                    return self.abort(io::Error::from(io::ErrorKind::WriteZero).into());
                }
                Ok(k) => {
                    o.queue.consume(k);
                    o.pending -= k;
                    o.common.writes.incr();
                    o.common.bytes_out.add(k);
                    self.marks.write_seen.store(true, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    drop(o);
                    return self.abort(e.into());
                }
            }
            if o.queue.is_empty() {
                o.signalled = false;
                o.queue.release();
                return;
            }
        }
        drop(o);
        self.wake.ring();
    }

    /// Bytes queued or being written.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.outbox().pending
    }

    /// Starts closing the session. A flush keeps an earlier abort; an abort
    /// replaces an earlier flush.
    pub(crate) fn close(&self, how: Close) {
        let abort = matches!(how, Close::Abort(_));
        {
            let mut o = self.outbox();
            match (&o.close, &how) {
                (None, _) | (Some(Close::Flush(_) | Close::Farewell(..)), Close::Abort(_)) => {
                    o.close = Some(how)
                }
                (Some(Close::Flush(old)), Close::Flush(new)) if new < old => o.close = Some(how),
                _ => {}
            }
        }
        self.signal_close(abort);
    }

    fn signal_close(&self, abort: bool) {
        if abort {
            self.aborted.store(true, Ordering::Release);
        }
        self.closing.store(true, Ordering::Release);
        self.wake.ring();
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Resolves once the session is closing. Only for before [`run`]: the
    /// doorbell has one listener, the writer once it runs. (For the TLS
    /// handshake and the preamble.)
    pub(crate) async fn closed(&self) {
        std::future::poll_fn(|cx| {
            while !self.is_closing() {
                std::task::ready!(self.wake.poll(cx));
            }
            Poll::Ready(())
        })
        .await;
    }

    fn abort(&self, error: NetError) {
        self.close(Close::Abort(Some(error)));
    }

    /// The error that ended the session, if it ended in error.
    fn take_error(&self) -> Option<NetError> {
        match self.outbox().close.take() {
            Some(Close::Abort(e)) => e,
            Some(Close::Farewell(_, e)) => Some(e),
            _ => None,
        }
    }
}

/// The stream a session runs over, lent to [`run`].
pub(crate) enum Io<'a> {
    Tcp(&'a TcpStream),
    #[cfg(feature = "tls")]
    Tls(&'a mut tokio_rustls::TlsStream<TcpStream>),
}

impl<'a> From<&'a mut Stream> for Io<'a> {
    fn from(stream: &'a mut Stream) -> Self {
        match stream {
            Stream::Tcp(tcp) => Io::Tcp(tcp),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Io::Tls(tls),
        }
    }
}

/// A server session's stream once it runs: a plain TCP socket is kept in
/// the session, where [`Writes::flush`](crate::Writes::flush) reaches it
/// (and closes with the session's last reference); a TLS stream stays
/// the task's.
pub(crate) enum Held {
    Tcp,
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl SessionShared {
    pub(crate) fn hold(&self, stream: Stream) -> Held {
        match stream {
            Stream::Tcp(tcp) => {
                // Set once: a session runs over one stream.
                let _ = self.sock.set(tcp);
                Held::Tcp
            }
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Held::Tls(tls),
        }
    }

    /// The stream `held` names, lent for [`run`].
    pub(crate) fn io<'a>(&'a self, held: &'a mut Held) -> Option<Io<'a>> {
        match held {
            Held::Tcp => self.sock.get().map(Io::Tcp),
            #[cfg(feature = "tls")]
            Held::Tls(tls) => Some(Io::Tls(tls)),
        }
    }
}

/// Runs a session until it is fully closed. Returns the error that ended it,
/// if any; the caller then drops the stream, which closes the socket. The
/// stream is lent, not moved in: a move keeps a second copy of the socket
/// in every session's task. Timeouts are the watchdog's: see
/// [`SessionShared::look`].
// Not an async fn: that would keep the arguments twice in every
// session's task (rust-lang/rust#62958).
#[expect(clippy::manual_async_fn, reason = "smaller session tasks")]
pub(crate) fn run<'a, E: Events>(
    shared: &'a SessionShared,
    stream: Io<'a>,
    events: &'a E,
    limits: &'a SessionLimits,
    counters: &'a Counters,
    gather: Option<&'a Gather>,
) -> impl Future<Output = Option<NetError>> + 'a {
    async move {
        // The halves take their ends by value and are awaited in place: a
        // local or a helper future here would sit in every session's task.
        match stream {
            Io::Tcp(tcp) => {
                Both::new(
                    read_loop(shared, Sock(tcp), events, limits, counters),
                    write_loop(shared, Sock(tcp), events, counters, gather),
                )
                .await;
            }
            #[cfg(feature = "tls")]
            Io::Tls(tls) => {
                // Both halves are polled from this one task, so the lock
                // `split` puts between them is never contended.
                let (rd, wr) = tokio::io::split(tls);
                Both::new(
                    read_loop(shared, rd, events, limits, counters),
                    write_loop(shared, wr, events, counters, gather),
                )
                .await;
            }
        }
        shared.take_error()
    }
}

pin_project_lite::pin_project! {
    /// A session's reader and writer, run together until both have ended.
    /// Both are polled each time the task wakes: that is how one learns
    /// the other closed the session, with no waker of its own. One that
    /// ends makes the other look again at once.
    struct Both<R, W> {
        #[pin]
        read: R,
        #[pin]
        write: W,
        done: (bool, bool),
    }
}

impl<R: Future<Output = ()>, W: Future<Output = ()>> Both<R, W> {
    fn new(read: R, write: W) -> Self {
        Self {
            read,
            write,
            done: (false, false),
        }
    }
}

impl<R: Future<Output = ()>, W: Future<Output = ()>> Future for Both<R, W> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            let before = *this.done;
            if !this.done.0 {
                this.done.0 = this.read.as_mut().poll(cx).is_ready();
            }
            if !this.done.1 {
                this.done.1 = this.write.as_mut().poll(cx).is_ready();
            }
            if this.done.0 && this.done.1 {
                return Poll::Ready(());
            }
            if *this.done == before {
                return Poll::Pending;
            }
        }
    }
}
