//! Room chat: the seed's ROOM_CHAT (221), and ROOM_SEND (350), which
//! carries the client's own message id so that a resend (after a drop, when
//! the client could not know whether the first try arrived) is answered
//! again and not delivered twice.
//!
//! Ids are remembered per account name, the last [`SEND_IDS`] for at most
//! [`SEND_ID_WINDOW`], on the node that delivered the message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plaza_proto::bus::Place;
use plaza_proto::{Event, ResultCode};

use crate::numbering::Chat;
use crate::rooms::Said;
use crate::{BusMsg, Conn, Hub, Sink, Waiting};

/// Message ids remembered per user.
pub const SEND_IDS: usize = 64;
/// How long a message id is remembered.
pub const SEND_ID_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Sent {
    id: u64,
    seq: u64,
    at: Instant,
}

/// The message ids each user sent lately, with the sequence numbers their
/// messages got.
#[derive(Debug, Default)]
pub(crate) struct SentIds(HashMap<Arc<str>, VecDeque<Sent>>);

impl SentIds {
    fn find(&self, name: &str, id: u64) -> Option<u64> {
        let sent = self.0.get(name)?;
        sent.iter().find(|s| s.id == id).map(|s| s.seq)
    }

    fn record(&mut self, name: &Arc<str>, id: u64, seq: u64, now: Instant) {
        let sent = self.0.entry(name.clone()).or_default();
        if sent.len() == SEND_IDS {
            sent.pop_front();
        }
        sent.push_back(Sent { id, seq, at: now });
    }

    /// Forgets ids older than the window.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.0.retain(|_, sent| {
            while sent
                .front()
                .is_some_and(|s| now.saturating_duration_since(s.at) > SEND_ID_WINDOW)
            {
                sent.pop_front();
            }
            !sent.is_empty()
        });
    }
}

impl Hub {
    /// ROOM_CHAT (`id` `None`), ROOM_SEND or ROOM_NOTICE (`said.notice`)
    /// from `conn`, logged in as `name`.
    pub(crate) fn room_chat(
        &mut self,
        conn: Conn,
        name: &Arc<str>,
        said: Said,
        id: Option<u64>,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let send = id;
        let reply = |result, seq| match id {
            None => Event::RoomChatResult(result),
            Some(_) => Event::RoomSendResult { result, seq },
        };
        let room = self.sessions.get(&conn).and_then(|s| s.room);
        let Some(room) = room else {
            return sink.send(conn, &reply(ResultCode::USER_IN_LOBBY, 0));
        };
        if self.is_muted(name, now) {
            return sink.send(conn, &reply(ResultCode::MUTED, 0));
        }
        if self.silenced(conn, room) {
            return sink.send(conn, &reply(ResultCode::MODERATED, 0));
        }
        let id = id.filter(|id| *id != 0);
        if let Some(seq) = id.and_then(|id| self.sent_ids.find(name, id)) {
            // Delivered already: the same answer, nothing delivered twice.
            return sink.send(conn, &reply(ResultCode::OK, seq));
        }
        if !self.may_chat(conn, Some(room), now) {
            return sink.send(conn, &reply(ResultCode::RATE_LIMITED, 0));
        }
        let members = &mut self.rooms[room as usize];
        // Whoever hears this has heard the sender come in.
        members.flush(sink);
        if self.remote.has_members(room) {
            // Members on other nodes: the cluster numbers it, and it is
            // delivered here when it comes back (`numbering.rs`).
            let h = &members.history;
            let known = Place::new(h.epoch(), h.next() - 1);
            let msg = BusMsg::RoomChat {
                room,
                from: name.to_string(),
                message: said.text.clone(),
                place: known,
                notice: said.notice,
            };
            let chat = Chat { room, send, said };
            return self.publish(conn, msg, Waiting::Chat(Box::new(chat)), sink);
        }
        self.number_here(room);
        let seq = self.rooms[room as usize].history.next();
        if let Some(id) = id {
            self.sent_ids.record(name, id, seq, now);
        }
        sink.send(conn, &reply(ResultCode::OK, seq));
        self.room_message(room, name, said, None, now, sink);
    }

    /// A ROOM_SEND whose message the cluster took (`ok`) or not: answered,
    /// and its id (if any) remembered only if it did (a resend of one that
    /// did not is delivered again).
    pub(crate) fn sent(&mut self, conn: Conn, id: u64, seq: u64, ok: bool, now: Instant) -> Event {
        if ok && id != 0 {
            if let Some(name) = self.name_of(conn).cloned() {
                self.sent_ids.record(&name, id, seq, now);
            }
        }
        let result = if ok {
            ResultCode::OK
        } else {
            ResultCode::SERVICE_UNAVAILABLE
        };
        Event::RoomSendResult { result, seq }
    }
}
