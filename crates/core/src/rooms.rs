//! Entering and leaving rooms, telling a room, and the room fan-out that
//! knows seed clients from Plaza clients.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use plaza_proto::bus::Place;
use plaza_proto::{Event, HEADER_LEN, ResultCode, features};

use crate::room::News;
use crate::{BusMsg, Conn, Effect, Hub, Reach, Recipient, Sink, State, Waiting};

/// What a member said in a room: a message, or a notice (a message never
/// to be answered automatically: ROOM_NOTICE, IRC's NOTICE).
#[derive(Debug)]
pub(crate) struct Said {
    pub(crate) text: String,
    pub(crate) notice: bool,
}

impl Said {
    pub(crate) fn new(text: String, notice: bool) -> Self {
        Self { text, notice }
    }
}

impl Hub {
    /// Sends a room message to the members of `room` on this node, as the
    /// room's next message: ROOM_MESSAGE (345, kept in the room's history)
    /// to members with [`features::HISTORY`], the seed's 223 to the others;
    /// a notice as ROOM_NOTICE (354, kept so) to the members among them
    /// with [`features::NOTICES`], as 345 or 223 to the others.
    /// Droppable for those that understand MESSAGES_MISSED, not for seed
    /// clients (a slow one is disconnected at the limit instead of losing
    /// messages it would never hear of). A room whose members all take the
    /// same form costs no lookup per member. `place`: where the cluster
    /// numbered it (`numbering.rs`); `None`: this node numbers it.
    pub(crate) fn room_message(
        &mut self,
        room: u32,
        from: &str,
        said: Said,
        place: Option<Place>,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let Said {
            text: message,
            notice,
        } = said;
        let limits = self.config.history;
        match place {
            // Numbered by the cluster (`numbering.rs`).
            Some(p) if !self.rooms[room as usize].history.take(p) => {
                return tracing::debug!(room, seq = p.seq, "a room message delivered here already skipped");
            }
            Some(p) => self.epochs.set(room, p.epoch.get()),
            None => self.number_here(room),
        }
        let r = &mut self.rooms[room as usize];
        let seq = r.history.next();
        // Made once: for the members with history and the room's history
        // (and not at all when neither wants it).
        let packet = (limits.messages > 0 || r.sequenced > 0).then(|| {
            let mut packet = BytesMut::with_capacity(HEADER_LEN + 15 + from.len() + message.len());
            if notice {
                plaza_proto::put_room_notice(&mut packet, room, seq, from, &message);
            } else {
                plaza_proto::put_room_message(&mut packet, room, seq, from, &message);
            }
            packet.freeze()
        });
        // A clone only when it is sent too (a clone shares the buffer, at
        // the cost of an allocation).
        let sent = if r.sequenced > 0 { packet.clone() } else { None };
        r.history.push(packet, now, &limits);
        let r = &self.rooms[room as usize];
        // Some(history) for a member that reads; None for a held seat.
        let history = |conn: &Conn| self.sessions.get(conn).map(|s| s.history);
        let to = |conn: &Conn| Recipient {
            conn: *conn,
            from: 0,
            droppable: r.seed == 0 || self.plaza(*conn),
        };
        let (sequenced, reading) = (r.sequenced, r.len() - r.held);
        if sequenced < reading {
            let chat = Event::RoomChat {
                name: from.to_owned(),
                message,
            };
            let all = sequenced == 0 && r.held == 0;
            let to = r
                .members()
                .iter()
                .filter(|c| all || history(c) == Some(false))
                .map(to);
            sink.fanout(std::slice::from_ref(&chat), to);
        }
        if let Some(packet) = sent {
            let all = sequenced == reading && r.held == 0;
            let reads = |c: &&Conn| all || history(c) == Some(true);
            if !notice {
                return sink.fanout_packet(&packet, now, r.members().iter().filter(reads).map(to));
            }
            // A notice: as it is kept to those that know notices, as a
            // ROOM_MESSAGE (one copy for all of them) to the others.
            let knows = |c: &&Conn| self.sessions.get(*c).is_some_and(|s| s.notices);
            let (knowing, plain) = (
                |c: &&Conn| reads(c) && knows(c),
                |c: &&Conn| reads(c) && !knows(c),
            );
            sink.fanout_packet(&packet, now, r.members().iter().filter(knowing).map(to));
            if r.members().iter().any(|c| plain(&c)) {
                let message = plaza_proto::without_notice(&packet);
                sink.fanout_packet(&message, now, r.members().iter().filter(plain).map(to));
            }
        }
    }

    pub(crate) fn leave_room(&mut self, conn: Conn, sink: &mut impl Sink) -> bool {
        let Some(room) = self.sessions.get_mut(&conn).and_then(|s| s.room.take()) else {
            return false;
        };
        let (seed, history) = self.forms(conn);
        let r = &mut self.rooms[room as usize];
        // Its id in the list (one that took a held seat back has the id it
        // had then).
        let uid = r.remove(conn).unwrap_or(conn);
        r.seed -= usize::from(seed);
        r.sequenced -= usize::from(history);
        self.tell_room(room, News::Leave { uid }, sink);
        if self.cluster() {
            if let Some(name) = self.name_of(conn) {
                publish_leave(name.to_string(), uid, room, sink);
            }
            self.lose_interest(room, sink);
        }
        true
    }

    /// Enters `room`; `None` when the answer comes later (a cluster seat).
    pub(crate) fn enter(
        &mut self,
        conn: Conn,
        name: &Arc<str>,
        room: i32,
        key: &str,
        rejoin: Option<(u64, u64)>,
        sink: &mut impl Sink,
    ) -> Option<ResultCode> {
        if self.sessions.get(&conn).is_some_and(|s| s.room.is_some()) {
            return Some(ResultCode::NOT_IN_LOBBY);
        }
        let Some(idx) = u32::try_from(room).ok().filter(|r| *r < self.config.rooms) else {
            return Some(ResultCode::INVALID_ROOM);
        };
        // A seat another node holds for this user (it dropped there) is on
        // its way out: it does not count.
        let mine = (self.remote.users.get(&**name)).is_some_and(|u| u.room == Some(idx));
        let here = self.rooms[idx as usize].len() + self.remote.members(idx).len() - usize::from(mine);
        if here >= self.config.room_capacity {
            return Some(ResultCode::ROOM_FULL);
        }
        if let Some(code) = self.refused_by_modes(idx, here, key, name) {
            return Some(code);
        }
        if self.config.node_tag != 0 {
            // The shared store decides, atomically across nodes.
            let s = self.sessions.get_mut(&conn).expect("logged-in session exists");
            s.waiting = Some(Waiting::Seat {
                room: idx,
                rejoin: rejoin.map(Box::new),
            });
            let uid = self.uid(conn);
            let fill = !self.interested(idx);
            self.claim(idx, sink);
            sink.effect(Effect::ClaimSeat {
                conn,
                name: name.to_string(),
                uid,
                room: idx,
                fill,
                key: key.to_owned(),
            });
            return None;
        }
        // The first member of an empty room is its operator (`ops.rs`).
        let first = self.rooms[idx as usize].is_empty();
        // An invitation lets one in once.
        let invited = plaza_proto::name_key(name);
        self.rooms[idx as usize].invited.retain(|n| *n != invited);
        self.seat(conn, name, idx, self.uid(conn), true, sink);
        if first {
            self.rooms[idx as usize].roles = vec![(self.uid(conn), plaza_proto::roles::OPERATOR)];
        }
        self.tell_room_state(conn, idx, sink);
        sink.send_members(conn, self.rooms[idx as usize].roster());
        Some(ResultCode::OK)
    }

    /// Puts `conn` in `room` as member `uid`, and tells the members on this
    /// node if `tell` (not for a seat that moved here: they know it).
    pub(crate) fn seat(
        &mut self,
        conn: Conn,
        name: &Arc<str>,
        room: u32,
        uid: u64,
        tell: bool,
        sink: &mut impl Sink,
    ) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.room = Some(room);
        }
        if tell {
            let news = News::Enter {
                uid,
                name: name.clone(),
            };
            self.tell_room(room, news, sink);
        }
        let (seed, history) = self.forms(conn);
        let r = &mut self.rooms[room as usize];
        r.push(conn, uid, name, self.config.batch_presence);
        r.seed += usize::from(seed);
        r.sequenced += usize::from(history);
    }

    /// Whether `conn` is a seed client, and whether it takes room messages
    /// with sequence numbers.
    pub(crate) fn forms(&self, conn: Conn) -> (bool, bool) {
        self.sessions
            .get(&conn)
            .map_or((true, false), |s| (!s.plaza, s.history))
    }

    /// The features in use on `conn` (see [`plaza_proto::features`]).
    pub(crate) fn features(&self, conn: Conn) -> u32 {
        self.sessions.get(&conn).map_or(0, |s| {
            (u32::from(s.plaza) * features::NOTIFICATIONS)
                | (u32::from(s.history) * features::HISTORY)
                | (u32::from(s.notices) * features::NOTICES)
        })
    }

    /// Sets the features in use on `conn` (HELLO; REGISTER and RESUME turn
    /// notifications on, HISTORY and ROOM_REJOIN history), keeping its
    /// room's counts of seed clients and of sequenced members.
    pub(crate) fn set_features(&mut self, conn: Conn, features: u32) {
        let (old_seed, old_history) = self.forms(conn);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.plaza = features & features::NOTIFICATIONS != 0;
        s.history = features & features::HISTORY != 0;
        s.notices = features & features::NOTICES != 0;
        if let Some(r) = s.room {
            let room = &mut self.rooms[r as usize];
            room.seed = room.seed + usize::from(!s.plaza) - usize::from(old_seed);
            room.sequenced = room.sequenced + usize::from(s.history) - usize::from(old_history);
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
        if let News::Leave { uid } = news {
            // A member that leaves has no role any longer (`ops.rs`).
            self.rooms[room as usize].set_roles(uid, 0);
        }
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

/// Cluster: frees seat `uid` of `name` in `room` in the shared store (if it
/// is still this node's) and tells the other nodes.
pub(crate) fn publish_leave(name: String, uid: u64, room: u32, sink: &mut impl Sink) {
    let msg = BusMsg::Leave { name, uid, room };
    sink.effect(Effect::Publish {
        msg,
        ack: None,
        reach: Reach::Every,
    });
}
