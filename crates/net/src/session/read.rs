//! The reader: reads into the session's receive buffer and hands out
//! every complete frame in place, in order; after a graceful close it
//! drains the peer.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use super::{Events, SessionShared};
use crate::config::SessionLimits;
use crate::framing::{next_frame, wanted};
use crate::outbox::Close;
use crate::recv_buf::RecvBuf;
use crate::stats::Counters;
use crate::stream::Sock;

/// A read half a session reads from.
pub(crate) trait Source: AsyncRead + Unpin {
    /// Ready once a read would not wait. Streams that cannot tell are
    /// always ready.
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }
}

impl Source for Sock<'_> {
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }
}

/// TLS keeps its own buffers per connection anyway; the receive buffer is
/// kept too.
#[cfg(feature = "tls")]
impl Source for tokio::io::ReadHalf<&mut tokio_rustls::TlsStream<tokio::net::TcpStream>> {}

/// Reads into `buf` until bytes arrive (`Some(Ok(n))`, 0 at EOF), the read
/// fails, or the session is closing (`None`).
fn poll_read<R: Source>(
    cx: &mut Context<'_>,
    shared: &SessionShared,
    rd: &mut R,
    buf: &mut RecvBuf,
    want: usize,
    size: usize,
) -> Poll<Option<io::Result<usize>>> {
    if shared.is_closing() {
        return Poll::Ready(None);
    }
    // An idle connection holds no receive buffer: with no partial frame
    // pending and nothing to read yet, the buffer goes back to the pool
    // (`pool.rs`) and is taken again when bytes arrive.
    if buf.is_empty() {
        match rd.poll_ready(cx) {
            Poll::Pending => {
                buf.release();
                return Poll::Pending;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {}
        }
    }
    let mut rb = ReadBuf::new(buf.spare(want, size));
    match Pin::new(rd).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(rb.filled().len()))),
        // TLS: the peer closed without close_notify. The framing already
        // tells a whole frame from a cut one (a cut one is dropped), so
        // this is the peer's end of input like any other, not an error.
        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Some(Ok(0))),
        Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        Poll::Pending => {
            // The socket looked ready (its readiness outlives the read that
            // drained it) but had nothing: give the buffer back here too,
            // or the session keeps it until its task next wakes.
            if buf.is_empty() {
                buf.release();
            }
            Poll::Pending
        }
    }
}

/// After a graceful close, reads and throws away what the peer still
/// sends until it closes its side (or the session aborts: an error, or the
/// watchdog at the linger deadline). Closing a socket with unread input
/// makes the kernel reset the connection, and a reset throws away what the
/// peer had not read yet: the answers and messages the close was flushing.
fn drain<R: Source>(cx: &mut Context<'_>, shared: &SessionShared, rd: &mut R) -> Poll<()> {
    loop {
        if shared.is_aborted() {
            return Poll::Ready(());
        }
        // An abort rings the doorbell; hear it even once the writer is done.
        shared.wake.listen(cx);
        // On the stack of this poll, not in the session's task.
        let mut scratch = [0u8; 512];
        let mut rb = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *rd).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => {}
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }
}

// Not an async fn: that would keep the arguments twice in every
// session's task (rust-lang/rust#62958).
#[expect(clippy::manual_async_fn, reason = "smaller session tasks")]
pub(super) fn read_loop<E: Events, R: Source>(
    shared: &SessionShared,
    mut rd: R,
    events: &E,
    limits: &SessionLimits,
    counters: &Counters,
) -> impl Future<Output = ()> {
    async move {
        // (The framing is reached through `limits` at each use, not kept
        // in a local: a local would sit in every session's task.)
        let mut buf = RecvBuf::new();
        // The size the pending frame needs, once its header is in.
        let mut want = limits.framing.header_len();
        // How reading ended, when the session is to go on after it.
        enum End {
            /// The session is closing gracefully: drain the peer.
            Closing,
            /// The peer finished sending.
            Eof,
        }
        let end = 'read: loop {
            // (Nothing here is kept across the handler's await below but
            // what must be: this state sits in every session's task.)
            let n = {
                shared.marks.reading.store(true, Ordering::Relaxed);
                let r =
                    poll_fn(|cx| poll_read(cx, shared, &mut rd, &mut buf, want, limits.recv_buffer)).await;
                shared.marks.reading.store(false, Ordering::Relaxed);
                match r {
                    None => break 'read End::Closing,
                    Some(Ok(0)) => break 'read End::Eof,
                    Some(Ok(n)) => n,
                    Some(Err(e)) => return shared.abort(e.into()),
                }
            };
            shared.marks.read_seen.store(true, Ordering::Relaxed);
            buf.filled(n);
            counters.bytes_in.add(n);
            let mut frames = 0;
            loop {
                match next_frame(&*limits.framing, buf.data(), limits.max_frame) {
                    Ok(Some(len)) => {
                        frames += 1;
                        events.recv(shared.id, &buf.data()[..len]).await;
                        buf.consume(len);
                        if shared.is_closing() {
                            counters.frames_in.add(frames);
                            break 'read End::Closing;
                        }
                    }
                    Ok(None) => {
                        want = wanted(&*limits.framing, buf.data());
                        break;
                    }
                    Err(e) => {
                        counters.bad_frames.incr();
                        return shared.abort(e.into());
                    }
                }
            }
            counters.frames_in.add(frames);
        };
        // The buffer goes first: what follows waits, and holds nothing.
        drop(buf);
        match end {
            End::Closing => poll_fn(|cx| drain(cx, shared, &mut rd)).await,
            // Once the owner has answered what came before, deliver what
            // is queued, then close.
            End::Eof => {
                if events.eof(shared.id).await {
                    shared.close(Close::Flush(Instant::now() + limits.linger));
                }
            }
        }
    }
}
