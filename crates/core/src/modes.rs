//! Room modes: what a room's operators (or an admin) switch on with
//! ROOM_MODE (367): only operators set the topic ([`room_modes::TOPIC`]),
//! only operators and voiced members speak ([`room_modes::MODERATED`]), a member limit below
//! the room's capacity, and a key that an entrant must give (ROOM_ENTER_KEY,
//! 370). Like a topic, modes are stamped with the wall-clock time they were
//! set and the newest wins on every node; they last while the room has
//! members. In cluster mode the seat script enforces the limit and the key
//! from the shared store, so a node that does not follow the room yet
//! refuses as one that does.

use std::sync::Arc;
use std::time::Instant;

use plaza_proto::{Event, ResultCode, room_modes};

use crate::{BusMsg, Conn, Hub, Sink, Waiting};

/// A room's modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Modes {
    /// When they were set, in Unix microseconds (their version).
    pub(crate) at: u64,
    pub(crate) by: String,
    /// [`room_modes`] bits.
    pub(crate) flags: u8,
    /// The most members (0: the room's capacity).
    pub(crate) limit: u32,
    /// What an entrant must give ("": none).
    pub(crate) key: String,
}

impl Modes {
    fn event(&self, room: u32, by: String) -> Event {
        Event::RoomMode {
            room,
            flags: self.flags,
            limit: self.limit,
            key: self.key.clone(),
            by,
        }
    }

    fn is_set(&self) -> bool {
        self.flags != 0 || self.limit != 0 || !self.key.is_empty()
    }
}

impl Hub {
    /// ROOM_MODE from `conn`, logged in as `name`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_modes(
        &mut self,
        conn: Conn,
        name: &Arc<str>,
        flags: u8,
        limit: u32,
        key: String,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        if flags & !room_modes::ALL != 0 || !plaza_proto::valid_room_key(&key) {
            // The decoder refuses these; a front end might not.
            return sink.send(conn, &Event::RoomModeResult(ResultCode::BAD_REQUEST));
        }
        let Some(room) = self.sessions.get(&conn).and_then(|s| s.room) else {
            return sink.send(conn, &Event::RoomModeResult(ResultCode::USER_IN_LOBBY));
        };
        if !self.is_operator(conn, room) {
            return sink.send(conn, &Event::RoomModeResult(ResultCode::NOT_ROOM_OPERATOR));
        }
        if !self.may_chat(conn, None, now) {
            return sink.send(conn, &Event::RoomModeResult(ResultCode::RATE_LIMITED));
        }
        let last = self.rooms[room as usize].modes.as_ref().map_or(0, |m| m.at);
        let modes = Modes {
            at: (self.config.wall_clock)().max(last + 1),
            by: name.to_string(),
            flags,
            limit,
            key,
        };
        self.take_modes(room, modes.clone(), sink);
        if !self.cluster() {
            return sink.send(conn, &Event::RoomModeResult(ResultCode::OK));
        }
        let msg = BusMsg::Modes {
            room,
            at: modes.at,
            by: modes.by,
            flags: modes.flags,
            limit: modes.limit,
            key: modes.key,
        };
        self.publish(conn, msg, Waiting::Ack(Event::RoomModeResult), sink);
    }

    /// `modes` for `room` if they are newer than the room's: kept, and
    /// told to the members on this node that take Plaza's notifications.
    pub(crate) fn take_modes(&mut self, room: u32, modes: Modes, sink: &mut impl Sink) {
        let Some(r) = self.rooms.get_mut(room as usize) else {
            return;
        };
        if r.modes.as_ref().is_some_and(|m| m.at >= modes.at) {
            return;
        }
        let event = modes.event(room, modes.by.clone());
        r.modes = Some(Box::new(modes));
        self.tell_plaza_members(room, &event, sink);
    }

    /// Tells `conn`, entering `room`, its modes if any is set.
    pub(crate) fn tell_modes(&self, conn: Conn, room: u32, sink: &mut impl Sink) {
        let modes = self.rooms.get(room as usize).and_then(|r| r.modes.as_ref());
        if let Some(m) = modes.filter(|m| m.is_set() && self.plaza(conn)) {
            sink.send(conn, &m.event(room, String::new()));
        }
    }

    /// Whether `room` has mode `flag` on.
    pub(crate) fn has_mode(&self, room: u32, flag: u8) -> bool {
        let modes = self.rooms.get(room as usize).and_then(|r| r.modes.as_ref());
        modes.is_some_and(|m| m.flags & flag != 0)
    }

    /// Why `name`, entering `room` with `here` members in it now and
    /// giving `key`, may not enter, as far as this node knows the room's
    /// modes. (In cluster mode the seat script decides invitations: the
    /// pass may have been given on another node.)
    pub(crate) fn refused_by_modes(
        &self,
        room: u32,
        here: usize,
        key: &str,
        name: &str,
    ) -> Option<ResultCode> {
        let r = &self.rooms[room as usize];
        let m = r.modes.as_ref()?;
        let invited = r.invited.contains(&plaza_proto::name_key(name));
        if m.flags & room_modes::INVITE_ONLY != 0 && !invited && !self.cluster() {
            return Some(ResultCode::INVITE_ONLY_ROOM);
        }
        if m.limit > 0 && here >= m.limit as usize && !invited {
            return Some(ResultCode::ROOM_FULL);
        }
        (!m.key.is_empty() && m.key != key).then_some(ResultCode::BAD_ROOM_KEY)
    }

    /// ROOM_INVITE from `conn` (`by`): `target` may enter the room even
    /// when it is invite-only (or full to its mode's limit), once.
    pub(crate) fn room_invite(&mut self, conn: Conn, by: &Arc<str>, target: &str, sink: &mut impl Sink) {
        let reply = |code| Event::RoomInviteResult(code);
        let Some(room) = self.sessions.get(&conn).and_then(|s| s.room) else {
            return sink.send(conn, &reply(ResultCode::USER_IN_LOBBY));
        };
        if self.has_mode(room, room_modes::INVITE_ONLY) && !self.is_operator(conn, room) {
            return sink.send(conn, &reply(ResultCode::NOT_ROOM_OPERATOR));
        }
        let key = plaza_proto::name_key(target);
        if self.member_named(room, target).is_some() {
            return sink.send(conn, &reply(ResultCode::ALREADY_IN_ROOM));
        }
        let local = self.conn_of(target);
        if local.is_none() && !self.cluster() {
            return sink.send(conn, &reply(ResultCode::USER_NOT_FOUND));
        }
        let r = &mut self.rooms[room as usize];
        if !r.invited.contains(&key) {
            r.invited.push(key);
        }
        let invite = Event::RoomInvite {
            room,
            by: by.to_string(),
        };
        match local {
            Some(t) => {
                if self.plaza(t) {
                    sink.send(t, &invite);
                }
                sink.send(conn, &reply(ResultCode::OK));
            }
            // Another node's, if any has it: the directory decides, and the
            // shared store keeps the pass for the seat script.
            None => {
                let msg = BusMsg::Invite {
                    room,
                    to: target.to_owned(),
                    by: by.to_string(),
                };
                self.publish(conn, msg, Waiting::Ack(Event::RoomInviteResult), sink);
            }
        }
    }

    /// Cluster: `to`, logged in here, was invited into `room` on another
    /// node.
    pub(crate) fn invited_elsewhere(&mut self, room: u32, to: &str, by: String, sink: &mut impl Sink) {
        if let Some(t) = self.conn_of(to).filter(|t| self.plaza(*t)) {
            sink.send(t, &Event::RoomInvite { room, by });
        }
    }

    /// Whether `conn`, in `room`, may not speak there (a moderated room,
    /// and it is neither an operator nor voiced).
    pub(crate) fn silenced(&self, conn: Conn, room: u32) -> bool {
        self.has_mode(room, room_modes::MODERATED) && !self.is_voiced(conn, room)
    }
}
