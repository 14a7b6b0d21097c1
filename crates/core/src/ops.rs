//! Room roles: operators and voiced members. The member who enters an
//! empty room (empty on every node) becomes its operator; an operator, or
//! an admin, gives members a role or takes it away (ROOM_ROLE: operator,
//! or voice, which lets a member speak in a moderated room) and puts
//! members out of the room into the lobby (ROOM_KICK). A role lasts while
//! the member is in the room (a seat held while it is away included): a
//! room whose operators all left has none until an admin names one, as on
//! IRC. Members that take Plaza's notifications hear each change (363) and
//! each kick (366); an entrant hears the members' roles before its member
//! list. In cluster mode the shared store keeps each room's roles with its
//! seats: the seat script makes the first entrant of an empty room the
//! operator and hands a later entrant's node the roles.

use std::sync::Arc;

use plaza_proto::{Event, ResultCode, roles};

use crate::{BusMsg, Conn, Hub, Recipient, Sink, Waiting};

/// A member named in ROOM_ROLE, ROOM_KICK or ROOM_INVITE.
pub(crate) struct Member {
    uid: u64,
    /// Its name as the room lists it.
    name: String,
}

impl Hub {
    /// ROOM_ROLE from `conn` (`by`): `target` gets `role` (`on`) or loses
    /// it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn room_role(
        &mut self,
        conn: Conn,
        by: &Arc<str>,
        target: &str,
        role: u8,
        on: bool,
        sink: &mut impl Sink,
    ) {
        let found = match role {
            roles::OPERATOR | roles::VOICE => self.moderated(conn, target),
            // The decoder refuses the others; a front end might not.
            _ => Err(ResultCode::BAD_REQUEST),
        };
        let (room, member) = match found {
            Ok(found) => found,
            Err(code) => return sink.send(conn, &Event::RoomRoleResult(code)),
        };
        let old = self.rooms[room as usize].role_of(member.uid);
        let new = if on { old | role } else { old & !role };
        self.take_roles(room, member.uid, new, by, sink);
        if !self.cluster() {
            return sink.send(conn, &Event::RoomRoleResult(ResultCode::OK));
        }
        let msg = BusMsg::Role {
            room,
            uid: member.uid,
            roles: new,
            by: by.to_string(),
        };
        self.publish(conn, msg, Waiting::Ack(Event::RoomRoleResult), sink);
    }

    /// ROOM_KICK from `conn` (`by`): `target` is put out of the room.
    pub(crate) fn room_kick(
        &mut self,
        conn: Conn,
        by: &Arc<str>,
        target: &str,
        reason: String,
        sink: &mut impl Sink,
    ) {
        let found = match reason.len() <= plaza_proto::limits::REASON {
            true => self.moderated(conn, target),
            false => Err(ResultCode::BAD_REQUEST),
        };
        let (room, member) = match found {
            Ok(found) => found,
            Err(code) => return sink.send(conn, &Event::RoomKickResult(code)),
        };
        let msg = BusMsg::RoomKick {
            room,
            uid: member.uid,
            name: member.name,
            by: by.to_string(),
            reason,
        };
        if !self.cluster() {
            self.kicked_from_room(msg, sink);
            return sink.send(conn, &Event::RoomKickResult(ResultCode::OK));
        }
        self.kicked_from_room(msg.clone(), sink);
        self.publish(conn, msg, Waiting::Ack(Event::RoomKickResult), sink);
    }

    /// The room of `conn`, which may moderate it, and its member `target`.
    fn moderated(&self, conn: Conn, target: &str) -> Result<(u32, Member), ResultCode> {
        let s = self.sessions.get(&conn).ok_or(ResultCode::NOT_LOGGED_IN)?;
        let room = s.room.ok_or(ResultCode::USER_IN_LOBBY)?;
        if !self.is_operator(conn, room) {
            return Err(ResultCode::NOT_ROOM_OPERATOR);
        }
        if let Some(member) = self.member_named(room, target) {
            return Ok((room, member));
        }
        let known = self.conn_of(target).is_some() || self.remote.users.contains_key(target);
        Err(if known || self.is_away(target) {
            ResultCode::NOT_IN_YOUR_ROOM
        } else {
            ResultCode::USER_NOT_FOUND
        })
    }

    /// `room`'s member called `name` (as name keys compare), on this node
    /// (a held seat included) or another.
    pub(crate) fn member_named(&self, room: u32, name: &str) -> Option<Member> {
        let key = plaza_proto::name_key(name);
        let same = |n: &str| plaza_proto::name_key(n) == key;
        let local = self.rooms[room as usize].roster().iter().find(|(_, n)| same(n));
        let remote = || {
            let found = self.remote.members(room).iter().find(|(_, _, n)| same(n));
            found.map(|(uid, _, n)| (*uid, &**n))
        };
        local.or_else(remote).map(|(uid, name)| Member {
            uid,
            name: name.to_owned(),
        })
    }

    /// Whether `conn`, in `room`, is one of its operators or an admin.
    pub(crate) fn is_operator(&self, conn: Conn, room: u32) -> bool {
        let r = &self.rooms[room as usize];
        let admin = self.sessions.get(&conn).is_some_and(|s| s.admin);
        admin
            || r.uid_of(conn)
                .is_some_and(|uid| r.role_of(uid) & roles::OPERATOR != 0)
    }

    /// Whether `conn`, in `room`, may speak when it is moderated: one of
    /// its operators or voiced members, or an admin.
    pub(crate) fn is_voiced(&self, conn: Conn, room: u32) -> bool {
        let r = &self.rooms[room as usize];
        self.is_operator(conn, room)
            || r.uid_of(conn)
                .is_some_and(|uid| r.role_of(uid) & roles::VOICE != 0)
    }

    /// Member `uid` of `room` has `new` roles now, by `by`'s doing: kept,
    /// and told to the members here if they changed.
    pub(crate) fn take_roles(&mut self, room: u32, uid: u64, new: u8, by: &str, sink: &mut impl Sink) {
        let Some(r) = self.rooms.get_mut(room as usize) else {
            return;
        };
        if !r.set_roles(uid, new) {
            return;
        }
        let event = Event::RoomRole {
            room,
            uid,
            roles: new,
            by: by.to_owned(),
        };
        self.tell_plaza_members(room, &event, sink);
    }

    /// A room kick (`msg`, a [`BusMsg::RoomKick`]), asked here or on
    /// another node: the members here are told, and the member is put out
    /// of the room if its seat is here.
    pub(crate) fn kicked_from_room(&mut self, msg: BusMsg, sink: &mut impl Sink) {
        let BusMsg::RoomKick {
            room,
            uid,
            name,
            by,
            reason,
        } = msg
        else {
            return;
        };
        if room >= self.config.rooms {
            return;
        }
        let event = Event::RoomKicked {
            room,
            uid,
            name: name.clone(),
            by,
            reason,
        };
        self.tell_plaza_members(room, &event, sink);
        let r = &self.rooms[room as usize];
        let Some(pos) = r.roster().iter().position(|(u, _)| u == uid) else {
            return;
        };
        let conn = r.members()[pos];
        if !self.sessions.contains_key(&conn) {
            // A seat held for a member who dropped: given up.
            return self.give_up_seat(&name, sink);
        }
        if !self.plaza(conn) {
            // A seed client has no notification for it: it is told it left.
            sink.send(conn, &Event::RoomLeaveResult(ResultCode::OK));
        }
        self.leave_room(conn, sink);
    }

    /// Tells an entrant of `room` (before its member list) its members'
    /// roles, if it takes Plaza's notifications.
    pub(crate) fn tell_roles(&self, conn: Conn, room: u32, sink: &mut impl Sink) {
        if !self.plaza(conn) {
            return;
        }
        // The entrant is seated already: its own role is in the roster's.
        let r = &self.rooms[room as usize];
        let remote = self.remote.members(room);
        for &(uid, roles) in &r.roles {
            let member = r.roster().iter().any(|(u, _)| u == uid) || remote.iter().any(|(u, _, _)| *u == uid);
            if member {
                let by = String::new();
                sink.send(conn, &Event::RoomRole { room, uid, roles, by });
            }
        }
    }

    /// `room`'s members' roles, as the shared store had them when this
    /// node took a seat in it.
    pub(crate) fn set_roles(&mut self, room: u32, roles: Vec<(u64, u8)>) {
        if let Some(r) = self.rooms.get_mut(room as usize) {
            r.roles = roles;
        }
    }

    /// Tells `room`'s members on this node that take Plaza's
    /// notifications `event`, in one fan-out.
    pub(crate) fn tell_plaza_members(&self, room: u32, event: &Event, sink: &mut impl Sink) {
        let to = (self.rooms[room as usize].members().iter())
            .filter(|c| self.plaza(**c))
            .map(|c| Recipient::all(*c));
        sink.fanout(std::slice::from_ref(event), to);
    }
}
