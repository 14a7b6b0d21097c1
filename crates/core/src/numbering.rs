//! Cluster mode: room messages numbered by the cluster.
//!
//! In a room with members on several nodes, Redis numbers the messages: the
//! sender's node hands each to the cluster's numbering script, which gives
//! it the room's next number in the room's epoch (both kept in Redis),
//! appends it to the room's log and publishes it on the room's channel.
//! Every node that follows the room, the sender's included, delivers it when
//! it comes back on the channel, so all have the same numbers in the same
//! order; the sender is answered once its own copy is delivered here. A node
//! that starts following a room reads the room's log with its seat.
//!
//! A room whose members are all on one node is numbered by that node, as in
//! single-node mode, under an epoch of its own: a new one each time the
//! node takes over from the cluster. Numbers from two numberers never share
//! an epoch, so a client that comes back with the other's is told it is a
//! gap rather than given a replay that skips what it did not see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use plaza_proto::bus::Place;
use plaza_proto::{Event, HEADER_LEN, ResultCode};

use crate::rooms::Said;
use crate::{Conn, Hub, Sink, Waiting};

/// A shared room's recent messages, as the shared store's log holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLog {
    /// The room's epoch in the shared store.
    pub epoch: u64,
    /// The number of the room's last message (0: none yet).
    pub last: u64,
    /// Its newest messages, oldest first.
    pub messages: Vec<Logged>,
}

/// One message of a [`RoomLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Its number.
    pub seq: u64,
    /// How long ago it was sent.
    pub age: Duration,
    /// The sender's name.
    pub from: String,
    /// The message.
    pub message: String,
    /// A notice (ROOM_NOTICE) rather than a message.
    pub notice: bool,
}

/// Each room's history epoch, for front ends that name messages by it (the
/// IRC front end's message ids). The hub writes a room's entry whenever its
/// epoch changes, before it sends anything numbered in it.
#[derive(Debug)]
pub struct RoomEpochs(Box<[AtomicU64]>);

impl RoomEpochs {
    pub(crate) fn new(rooms: u32, epoch: u64) -> Self {
        Self((0..rooms).map(|_| AtomicU64::new(epoch)).collect())
    }

    /// Room `room`'s epoch (0 for a room that does not exist).
    pub fn get(&self, room: u32) -> u64 {
        self.0.get(room as usize).map_or(0, |e| e.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, room: u32, epoch: u64) {
        if let Some(e) = self.0.get(room as usize) {
            e.store(epoch, Ordering::Relaxed);
        }
    }
}

/// Room chat handed to the cluster, waiting for its outcome.
#[derive(Debug)]
pub(crate) struct Chat {
    pub(crate) room: u32,
    /// ROOM_SEND's message id (`None`: ROOM_CHAT).
    pub(crate) send: Option<u64>,
    /// The message, delivered here if the cluster could not take it.
    pub(crate) said: Said,
}

/// A sender whose message the cluster numbered, answered (with `result`)
/// once its own copy is delivered here.
#[derive(Debug)]
pub(crate) struct Parked {
    conn: Conn,
    pub(crate) room: u32,
    place: Place,
    result: ResultCode,
}

impl Hub {
    /// A new epoch for a room this node numbers itself again.
    pub(crate) fn fresh_epoch(&mut self) -> u64 {
        self.epochs_taken += 1;
        self.config.epoch.wrapping_add(self.epochs_taken).max(1)
    }

    /// This node numbers `room`'s next message: after the cluster's
    /// numbers, under a new epoch of its own.
    pub(crate) fn number_here(&mut self, room: u32) {
        if self.rooms[room as usize].history.shared() {
            let epoch = self.fresh_epoch();
            self.rooms[room as usize].history.restart(epoch, 1, false);
            self.epochs.set(room, epoch);
        }
    }

    /// The log read with a seat in a shared room becomes the room's
    /// history, unless what is here is newer.
    pub(crate) fn adopt(&mut self, room: u32, log: RoomLog, now: Instant) {
        let limits = self.config.history;
        let h = &mut self.rooms[room as usize].history;
        if h.shared() && h.epoch() == log.epoch && h.next() > log.last + 1 {
            return;
        }
        let first = log.messages.first().map_or(log.last + 1, |m| m.seq);
        h.restart(log.epoch, first, true);
        for m in log.messages {
            if !Place::new(log.epoch, m.seq).is_some_and(|p| h.take(p)) {
                continue;
            }
            let mut packet = BytesMut::with_capacity(HEADER_LEN + 15 + m.from.len() + m.message.len());
            if m.notice {
                plaza_proto::put_room_notice(&mut packet, room, m.seq, &m.from, &m.message);
            } else {
                plaza_proto::put_room_message(&mut packet, room, m.seq, &m.from, &m.message);
            }
            let at = now.checked_sub(m.age).unwrap_or(now);
            h.push(Some(packet.freeze()), at, &limits);
        }
        if h.next() <= log.last {
            // Its newest are not in the log: nothing can be replayed across.
            h.restart(log.epoch, log.last + 1, true);
        }
        self.epochs.set(room, log.epoch);
    }

    /// The cluster took (or did not take) a room message of `conn`'s:
    /// answered once its own copy is delivered here (with 112 if some node
    /// did not get it). One Redis did not number (it is down) is delivered
    /// to this node's members, which numbers it itself, and answered 112.
    pub(crate) fn chat_published(
        &mut self,
        conn: Conn,
        chat: Box<Chat>,
        result: ResultCode,
        place: Option<Place>,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let room = chat.room;
        match place {
            Some(p) => {
                // Its copy came already, or the room moved on to another
                // epoch (after it, or without it: nothing to wait for).
                let h = &self.rooms[room as usize].history;
                let delivered = h.shared() && (h.epoch() != p.epoch.get() || h.next() > p.seq);
                if !delivered {
                    if let Some(s) = self.sessions.get_mut(&conn) {
                        s.waiting = Some(Waiting::Chat(chat));
                        self.parked.push(Parked {
                            conn,
                            room,
                            place: p,
                            result,
                        });
                    }
                    return;
                }
            }
            None => {
                if let Some(name) = self.name_of(conn).cloned() {
                    if self.sessions.get(&conn).and_then(|s| s.room) == Some(room) {
                        self.number_here(room);
                        self.room_message(room, &name, chat.said, None, now, sink);
                    }
                }
            }
        }
        self.chat_answer(conn, chat.send, result, place.map_or(0, |p| p.seq), now, sink);
    }

    fn chat_answer(
        &mut self,
        conn: Conn,
        send: Option<u64>,
        result: ResultCode,
        seq: u64,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let answer = match send {
            None => Event::RoomChatResult(result),
            Some(id) => self.sent(conn, id, seq, result == ResultCode::OK, now),
        };
        sink.send(conn, &answer);
        self.finish(conn, now, sink);
    }

    /// Answers the senders waiting on `room` whose copy has now been
    /// delivered (`upto`: that one or a later one; or one of another epoch,
    /// after which theirs will not come), or all of them (`None`: the
    /// room's link was cut or it is no longer followed, and their copies
    /// may never come).
    pub(crate) fn release_parked(
        &mut self,
        room: u32,
        upto: Option<Place>,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        if self.parked.is_empty() {
            return;
        }
        let done = |p: &Parked| {
            p.room == room && upto.is_none_or(|u| u.epoch != p.place.epoch || u.seq >= p.place.seq)
        };
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) =
            std::mem::take(&mut self.parked).into_iter().partition(done);
        self.parked = waiting;
        for p in ready {
            let Some(s) = self.sessions.get_mut(&p.conn) else {
                continue;
            };
            let Some(Waiting::Chat(c)) = s.waiting.take_if(|w| matches!(w, Waiting::Chat(_))) else {
                continue;
            };
            let send = c.send;
            self.chat_answer(p.conn, send, p.result, p.place.seq, now, sink);
        }
    }
}
