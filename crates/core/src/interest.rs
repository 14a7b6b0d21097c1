//! Cluster mode: which rooms this node follows, and seats from the shared
//! store.
//!
//! A node has an interest in a room while it has a member there or a seat
//! claim on its way ([`Room::claims`](crate::room::Room)). It tells the
//! server when that starts and ends ([`Effect::Interest`]): the server then
//! subscribes to the room's channel before the first seat claim, and
//! unsubscribes after the last member left. The replica holds the remote
//! members of followed rooms only; what it knew of a room it stops
//! following is forgotten, and what a seat answer lists (the store's
//! members at the moment of the seat) replaces it when it starts again.
//! Users on other nodes that are in no followed room are not kept at all:
//! the user list, whispers and admin commands find them in the shared
//! store's directory.

use std::collections::HashSet;
use std::time::Instant;

use plaza_proto::{Event, ResultCode};

use crate::room::News;
use crate::rooms::publish_leave;
use crate::{BusMsg, Conn, Effect, Hub, Reach, SeatHolder, SeatOutcome, Sink, State, Waiting};

impl Hub {
    /// Whether this node follows `room` (cluster mode): it has a member
    /// there or a seat claim on its way.
    pub(crate) fn interested(&self, room: u32) -> bool {
        self.rooms
            .get(room as usize)
            .is_some_and(|r| !r.is_empty() || r.claims > 0)
    }

    /// A seat claim for `room` is on its way: follow the room first.
    pub(crate) fn claim(&mut self, room: u32, sink: &mut impl Sink) {
        if !self.interested(room) {
            sink.effect(Effect::Interest { room, on: true });
        }
        self.rooms[room as usize].claims += 1;
    }

    /// A seat claim for `room` was answered.
    pub(crate) fn claimed(&mut self, room: u32) {
        if let Some(r) = self.rooms.get_mut(room as usize) {
            r.claims = r.claims.saturating_sub(1);
        }
    }

    /// Stops following `room` if nothing here needs it any more.
    pub(crate) fn lose_interest(&mut self, room: u32, sink: &mut impl Sink) {
        if !self.cluster() || self.interested(room) || room >= self.config.rooms {
            return;
        }
        sink.effect(Effect::Interest { room, on: false });
        // Senders still waiting for a copy from the room are gone (one
        // that is not is a member, and the room would still be followed).
        self.parked.retain(|p| p.room != room);
        let Some(members) = self.remote.rooms.remove(&room) else {
            return;
        };
        // Nobody here is told: nobody here is in the room.
        for (_, _, name) in members {
            self.remote.users.remove(&name);
            if self.conn_of(&name).is_none() {
                self.online.remove(&name);
            }
        }
    }

    /// A seat in `room` was taken: `members` is every member on every node
    /// as (member id, node, name), at the moment of the seat. Everything
    /// the bus brought for the room before that moment has reached the hub,
    /// so the replica's list for the room becomes exactly this (local
    /// members told of any difference).
    pub(crate) fn seated_members(&mut self, room: u32, members: &[SeatHolder], sink: &mut impl Sink) {
        let own = self.config.node_tag;
        let remote: Vec<&(u64, u64, String)> = members
            .iter()
            .filter(|(_, node, _)| crate::node_tag(*node) != own)
            .collect();
        let keep: HashSet<&str> = remote.iter().map(|(_, _, n)| n.as_str()).collect();
        let stale: Vec<_> = self
            .remote
            .members(room)
            .iter()
            .filter(|(_, _, n)| !keep.contains(&**n))
            .map(|(_, _, n)| n.clone())
            .collect();
        for name in stale {
            if let Some((room, uid)) = self.leave_remote_room(&name) {
                self.tell_room(room, News::Leave { uid }, sink);
            }
        }
        for (uid, node, name) in remote {
            self.put_remote(*node, name, *uid, Some(room), sink);
        }
    }

    /// Where `msg` goes: room chat, topics and operators' changes to the nodes with members in the room, a
    /// message for one user to the node the directory has it on, the rest
    /// to every node.
    pub(crate) fn reach(&self, msg: &BusMsg) -> Reach {
        match msg {
            BusMsg::RoomChat { room, .. }
            | BusMsg::Topic { room, .. }
            | BusMsg::Role { room, .. }
            | BusMsg::Modes { room, .. }
            | BusMsg::RoomKick { room, .. } => Reach::Nodes(self.nodes_in(*room)),
            BusMsg::Whisper { .. } | BusMsg::Kick { .. } | BusMsg::Mute { .. } | BusMsg::Invite { .. } => {
                Reach::User
            }
            _ => Reach::Every,
        }
    }

    /// The number of nodes, this one included, with a member in `room`.
    fn nodes_in(&self, room: u32) -> usize {
        let mut nodes: Vec<u16> = self.remote.members(room).iter().map(|(_, tag, _)| *tag).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes.len() + 1
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn seat_done(
        &mut self,
        conn: Conn,
        name: String,
        uid: u64,
        room: u32,
        outcome: SeatOutcome,
        now: Instant,
        sink: &mut impl Sink,
    ) {
        let rejoin = match self.sessions.get(&conn).map(|s| &s.waiting) {
            Some(Some(Waiting::Seat { rejoin, .. })) => rejoin.as_deref().copied(),
            _ => None,
        };
        let waiting = self.sessions.get(&conn).is_some_and(|s| {
            matches!(s.waiting, Some(Waiting::Seat { room: r, .. }) if r == room)
                && matches!(&s.state, State::User { name: n } if **n == *name)
        });
        if !waiting {
            // The session left (or was kicked) meanwhile: give the seat back.
            if let SeatOutcome::Seated(_) = outcome {
                publish_leave(name, uid, room, sink);
            }
            self.claimed(room);
            return self.lose_interest(room, sink);
        }
        let code = match outcome {
            SeatOutcome::Held(held) => {
                // Claimed again under the held seat's id (the claim still
                // counts: the room stays followed).
                let fill = self.rooms[room as usize].is_empty();
                // Its own seat: no key or limit applies.
                return sink.effect(Effect::ClaimSeat {
                    conn,
                    name,
                    uid: held,
                    room,
                    fill,
                    key: String::new(),
                });
            }
            SeatOutcome::Seated(members) => {
                // A seat that moved here from another node (the user's own,
                // held there while it was away): the members here know it
                // under this id already.
                let moved = (self.remote.users.get(name.as_str()))
                    .is_some_and(|u| u.uid == uid && u.room == Some(room));
                if moved {
                    self.leave_remote_room(&name);
                    self.remote.users.remove(name.as_str());
                }
                // While the claim still counts, so the room is followed.
                self.seated_members(room, &members, sink);
                self.claimed(room);
                let key = self.name_of(conn).cloned().expect("checked above");
                self.seat(conn, &key, room, uid, !moved, sink);
                // The shared store's list, as of the seat: sent as a room's
                // own list is (every front end knows a roster: the IRC
                // front end's JOIN is answered from it).
                let mut list = plaza_proto::Roster::default();
                for (uid, _, name) in &members {
                    list.push(*uid, name);
                }
                self.tell_room_state(conn, room, sink);
                sink.send_members(conn, &list);
                ResultCode::OK
            }
            SeatOutcome::Full => {
                self.claimed(room);
                ResultCode::ROOM_FULL
            }
            SeatOutcome::BadKey => {
                self.claimed(room);
                ResultCode::BAD_ROOM_KEY
            }
            SeatOutcome::NotInvited => {
                self.claimed(room);
                ResultCode::INVITE_ONLY_ROOM
            }
            SeatOutcome::Unavailable => {
                self.claimed(room);
                // The script may have run before the failure: give the seat
                // back (a no-op if it did not; the next resync also fixes it).
                publish_leave(name, uid, room, sink);
                ResultCode::SERVICE_UNAVAILABLE
            }
        };
        if code != ResultCode::OK {
            self.lose_interest(room, sink);
        }
        match rejoin {
            Some((epoch, after)) if code == ResultCode::OK => {
                self.replay(conn, room, epoch, after, now, sink)
            }
            Some(_) => sink.send(conn, &Event::Rejoin(plaza_proto::Replay::failed(code))),
            None => sink.send(conn, &Event::RoomEnterResult(code)),
        }
        self.finish(conn, now, sink);
    }
}
