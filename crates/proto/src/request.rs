//! Client-to-server packets.

use bytes::{BufMut, BytesMut};

use crate::codec::{DecodeError, Reader, Text, frame, put_fixed, put_str8, put_str16, unpad};
use crate::{Event, Replay, ResultCode, id, limits};

const NAME: Text = Text::name("name", limits::NAME);
const TARGET: Text = Text::name("target", limits::NAME);
const PASSWORD: Text = Text::new("password", 1, limits::PASSWORD);
const ROOM_MESSAGE: Text = Text::new("message", 1, limits::ROOM_MESSAGE);
const MESSAGE: Text = Text::new("message", 1, limits::MESSAGE);
const SECRET: Text = Text::new("secret", 0, limits::SECRET);
const AFTER: Text = Text::new("after", 0, limits::NAME);
const TOKEN: Text = Text::new("token", 1, limits::TOKEN);
const TOPIC: Text = Text::new("topic", 0, limits::TOPIC);
const REASON: Text = Text::new("reason", 0, limits::REASON);
const KEY: Text = Text::new("key", 0, limits::ROOM_KEY);

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// 201: log in (seed layout: two fixed 33-byte NUL-padded fields).
    Login {
        /// Account name.
        name: String,
        /// Password.
        password: String,
    },
    /// 206: enter room `room` from the lobby (i32).
    RoomEnter {
        /// Room number, 0-based.
        room: i32,
    },
    /// 215: leave the current room.
    RoomLeave,
    /// 221: chat in the current room (seed layout: fixed 257-byte field; a
    /// shorter body holding just the text is accepted too).
    RoomChat {
        /// The message.
        message: String,
    },
    /// 301: create an account.
    Register {
        /// Account name.
        name: String,
        /// Password.
        password: String,
    },
    /// 303: echo the payload back.
    Echo {
        /// Any bytes.
        payload: Vec<u8>,
    },
    /// 352: a notice in the current room (as ROOM_SEND, answered with 351).
    RoomNotice {
        /// Your id for this message, as ROOM_SEND's (0: none).
        id: u64,
        /// The message.
        message: String,
    },
    /// 355: a notice whispered to one user (as WHISPER, answered with 306).
    WhisperNotice {
        /// Recipient's name.
        to: String,
        /// The message.
        message: String,
    },
    /// 358: set the current room's topic ("" clears it). Answered with
    /// [`Event::RoomTopicResult`].
    RoomTopic {
        /// The topic.
        topic: String,
    },
    /// 361: (a room operator, or an admin) give a member of your room a
    /// role in it ([`crate::roles`]: operator, voice), or take it away.
    /// Answered with [`Event::RoomRoleResult`].
    RoomRole {
        /// The member's name.
        name: String,
        /// One role: [`crate::roles::OPERATOR`] or [`crate::roles::VOICE`].
        role: u8,
        /// true: give it; false: take it away.
        on: bool,
    },
    /// 364: (a room operator, or an admin) put a member out of your room,
    /// into the lobby. Answered with [`Event::RoomKickResult`].
    RoomKick {
        /// The member's name.
        name: String,
        /// Why (told to the room; may be empty).
        reason: String,
    },
    /// 367: (a room operator, or an admin) set your room's modes: `flags`
    /// from [`crate::room_modes`], a member limit (0: none) and a key
    /// (empty: none). Answered with [`Event::RoomModeResult`].
    RoomMode {
        /// [`crate::room_modes`] bits.
        flags: u8,
        /// The most members the room takes (0: its capacity).
        limit: u32,
        /// What ROOM_ENTER_KEY must give to enter (empty: none).
        key: String,
    },
    /// 370: enter `room` with its key; answered as ROOM_ENTER (207).
    RoomEnterKey {
        /// Room number, 0-based.
        room: i32,
        /// The room's key.
        key: String,
    },
    /// 371: invite a user into your room: it may enter it even when the
    /// room is invite-only (where only operators may invite). Answered with
    /// [`Event::RoomInviteResult`].
    RoomInvite {
        /// The user's name.
        name: String,
    },
    /// 305: whisper to one user, wherever they are.
    Whisper {
        /// Recipient's name.
        to: String,
        /// The message.
        message: String,
    },
    /// 309: message every logged-in user.
    Broadcast {
        /// The message.
        message: String,
    },
    /// 313: one page of logged-in users, names sorted, after `after`.
    UserList {
        /// Return names strictly after this one ("" for the first page).
        after: String,
    },
    /// 315: log out and stay connected.
    Logout,
    /// 317: become administrator (needs the admin role or the secret).
    Admin {
        /// The operator-configured secret, or "" to rely on the role.
        secret: String,
    },
    /// 319: (admin) disconnect a user.
    Kick {
        /// Target's name.
        name: String,
    },
    /// 323: (admin) mute a user for `seconds` (0 unmutes; `u32::MAX` is
    /// indefinite).
    Mute {
        /// Target's name.
        name: String,
        /// Duration.
        seconds: u32,
    },
    /// 327: (admin) shut the server down gracefully.
    Shutdown,
    /// 339: log in with a resume token instead of the password; answered
    /// with LOGIN_RESPONSE (202) like a login.
    Resume {
        /// Account name.
        name: String,
        /// The token from RESUME_TOKEN_NOTIFY.
        token: String,
    },
    /// 346: messages of your room from its history, answered with up to
    /// `limit` [`Event::RoomMessage`]s (oldest first, at most
    /// [`HISTORY_PAGE`](crate::HISTORY_PAGE)) and then [`Event::History`].
    History {
        /// Which messages.
        page: Page,
        /// How many at most (more than a page is cut to a page; 0 sends none
        /// and answers with the room's position: its epoch and next number).
        limit: u16,
    },
    /// 348: enter `room` and get the messages after `after` that were sent
    /// while you were away (a comeback after a drop); answered like
    /// ROOM_ENTER (209 lists), then the missed [`Event::RoomMessage`]s, then
    /// [`Event::Rejoin`].
    RoomRejoin {
        /// The room (0-based), as in ROOM_ENTER.
        room: i32,
        /// The room's history epoch the client saw `after` in.
        epoch: u64,
        /// The last sequence number the client saw (0: none).
        after: u64,
    },
    /// 350: room chat with the client's own message id: a resend of an id
    /// already delivered (within the server's window) is answered again,
    /// with the first delivery's sequence number, and not delivered twice.
    /// Answered with [`Event::RoomSendResult`].
    RoomSend {
        /// The client's id for this message (0: none, never deduplicated).
        id: u64,
        /// 1..=256 bytes, as ROOM_CHAT's.
        message: String,
    },
    /// 331: heartbeat; answered with a pong carrying the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// 343: the client speaks Plaza's protocol `version` and understands
    /// the notifications in `features` (see [`crate::features`]); answered
    /// with [`Event::Hello`]. A connection that never sends it gets only
    /// the seed's packets.
    Hello {
        /// The protocol version the client was written for.
        version: u16,
        /// Feature bits the client understands.
        features: u32,
    },
}

/// Which messages a [`Request::History`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest (wire mode 0; its sequence number is ignored).
    Latest,
    /// Those before this sequence number (mode 1): scrolling back.
    Before(u64),
    /// Those after this sequence number (mode 2): catching up.
    After(u64),
}

impl Request {
    /// Decodes one complete frame (header included).
    ///
    /// # Errors
    /// [`DecodeError`] when the id is unknown or the body is malformed; its
    /// [`result`](DecodeError::result) is the code to answer with.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let (pid, mut r) = Reader::body(frame)?;
        let req = match pid {
            id::LOGIN_REQUEST => Self::Login {
                name: r.fixed(limits::SEED_ID_FIELD, NAME)?,
                password: r.fixed(limits::SEED_ID_FIELD, PASSWORD)?,
            },
            id::ROOM_ENTER_REQUEST => Self::RoomEnter {
                room: r.u32()? as i32,
            },
            id::ROOM_LEAVE_REQUEST => Self::RoomLeave,
            id::ROOM_CHAT_REQUEST => {
                let body = r.rest();
                if body.len() > limits::SEED_MSG_FIELD {
                    return Err(DecodeError::Invalid {
                        id: pid,
                        field: "message",
                    });
                }
                Self::RoomChat {
                    message: ROOM_MESSAGE.text(pid, unpad(pid, body, "message")?)?,
                }
            }
            id::REGISTER_REQUEST => Self::Register {
                name: r.str8(NAME)?,
                password: r.str8(PASSWORD)?,
            },
            id::ECHO_REQUEST => Self::Echo {
                payload: r.bytes16(limits::ECHO)?.to_vec(),
            },
            id::WHISPER_REQUEST => Self::Whisper {
                to: r.str8(TARGET)?,
                message: r.str16(MESSAGE)?,
            },
            id::BROADCAST_REQUEST => Self::Broadcast {
                message: r.str16(MESSAGE)?,
            },
            id::USER_LIST_REQUEST => Self::UserList {
                after: r.str8(AFTER)?,
            },
            id::LOGOUT_REQUEST => Self::Logout,
            id::ADMIN_REQUEST => Self::Admin {
                secret: r.str8(SECRET)?,
            },
            id::KICK_REQUEST => Self::Kick {
                name: r.str8(TARGET)?,
            },
            id::MUTE_REQUEST => Self::Mute {
                name: r.str8(TARGET)?,
                seconds: r.u32()?,
            },
            id::SHUTDOWN_REQUEST => Self::Shutdown,
            id::PING_REQUEST => Self::Ping { nonce: r.u64()? },
            id::HELLO_REQUEST => Self::Hello {
                version: r.u16()?,
                features: r.u32()?,
            },
            id::RESUME_REQUEST => Self::Resume {
                name: r.str8(NAME)?,
                token: r.str8(TOKEN)?,
            },
            id::HISTORY_REQUEST => {
                let (mode, seq) = (r.u8()?, r.u64()?);
                let page = match mode {
                    0 => Page::Latest,
                    1 => Page::Before(seq),
                    2 => Page::After(seq),
                    _ => return Err(DecodeError::Malformed { id: pid }),
                };
                Self::History {
                    page,
                    limit: r.u16()?,
                }
            }
            id::ROOM_SEND_REQUEST => Self::RoomSend {
                id: r.u64()?,
                message: r.str16(ROOM_MESSAGE)?,
            },
            id::ROOM_NOTICE_REQUEST => Self::RoomNotice {
                id: r.u64()?,
                message: r.str16(ROOM_MESSAGE)?,
            },
            id::WHISPER_NOTICE_REQUEST => Self::WhisperNotice {
                to: r.str8(TARGET)?,
                message: r.str16(MESSAGE)?,
            },
            id::ROOM_TOPIC_REQUEST => Self::RoomTopic {
                topic: r.str16(TOPIC)?,
            },
            id::ROOM_ROLE_REQUEST => {
                let name = r.str8(TARGET)?;
                let (role, on) = (r.u8()?, r.u8()?);
                let one = role == crate::roles::OPERATOR || role == crate::roles::VOICE;
                if !one || on > 1 {
                    return Err(DecodeError::Malformed { id: pid });
                }
                Self::RoomRole {
                    name,
                    role,
                    on: on == 1,
                }
            }
            id::ROOM_KICK_REQUEST => Self::RoomKick {
                name: r.str8(TARGET)?,
                reason: r.str16(REASON)?,
            },
            id::ROOM_MODE_REQUEST => {
                let flags = r.u8()?;
                if flags & !crate::room_modes::ALL != 0 {
                    return Err(DecodeError::Malformed { id: pid });
                }
                let limit = r.u32()?;
                let key = r.str8(KEY)?;
                if !crate::valid_room_key(&key) {
                    return Err(DecodeError::Malformed { id: pid });
                }
                Self::RoomMode { flags, limit, key }
            }
            id::ROOM_ENTER_KEY_REQUEST => Self::RoomEnterKey {
                room: r.u32()? as i32,
                key: r.str8(KEY)?,
            },
            id::ROOM_INVITE_REQUEST => Self::RoomInvite {
                name: r.str8(TARGET)?,
            },
            id::ROOM_REJOIN_REQUEST => Self::RoomRejoin {
                room: r.u32()? as i32,
                epoch: r.u64()?,
                after: r.u64()?,
            },
            other => return Err(DecodeError::UnknownId(other)),
        };
        r.end()?;
        Ok(req)
    }

    /// This request's packet id.
    pub fn id(&self) -> u16 {
        match self {
            Self::Login { .. } => id::LOGIN_REQUEST,
            Self::RoomEnter { .. } => id::ROOM_ENTER_REQUEST,
            Self::RoomLeave => id::ROOM_LEAVE_REQUEST,
            Self::RoomChat { .. } => id::ROOM_CHAT_REQUEST,
            Self::Register { .. } => id::REGISTER_REQUEST,
            Self::Echo { .. } => id::ECHO_REQUEST,
            Self::Whisper { .. } => id::WHISPER_REQUEST,
            Self::Broadcast { .. } => id::BROADCAST_REQUEST,
            Self::UserList { .. } => id::USER_LIST_REQUEST,
            Self::Logout => id::LOGOUT_REQUEST,
            Self::Admin { .. } => id::ADMIN_REQUEST,
            Self::Kick { .. } => id::KICK_REQUEST,
            Self::Mute { .. } => id::MUTE_REQUEST,
            Self::Shutdown => id::SHUTDOWN_REQUEST,
            Self::Ping { .. } => id::PING_REQUEST,
            Self::Resume { .. } => id::RESUME_REQUEST,
            Self::Hello { .. } => id::HELLO_REQUEST,
            Self::History { .. } => id::HISTORY_REQUEST,
            Self::RoomRejoin { .. } => id::ROOM_REJOIN_REQUEST,
            Self::RoomSend { .. } => id::ROOM_SEND_REQUEST,
            Self::RoomNotice { .. } => id::ROOM_NOTICE_REQUEST,
            Self::WhisperNotice { .. } => id::WHISPER_NOTICE_REQUEST,
            Self::RoomTopic { .. } => id::ROOM_TOPIC_REQUEST,
            Self::RoomRole { .. } => id::ROOM_ROLE_REQUEST,
            Self::RoomKick { .. } => id::ROOM_KICK_REQUEST,
            Self::RoomMode { .. } => id::ROOM_MODE_REQUEST,
            Self::RoomEnterKey { .. } => id::ROOM_ENTER_KEY_REQUEST,
            Self::RoomInvite { .. } => id::ROOM_INVITE_REQUEST,
        }
    }

    /// Appends this request as one frame.
    ///
    /// # Panics
    /// If a field exceeds its documented cap.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Self::Login { name, password } => frame(dst, id::LOGIN_REQUEST, |b| {
                put_fixed(b, name, limits::SEED_ID_FIELD);
                put_fixed(b, password, limits::SEED_ID_FIELD);
            }),
            Self::RoomEnter { room } => frame(dst, id::ROOM_ENTER_REQUEST, |b| b.put_i32_le(*room)),
            Self::RoomLeave => frame(dst, id::ROOM_LEAVE_REQUEST, |_| {}),
            Self::RoomChat { message } => frame(dst, id::ROOM_CHAT_REQUEST, |b| {
                put_fixed(b, message, limits::SEED_MSG_FIELD);
            }),
            Self::Register { name, password } => frame(dst, id::REGISTER_REQUEST, |b| {
                put_str8(b, name);
                put_str8(b, password);
            }),
            Self::Echo { payload } => frame(dst, id::ECHO_REQUEST, |b| put_str16(b, payload)),
            Self::Whisper { to, message } => frame(dst, id::WHISPER_REQUEST, |b| {
                put_str8(b, to);
                put_str16(b, message.as_bytes());
            }),
            Self::WhisperNotice { to, message } => frame(dst, id::WHISPER_NOTICE_REQUEST, |b| {
                put_str8(b, to);
                put_str16(b, message.as_bytes());
            }),
            Self::RoomTopic { topic } => {
                frame(dst, id::ROOM_TOPIC_REQUEST, |b| put_str16(b, topic.as_bytes()))
            }
            Self::RoomRole { name, role, on } => frame(dst, id::ROOM_ROLE_REQUEST, |b| {
                put_str8(b, name);
                b.put_u8(*role);
                b.put_u8(u8::from(*on));
            }),
            Self::RoomKick { name, reason } => frame(dst, id::ROOM_KICK_REQUEST, |b| {
                put_str8(b, name);
                put_str16(b, reason.as_bytes());
            }),
            Self::RoomMode { flags, limit, key } => frame(dst, id::ROOM_MODE_REQUEST, |b| {
                b.put_u8(*flags);
                b.put_u32_le(*limit);
                put_str8(b, key);
            }),
            Self::RoomInvite { name } => frame(dst, id::ROOM_INVITE_REQUEST, |b| put_str8(b, name)),
            Self::RoomEnterKey { room, key } => frame(dst, id::ROOM_ENTER_KEY_REQUEST, |b| {
                b.put_i32_le(*room);
                put_str8(b, key);
            }),
            Self::RoomNotice { id, message } => frame(dst, id::ROOM_NOTICE_REQUEST, |b| {
                b.put_u64_le(*id);
                put_str16(b, message.as_bytes());
            }),
            Self::Broadcast { message } => {
                frame(dst, id::BROADCAST_REQUEST, |b| put_str16(b, message.as_bytes()));
            }
            Self::UserList { after } => frame(dst, id::USER_LIST_REQUEST, |b| put_str8(b, after)),
            Self::Logout => frame(dst, id::LOGOUT_REQUEST, |_| {}),
            Self::Admin { secret } => frame(dst, id::ADMIN_REQUEST, |b| put_str8(b, secret)),
            Self::Kick { name } => frame(dst, id::KICK_REQUEST, |b| put_str8(b, name)),
            Self::Mute { name, seconds } => frame(dst, id::MUTE_REQUEST, |b| {
                put_str8(b, name);
                b.put_u32_le(*seconds);
            }),
            Self::Shutdown => frame(dst, id::SHUTDOWN_REQUEST, |_| {}),
            Self::Ping { nonce } => frame(dst, id::PING_REQUEST, |b| b.put_u64_le(*nonce)),
            Self::Hello { version, features } => frame(dst, id::HELLO_REQUEST, |b| {
                b.put_u16_le(*version);
                b.put_u32_le(*features);
            }),
            Self::Resume { name, token } => frame(dst, id::RESUME_REQUEST, |b| {
                put_str8(b, name);
                put_str8(b, token);
            }),
            Self::History { page, limit } => frame(dst, id::HISTORY_REQUEST, |b| {
                let (mode, seq) = match *page {
                    Page::Latest => (0, 0),
                    Page::Before(s) => (1, s),
                    Page::After(s) => (2, s),
                };
                b.put_u8(mode);
                b.put_u64_le(seq);
                b.put_u16_le(*limit);
            }),
            Self::RoomSend { id, message } => frame(dst, id::ROOM_SEND_REQUEST, |b| {
                b.put_u64_le(*id);
                put_str16(b, message.as_bytes());
            }),
            Self::RoomRejoin { room, epoch, after } => frame(dst, id::ROOM_REJOIN_REQUEST, |b| {
                b.put_i32_le(*room);
                b.put_u64_le(*epoch);
                b.put_u64_le(*after);
            }),
        }
    }

    /// The response to a request with packet id `request_id` that failed
    /// with `code` before it could be decoded: the request's own response
    /// packet when it has one, so a client waiting for it is answered, or a
    /// [`Event::RequestError`] otherwise (PING, whose PONG has no result
    /// field, and unknown ids).
    pub fn failure(request_id: u16, code: ResultCode) -> Event {
        match request_id {
            id::ECHO_REQUEST => Event::EchoResult {
                result: code,
                payload: Vec::new(),
            },
            id::USER_LIST_REQUEST => Event::UserList {
                result: code,
                total: 0,
                names: Vec::new(),
                more: false,
            },
            id::HELLO_REQUEST => Event::Hello {
                result: code,
                version: crate::VERSION,
                features: 0,
                rooms: 0,
            },
            id::LOGIN_REQUEST | id::RESUME_REQUEST => Event::LoginResult(code),
            id::HISTORY_REQUEST => Event::History(Replay::failed(code)),
            id::ROOM_REJOIN_REQUEST => Event::Rejoin(Replay::failed(code)),
            id::ROOM_SEND_REQUEST | id::ROOM_NOTICE_REQUEST => Event::RoomSendResult { result: code, seq: 0 },
            id::ROOM_ENTER_REQUEST | id::ROOM_ENTER_KEY_REQUEST => Event::RoomEnterResult(code),
            id::ROOM_MODE_REQUEST => Event::RoomModeResult(code),
            id::ROOM_INVITE_REQUEST => Event::RoomInviteResult(code),
            id::ROOM_TOPIC_REQUEST => Event::RoomTopicResult(code),
            id::ROOM_ROLE_REQUEST => Event::RoomRoleResult(code),
            id::ROOM_KICK_REQUEST => Event::RoomKickResult(code),
            id::ROOM_LEAVE_REQUEST => Event::RoomLeaveResult(code),
            id::ROOM_CHAT_REQUEST => Event::RoomChatResult(code),
            id::REGISTER_REQUEST => Event::RegisterResult(code),
            id::WHISPER_REQUEST | id::WHISPER_NOTICE_REQUEST => Event::WhisperResult(code),
            id::BROADCAST_REQUEST => Event::BroadcastResult(code),
            id::LOGOUT_REQUEST => Event::LogoutResult(code),
            id::ADMIN_REQUEST => Event::AdminResult(code),
            id::KICK_REQUEST => Event::KickResult(code),
            id::MUTE_REQUEST => Event::MuteResult(code),
            id::SHUTDOWN_REQUEST => Event::ShutdownResult(code),
            _ => Event::RequestError {
                request_id,
                result: code,
            },
        }
    }
}

#[cfg(test)]
mod tests;
