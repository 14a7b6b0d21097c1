//! Cluster mode: what the hub knows of other nodes, and how it reacts to
//! what they announce.
//!
//! Every node keeps a replica of the users and room members of the others,
//! fed in order by the bus (one subscription per node, in the server). The
//! replica answers user lists, whisper and admin targets, and who else is in
//! a room; the shared store stays the authority for room seats (capacity)
//! and for logins (duplicate names). Messages are idempotent state changes,
//! so a snapshot and the messages that overlap it agree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use plaza_proto::{Event, ResultCode};

use crate::room::News;
use crate::rooms::Said;
use crate::{BusMsg, Conn, Hub, Sink, State, Waiting};

/// A user logged in on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Account name.
    pub name: String,
    /// Member id.
    pub uid: u64,
    /// Room, if in one.
    pub room: Option<u32>,
}

/// A room member as the shared store lists it: (member id, node, name).
pub type SeatHolder = (u64, u64, String);

/// The shared store's verdict on a seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatOutcome {
    /// Seated; every member of the room on every node, this one included,
    /// by (member id, node, name).
    Seated(Vec<SeatHolder>),
    /// The room is full (its capacity, or its member limit).
    Full,
    /// The room has a key, and the claim did not give it.
    BadKey,
    /// The room is invite-only, and the user was not invited.
    NotInvited,
    /// The user's own seat, held on another node while it was away
    /// (`away.rs`), is in the room under this member id: claim that one,
    /// so the seat moves here and the members see nothing.
    Held(u64),
    /// The store could not answer.
    Unavailable,
}

/// The tag in the member ids of node `node` (1..=65535): ids above 65,535
/// wrap.
pub fn node_tag(node: u64) -> u16 {
    u16::try_from((node.max(1) - 1) % 65_535 + 1).expect("in range")
}

#[derive(Debug)]
pub(crate) struct RemoteUser {
    pub(crate) node: u64,
    pub(crate) uid: u64,
    pub(crate) room: Option<u32>,
}

/// Users on other nodes and the rooms they are in.
#[derive(Debug, Default)]
pub(crate) struct Replica {
    pub(crate) users: HashMap<Arc<str>, RemoteUser>,
    /// Each room's remote members: (member id, its node's tag, name). A
    /// member id carries the tag of the node that gave it, which is not
    /// its node's after a held seat moved (`away.rs`).
    pub(crate) rooms: HashMap<u32, Vec<(u64, u16, Arc<str>)>>,
}

impl Replica {
    pub(crate) fn has_members(&self, room: u32) -> bool {
        self.rooms.get(&room).is_some_and(|m| !m.is_empty())
    }

    pub(crate) fn members(&self, room: u32) -> &[(u64, u16, Arc<str>)] {
        self.rooms.get(&room).map_or(&[], Vec::as_slice)
    }
}

impl Hub {
    /// Users of other nodes kept here: the members of followed rooms.
    pub fn remote_users(&self) -> usize {
        self.remote.users.len()
    }

    /// Where a user logged in on another node is: (node, room).
    pub fn remote_user(&self, name: &str) -> Option<(u64, Option<u32>)> {
        self.remote.users.get(name).map(|u| (u.node, u.room))
    }

    /// This node's logged-in users as (name, session, member id, room), for
    /// rewriting its state in the shared store. The member id is the one
    /// its room knows it by (a session that took a held seat back has the
    /// seat's).
    pub fn local_entries(&self) -> Vec<(String, Conn, u64, Option<u32>)> {
        self.sessions
            .iter()
            .filter_map(|(c, s)| match &s.state {
                State::User { name } => {
                    let uid = s.room.and_then(|r| self.rooms[r as usize].uid_of(*c));
                    Some((name.to_string(), *c, uid.unwrap_or(self.uid(*c)), s.room))
                }
                _ => None,
            })
            .collect()
    }

    /// Seats held for users away from this node (`away.rs`), as (name,
    /// member id, room), for rewriting its state in the shared store.
    pub fn held_seats(&self) -> Vec<(String, u64, u32)> {
        self.away_seats()
            .map(|(name, ghost, room)| {
                let uid = self.rooms[room as usize].uid_of(ghost).unwrap_or(ghost);
                (name.to_string(), uid, room)
            })
            .collect()
    }

    pub(crate) fn remote(&mut self, node: u64, msg: BusMsg, now: Instant, sink: &mut impl Sink) {
        match msg {
            BusMsg::Online { name, uid } => self.put_remote(node, &name, uid, None, sink),
            BusMsg::Offline { name } => {
                if self
                    .remote
                    .users
                    .get(name.as_str())
                    .is_some_and(|u| u.node == node)
                {
                    self.drop_remote(&name, sink);
                }
            }
            BusMsg::Topic { room, at, by, topic } => {
                let text = topic;
                self.take_topic(room, crate::topic::Topic { at, by, text }, sink);
            }
            BusMsg::Role { room, uid, roles, by } => self.take_roles(room, uid, roles, &by, sink),
            BusMsg::Modes {
                room,
                at,
                by,
                flags,
                limit,
                key,
            } => {
                let modes = crate::modes::Modes {
                    at,
                    by,
                    flags,
                    limit,
                    key,
                };
                self.take_modes(room, modes, sink);
            }
            msg @ BusMsg::RoomKick { .. } => self.kicked_from_room(msg, sink),
            BusMsg::Invite { room, to, by } => self.invited_elsewhere(room, &to, by, sink),
            BusMsg::Enter { name, uid, room } => {
                // Away from here and back there: its held seat moved there
                // (then the members here know it), or goes first.
                self.back_elsewhere(&name, node, uid, room, sink);
                self.put_remote(node, &name, uid, Some(room), sink)
            }
            BusMsg::Leave { name, uid, room } => {
                let here = self.remote.users.get(name.as_str());
                if here.is_some_and(|u| u.node == node && u.room == Some(room)) {
                    self.put_remote(node, &name, uid, None, sink);
                }
            }
            BusMsg::RoomChat {
                room,
                from,
                message,
                place,
                notice,
            } => {
                if !self.interested(room) {
                    // Its channel is being left.
                    return;
                }
                if let Some(members) = self.rooms.get_mut(room as usize) {
                    members.flush(sink);
                    self.room_message(room, &from, Said::new(message, notice), place, now, sink);
                    if place.is_some() {
                        self.release_parked(room, place, now, sink);
                    }
                }
            }
            BusMsg::Broadcast { from, message } => {
                self.send_broadcast(&Event::Broadcast { from, message }, sink)
            }
            BusMsg::Whisper {
                to,
                from,
                message,
                notice,
            } => match self.conn_of(&to) {
                Some(c) if self.plaza(c) => sink.send(c, &self.whisper(c, from, message, notice)),
                // The sender's node could not know; it was told 0.
                Some(c) => tracing::info!(conn = c, "a whisper from another node to a seed client dropped"),
                // It dropped as the whisper came: kept if it is away.
                None => {
                    self.keep_whisper(&to, &from, &message, notice);
                }
            },
            BusMsg::Kick { name, by } => match self.conn_of(&name) {
                Some(c) => self.kick(c, &by, sink),
                // Away (its mark sent the kick here): no longer.
                None => self.end_away(&name, sink),
            },
            BusMsg::Mute { name, seconds } => match self.conn_of(&name) {
                Some(c) => self.mute(c, seconds, now, sink),
                // Away (its mark sent the mute here): kept for its return.
                None if self.is_away(&name) => {
                    let key = self.away_key(&name);
                    self.mute_name(key, seconds, now, sink);
                }
                None => {}
            },
        }
    }

    /// Replaces what the replica holds for `node` with `users`.
    pub(crate) fn node_state(&mut self, node: u64, users: Vec<RemoteEntry>, sink: &mut impl Sink) {
        let keep: std::collections::HashSet<&str> = users.iter().map(|u| u.name.as_str()).collect();
        let gone: Vec<Arc<str>> = self
            .remote
            .users
            .iter()
            .filter(|(n, u)| u.node == node && !keep.contains(&***n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.drop_remote(&name, sink);
        }
        for u in users {
            self.put_remote(node, &u.name, u.uid, u.room, sink);
        }
    }

    /// Up to `missed` messages from `node` went by unseen, on `room`'s
    /// channel or (`None`) the bus. A followed room's list becomes
    /// `members` (read again), its history is marked with a gap and its
    /// local members that take notices are told (341) that they may have
    /// missed messages.
    pub(crate) fn bus_gap(
        &mut self,
        node: u64,
        missed: u64,
        room: Option<u32>,
        members: &[SeatHolder],
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let Some(room) = room.filter(|r| self.interested(*r)) else {
            return;
        };
        tracing::debug!(node, missed, room, "a gap in a followed room");
        self.seated_members(room, members, sink);
        self.rooms[room as usize].history.gap();
        self.release_parked(room, None, now, sink);
        self.tell_missed(room, u32::try_from(missed).unwrap_or(u32::MAX), sink);
    }

    /// Tells `room`'s members that take notices they may have missed
    /// `count` messages (0: how many is unknown) that cannot be fetched.
    fn tell_missed(&self, room: u32, count: u32, sink: &mut impl Sink) {
        let missed = Event::Missed { count, seqs: None };
        for c in self.rooms[room as usize]
            .members()
            .iter()
            .filter(|c| self.plaza(**c))
        {
            sink.send(*c, &missed);
        }
    }

    /// The members of every followed room, read again: the replica becomes
    /// exactly them (local members told of any difference). After a `cut`
    /// each room's history is marked with a gap (a rejoin across it cannot
    /// know what went by), and where the members changed unseen, messages
    /// surely went by too: the room's members are told (341, count 0:
    /// unknown) even if no stamp ever shows it.
    pub(crate) fn snapshot(
        &mut self,
        rooms: Vec<(u32, Vec<SeatHolder>)>,
        cut: bool,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        if cut {
            for (room, members) in &rooms {
                self.cut(*room, members, sink);
                // Their copies may have gone by unseen.
                self.release_parked(*room, None, now, sink);
            }
        }
        let listed: std::collections::HashSet<u32> = rooms.iter().map(|(r, _)| *r).collect();
        let unlisted: Vec<Arc<str>> = self
            .remote
            .users
            .iter()
            .filter(|(_, u)| !u.room.is_some_and(|r| listed.contains(&r)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in unlisted {
            self.drop_remote(&name, sink);
        }
        for (room, members) in rooms {
            self.seated_members(room, &members, sink);
        }
    }

    fn cut(&mut self, room: u32, members: &[SeatHolder], sink: &mut impl Sink) {
        if !self.interested(room) {
            return;
        }
        let own = self.config.node_tag;
        let mut now: Vec<u64> = members
            .iter()
            .filter(|(_, node, _)| node_tag(*node) != own)
            .map(|(uid, _, _)| *uid)
            .collect();
        let mut before: Vec<u64> = self.remote.members(room).iter().map(|(uid, _, _)| *uid).collect();
        now.sort_unstable();
        before.sort_unstable();
        self.rooms[room as usize].history.gap();
        if now != before {
            self.tell_missed(room, 0, sink);
        }
    }

    /// A page of every node's users has come from the shared store.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn users_listed(
        &mut self,
        conn: Conn,
        result: ResultCode,
        total: u32,
        names: Vec<String>,
        more: bool,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let waiting = self.sessions.get(&conn).map(|s| &s.waiting);
        if !matches!(waiting, Some(Some(Waiting::Users))) {
            return;
        }
        let list = match result {
            ResultCode::OK => Event::UserList {
                result,
                total,
                names,
                more,
            },
            _ => Event::UserList {
                result,
                total: 0,
                names: Vec::new(),
                more: false,
            },
        };
        sink.send(conn, &list);
        self.finish(conn, now, sink);
    }

    /// Records `name` on `node`, in `room`, telling local room members what
    /// changed (nothing, if nothing did).
    pub(crate) fn put_remote(
        &mut self,
        node: u64,
        name: &str,
        uid: u64,
        room: Option<u32>,
        sink: &mut impl Sink,
    ) {
        if room.is_some_and(|r| r >= self.config.rooms) {
            tracing::warn!(
                node,
                name,
                ?room,
                "ignoring a remote member of a room this node does not have"
            );
            return;
        }
        // The replica keeps the members of followed rooms only.
        let Some(room) = room.filter(|r| self.interested(*r)) else {
            if self.remote.users.contains_key(name) {
                self.drop_remote(name, sink);
            }
            return;
        };
        let same = self.remote.users.get_mut(name);
        if let Some(u) = same.filter(|u| u.uid == uid && u.room == Some(room)) {
            // The same seat; on another node if it moved (`away.rs`): the
            // members know it already.
            u.node = node;
            let list = self.remote.rooms.get_mut(&room).into_iter().flatten();
            if let Some(m) = list.into_iter().find(|(id, _, _)| *id == uid) {
                m.1 = node_tag(node);
            }
            return;
        }
        let room = Some(room);
        let before = self.remote.users.get(name).map(|u| (u.node, u.uid, u.room));
        if before.is_some_and(|(_, _, r)| r.is_some()) {
            self.leave_remote_room_notify(name, sink);
        }
        let key = self.add_remote(node, name, uid, room);
        if let Some(r) = room {
            self.tell_room(r, News::Enter { uid, name: key }, sink);
        }
    }

    /// Records `name` on `node`, in `room`, telling nobody.
    pub(crate) fn add_remote(&mut self, node: u64, name: &str, uid: u64, room: Option<u32>) -> Arc<str> {
        let key: Arc<str> = match self.online.get(name) {
            Some(k) => k.clone(),
            None => name.into(),
        };
        self.online.insert(key.clone());
        self.remote
            .users
            .insert(key.clone(), RemoteUser { node, uid, room });
        if let Some(r) = room {
            (self.remote.rooms.entry(r).or_default()).push((uid, node_tag(node), key.clone()));
        }
        key
    }

    fn drop_remote(&mut self, name: &str, sink: &mut impl Sink) {
        self.leave_remote_room_notify(name, sink);
        self.remote.users.remove(name);
        if self.conn_of(name).is_none() {
            self.online.remove(name);
        }
    }

    fn leave_remote_room_notify(&mut self, name: &str, sink: &mut impl Sink) {
        if let Some((room, uid)) = self.leave_remote_room(name) {
            self.tell_room(room, News::Leave { uid }, sink);
        }
    }

    /// Takes `name` out of its remote room; returns (room, uid) for the
    /// caller to notify.
    pub(crate) fn leave_remote_room(&mut self, name: &str) -> Option<(u32, u64)> {
        let u = self.remote.users.get_mut(name)?;
        let room = u.room.take()?;
        let uid = u.uid;
        if let Some(m) = self.remote.rooms.get_mut(&room) {
            m.retain(|(id, _, _)| *id != uid);
            if m.is_empty() {
                self.remote.rooms.remove(&room);
            }
        }
        Some((room, uid))
    }
}
