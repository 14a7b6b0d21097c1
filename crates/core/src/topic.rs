//! Room topics. Any member of a room may set its topic (but a muted one;
//! only its operators in a room with the topic mode, `modes.rs`); the room keeps it, tells
//! its members when it changes and each entrant before its member list.
//! A topic is stamped with the wall-clock time it was set, and the newest
//! wins: in cluster mode every node, and the shared store that a node
//! reads when it starts following the room, end with the same one, and a
//! copy that comes back or comes late changes nothing.

use std::sync::Arc;
use std::time::Instant;

use plaza_proto::{Event, ResultCode};

use crate::{BusMsg, Conn, Hub, Sink, Waiting};

/// A room's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topic {
    /// When it was set, in Unix microseconds (its version).
    pub(crate) at: u64,
    pub(crate) by: String,
    /// "": cleared.
    pub(crate) text: String,
}

impl Topic {
    fn event(&self, room: u32) -> Event {
        Event::RoomTopic {
            room,
            at: self.at / 1_000_000,
            by: self.by.clone(),
            topic: self.text.clone(),
        }
    }
}

impl Hub {
    /// ROOM_TOPIC from `conn`, logged in as `name`.
    pub(crate) fn set_topic(
        &mut self,
        conn: Conn,
        name: &Arc<str>,
        text: String,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let Some(room) = self.sessions.get(&conn).and_then(|s| s.room) else {
            return sink.send(conn, &Event::RoomTopicResult(ResultCode::USER_IN_LOBBY));
        };
        if self.is_muted(name, now) {
            return sink.send(conn, &Event::RoomTopicResult(ResultCode::MUTED));
        }
        if self.has_mode(room, plaza_proto::room_modes::TOPIC) && !self.is_operator(conn, room) {
            return sink.send(conn, &Event::RoomTopicResult(ResultCode::NOT_ROOM_OPERATOR));
        }
        if !self.may_chat(conn, None, now) {
            return sink.send(conn, &Event::RoomTopicResult(ResultCode::RATE_LIMITED));
        }
        // Later than the room's, even if this clock is behind the one that
        // set that: the newest request wins.
        let last = self.rooms[room as usize].topic.as_ref().map_or(0, |t| t.at);
        let topic = Topic {
            at: (self.config.wall_clock)().max(last + 1),
            by: name.to_string(),
            text,
        };
        self.take_topic(room, topic.clone(), sink);
        if !self.cluster() {
            return sink.send(conn, &Event::RoomTopicResult(ResultCode::OK));
        }
        // Kept in the shared store and told to the nodes that follow the
        // room (its copy here changes nothing: it is not newer).
        let msg = BusMsg::Topic {
            room,
            at: topic.at,
            by: topic.by,
            topic: topic.text,
        };
        self.publish(conn, msg, Waiting::Ack(Event::RoomTopicResult), sink);
    }

    /// `topic` for `room` if it is newer than the room's: kept, and told
    /// to the members on this node. Returns whether it was.
    pub(crate) fn take_topic(&mut self, room: u32, topic: Topic, sink: &mut impl Sink) -> bool {
        let Some(r) = self.rooms.get_mut(room as usize) else {
            return false;
        };
        if r.topic.as_ref().is_some_and(|t| t.at >= topic.at) {
            return false;
        }
        let event = topic.event(room);
        r.topic = Some(Box::new(topic));
        self.tell_plaza_members(room, &event, sink);
        true
    }

    /// Tells `conn`, entering `room`, what the room is before its member
    /// list: its topic, its modes and its members' roles.
    pub(crate) fn tell_room_state(&self, conn: Conn, room: u32, sink: &mut impl Sink) {
        self.tell_topic(conn, room, sink);
        self.tell_modes(conn, room, sink);
        self.tell_roles(conn, room, sink);
    }

    /// Tells `conn`, entering `room`, its topic (if it has one and `conn`
    /// takes Plaza's notifications): before the member list.
    fn tell_topic(&self, conn: Conn, room: u32, sink: &mut impl Sink) {
        let topic = self.rooms.get(room as usize).and_then(|r| r.topic.as_ref());
        if let Some(t) = topic.filter(|t| !t.text.is_empty() && self.plaza(conn)) {
            sink.send(conn, &t.event(room));
        }
    }
}
