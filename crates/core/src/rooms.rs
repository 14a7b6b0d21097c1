//! Entering and leaving rooms, telling a room, and the room fan-out that
//! knows seed clients from Plaza clients.

use std::sync::Arc;

use plaza_proto::{Event, ResultCode};

use crate::room::News;
use crate::{BusMsg, Conn, Effect, Hub, Recipient, Sink, State, Waiting};

impl Hub {
    /// Sends a room message to the members of `room` on this node:
    /// droppable for those that understand MESSAGES_MISSED, not for seed
    /// clients (a slow one is disconnected at the limit instead of losing
    /// messages it would never hear of). A room with no seed client costs
    /// no lookup per member.
    pub(crate) fn send_room_message(&self, room: u32, chat: &Event, sink: &mut impl Sink) {
        let room = &self.rooms[room as usize];
        let to = room.members().iter().map(|&conn| Recipient {
            conn,
            from: 0,
            droppable: room.seed == 0 || self.plaza(conn),
        });
        sink.fanout(std::slice::from_ref(chat), to);
    }

    pub(crate) fn leave_room(&mut self, conn: Conn, sink: &mut impl Sink) -> bool {
        let Some(room) = self.sessions.get_mut(&conn).and_then(|s| s.room.take()) else {
            return false;
        };
        let uid = self.uid(conn);
        let seed = !self.plaza(conn);
        let r = &mut self.rooms[room as usize];
        r.remove(conn);
        r.seed -= usize::from(seed);
        self.tell_room(room, News::Leave { uid }, sink);
        if self.cluster() {
            if let Some(name) = self.name_of(conn) {
                let msg = BusMsg::Leave {
                    name: name.to_string(),
                    uid,
                    room,
                };
                sink.effect(Effect::Publish { msg, ack: None });
            }
        }
        true
    }

    /// Enters `room`; `None` when the answer comes later (a cluster seat).
    pub(crate) fn enter(
        &mut self,
        conn: Conn,
        name: &Arc<str>,
        room: i32,
        sink: &mut impl Sink,
    ) -> Option<ResultCode> {
        let s = self.sessions.get_mut(&conn).expect("logged-in session exists");
        if s.room.is_some() {
            return Some(ResultCode::NOT_IN_LOBBY);
        }
        let Some(idx) = u32::try_from(room).ok().filter(|r| *r < self.config.rooms) else {
            return Some(ResultCode::INVALID_ROOM);
        };
        let here = self.rooms[idx as usize].len() + self.remote.members(idx).len();
        if here >= self.config.room_capacity {
            return Some(ResultCode::ROOM_FULL);
        }
        if self.config.node_tag != 0 {
            // The shared store decides, atomically across nodes.
            s.waiting = Some(Waiting::Seat { room: idx });
            let uid = self.uid(conn);
            sink.effect(Effect::ClaimSeat {
                conn,
                name: name.to_string(),
                uid,
                room: idx,
            });
            return None;
        }
        self.seat(conn, name, idx, sink);
        sink.send_members(conn, self.rooms[idx as usize].roster());
        Some(ResultCode::OK)
    }

    /// Puts `conn` in `room` and tells the members on this node.
    pub(crate) fn seat(&mut self, conn: Conn, name: &Arc<str>, room: u32, sink: &mut impl Sink) {
        let uid = self.uid(conn);
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.room = Some(room);
        }
        let news = News::Enter {
            uid,
            name: name.clone(),
        };
        self.tell_room(room, news, sink);
        let seed = !self.plaza(conn);
        let r = &mut self.rooms[room as usize];
        r.push(conn, uid, name, self.config.batch_presence);
        r.seed += usize::from(seed);
    }

    /// Turns Plaza's notifications on or off for `conn` (HELLO, or on for
    /// REGISTER and RESUME), keeping its room's count of seed clients.
    pub(crate) fn opt_in(&mut self, conn: Conn, on: bool) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.plaza == on {
            return;
        }
        s.plaza = on;
        if let Some(r) = s.room {
            let room = &mut self.rooms[r as usize];
            if on {
                room.seed -= 1;
            } else {
                room.seed += 1;
            }
        }
    }

    /// Sends a broadcast to every logged-in user on this node that
    /// understands it.
    pub(crate) fn send_broadcast(&self, broadcast: &Event, sink: &mut impl Sink) {
        let to = self.sessions.iter().filter_map(|(c, s)| {
            (s.plaza && matches!(s.state, State::User { .. })).then_some(Recipient::all(*c))
        });
        sink.fanout(std::slice::from_ref(broadcast), to);
    }

    /// Tells the members of `room` on this node some presence news.
    pub(crate) fn tell_room(&mut self, room: u32, news: News, sink: &mut impl Sink) {
        if self.rooms[room as usize].tell(news, self.config.batch_presence, sink) {
            self.listed.push(room);
        }
    }

    /// Sends the presence news that has waited its turn (see `room.rs`).
    /// With [`Config::batch_presence`], the caller runs this on a timer: the
    /// tick sets how long news waits.
    pub fn flush_presence(&mut self, sink: &mut impl Sink) {
        let mut i = 0;
        while let Some(&r) = self.listed.get(i) {
            let room = &mut self.rooms[r as usize];
            if room.tick() {
                room.flush(sink);
                room.listed = false;
                self.listed.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}
