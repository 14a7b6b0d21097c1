//! Users who dropped and may come back: the resume window.
//!
//! A session with room history ([`plaza_proto::features::HISTORY`]: a
//! client that rejoins after a drop) that disconnects without logging out
//! leaves an [`Away`] behind for [`Config::resume_window`](crate::Config):
//! - its **seat**: it stays in its room's member list, so the members see
//!   no leave; a ROOM_REJOIN of that room by the same user within the
//!   window takes the seat back (same member id), and the members see
//!   nothing at all. Anything else the user does with rooms (ROOM_ENTER, a
//!   rejoin of another room, LOGOUT), or the window's end, gives the seat up
//!   and the members get the leave (217) then;
//! - its **inbox**: whispers to it are kept (at most [`INBOX_WHISPERS`])
//!   and delivered right after its next login; past the bound a whisper
//!   gets USER_NOT_FOUND (107) as if the user were gone, and whispers still
//!   kept when the window ends are dropped.
//!
//! In cluster mode the seat stays in the shared store too (the node
//! records it as held: [`Effect::HoldSeat`]), so members on every node see
//! no leave. The user's logged-in mark passes to this node's
//! [`AWAY`](crate::AWAY) ([`Effect::Away`]): whispers from every node
//! still come here, and a login on any node takes the mark over. Back on this node, the rejoin takes the seat back as
//! above. Back on another node, the rejoin's seat claim finds the seat
//! (`SeatOutcome::Held`) and claims it again by its id: the seat moves
//! there, and when its enter comes back here the seat leaves this node
//! silently ([`Effect::Unhold`]); nobody sees anything. An enter of the
//! user there under another id gives the seat here up instead (the
//! members hear it leave). Whispers kept here go on then to wherever the
//! user is logged in (dropped if nowhere). A whisper from another node
//! past the inbox's bound is dropped (its sender was told 0: its node
//! cannot know).

use std::sync::Arc;
use std::time::Instant;

use plaza_proto::Event;

use crate::room::News;
use crate::{BusMsg, Conn, Effect, Hub, Reach, Sink, State};

/// Whispers kept for a user who is away.
pub const INBOX_WHISPERS: usize = 100;

#[derive(Debug)]
pub(crate) struct Away {
    since: Instant,
    /// The room and the session that left its seat there.
    seat: Option<(u32, Conn)>,
    inbox: Vec<Event>,
}

impl Hub {
    /// Whether `conn`, disconnecting, leaves an [`Away`] behind.
    fn may_come_back(&self, conn: Conn) -> bool {
        !self.config.resume_window.is_zero()
            && !self.shutting_down
            && self
                .sessions
                .get(&conn)
                .is_some_and(|s| s.history && matches!(s.state, State::User { .. }))
    }

    /// `conn` disconnected: if it may come back, its seat is held (the
    /// session stays in the room's list, silent) and its inbox opened.
    /// Returns whether it may.
    pub(crate) fn hold(&mut self, conn: Conn, now: Instant, sink: &mut impl Sink) -> bool {
        if !self.may_come_back(conn) {
            return false;
        }
        let s = self.sessions.get_mut(&conn).expect("checked");
        let State::User { name } = &s.state else {
            return false;
        };
        let name = name.clone();
        if s.room.is_some() {
            // An older held seat (it cannot have one: entering a room gives
            // that up first) would be lost: give it up.
            self.give_up_seat(&name, sink);
        }
        let s = self.sessions.get_mut(&conn).expect("checked");
        let seat = s.room.take().map(|r| {
            // It no longer counts as a member that reads.
            let room = &mut self.rooms[r as usize];
            room.seed -= usize::from(!s.plaza);
            room.sequenced -= usize::from(s.history);
            room.held += 1;
            (r, conn)
        });
        if let Some((room, ghost)) = seat
            && self.cluster()
        {
            let uid = self.rooms[room as usize].uid_of(ghost).unwrap_or(ghost);
            sink.effect(Effect::HoldSeat {
                name: name.to_string(),
                uid,
                room,
            });
        }
        let away = self.away.entry(name).or_insert_with(|| Away {
            since: now,
            seat: None,
            inbox: Vec::new(),
        });
        away.since = now;
        if seat.is_some() {
            away.seat = seat;
        }
        true
    }

    /// `name` gives its held seat up (if any): the members hear it left.
    pub(crate) fn give_up_seat(&mut self, name: &str, sink: &mut impl Sink) {
        let Some(away) = self.away.get_mut(name) else {
            return;
        };
        let seat = away.seat.take();
        if away.inbox.is_empty() {
            self.away.remove(name);
        }
        if let Some((room, ghost)) = seat {
            self.rooms[room as usize].held -= 1;
            if let Some(uid) = self.rooms[room as usize].remove(ghost) {
                self.tell_room(room, News::Leave { uid }, sink);
                if self.cluster() {
                    crate::rooms::publish_leave(name.to_owned(), uid, room, sink);
                    self.lose_interest(room, sink);
                }
            }
        }
    }

    /// Cluster: `name`, away here, entered `room` as member `uid` on
    /// `node`: it came back there. The whispers kept for it go on to it.
    /// If that is the seat held here, the seat moved (the other node took
    /// it over in the shared store): it leaves this node silently and the
    /// members here know it there under the same id. Else the seat held
    /// here is given up (the members hear it leave).
    pub(crate) fn back_elsewhere(
        &mut self,
        name: &str,
        node: u64,
        uid: u64,
        room: u32,
        sink: &mut impl Sink,
    ) {
        let Some(away) = self.away.get_mut(name) else {
            return;
        };
        let (inbox, seat) = (std::mem::take(&mut away.inbox), away.seat);
        self.forward(name, inbox, sink);
        let moved =
            |(r, ghost): &(u32, Conn)| *r == room && self.rooms[*r as usize].uid_of(*ghost) == Some(uid);
        let Some((held, ghost)) = seat.filter(moved) else {
            return self.give_up_seat(name, sink);
        };
        self.away.remove(name);
        let r = &mut self.rooms[held as usize];
        r.held -= 1;
        r.remove(ghost);
        sink.effect(Effect::Unhold {
            name: name.to_owned(),
            uid,
        });
        self.lose_interest(room, sink);
        if self.interested(room) {
            self.add_remote(node, name, uid, Some(room));
        }
    }

    /// Cluster: sends whispers kept for `name` to the node it is logged in
    /// on now (none: they are dropped there, unanswered).
    fn forward(&self, name: &str, inbox: Vec<Event>, sink: &mut impl Sink) {
        for whisper in inbox {
            if let Some((from, message, notice)) = whispered(whisper) {
                let msg = BusMsg::Whisper {
                    to: name.to_owned(),
                    from,
                    message,
                    notice,
                };
                sink.effect(Effect::Publish {
                    msg,
                    ack: None,
                    reach: Reach::User,
                });
            }
        }
    }

    /// `conn` (logged in as `name`) rejoins `room`: takes its held seat
    /// back if it was there. Returns whether it did.
    pub(crate) fn take_seat(&mut self, conn: Conn, name: &str, room: u32) -> bool {
        let Some(away) = self.away.get_mut(name) else {
            return false;
        };
        let Some((r, ghost)) = away.seat.filter(|(r, _)| *r == room) else {
            return false;
        };
        away.seat = None;
        if away.inbox.is_empty() {
            self.away.remove(name);
        }
        let (seed, history) = self.forms(conn);
        let members = &mut self.rooms[r as usize];
        members.replace(ghost, conn);
        members.held -= 1;
        members.seed += usize::from(seed);
        members.sequenced += usize::from(history);
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.room = Some(r);
        }
        true
    }

    /// `conn` logged in as `name`: the whispers kept for it.
    pub(crate) fn deliver_inbox(&mut self, conn: Conn, name: &str, sink: &mut impl Sink) {
        let Some(away) = self.away.get_mut(name) else {
            return;
        };
        let inbox = std::mem::take(&mut away.inbox);
        if away.seat.is_none() {
            self.away.remove(name);
        }
        for (from, message, notice) in inbox.into_iter().filter_map(whispered) {
            sink.send(conn, &self.whisper(conn, from, message, notice));
        }
    }

    /// Keeps a whisper for `to` if it is away; whether it was kept (false:
    /// not away, or its inbox is full).
    pub(crate) fn keep_whisper(&mut self, to: &str, from: &str, message: &str, notice: bool) -> bool {
        let Some(away) = self.away.get_mut(to) else {
            return false;
        };
        if away.inbox.len() >= INBOX_WHISPERS {
            return false;
        }
        let (from, message) = (from.to_owned(), message.to_owned());
        away.inbox.push(if notice {
            Event::WhisperNotice { from, message }
        } else {
            Event::Whisper { from, message }
        });
        true
    }

    /// Ends the holds older than the resume window.
    pub(crate) fn expire_away(&mut self, now: Instant, sink: &mut impl Sink) {
        let window = self.config.resume_window;
        let over: Vec<Arc<str>> = (self.away.iter())
            .filter(|(_, a)| now.saturating_duration_since(a.since) > window)
            .map(|(name, _)| name.clone())
            .collect();
        for name in over {
            self.end_away(&name, sink);
        }
    }

    /// `name`'s time away ends (the window, or a kick from another node):
    /// its seat is given up, and the whispers kept for it are dropped (one
    /// node) or go on to wherever it is logged in (cluster), whose away
    /// mark is cleared.
    pub(crate) fn end_away(&mut self, name: &str, sink: &mut impl Sink) {
        if let Some(away) = self.away.get_mut(name) {
            let inbox = std::mem::take(&mut away.inbox);
            if self.cluster() {
                self.forward(name, inbox, sink);
                sink.effect(Effect::Release {
                    conn: crate::AWAY,
                    name: name.to_owned(),
                });
            }
        }
        self.give_up_seat(name, sink);
    }

    /// Whether `name` is away from this node.
    pub(crate) fn is_away(&self, name: &str) -> bool {
        self.away.contains_key(name)
    }

    /// The name `name` is kept under while away (shared, not copied).
    pub(crate) fn away_key(&self, name: &str) -> Arc<str> {
        self.away
            .get_key_value(name)
            .map_or_else(|| name.into(), |(k, _)| k.clone())
    }

    /// Users away (cluster mode: their marks name this node's
    /// [`AWAY`](crate::AWAY)), to keep their marks alive.
    pub fn away_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.away.keys()
    }

    /// The seats held, as (name, the session that left it, room).
    pub(crate) fn away_seats(&self) -> impl Iterator<Item = (&str, Conn, u32)> {
        (self.away.iter()).filter_map(|(name, a)| a.seat.map(|(room, ghost)| (&**name, ghost, room)))
    }

    /// Users away (within the resume window).
    pub fn away_users(&self) -> usize {
        self.away.len()
    }
}

/// A kept whisper's sender, text and kind (true: a notice).
fn whispered(whisper: Event) -> Option<(String, String, bool)> {
    match whisper {
        Event::Whisper { from, message } => Some((from, message, false)),
        Event::WhisperNotice { from, message } => Some((from, message, true)),
        _ => None,
    }
}
