//! The cluster bus: what nodes tell each other through Redis pub/sub.
//!
//! A message is its kind (u8), the origin node (u64 LE), then a body that
//! depends on the kind. A node stamps what it publishes: the kind's top bit
//! is set and the node id is followed by the message's number in that
//! node's stream (u64 LE, from 1) and the time it was published (u64 LE,
//! Unix microseconds), so a receiver can tell when it missed some and how
//! long delivery took ([`origin`]). Names are checked as a login checks them; chat
//! travels as the client frame it becomes (the chat header and all), so
//! every decoder of this crate checks it, and nodes of different versions
//! read each other's chat.

use std::num::NonZeroU64;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Event, HEADER_LEN, limits};

mod decode;

pub use decode::decode;

const KIND_ONLINE: u8 = 1;
const KIND_OFFLINE: u8 = 2;
const KIND_ENTER: u8 = 3;
const KIND_LEAVE: u8 = 4;
const KIND_ROOM: u8 = 5;
const KIND_BROADCAST: u8 = 6;
const KIND_WHISPER: u8 = 7;
const KIND_KICK: u8 = 8;
const KIND_MUTE: u8 = 9;
const KIND_RESET: u8 = 10;
/// Written by the cluster's Lua `bury`: origin 0, then the dead node's id
/// in ASCII.
pub const KIND_GONE: u8 = 11;
const KIND_DRAIN: u8 = 12;
/// An operator's notice: room (i64, -1 for every user), then the text.
const KIND_NOTICE: u8 = 13;
/// Nothing but a stamp: a node that published nothing for a while says
/// where its stream is, so a receiver that missed some finds out.
const KIND_TICK: u8 = 14;
const KIND_TOPIC: u8 = 15;
const KIND_ROLE: u8 = 16;
const KIND_ROOM_KICK: u8 = 17;
const KIND_MODES: u8 = 18;
const KIND_INVITE: u8 = 19;

/// Set in the kind byte of a stamped message.
const STAMPED: u8 = 0x80;

/// Where a message comes from: the node and, when stamped, its place in
/// that node's stream and when it was published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// The node.
    pub node: u64,
    /// 1, 2, 3... for each message the node publishes; 0: not stamped.
    pub seq: u64,
    /// When the node published it, in Unix microseconds.
    pub sent_us: u64,
}

impl From<u64> for Origin {
    fn from(node: u64) -> Self {
        Self {
            node,
            ..Self::default()
        }
    }
}

/// A room message's place in its room's history: the room's epoch and
/// the message's sequence number in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The room's history epoch (never 0: so an `Option<Place>` takes no
    /// more room than a place, and room chat no more than a whisper).
    pub epoch: NonZeroU64,
    /// The message's number in it (from 1).
    pub seq: u64,
}

impl Place {
    /// Message `seq` of `epoch`; `None` for epoch 0.
    pub fn new(epoch: u64, seq: u64) -> Option<Self> {
        Some(Self {
            epoch: NonZeroU64::new(epoch)?,
            seq,
        })
    }
}

/// The longest place trailer: two u64s in decimal and a space.
const PLACE_MAX: usize = 41;

/// A change one node announces to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMsg {
    /// `name` logged in on the sending node.
    Online {
        /// Account name.
        name: String,
        /// Member id.
        uid: u64,
    },
    /// `name` logged out (or disconnected) on the sending node.
    Offline {
        /// Account name.
        name: String,
    },
    /// `name` took a seat in `room` (sent by the shared store's seat script).
    Enter {
        /// Account name.
        name: String,
        /// Member id.
        uid: u64,
        /// Room.
        room: u32,
    },
    /// `name` left `room`.
    Leave {
        /// Account name.
        name: String,
        /// Member id.
        uid: u64,
        /// Room.
        room: u32,
    },
    /// Room chat for the members of `room`.
    RoomChat {
        /// Room.
        room: u32,
        /// Sender's name.
        from: String,
        /// The message.
        message: String,
        /// Received: its place in the room's history, which Redis gave it
        /// as it published it (written after the chat frame as ASCII
        /// `<epoch> <seq>`); `None` from a node that does not number.
        /// Sent: the place of the last message of the room this node knew,
        /// which Redis checks its own counter against (see the server's
        /// cluster scripts); it is not written.
        place: Option<Place>,
        /// A notice (ROOM_NOTICE) rather than a message.
        notice: bool,
    },
    /// A broadcast for every logged-in user.
    Broadcast {
        /// Sender's name.
        from: String,
        /// The message.
        message: String,
    },
    /// A whisper for `to`.
    Whisper {
        /// Recipient's name.
        to: String,
        /// Sender's name.
        from: String,
        /// The message.
        message: String,
        /// A notice (WHISPER_NOTICE) rather than a whisper.
        notice: bool,
    },
    /// Kick `name` (an admin or operator on another node asked).
    Kick {
        /// Account name.
        name: String,
        /// Who asked.
        by: String,
    },
    /// Mute `name` (`seconds` as in MUTE_REQUEST).
    Mute {
        /// Account name.
        name: String,
        /// Duration.
        seconds: u32,
    },
    /// `room`'s topic, set by `by` at `at` (Unix microseconds: the newest
    /// wins, on every node and in the shared store).
    Topic {
        /// Room.
        room: u32,
        /// When it was set.
        at: u64,
        /// Who set it.
        by: String,
        /// The topic ("": cleared).
        topic: String,
    },
    /// Member `uid` of `room` has `roles` now, by `by`'s doing.
    Role {
        /// Room.
        room: u32,
        /// The member's id.
        uid: u64,
        /// [`crate::roles`] bits (0: none).
        roles: u8,
        /// Who changed them.
        by: String,
    },
    /// Member `uid` (`name`) of `room` is put out of it by operator `by`:
    /// its node moves it to the lobby; every node tells its members.
    RoomKick {
        /// Room.
        room: u32,
        /// The member's id.
        uid: u64,
        /// The member's name.
        name: String,
        /// The operator.
        by: String,
        /// Why ("": no reason given).
        reason: String,
    },
    /// `room`'s modes, set by `by` at `at` (Unix microseconds: the newest
    /// wins, as a topic's).
    Modes {
        /// Room.
        room: u32,
        /// When they were set.
        at: u64,
        /// Who set them.
        by: String,
        /// [`crate::room_modes`] bits.
        flags: u8,
        /// Member limit (0: none).
        limit: u32,
        /// Key (empty: none).
        key: String,
    },
    /// `to` is invited into `room` by `by` (to the invitee's node; the
    /// pass is kept in the shared store for the seat script).
    Invite {
        /// Room.
        room: u32,
        /// The invitee.
        to: String,
        /// Who invited it.
        by: String,
    },
}

/// A bus message, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A change on `node`.
    Msg {
        /// Origin.
        node: u64,
        /// What changed.
        msg: BusMsg,
    },
    /// `node` rewrote its state: forget what it said before.
    Reset {
        /// Origin.
        node: u64,
    },
    /// `node` is dead (its heartbeat lapsed).
    Gone {
        /// The dead node.
        node: u64,
    },
    /// An operator drains `node` within `seconds`.
    Drain {
        /// The node to drain.
        node: u64,
        /// The grace period.
        seconds: u64,
    },
    /// `node` is alive and its stream is where the stamp says.
    Tick {
        /// Origin.
        node: u64,
    },
    /// An operator's notice, for `room` or (without one) for every user.
    Notice {
        /// Origin.
        node: u64,
        /// Room.
        room: Option<u32>,
        /// The text.
        message: String,
    },
}

/// Why a bus message was skipped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// Shorter than its kind needs.
    #[error("truncated")]
    Truncated,
    /// A kind this version does not know.
    #[error("unknown kind {0}")]
    Kind(u8),
    /// A name a login would refuse.
    #[error("bad name")]
    Name,
    /// A chat frame or text that does not decode.
    #[error("bad frame")]
    Frame,
}

fn header(kind: u8, origin: impl Into<Origin>) -> BytesMut {
    let o = origin.into();
    let mut b = BytesMut::with_capacity(80);
    if o.seq == 0 {
        b.put_u8(kind);
        b.put_u64_le(o.node);
    } else {
        b.put_u8(kind | STAMPED);
        b.put_u64_le(o.node);
        b.put_u64_le(o.seq);
        b.put_u64_le(o.sent_us);
    }
    b
}

/// The origin of a message, read from its header alone (`None` when it is
/// shorter than its header says).
pub fn origin(mut b: &[u8]) -> Option<Origin> {
    if b.len() < 9 {
        return None;
    }
    let kind = b.get_u8();
    let node = b.get_u64_le();
    if kind & STAMPED == 0 {
        return Some(node.into());
    }
    if b.len() < 16 {
        return None;
    }
    Some(Origin {
        node,
        seq: b.get_u64_le(),
        sent_us: b.get_u64_le(),
    })
}

fn put_short(b: &mut BytesMut, s: &str) {
    // Names are at most limits::NAME bytes; checked again on decode.
    let s = &s.as_bytes()[..s.len().min(255)];
    b.put_u8(s.len() as u8);
    b.put_slice(s);
}

/// Room chat as a node publishes it, without a place (the cluster's
/// numbering script appends it): a message as its 223 frame, a notice as
/// its 354 frame (sequence number 0).
pub fn chat(node: impl Into<Origin>, room: u32, from: &str, message: &str, notice: bool) -> Bytes {
    let mut b = header(KIND_ROOM, node);
    b.put_u32_le(room);
    if notice {
        crate::put_room_notice(&mut b, room, 0, from, message);
    } else {
        Event::RoomChat {
            name: from.to_owned(),
            message: message.to_owned(),
        }
        .encode(&mut b);
    }
    b.freeze()
}

/// Encodes a message from `node` (a node id, or an [`Origin`] to stamp it).
pub fn encode(node: impl Into<Origin>, msg: &BusMsg) -> Bytes {
    let node = node.into();
    let b = match msg {
        BusMsg::Online { name, uid } => {
            let mut b = header(KIND_ONLINE, node);
            b.put_u64_le(*uid);
            b.put_slice(name.as_bytes());
            b
        }
        BusMsg::Offline { name } => {
            let mut b = header(KIND_OFFLINE, node);
            b.put_slice(name.as_bytes());
            b
        }
        BusMsg::Enter { name, uid, room } | BusMsg::Leave { name, uid, room } => {
            let kind = if matches!(msg, BusMsg::Enter { .. }) {
                KIND_ENTER
            } else {
                KIND_LEAVE
            };
            let mut b = header(kind, node);
            b.put_u64_le(*uid);
            b.put_u32_le(*room);
            b.put_slice(name.as_bytes());
            b
        }
        BusMsg::RoomChat {
            room,
            from,
            message,
            place,
            notice,
        } => {
            let mut b = BytesMut::from(chat(node, *room, from, message, *notice));
            if let Some(p) = place {
                b.put_slice(format!("{} {}", p.epoch, p.seq).as_bytes());
            }
            b
        }
        BusMsg::Broadcast { from, message } => {
            let mut b = header(KIND_BROADCAST, node);
            Event::Broadcast {
                from: from.clone(),
                message: message.clone(),
            }
            .encode(&mut b);
            b
        }
        BusMsg::Whisper {
            to,
            from,
            message,
            notice,
        } => {
            let mut b = header(KIND_WHISPER, node);
            put_short(&mut b, to);
            let (from, message) = (from.clone(), message.clone());
            if *notice {
                Event::WhisperNotice { from, message }.encode(&mut b);
            } else {
                Event::Whisper { from, message }.encode(&mut b);
            }
            b
        }
        BusMsg::Kick { name, by } => {
            let mut b = header(KIND_KICK, node);
            put_short(&mut b, name);
            b.put_slice(by.as_bytes());
            b
        }
        BusMsg::Mute { name, seconds } => {
            let mut b = header(KIND_MUTE, node);
            b.put_u32_le(*seconds);
            b.put_slice(name.as_bytes());
            b
        }
        BusMsg::Topic { room, at, by, topic } => {
            let mut b = header(KIND_TOPIC, node);
            b.put_u32_le(*room);
            b.put_u64_le(*at);
            put_short(&mut b, by);
            b.put_slice(topic.as_bytes());
            b
        }
        BusMsg::Role { room, uid, roles, by } => {
            let mut b = header(KIND_ROLE, node);
            b.put_u32_le(*room);
            b.put_u64_le(*uid);
            b.put_u8(*roles);
            b.put_slice(by.as_bytes());
            b
        }
        BusMsg::RoomKick {
            room,
            uid,
            name,
            by,
            reason,
        } => {
            let mut b = header(KIND_ROOM_KICK, node);
            b.put_u32_le(*room);
            b.put_u64_le(*uid);
            put_short(&mut b, name);
            put_short(&mut b, by);
            b.put_slice(reason.as_bytes());
            b
        }
        BusMsg::Modes {
            room,
            at,
            by,
            flags,
            limit,
            key,
        } => {
            let mut b = header(KIND_MODES, node);
            b.put_u32_le(*room);
            b.put_u64_le(*at);
            b.put_u8(*flags);
            b.put_u32_le(*limit);
            put_short(&mut b, key);
            b.put_slice(by.as_bytes());
            b
        }
        BusMsg::Invite { room, to, by } => {
            let mut b = header(KIND_INVITE, node);
            b.put_u32_le(*room);
            put_short(&mut b, to);
            b.put_slice(by.as_bytes());
            b
        }
    };
    b.freeze()
}

/// `node` has rewritten its state (the cluster's replace script sends it).
pub fn reset(node: impl Into<Origin>) -> Bytes {
    header(KIND_RESET, node).freeze()
}

/// `node` is dead and was buried (sent by the node that buried it, with no
/// origin of its own).
pub fn gone(node: u64) -> Bytes {
    let mut b = header(KIND_GONE, 0_u64);
    b.put_slice(node.to_string().as_bytes());
    b.freeze()
}

/// A stamp alone (see [`Decoded::Tick`]).
pub fn tick(node: impl Into<Origin>) -> Bytes {
    header(KIND_TICK, node).freeze()
}

/// An operator asks `node` to drain within `seconds`.
pub fn drain(node: impl Into<Origin>, seconds: u64) -> Bytes {
    let mut b = header(KIND_DRAIN, node);
    b.put_u64_le(seconds);
    b.freeze()
}

/// An operator's notice from `node`, for `room` or every user.
pub fn notice(node: impl Into<Origin>, room: Option<u32>, message: &str) -> Bytes {
    let mut b = header(KIND_NOTICE, node);
    b.put_i64_le(room.map_or(-1, i64::from));
    b.put_slice(message.as_bytes());
    b.freeze()
}

#[cfg(test)]
mod tests;
