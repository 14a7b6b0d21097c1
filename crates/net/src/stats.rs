//! Counters a server keeps, and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// A relaxed counter.
#[derive(Default, Debug)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn incr(&self) {
        self.add(1);
    }
    pub(crate) fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) accepted: Counter,
    pub(crate) refused_full: Counter,
    pub(crate) refused_per_ip: Counter,
    pub(crate) refused_by_handler: Counter,
    pub(crate) accept_errors: Counter,
    pub(crate) frames_in: Counter,
    pub(crate) bytes_in: Counter,
    /// Shared with every session's outbox too: a write made by the caller
    /// of [`Writes::flush`](crate::Writes::flush) counts there.
    pub(crate) writes: std::sync::Arc<Counter>,
    pub(crate) bytes_out: std::sync::Arc<Counter>,
    pub(crate) bad_frames: Counter,
    pub(crate) slow_consumers: Counter,
    /// Shared with every session's outbox, which counts its drops.
    pub(crate) dropped: std::sync::Arc<Counter>,
    pub(crate) idle_timeouts: Counter,
    pub(crate) write_timeouts: Counter,
    pub(crate) tls_accepted: Counter,
    pub(crate) tls_handshake_failures: Counter,
}

/// A snapshot of a server's counters since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Sessions open now.
    pub sessions: u64,
    /// Connections accepted and admitted.
    pub accepted: u64,
    /// Connections refused because `max_sessions` were open.
    pub refused_full: u64,
    /// Connections refused because their address held `max_sessions_per_ip`.
    pub refused_per_ip: u64,
    /// Connections refused by `on_connection_request`.
    pub refused_by_handler: u64,
    /// Failed `accept` calls (each followed by a back-off).
    pub accept_errors: u64,
    /// Complete frames received.
    pub frames_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Write system calls made (one per batch, or more for partial writes).
    pub writes: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Sessions disconnected for an invalid frame header.
    pub bad_frames: u64,
    /// Sessions disconnected for exceeding the send-queue limit.
    pub slow_consumers: u64,
    /// Droppable packets dropped for sessions that read too slowly.
    pub dropped: u64,
    /// Sessions closed by the idle timeout.
    pub idle_timeouts: u64,
    /// Sessions closed because a write stalled.
    pub write_timeouts: u64,
    /// TLS handshakes completed (these sessions are also in `accepted`).
    pub tls_accepted: u64,
    /// Connections to the TLS listener dropped because the handshake failed
    /// or timed out.
    pub tls_handshake_failures: u64,
    /// Writes held for the gathering clock's next tick
    /// ([`ServerConfig::gather`](crate::ServerConfig::gather)).
    pub writes_held: u64,
    /// Whether writes are being gathered now (the workers are busy).
    pub gathering: bool,
}

impl Counters {
    pub(crate) fn snapshot(&self, sessions: usize) -> Stats {
        Stats {
            sessions: sessions as u64,
            accepted: self.accepted.get(),
            refused_full: self.refused_full.get(),
            refused_per_ip: self.refused_per_ip.get(),
            refused_by_handler: self.refused_by_handler.get(),
            accept_errors: self.accept_errors.get(),
            frames_in: self.frames_in.get(),
            bytes_in: self.bytes_in.get(),
            writes: self.writes.get(),
            bytes_out: self.bytes_out.get(),
            bad_frames: self.bad_frames.get(),
            slow_consumers: self.slow_consumers.get(),
            dropped: self.dropped.get(),
            idle_timeouts: self.idle_timeouts.get(),
            write_timeouts: self.write_timeouts.get(),
            tls_accepted: self.tls_accepted.get(),
            tls_handshake_failures: self.tls_handshake_failures.get(),
            writes_held: 0,
            gathering: false,
        }
    }
}

impl Stats {
    /// Adds `other`'s counts to these (two servers' sessions seen as one).
    pub fn add(&mut self, other: &Stats) {
        self.sessions += other.sessions;
        self.accepted += other.accepted;
        self.refused_full += other.refused_full;
        self.refused_per_ip += other.refused_per_ip;
        self.refused_by_handler += other.refused_by_handler;
        self.accept_errors += other.accept_errors;
        self.frames_in += other.frames_in;
        self.bytes_in += other.bytes_in;
        self.writes += other.writes;
        self.bytes_out += other.bytes_out;
        self.bad_frames += other.bad_frames;
        self.slow_consumers += other.slow_consumers;
        self.dropped += other.dropped;
        self.idle_timeouts += other.idle_timeouts;
        self.write_timeouts += other.write_timeouts;
        self.tls_accepted += other.tls_accepted;
        self.tls_handshake_failures += other.tls_handshake_failures;
        self.writes_held += other.writes_held;
        self.gathering |= other.gathering;
    }
}
