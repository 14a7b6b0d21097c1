//! Session time: the watchdog's looks at the progress marks a session's
//! halves leave. One watchdog task per server (per connection in the
//! client) owns every session's timeouts, on tokio's clock, so a test can
//! run them on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::SessionShared;
use crate::NetError;
use crate::config::SessionLimits;
use crate::outbox::Close;
use crate::stats::Counters;

/// Progress marks the halves leave for the watchdog, and its counts.
/// Relaxed: a mark seen one look late only delays a timeout by a look.
#[derive(Default)]
pub(super) struct Marks {
    /// The reader is waiting for the peer's bytes.
    pub(super) reading: AtomicBool,
    /// Bytes arrived since the watchdog's last look.
    pub(super) read_seen: AtomicBool,
    /// A write, flush or shutdown is in flight.
    pub(super) writing: AtomicBool,
    /// A write made progress since the watchdog's last look.
    pub(super) write_seen: AtomicBool,
    /// Looks in a row that found the reader waiting and nothing read.
    idle_looks: AtomicU32,
    /// Looks in a row that found a write in flight and no progress.
    stalled_looks: AtomicU32,
    /// Looks in a row that found more queued than the soft limit.
    over_looks: AtomicU32,
}

/// Counts one look: `looks` goes back to zero if there was `progress` or
/// nothing was `waiting`, else up by one. Returns the new count.
fn count_look(looks: &AtomicU32, waiting: &AtomicBool, progress: bool) -> u32 {
    let n = if progress || !waiting.load(Ordering::Relaxed) {
        0
    } else {
        looks.load(Ordering::Relaxed).saturating_add(1)
    };
    looks.store(n, Ordering::Relaxed);
    n
}

/// Looks in a row without progress that make `timeout`: the last progress
/// came before the first of them, so `timeout` has passed by the last.
fn looks_for(timeout: Duration, every: Duration) -> u32 {
    let n = timeout.as_nanos().div_ceil(every.as_nanos().max(1));
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// How often a watchdog looks at its sessions: each timeout fires at most
/// an eighth of itself (and at most a second) late.
pub(crate) fn watch_interval(limits: &SessionLimits) -> Duration {
    let shortest = limits
        .idle_timeout
        .unwrap_or(Duration::MAX)
        .min(limits.quiet_ping.as_ref().map_or(Duration::MAX, |p| p.0))
        .min(limits.write_timeout)
        .min(limits.soft_send_grace)
        .min(limits.linger);
    (shortest / 8).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

impl SessionShared {
    /// The watchdog's look, one every `every`: closes the session if it
    /// has read nothing for the idle timeout, if a write has made no
    /// progress for the write timeout, if more than the soft limit stayed
    /// queued for its grace (a slow consumer), or if a flush has run past
    /// its deadline.
    pub(crate) fn look(
        self: &Arc<Self>,
        limits: &SessionLimits,
        every: Duration,
        now: Instant,
        counters: &Counters,
    ) {
        if self.is_aborted() {
            return;
        }
        let m = &self.marks;
        let read = m.read_seen.swap(false, Ordering::Relaxed);
        let wrote = m.write_seen.swap(false, Ordering::Relaxed);
        let closing = self.is_closing();
        let idle = count_look(&m.idle_looks, &m.reading, read);
        if let Some(t) = limits.idle_timeout
            && !closing
            && idle >= looks_for(t, every)
        {
            counters.idle_timeouts.incr();
            return self.abort(NetError::IdleTimeout(t));
        }
        if let Some((after, ping)) = &limits.quiet_ping
            && !closing
            && idle > 0
            && idle % looks_for(*after, every) == 0
        {
            // A peer too slow to take a ping is dropped like any other.
            let _ = self.send(ping.clone());
        }
        if count_look(&m.stalled_looks, &m.writing, wrote) >= looks_for(limits.write_timeout, every) {
            counters.write_timeouts.incr();
            return self.abort(NetError::WriteTimeout(limits.write_timeout));
        }
        if !closing && limits.soft_send_queue < limits.max_send_queue {
            let mut o = self.outbox();
            let over = o.pending > o.soft;
            let n = if over {
                m.over_looks.load(Ordering::Relaxed) + 1
            } else {
                0
            };
            m.over_looks.store(n, Ordering::Relaxed);
            if n >= looks_for(limits.soft_send_grace, every) {
                let (queued, soft) = (o.pending, o.soft);
                o.cut_slow(queued, soft);
                let abort = o.is_aborting();
                drop(o);
                return self.signal_close(abort);
            }
        }
        if closing {
            let expired = {
                let mut o = self.outbox();
                let due = matches!(&o.close, Some(Close::Flush(d) | Close::Farewell(d, _)) if now >= *d);
                due.then(|| {
                    let farewell = match o.close.take() {
                        Some(Close::Farewell(_, e)) => Some(e),
                        _ => None,
                    };
                    o.close = Some(Close::Flush(now));
                    (o.pending, farewell)
                })
            };
            match expired {
                // A slow consumer's farewell ends as the slow consumer it was.
                Some((_, Some(e))) => self.abort(e),
                Some((0, None)) => self.close(Close::Abort(None)),
                Some((pending, None)) => self.abort(NetError::LingerExpired(pending)),
                None => {}
            }
        }
    }
}

/// Looks at one session every [`watch_interval`], for as long as the
/// caller polls this (a client's connection; a server watches its table).
pub(crate) async fn watch_one(
    session: &Arc<SessionShared>,
    limits: &SessionLimits,
    counters: &Counters,
) -> std::convert::Infallible {
    let every = watch_interval(limits);
    let mut tick = crate::ticker(every);
    loop {
        tick.tick().await;
        session.look(limits, every, Instant::now(), counters);
    }
}
