//! Front ends: one per wire format.
//!
//! The hub emits format-neutral events addressed to sessions; a front end
//! decodes its clients' requests into the hub's inputs and turns the hub's
//! events into its own bytes, once per fan-out, shared by all of its
//! recipients. The binary protocol (Plaza's and the seeds' packets) is the
//! first, WebSocket (`ws/`, the same packets in WebSocket messages) the
//! second, IRC (`irc/`, lines and channels) the third; each further
//! format is one more module here.
//!
//! Each front end has its own plaza-net server, so its own session table;
//! the hub's `Conn` carries which one in [`WS`] and [`IRC`], bits of the
//! slot number no table reaches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use plaza_core::{Conn, Recipient};
use plaza_net::{Handle, SessionId, Stats};
use plaza_proto::{Event, Roster};

pub(crate) mod binary;
pub(crate) mod irc;
pub(crate) mod ws;

/// The bit of a `Conn` that marks a WebSocket session (the top bit of the
/// slot: tables are far smaller).
const WS: u64 = 1 << 31;
/// The bit that marks an IRC session.
const IRC: u64 = 1 << 30;

/// The largest session table a front end may have, so that no slot
/// reaches [`IRC`] or [`WS`].
pub(crate) const MAX_SESSIONS: usize = 1 << 30;

/// Which front end a session belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Front {
    Binary,
    Ws,
    Irc,
}

/// The hub's name for a front end's session.
pub(crate) fn conn(front: Front, id: SessionId) -> Conn {
    match front {
        Front::Binary => id.as_u64(),
        Front::Ws => id.as_u64() | WS,
        Front::Irc => id.as_u64() | IRC,
    }
}

fn split(conn: Conn) -> (Front, SessionId) {
    let id = SessionId::from_u64(conn & !(WS | IRC));
    match conn & (WS | IRC) {
        WS => (Front::Ws, id),
        IRC => (Front::Irc, id),
        _ => (Front::Binary, id),
    }
}

/// The front ends' networks, addressed by the hub's `Conn`s.
#[derive(Clone)]
pub(crate) struct Fronts {
    pub(crate) binary: Handle,
    pub(crate) ws: Option<Handle>,
    pub(crate) irc: Option<Arc<irc::Irc>>,
}

impl Fronts {
    fn handle(&self, front: Front) -> Option<&Handle> {
        match front {
            Front::Binary => Some(&self.binary),
            Front::Ws => self.ws.as_ref(),
            Front::Irc => self.irc.as_ref().map(|irc| &irc.net),
        }
    }

    /// The IRC front end, if `conn` is one of its sessions.
    fn irc(&self, conn: Conn) -> Option<(&irc::Irc, SessionId)> {
        match split(conn) {
            (Front::Irc, id) => self.irc.as_deref().map(|irc| (irc, id)),
            _ => None,
        }
    }

    fn with<T>(&self, conn: Conn, f: impl FnOnce(Front, &Handle, SessionId) -> T) -> Option<T> {
        let (front, id) = split(conn);
        self.handle(front).map(|h| f(front, h, id))
    }

    /// One event to one session. A session that left or is closing just
    /// misses it.
    pub(crate) fn send(&self, conn: Conn, event: &Event) {
        if let Some((irc, id)) = self.irc(conn) {
            return irc.event(id, event);
        }
        let _ = self.with(conn, |front, net, id| match front {
            Front::Ws => net.send_with(id, |b| ws::put_event(b, event)),
            _ => net.send_with(id, |b| event.encode(b)),
        });
    }

    /// A room's member list, in as many packets as it takes; returns how
    /// many.
    pub(crate) fn send_members(&self, conn: Conn, members: &Roster) -> u64 {
        if let Some((irc, id)) = self.irc(conn) {
            irc.members(id, members);
            return 1;
        }
        let sent = self.with(conn, |front, net, id| {
            let mut packets = 0;
            for list in members.lists() {
                packets += 1;
                let _ = match front {
                    Front::Ws => net.send_with(id, |b| ws::put_packet(b, |b| list.encode(b))),
                    _ => net.send_with(id, |b| list.encode(b)),
                };
            }
            packets
        });
        sent.unwrap_or(0)
    }

    /// `events` to every recipient, encoded once per front end present
    /// among them; returns the deliveries. Droppable copies go out with
    /// drop-oldest when `drop_oldest`.
    pub(crate) fn fanout(
        &self,
        events: &[Event],
        to: impl IntoIterator<Item = Recipient>,
        drop_oldest: bool,
    ) -> u64 {
        let mut binary = Frames::new(events, |b, e| e.encode(b));
        let mut ws = Frames::new(events, ws::put_event);
        let mut irc_lines = irc::Fanout::new(events);
        let mut sent = 0;
        for r in to {
            sent += 1;
            if let Some((irc, id)) = self.irc(r.conn) {
                irc_lines.send(irc, id, r.from, r.droppable && drop_oldest);
                continue;
            }
            let _ = self.with(r.conn, |front, net, id| {
                let frame = match front {
                    Front::Ws => ws.starting_at(r.from),
                    _ => binary.starting_at(r.from),
                };
                if r.droppable && drop_oldest {
                    net.send_droppable(id, frame)
                } else {
                    net.send(id, frame)
                }
            });
        }
        sent
    }

    /// One binary-protocol packet, already encoded (a room message with its
    /// sequence number), to every recipient: shared as it is on the binary
    /// front end, in one WebSocket message made once on the WebSocket
    /// one. IRC sessions never ask for it (they take room messages as
    /// lines); one that did would be logged and skipped.
    pub(crate) fn fanout_packet(
        &self,
        packet: &Bytes,
        at: Instant,
        to: impl IntoIterator<Item = Recipient>,
        drop_oldest: bool,
    ) -> u64 {
        let mut ws_message = None;
        let mut irc_lines = irc::Chat::new(packet, at);
        let mut sent = 0;
        for r in to {
            if let Some((irc, id)) = self.irc(r.conn) {
                sent += u64::from(irc.chat(&mut irc_lines, id, r.droppable && drop_oldest));
                continue;
            }
            let _ = self.with(r.conn, |front, net, id| {
                let frame = match front {
                    Front::Binary => packet.clone(),
                    Front::Ws => ws_message
                        .get_or_insert_with(|| {
                            let mut b = BytesMut::with_capacity(packet.len() + 4);
                            ws::put_packet(&mut b, |b| b.extend_from_slice(packet));
                            b.freeze()
                        })
                        .clone(),
                    Front::Irc => return Ok(()),
                };
                sent += 1;
                if r.droppable && drop_oldest {
                    net.send_droppable(id, frame)
                } else {
                    net.send(id, frame)
                }
            });
        }
        sent
    }

    /// Binary-protocol packets, already encoded (a replay from a room's
    /// history), to one session, queued together so they go in one write.
    pub(crate) fn send_packets<'a>(
        &self,
        conn: Conn,
        packets: impl IntoIterator<Item = (&'a Bytes, Instant)>,
    ) -> u64 {
        if let Some((irc, id)) = self.irc(conn) {
            return irc.history(id, packets);
        }
        let sent = self.with(conn, |front, net, id| {
            let mut n = 0;
            match front {
                Front::Binary | Front::Irc => {
                    for (p, _) in packets {
                        n += 1;
                        let _ = net.send(id, p.clone());
                    }
                }
                Front::Ws => {
                    let _ = net.send_with(id, |b| {
                        for (p, _) in packets {
                            n += 1;
                            ws::put_packet(b, |b| b.extend_from_slice(p));
                        }
                    });
                }
            }
            n
        });
        sent.unwrap_or(0)
    }

    /// Closes a session once what is queued for it is written (a kick,
    /// the login timeout, a half-close answered). A browser is told so in
    /// a close frame (1000) after the packet that said why.
    pub(crate) fn disconnect(&self, conn: Conn) {
        if let Some((irc, id)) = self.irc(conn) {
            return irc.disconnect(id);
        }
        let _ = self.with(conn, |front, net, id| {
            if front == Front::Ws {
                let _ = net.send_with(id, |b| {
                    plaza_net::ws::put_close(b, plaza_net::ws::close::NORMAL, "closed by the server")
                });
            }
            net.disconnect(id)
        });
    }

    pub(crate) fn peer_addr(&self, conn: Conn) -> Option<SocketAddr> {
        self.with(conn, |_, net, id| net.peer_addr(id)).flatten()
    }

    pub(crate) fn pending_bytes(&self, conn: Conn) -> Option<usize> {
        self.with(conn, |_, net, id| net.pending_bytes(id)).flatten()
    }

    fn all(&self) -> impl Iterator<Item = &Handle> {
        std::iter::once(&self.binary)
            .chain(&self.ws)
            .chain(self.irc.as_ref().map(|irc| &irc.net))
    }

    /// Whether the front ends hold every write for the gathering clock
    /// (the CPU is saturated).
    pub(crate) fn is_saturated(&self) -> bool {
        self.all().any(Handle::is_saturated)
    }

    pub(crate) fn session_count(&self) -> usize {
        self.all().map(Handle::session_count).sum()
    }

    pub(crate) fn pending_bytes_total(&self) -> usize {
        self.all().map(Handle::pending_bytes_total).sum()
    }

    /// Every front end's counters, added up.
    pub(crate) fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for net in self.all() {
            total.add(&net.stats());
        }
        total
    }

    /// Stops every front end: each flushes and closes its sessions.
    pub(crate) async fn stop(&self, grace: Duration) {
        futures_util::future::join_all(self.all().map(|net| net.stop(grace))).await;
    }
}

/// A fan-out's events in one front end's bytes, encoded once on first use.
pub(crate) struct Frames<'e> {
    events: &'e [Event],
    encode: fn(&mut BytesMut, &Event),
    bytes: Option<Bytes>,
    /// Where each event ends in `bytes` (only when there are several).
    ends: Vec<usize>,
}

impl<'e> Frames<'e> {
    pub(crate) fn new(events: &'e [Event], encode: fn(&mut BytesMut, &Event)) -> Self {
        Self {
            events,
            encode,
            bytes: None,
            ends: Vec::new(),
        }
    }

    /// The bytes of `events[first..]`, sharing one buffer.
    pub(crate) fn starting_at(&mut self, first: usize) -> Bytes {
        let (events, ends, encode) = (self.events, &mut self.ends, self.encode);
        let bytes = self.bytes.get_or_insert_with(|| {
            // Room for the largest chat frame (a seed-style room message is
            // 295 bytes): one allocation, not one per doubling.
            let mut b = BytesMut::with_capacity(512);
            for event in events {
                encode(&mut b, event);
                if events.len() > 1 {
                    ends.push(b.len());
                }
            }
            b.freeze()
        });
        match first {
            0 => bytes.clone(),
            n => bytes.slice(ends[n - 1]..),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conn_names_its_front_end_and_session() {
        for front in [Front::Binary, Front::Ws, Front::Irc] {
            for raw in [0, 5, (7 << 32) | 9, (u64::from(u32::MAX) << 32) | (IRC - 1)] {
                let id = SessionId::from_u64(raw);
                assert_eq!(split(conn(front, id)), (front, id));
            }
        }
    }
}
