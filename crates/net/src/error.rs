//! Errors reported by the session library.

use std::io;
use std::time::Duration;

use crate::FrameError;

/// Why a session ended abnormally, or an operation failed. Handed to the
/// handler's `on_error` with the session it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A socket operation failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer sent an invalid frame header; the session was disconnected.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer let its unsent bytes exceed the limit; it was disconnected.
    #[error("slow consumer: {queued} bytes queued, limit {limit}")]
    SlowConsumer {
        /// Bytes that would have been queued.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A write made no progress for the configured time.
    #[error("write stalled for {0:?}")]
    WriteTimeout(Duration),
    /// Nothing arrived from the peer for the configured time.
    #[error("idle for {0:?}")]
    IdleTimeout(Duration),
    /// The flush deadline of a closing session passed with bytes unsent.
    #[error("closed with {0} bytes unsent after the linger deadline")]
    LingerExpired(usize),
    /// Accepting a connection failed (for example, out of file descriptors);
    /// the listener backs off and keeps going.
    #[error("accept failed: {0}")]
    Accept(io::Error),
    /// Connecting to the server timed out.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
}

/// Why a send or disconnect could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No live session has this id: it left, or never existed. A newer
    /// session in the same slot is never reached by an old id.
    #[error("no such session")]
    NoSession,
    /// The session is closing and takes no more data.
    #[error("session is closing")]
    Closing,
    /// This send would exceed the session's send-queue limit; the session is
    /// being disconnected as a slow consumer.
    #[error("send queue full; session disconnected")]
    QueueFull,
}
