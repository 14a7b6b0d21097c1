//! plaza-net: a multi-threaded async TCP session library.
//!
//! The Rust counterpart of the IOCP `CLanServer`/`CLanClient` libraries that
//! Plaza grew from, on tokio (epoll on Linux, IOCP on Windows):
//!
//! - [`Server`] accepts connections and drives one task per session, calling
//!   your [`Handler`] for each event: connection request, join, receive (one
//!   call per complete frame, in order), packets dropped, error, leave
//!   (exactly once, after the session is released).
//! - [`Client`] is the other end, with [`ClientHandler`] events and optional
//!   reconnect with backoff and jitter.
//! - [`SessionId`]s carry a generation, so a stale id never reaches a newer
//!   session in the same slot.
//! - A [`Framing`] cuts the byte stream into frames: [`Lan`] (a 2-byte
//!   length) for server-to-server links, or your own (Plaza's chat framing
//!   is `plaza_proto::ChatFraming`). Every declared length is checked
//!   against a cap before anything is allocated for it.
//! - Receive path: each session reads into one buffer and hands out frames in
//!   place; a session that keeps talking keeps its buffers, so the steady
//!   state allocates and copies nothing per packet, and one that goes quiet
//!   gives them back.
//! - Send path (1-send): at most one write in flight per session; whatever is
//!   queued meanwhile goes out in the next vectored write. A [`bytes::Bytes`]
//!   sent to many sessions is shared, never copied. A session whose unsent
//!   bytes pass the limit is disconnected; nobody else waits for it. A
//!   sender that queues for many sessions at once (a chat server's logic
//!   loop) can write them itself at the end of its turn with [`Writes`],
//!   one write per session, instead of waking each session's task.
//!
//! - TLS (the `tls` feature, on by default): a server can add a TLS
//!   listener beside the plain one, with a certificate reloadable while
//!   sessions stay up ([`tls::TlsAcceptor`]); a client can connect over TLS
//!   ([`tls::TlsConnector`]). The frames inside are the same.
//!
//! [`ServerConfig`] holds every limit. Build the runtime with [`runtime`] to
//! choose the number of worker threads.
#![warn(missing_docs)]

mod client;
mod config;
mod error;
mod framing;
mod gather;
mod id;
pub mod link;
mod outbox;
mod pool;
mod recv_buf;
mod server;
mod session;
mod stats;
mod stream;
mod table;
mod target;
#[cfg(feature = "tls")]
pub mod tls;
mod writes;
pub mod ws;

pub use client::{Client, ClientHandler};
#[cfg(feature = "tls")]
pub use config::TlsListener;
pub use config::{Backoff, ClientConfig, ServerConfig};
pub use error::{NetError, SendError};
pub use framing::{FrameError, Framing, LAN_HEADER_LEN, Lan, next_frame, put_lan_frame};
pub use id::SessionId;
pub use outbox::Dropped;
pub use server::{Handle, Handler, Preamble, PreambleFuture, Server};
pub use stats::Stats;
pub use stream::Stream;
pub use target::Target;
pub use writes::Writes;

/// A tick every `every` for a background task; a late tick delays the
/// next instead of bunching them up.
pub(crate) fn ticker(every: std::time::Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// A multi-threaded tokio runtime with `workers` worker threads (the seed's
/// worker-thread count); `0` means one per core.
///
/// # Errors
/// If the runtime cannot be built.
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    // Blocking work (password hashes, store transactions) waits in the
    // pool's queue instead of growing the pool to tokio's default of 512
    // threads under a login burst, each with its stack and malloc arena.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    b.max_blocking_threads(cores * 4);
    b.enable_all().build()
}

/// Checks the fuzz targets run (in `fuzz/`, outside the workspace) and the
/// corpus smoke tests replay. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::{BufMut, BytesMut};

    use crate::{FrameError, Framing, Lan, next_frame};

    /// A five-byte header with a flags byte (total length u16 LE, an id u16
    /// LE, flags that must be 0: the shape of the seeds' chat framing), as
    /// a user of this crate writes one: for the fuzz check and the tests.
    #[derive(Debug, Clone, Copy)]
    pub struct Five;

    impl Framing for Five {
        fn header_len(&self) -> usize {
            5
        }
        fn max_frame(&self) -> usize {
            usize::from(u16::MAX)
        }
        fn frame_len(&self, h: &[u8]) -> Result<usize, FrameError> {
            if h[4] != 0 {
                return Err(FrameError::BadFlags(h[4]));
            }
            Ok(usize::from(u16::from_le_bytes([h[0], h[1]])))
        }
    }

    /// Appends a [`Five`] frame with `id` and `body`.
    ///
    /// # Panics
    /// If the frame would be longer than 65,535 bytes.
    pub fn put_five(dst: &mut BytesMut, id: u16, body: &[u8]) {
        let len = u16::try_from(5 + body.len()).expect("frame over 65535 bytes");
        dst.put_u16_le(len);
        dst.put_u16_le(id);
        dst.put_u8(0);
        dst.put_slice(body);
    }

    /// The first byte picks the framing and the read sizes; the rest is the
    /// byte stream. Reassembling it read by read finds exactly the frames
    /// (and the error, if any) that parsing it whole finds, and never reads
    /// past what was received.
    pub fn framing(data: &[u8]) {
        let Some((&pick, stream)) = data.split_first() else {
            return;
        };
        let framing: &dyn Framing = if pick & 1 == 0 { &Five } else { &Lan };
        let max = 64 + usize::from(pick) * 8;
        let whole = frames(framing, stream, max, stream.len().max(1));
        let step = usize::from(pick >> 1).max(1);
        assert_eq!(
            frames(framing, stream, max, step),
            whole,
            "split reads changed the frames"
        );
    }

    fn frames(framing: &dyn Framing, stream: &[u8], max: usize, step: usize) -> (Vec<usize>, bool) {
        let (mut buf, mut found, mut fed) = (Vec::new(), Vec::new(), 0);
        loop {
            match next_frame(framing, &buf, max) {
                Ok(Some(n)) => {
                    assert!(n <= buf.len() && n <= max && n >= framing.header_len());
                    found.push(n);
                    buf.drain(..n);
                }
                Ok(None) if fed < stream.len() => {
                    let end = (fed + step).min(stream.len());
                    buf.extend_from_slice(&stream[fed..end]);
                    fed = end;
                }
                Ok(None) => return (found, false),
                Err(_) => return (found, true),
            }
        }
    }
}
