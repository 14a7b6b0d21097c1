//! A room's recent messages, kept as the packets their fan-out sent.
//!
//! Every room message gets the room's next sequence number (from 1). The
//! room keeps the ROOM_MESSAGE packet (345) it fanned out to clients with
//! [`features::HISTORY`](plaza_proto::features::HISTORY), so a replay or a
//! page of scrollback is those same shared bytes, not an encoding per
//! request. What is kept is bounded by count, bytes and age
//! ([`HistoryLimits`]); the oldest go first. Sequence numbers hold within
//! the room's epoch: at first the hub's ([`Config::epoch`](crate::Config::epoch)),
//! so a restart loses history and starts a new epoch, and a client that
//! presents the old one is told there is a gap; in cluster mode a room
//! changes epoch when it changes numberer (`numbering.rs`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use plaza_proto::bus::Place;
use plaza_proto::{Event, HISTORY_PAGE, Page, Replay, ResultCode};

use crate::{Conn, Hub, Sink};

/// How much history each room keeps; the first bound reached drops the
/// oldest message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages per room (0: no history; sequence numbers still count).
    pub messages: usize,
    /// Bytes per room, counting each packet and [`HELD_OVERHEAD`].
    pub bytes: usize,
    /// How long a message is kept.
    pub age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            messages: 100,
            bytes: 64 * 1024,
            age: Duration::from_secs(3600),
        }
    }
}

/// What each kept message costs beyond its packet: its entry here and the
/// packet's allocation header (measured: see docs/OPERATIONS.md).
pub const HELD_OVERHEAD: usize = 64;

#[derive(Debug, Clone)]
struct Held {
    seq: u64,
    at: Instant,
    packet: Bytes,
}

/// One room's sequence numbers and kept messages.
#[derive(Debug, Clone)]
pub(crate) struct History {
    /// The epoch its numbers hold in.
    epoch: u64,
    /// The cluster numbers this room's messages (`epoch` is the room's in
    /// Redis) rather than this node.
    shared: bool,
    /// Messages may have gone by unseen since the last one here (the
    /// cluster bus link was cut): the next numbered message starts afresh,
    /// whatever its number.
    unsure: bool,
    /// The next message's sequence number.
    next: u64,
    held: VecDeque<Held>,
    bytes: usize,
}

impl Default for History {
    fn default() -> Self {
        Self::new(1)
    }
}

impl History {
    pub(crate) fn new(epoch: u64) -> Self {
        Self {
            epoch,
            shared: false,
            unsure: false,
            next: 1,
            held: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The epoch its numbers hold in.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number the next message gets.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// The oldest sequence number held (`next` when none is).
    pub(crate) fn first(&self) -> u64 {
        self.held.front().map_or(self.next, |h| h.seq)
    }

    /// Whether the next message this node numbers itself needs a new epoch:
    /// the numbers so far were the cluster's.
    pub(crate) fn shared(&self) -> bool {
        self.shared
    }

    /// Starts over in `epoch`, numbering from `next`; `shared`: the
    /// cluster's numbers.
    pub(crate) fn restart(&mut self, epoch: u64, next: u64, shared: bool) {
        *self = Self {
            epoch,
            shared,
            next,
            ..Self::new(epoch)
        };
    }

    /// A message the cluster numbered arrives: whether it is new here (it
    /// is then the next to push). Another epoch, a number past the next
    /// (some went by unseen) or the first after a cut starts over at it;
    /// one already here is not new.
    pub(crate) fn take(&mut self, place: Place) -> bool {
        let same = place.epoch.get() == self.epoch && self.shared && !self.unsure;
        if !same || place.seq > self.next {
            self.restart(place.epoch.get(), place.seq, true);
        }
        place.seq == self.next
    }

    /// Keeps `packet` (if any) as message `next` and moves on to the next
    /// number.
    pub(crate) fn push(&mut self, packet: Option<Bytes>, now: Instant, limits: &HistoryLimits) {
        let seq = self.next;
        self.next += 1;
        self.unsure = false;
        let Some(packet) = packet.filter(|_| limits.messages > 0) else {
            return;
        };
        self.bytes += packet.len() + HELD_OVERHEAD;
        self.held.push_back(Held { seq, at: now, packet });
        while self.held.len() > limits.messages || self.bytes > limits.bytes {
            self.pop();
        }
        self.expire(now, limits);
    }

    /// Messages for this room were lost before they reached this node (its
    /// cluster bus link was cut): what is held goes and one number is
    /// skipped, so a replay or page that spans the loss says it has a gap
    /// instead of passing over it.
    pub(crate) fn gap(&mut self) {
        self.held = VecDeque::new();
        self.bytes = 0;
        self.next += 1;
        self.unsure = true;
    }

    /// Drops what is older than the age bound.
    pub(crate) fn expire(&mut self, now: Instant, limits: &HistoryLimits) {
        while self
            .held
            .front()
            .is_some_and(|h| now.saturating_duration_since(h.at) > limits.age)
        {
            self.pop();
        }
        if self.held.is_empty() && self.held.capacity() > 0 {
            // A quiet room holds no buffer.
            self.held = VecDeque::new();
        }
    }

    fn pop(&mut self) {
        if let Some(h) = self.held.pop_front() {
            self.bytes -= h.packet.len() + HELD_OVERHEAD;
        }
    }

    /// Bytes held, as [`HistoryLimits::bytes`] counts them.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The packets of `page`, at most `limit`, oldest first, and the
    /// sequence number of the first of them (`next` when there are none).
    pub(crate) fn page(
        &self,
        page: Page,
        limit: usize,
    ) -> (u64, impl Iterator<Item = (&Bytes, Instant)> + Clone) {
        // The index of the first message held whose number is `s` or more.
        let first = self.first();
        let len = self.held.len();
        let at = |s: u64| usize::try_from(s.saturating_sub(first)).map_or(len, |i| i.min(len));
        let (start, end) = match page {
            Page::Latest => (len.saturating_sub(limit), len),
            Page::Before(s) => (at(s).saturating_sub(limit), at(s)),
            Page::After(s) => {
                let start = at(s.saturating_add(1));
                (start, start.saturating_add(limit).min(len))
            }
        };
        let seq = self
            .held
            .get(start)
            .filter(|_| start < end)
            .map_or(self.next, |h| h.seq);
        (seq, self.held.range(start..end).map(|h| (&h.packet, h.at)))
    }
}

impl Hub {
    /// After a rejoin has seated `conn` in `room`: the messages after
    /// `after` that are held (at most [`HistoryLimits::messages`]), then
    /// the marker. Sequence numbers from another epoch mean nothing
    /// here: everything held is sent, and it is a gap.
    pub(crate) fn replay(
        &mut self,
        conn: Conn,
        room: u32,
        epoch: u64,
        after: u64,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let limits = self.config.history;
        let h = &mut self.rooms[room as usize].history;
        h.expire(now, &limits);
        // Epoch 0: the client knows none (everything held is sent).
        let known = epoch == h.epoch();
        let after = if known { after } else { 0 };
        let (start, packets) = h.page(Page::After(after), usize::MAX);
        let notices = self.sessions.get(&conn).is_some_and(|s| s.notices);
        let count = send_kept(conn, notices, packets, sink);
        let replay = Replay {
            result: ResultCode::OK,
            epoch: h.epoch(),
            first: h.first(),
            next: h.next(),
            count: u16::try_from(count).unwrap_or(u16::MAX),
            // Missed messages that are gone: the first sent (or the next
            // to come) is not the one after `after`.
            gap: (!known && epoch != 0) || start > after.saturating_add(1),
        };
        sink.send(conn, &Event::Rejoin(replay));
    }

    /// HISTORY: a page of `conn`'s room's messages, then the answer.
    pub(crate) fn history(&mut self, conn: Conn, page: Page, limit: u16, now: Instant, sink: &mut impl Sink) {
        let Some(room) = self.sessions.get(&conn).and_then(|s| s.room) else {
            return sink.send(
                conn,
                &Event::History(Replay::failed(ResultCode::USER_NOT_IN_ROOM)),
            );
        };
        let limits = self.config.history;
        let h = &mut self.rooms[room as usize].history;
        h.expire(now, &limits);
        let limit = usize::from(limit.min(HISTORY_PAGE));
        let (start, packets) = h.page(page, limit);
        let notices = self.sessions.get(&conn).is_some_and(|s| s.notices);
        let count = send_kept(conn, notices, packets, sink);
        // Asked for messages that are no longer held: older than the
        // oldest held (and there were some), or after a number below it.
        let lost = h.first() > 1;
        let gap = match page {
            Page::Latest | Page::Before(_) => count < limit && lost,
            Page::After(s) => start > s.saturating_add(1) && lost,
        };
        let replay = Replay {
            result: ResultCode::OK,
            epoch: h.epoch(),
            first: h.first(),
            next: h.next(),
            count: count as u16,
            gap,
        };
        sink.send(conn, &Event::History(replay));
    }
}

/// Sends kept room messages to `conn`, notices as they are kept to a
/// connection that knows them, as ROOM_MESSAGE to one that does not; how
/// many. (Copies only for a page that holds a notice.)
fn send_kept<'a>(
    conn: Conn,
    notices: bool,
    packets: impl Iterator<Item = (&'a Bytes, Instant)> + Clone,
    sink: &mut impl Sink,
) -> usize {
    let mut count = 0usize;
    if notices || !packets.clone().any(|(p, _)| plaza_proto::is_room_notice(p)) {
        sink.send_packets(conn, packets.inspect(|_| count += 1));
    } else {
        let plain: Vec<(Bytes, Instant)> = packets
            .map(|(p, at)| (plaza_proto::without_notice(p), at))
            .collect();
        count = plain.len();
        sink.send_packets(conn, plain.iter().map(|(p, at)| (p, *at)));
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: u64, limits: &HistoryLimits, now: Instant) -> History {
        let mut h = History::new(1);
        for i in 1..=n {
            h.push(Some(Bytes::from(i.to_le_bytes().to_vec())), now, limits);
        }
        h
    }

    fn seqs(h: &History, page: Page, limit: usize) -> (u64, Vec<u64>) {
        let (first, packets) = h.page(page, limit);
        let seqs = packets.map(|(p, _)| u64::from_le_bytes(p[..8].try_into().unwrap()));
        (first, seqs.collect())
    }

    #[test]
    fn a_gap_drops_what_is_held_and_skips_a_number() {
        let (limits, now) = (HistoryLimits::default(), Instant::now());
        let mut h = filled(3, &limits, now);
        h.gap();
        assert_eq!((h.first(), h.next(), h.bytes()), (5, 5, 0));
        // Nothing after 3 can be given: the first there is to give is 5.
        assert_eq!(seqs(&h, Page::After(3), 10), (5, vec![]));
        h.push(Some(Bytes::from(5u64.to_le_bytes().to_vec())), now, &limits);
        assert_eq!(seqs(&h, Page::After(3), 10), (5, vec![5]));
    }

    #[test]
    fn pages_go_back_and_forth_over_what_is_held() {
        let limits = HistoryLimits {
            messages: 10,
            ..HistoryLimits::default()
        };
        let h = filled(25, &limits, Instant::now());
        assert_eq!((h.first(), h.next()), (16, 26));
        assert_eq!(seqs(&h, Page::Latest, 3), (23, vec![23, 24, 25]));
        assert_eq!(seqs(&h, Page::Before(23), 3), (20, vec![20, 21, 22]));
        assert_eq!(seqs(&h, Page::Before(18), 5), (16, vec![16, 17]));
        assert_eq!(seqs(&h, Page::Before(16), 5), (26, vec![]));
        assert_eq!(seqs(&h, Page::After(20), 3), (21, vec![21, 22, 23]));
        // Asking from before what is held starts at the oldest held.
        assert_eq!(seqs(&h, Page::After(3), 2), (16, vec![16, 17]));
        assert_eq!(seqs(&h, Page::After(25), 5), (26, vec![]));
        assert_eq!(seqs(&h, Page::After(u64::MAX), 5), (26, vec![]));
        assert_eq!(seqs(&h, Page::Before(u64::MAX), 2), (24, vec![24, 25]));
    }

    #[test]
    fn bytes_and_age_bound_what_is_kept() {
        let limits = HistoryLimits {
            messages: 1000,
            bytes: 5 * (8 + HELD_OVERHEAD),
            age: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let mut h = filled(12, &limits, t0);
        assert_eq!((h.first(), h.next(), h.bytes()), (8, 13, limits.bytes));
        h.expire(t0 + Duration::from_secs(61), &limits);
        assert_eq!((h.first(), h.next(), h.bytes()), (13, 13, 0));
        assert_eq!(h.held.capacity(), 0);
    }

    #[test]
    fn without_history_numbers_still_count() {
        let limits = HistoryLimits {
            messages: 0,
            ..HistoryLimits::default()
        };
        let h = filled(4, &limits, Instant::now());
        assert_eq!((h.first(), h.next(), h.bytes()), (5, 5, 0));
    }
}
