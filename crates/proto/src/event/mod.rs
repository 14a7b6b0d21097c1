//! Server-to-client packets: responses and notifications.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{DecodeError, Reader, Text, frame, put_fixed, put_str8, put_str16};
use crate::{ResultCode, id, limits};

/// Names per [`Event::UserList`] page.
pub const USER_LIST_PAGE: usize = 100;
/// Members per ROOM_USER_LIST_NOTIFY packet: its count is one signed byte.
pub const ROOM_LIST_CHUNK: usize = 127;
/// Messages at most in one answer to a history request.
pub const HISTORY_PAGE: u16 = 100;

/// What a history request or a rejoin was given: the body of HISTORY (347)
/// and ROOM_REJOIN (349) responses, which follow the messages they count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// OK, or why nothing was sent.
    pub result: ResultCode,
    /// The room history's epoch: it changes when the history is lost (a
    /// restart), and sequence numbers from another epoch mean nothing here.
    pub epoch: u64,
    /// The oldest sequence number the room still holds (`next` if none).
    pub first: u64,
    /// The sequence number the room's next message will get.
    pub next: u64,
    /// Messages sent before this answer.
    pub count: u16,
    /// Some of what was asked for is no longer held (or the epoch changed):
    /// there is a gap before the first message sent.
    pub gap: bool,
}

impl Replay {
    /// The answer to a request refused with `result`.
    pub fn failed(result: ResultCode) -> Self {
        Self {
            result,
            epoch: 0,
            first: 0,
            next: 0,
            count: 0,
            gap: false,
        }
    }

    fn put(&self, b: &mut BytesMut) {
        b.put_u16_le(self.result.0);
        b.put_u64_le(self.epoch);
        b.put_u64_le(self.first);
        b.put_u64_le(self.next);
        b.put_u16_le(self.count);
        b.put_u8(u8::from(self.gap));
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            result: r.result()?,
            epoch: r.u64()?,
            first: r.u64()?,
            next: r.u64()?,
            count: r.u16()?,
            gap: r.u8()? != 0,
        })
    }
}

const ANY_NAME: Text = Text::new("name", 0, limits::NAME);
const ANY_TEXT: Text = Text::new("message", 0, limits::MESSAGE);

/// A packet from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// 202.
    LoginResult(ResultCode),
    /// 207.
    RoomEnterResult(ResultCode),
    /// 208: a user entered your room.
    RoomNewUser {
        /// The user's session id in this server.
        uid: u64,
        /// The user's name.
        name: String,
    },
    /// 209: members of the room you entered, you included. A room with more
    /// than 127 members comes as several of these; append them.
    RoomUserList {
        /// (session id, name) pairs; at most 127.
        users: Vec<(u64, String)>,
    },
    /// 216.
    RoomLeaveResult(ResultCode),
    /// 217: a user left your room.
    RoomLeaveUser {
        /// The user's session id.
        uid: u64,
    },
    /// 222.
    RoomChatResult(ResultCode),
    /// 223: a message in your room (seed layout: fixed 33 + 257 bytes).
    RoomChat {
        /// Sender's name.
        name: String,
        /// The message.
        message: String,
    },
    /// 345: a message in a room, with its sequence number (instead of 223,
    /// for connections with [`crate::features::HISTORY`]).
    RoomMessage {
        /// The room.
        room: u32,
        /// Its sequence number in the room (from 1, in the room's epoch).
        seq: u64,
        /// Sender's name.
        name: String,
        /// The message.
        message: String,
    },
    /// 354: a notice in a room: as [`Event::RoomMessage`] (the same body),
    /// for connections with [`crate::features::NOTICES`].
    RoomNotice {
        /// The room.
        room: u32,
        /// Its sequence number in the room (shared with room messages).
        seq: u64,
        /// Sender's name.
        name: String,
        /// The message.
        message: String,
    },
    /// 359: the answer to ROOM_TOPIC.
    RoomTopicResult(ResultCode),
    /// 360: your room's topic: when you enter it (before its member list)
    /// if it has one, and whenever a member sets it.
    RoomTopic {
        /// The room.
        room: u32,
        /// When it was set, in Unix seconds.
        at: u64,
        /// Who set it.
        by: String,
        /// The topic ("": cleared).
        topic: String,
    },
    /// 362: the answer to ROOM_ROLE.
    RoomRoleResult(ResultCode),
    /// 363: a member's roles in your room changed. As you enter a room,
    /// before its member list, one for each member with a role, with `by`
    /// empty.
    RoomRole {
        /// The room.
        room: u32,
        /// The member's session id (as in the member list).
        uid: u64,
        /// Its roles now ([`crate::roles`] bits; 0: none).
        roles: u8,
        /// Who changed them ("": the room's state as you enter).
        by: String,
    },
    /// 365: the answer to ROOM_KICK.
    RoomKickResult(ResultCode),
    /// 366: a member was put out of your room by an operator (you, if the
    /// uid is yours: you are in the lobby now). Its departure (217) follows.
    RoomKicked {
        /// The room.
        room: u32,
        /// The member's session id.
        uid: u64,
        /// The member's name.
        name: String,
        /// The operator's name.
        by: String,
        /// Why ("": no reason given).
        reason: String,
    },
    /// 368: the answer to ROOM_MODE.
    RoomModeResult(ResultCode),
    /// 369: your room's modes: when you enter it (before its member list)
    /// if any is set, and whenever an operator sets them.
    RoomMode {
        /// The room.
        room: u32,
        /// [`crate::room_modes`] bits.
        flags: u8,
        /// The most members it takes (0: its capacity).
        limit: u32,
        /// Its key (empty: none).
        key: String,
        /// Who set them ("": the room's state as you enter).
        by: String,
    },
    /// 372: the answer to ROOM_INVITE.
    RoomInviteResult(ResultCode),
    /// 373: you are invited into a room.
    RoomInvite {
        /// The room.
        room: u32,
        /// Who invited you.
        by: String,
    },
    /// 347: the answer to HISTORY, after the messages it sent.
    History(Replay),
    /// 349: the answer to ROOM_REJOIN, after the missed messages: the
    /// marker that says whether they were all there.
    Rejoin(Replay),
    /// 351: the answer to ROOM_SEND.
    RoomSendResult {
        /// As ROOM_CHAT's (222).
        result: ResultCode,
        /// The message's sequence number in the room (0 when refused).
        seq: u64,
    },
    /// 302.
    RegisterResult(ResultCode),
    /// 304.
    EchoResult {
        /// OK, or why the request could not be decoded.
        result: ResultCode,
        /// The request's payload.
        payload: Vec<u8>,
    },
    /// 306.
    WhisperResult(ResultCode),
    /// 307: someone whispered to you.
    Whisper {
        /// Sender's name.
        from: String,
        /// The message.
        message: String,
    },
    /// 357: someone whispered a notice to you (as 307, for connections
    /// with [`crate::features::NOTICES`]).
    WhisperNotice {
        /// Sender's name.
        from: String,
        /// The message.
        message: String,
    },
    /// 310.
    BroadcastResult(ResultCode),
    /// 311: a message to everyone.
    Broadcast {
        /// Sender's name.
        from: String,
        /// The message.
        message: String,
    },
    /// 314: one page of logged-in users.
    UserList {
        /// Result code.
        result: ResultCode,
        /// Logged-in users in all.
        total: u32,
        /// Names on this page, sorted.
        names: Vec<String>,
        /// Whether pages follow (ask again with the last name).
        more: bool,
    },
    /// 316.
    LogoutResult(ResultCode),
    /// 318.
    AdminResult(ResultCode),
    /// 320.
    KickResult(ResultCode),
    /// 321: you are being disconnected by an administrator.
    Kicked {
        /// The administrator's name.
        by: String,
    },
    /// 324.
    MuteResult(ResultCode),
    /// 325: your mute changed (0 = unmuted, `u32::MAX` = indefinite).
    Muted {
        /// Seconds muted from now.
        seconds: u32,
    },
    /// 328.
    ShutdownResult(ResultCode),
    /// 332.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// 333: a message from the server or its operators.
    Notice {
        /// Text.
        message: String,
    },
    /// 337: after a successful login, a token for RESUME_REQUEST.
    ResumeToken {
        /// The token (keep it secret).
        token: String,
        /// Seconds it stays valid.
        ttl_secs: u32,
    },
    /// 341: this connection read too slowly and the server dropped `count`
    /// room messages for it (the drop-oldest slow-consumer policy).
    Missed {
        /// Messages dropped since the last such notice.
        count: u32,
        /// With room history ([`crate::features::HISTORY`]): the sequence
        /// numbers of the first and last dropped; those between may have
        /// been delivered. Fetch them with HISTORY (346).
        seqs: Option<(u64, u64)>,
    },
    /// 344: the answer to HELLO: the server's protocol version and the
    /// features it will use on this connection (those asked for that it has).
    Hello {
        /// OK, or why the HELLO was refused.
        result: ResultCode,
        /// The server's protocol version.
        version: u16,
        /// Feature bits in use from now on.
        features: u32,
        /// Rooms on this server, numbered `0..rooms`.
        rooms: u32,
    },
    /// 335: a request without a response packet of its own failed.
    RequestError {
        /// The request's packet id.
        request_id: u16,
        /// Why.
        result: ResultCode,
    },
}

/// Appends a ROOM_MESSAGE (345) frame: [`Event::RoomMessage`] from
/// borrowed text.
///
/// # Panics
/// If `name` or `message` exceeds its cap.
pub fn put_room_message(dst: &mut BytesMut, room: u32, seq: u64, name: &str, message: &str) {
    put_room_frame(dst, id::ROOM_MESSAGE_NOTIFY, room, seq, name, message);
}

/// Appends a ROOM_NOTICE (354) frame: [`Event::RoomNotice`] from borrowed
/// text.
///
/// # Panics
/// If `name` or `message` exceeds its cap.
pub fn put_room_notice(dst: &mut BytesMut, room: u32, seq: u64, name: &str, message: &str) {
    put_room_frame(dst, id::ROOM_NOTICE_NOTIFY, room, seq, name, message);
}

fn put_room_frame(dst: &mut BytesMut, pid: u16, room: u32, seq: u64, name: &str, message: &str) {
    frame(dst, pid, |b| {
        b.put_u32_le(room);
        b.put_u64_le(seq);
        put_str8(b, name);
        put_str16(b, message.as_bytes());
    });
}

impl Event {
    /// Appends this event as one frame.
    ///
    /// # Panics
    /// If a field exceeds its documented cap (a bug in the caller).
    pub fn encode(&self, dst: &mut BytesMut) {
        let code = |dst: &mut BytesMut, pid, c: &ResultCode| frame(dst, pid, |b| b.put_u16_le(c.0));
        match self {
            Self::LoginResult(c) => code(dst, id::LOGIN_RESPONSE, c),
            Self::RoomEnterResult(c) => code(dst, id::ROOM_ENTER_RESPONSE, c),
            Self::RoomNewUser { uid, name } => frame(dst, id::ROOM_NEW_USER_NOTIFY, |b| {
                b.put_u64_le(*uid);
                put_str8(b, name);
            }),
            Self::RoomUserList { users } => frame(dst, id::ROOM_USER_LIST_NOTIFY, |b| {
                assert!(users.len() <= ROOM_LIST_CHUNK, "room list chunk over 127");
                b.put_u8(users.len() as u8);
                for (uid, name) in users {
                    b.put_u64_le(*uid);
                    put_str8(b, name);
                }
            }),
            Self::RoomLeaveResult(c) => code(dst, id::ROOM_LEAVE_RESPONSE, c),
            Self::RoomLeaveUser { uid } => frame(dst, id::ROOM_LEAVE_USER_NOTIFY, |b| b.put_u64_le(*uid)),
            Self::RoomChatResult(c) => code(dst, id::ROOM_CHAT_RESPONSE, c),
            Self::RoomChat { name, message } => frame(dst, id::ROOM_CHAT_NOTIFY, |b| {
                put_fixed(b, name, limits::SEED_ID_FIELD);
                put_fixed(b, message, limits::SEED_MSG_FIELD);
            }),
            Self::RoomMessage {
                room,
                seq,
                name,
                message,
            } => put_room_message(dst, *room, *seq, name, message),
            Self::RoomNotice {
                room,
                seq,
                name,
                message,
            } => put_room_notice(dst, *room, *seq, name, message),
            Self::RoomTopicResult(c) => code(dst, id::ROOM_TOPIC_RESPONSE, c),
            Self::RoomTopic { room, at, by, topic } => frame(dst, id::ROOM_TOPIC_NOTIFY, |b| {
                b.put_u32_le(*room);
                b.put_u64_le(*at);
                put_str8(b, by);
                put_str16(b, topic.as_bytes());
            }),
            Self::RoomRoleResult(c) => code(dst, id::ROOM_ROLE_RESPONSE, c),
            Self::RoomRole { room, uid, roles, by } => frame(dst, id::ROOM_ROLE_NOTIFY, |b| {
                b.put_u32_le(*room);
                b.put_u64_le(*uid);
                b.put_u8(*roles);
                put_str8(b, by);
            }),
            Self::RoomKickResult(c) => code(dst, id::ROOM_KICK_RESPONSE, c),
            Self::RoomKicked {
                room,
                uid,
                name,
                by,
                reason,
            } => frame(dst, id::ROOM_KICKED_NOTIFY, |b| {
                b.put_u32_le(*room);
                b.put_u64_le(*uid);
                put_str8(b, name);
                put_str8(b, by);
                put_str16(b, reason.as_bytes());
            }),
            Self::RoomModeResult(c) => code(dst, id::ROOM_MODE_RESPONSE, c),
            Self::RoomMode {
                room,
                flags,
                limit,
                key,
                by,
            } => frame(dst, id::ROOM_MODE_NOTIFY, |b| {
                b.put_u32_le(*room);
                b.put_u8(*flags);
                b.put_u32_le(*limit);
                put_str8(b, key);
                put_str8(b, by);
            }),
            Self::RoomInviteResult(c) => code(dst, id::ROOM_INVITE_RESPONSE, c),
            Self::RoomInvite { room, by } => frame(dst, id::ROOM_INVITE_NOTIFY, |b| {
                b.put_u32_le(*room);
                put_str8(b, by);
            }),
            Self::History(r) => frame(dst, id::HISTORY_RESPONSE, |b| r.put(b)),
            Self::Rejoin(r) => frame(dst, id::ROOM_REJOIN_RESPONSE, |b| r.put(b)),
            Self::RoomSendResult { result, seq } => frame(dst, id::ROOM_SEND_RESPONSE, |b| {
                b.put_u16_le(result.0);
                b.put_u64_le(*seq);
            }),
            Self::RegisterResult(c) => code(dst, id::REGISTER_RESPONSE, c),
            Self::EchoResult { result, payload } => frame(dst, id::ECHO_RESPONSE, |b| {
                b.put_u16_le(result.0);
                put_str16(b, payload);
            }),
            Self::WhisperResult(c) => code(dst, id::WHISPER_RESPONSE, c),
            Self::Whisper { from, message } => frame(dst, id::WHISPER_NOTIFY, |b| {
                put_str8(b, from);
                put_str16(b, message.as_bytes());
            }),
            Self::WhisperNotice { from, message } => frame(dst, id::WHISPER_NOTICE_NOTIFY, |b| {
                put_str8(b, from);
                put_str16(b, message.as_bytes());
            }),
            Self::BroadcastResult(c) => code(dst, id::BROADCAST_RESPONSE, c),
            Self::Broadcast { from, message } => frame(dst, id::BROADCAST_NOTIFY, |b| {
                put_str8(b, from);
                put_str16(b, message.as_bytes());
            }),
            Self::UserList {
                result,
                total,
                names,
                more,
            } => frame(dst, id::USER_LIST_RESPONSE, |b| {
                b.put_u16_le(result.0);
                b.put_u32_le(*total);
                b.put_u16_le(u16::try_from(names.len()).expect("page too long"));
                for n in names {
                    put_str8(b, n);
                }
                b.put_u8(u8::from(*more));
            }),
            Self::LogoutResult(c) => code(dst, id::LOGOUT_RESPONSE, c),
            Self::AdminResult(c) => code(dst, id::ADMIN_RESPONSE, c),
            Self::KickResult(c) => code(dst, id::KICK_RESPONSE, c),
            Self::Kicked { by } => frame(dst, id::KICKED_NOTIFY, |b| put_str8(b, by)),
            Self::MuteResult(c) => code(dst, id::MUTE_RESPONSE, c),
            Self::Muted { seconds } => frame(dst, id::MUTED_NOTIFY, |b| b.put_u32_le(*seconds)),
            Self::ShutdownResult(c) => code(dst, id::SHUTDOWN_RESPONSE, c),
            Self::Pong { nonce } => frame(dst, id::PONG_RESPONSE, |b| b.put_u64_le(*nonce)),
            Self::Notice { message } => frame(dst, id::SERVER_NOTICE, |b| put_str16(b, message.as_bytes())),
            Self::ResumeToken { token, ttl_secs } => frame(dst, id::RESUME_TOKEN_NOTIFY, |b| {
                put_str8(b, token);
                b.put_u32_le(*ttl_secs);
            }),
            Self::Missed { count, seqs } => frame(dst, id::MESSAGES_MISSED_NOTIFY, |b| {
                b.put_u32_le(*count);
                if let Some((first, last)) = seqs {
                    b.put_u64_le(*first);
                    b.put_u64_le(*last);
                }
            }),
            Self::Hello {
                result,
                version,
                features,
                rooms,
            } => frame(dst, id::HELLO_RESPONSE, |b| {
                b.put_u16_le(result.0);
                b.put_u16_le(*version);
                b.put_u32_le(*features);
                b.put_u32_le(*rooms);
            }),
            Self::RequestError { request_id, result } => frame(dst, id::REQUEST_ERROR, |b| {
                b.put_u16_le(*request_id);
                b.put_u16_le(result.0);
            }),
        }
    }

    /// Whether this answers a request (every request gets exactly one, in
    /// order), as opposed to a notification, which can come at any time.
    pub fn is_response(&self) -> bool {
        !matches!(
            self,
            Self::RoomNewUser { .. }
                | Self::RoomUserList { .. }
                | Self::RoomLeaveUser { .. }
                | Self::RoomChat { .. }
                | Self::RoomMessage { .. }
                | Self::RoomNotice { .. }
                | Self::RoomTopic { .. }
                | Self::RoomRole { .. }
                | Self::RoomKicked { .. }
                | Self::RoomMode { .. }
                | Self::RoomInvite { .. }
                | Self::Whisper { .. }
                | Self::WhisperNotice { .. }
                | Self::Broadcast { .. }
                | Self::Kicked { .. }
                | Self::Muted { .. }
                | Self::Notice { .. }
                | Self::ResumeToken { .. }
                | Self::Missed { .. }
        )
    }

    /// This event as one shareable frame: encode once, send to many.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }
}

mod decode;

#[cfg(test)]
mod tests;
