//! Decoding server packets: the client side.

use super::{ANY_NAME, ANY_TEXT, Event, ROOM_LIST_CHUNK, Replay, USER_LIST_PAGE};
use crate::codec::{DecodeError, Reader, Text};
use crate::{id, limits};

impl Event {
    /// Decodes one complete frame (header included): the client side.
    ///
    /// # Errors
    /// [`DecodeError`] when the id is unknown or the body is malformed.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let (pid, mut r) = Reader::body(frame)?;
        let ev = match pid {
            id::LOGIN_RESPONSE => Self::LoginResult(r.result()?),
            id::ROOM_ENTER_RESPONSE => Self::RoomEnterResult(r.result()?),
            id::ROOM_NEW_USER_NOTIFY => Self::RoomNewUser {
                uid: r.u64()?,
                name: r.str8(ANY_NAME)?,
            },
            id::ROOM_USER_LIST_NOTIFY => {
                let n = r.u8()?;
                if n > ROOM_LIST_CHUNK as u8 {
                    return Err(DecodeError::Malformed { id: pid });
                }
                let mut users = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    users.push((r.u64()?, r.str8(ANY_NAME)?));
                }
                Self::RoomUserList { users }
            }
            id::ROOM_LEAVE_RESPONSE => Self::RoomLeaveResult(r.result()?),
            id::ROOM_LEAVE_USER_NOTIFY => Self::RoomLeaveUser { uid: r.u64()? },
            id::ROOM_CHAT_RESPONSE => Self::RoomChatResult(r.result()?),
            id::ROOM_CHAT_NOTIFY => Self::RoomChat {
                name: r.fixed(limits::SEED_ID_FIELD, ANY_NAME)?,
                message: r.fixed(limits::SEED_MSG_FIELD, ANY_TEXT)?,
            },
            id::ROOM_MESSAGE_NOTIFY => Self::RoomMessage {
                room: r.u32()?,
                seq: r.u64()?,
                name: r.str8(ANY_NAME)?,
                message: r.str16(ANY_TEXT)?,
            },
            id::ROOM_NOTICE_NOTIFY => Self::RoomNotice {
                room: r.u32()?,
                seq: r.u64()?,
                name: r.str8(ANY_NAME)?,
                message: r.str16(ANY_TEXT)?,
            },
            id::ROOM_TOPIC_RESPONSE => Self::RoomTopicResult(r.result()?),
            id::ROOM_TOPIC_NOTIFY => Self::RoomTopic {
                room: r.u32()?,
                at: r.u64()?,
                by: r.str8(ANY_NAME)?,
                topic: r.str16(ANY_TEXT)?,
            },
            id::ROOM_ROLE_RESPONSE => Self::RoomRoleResult(r.result()?),
            id::ROOM_ROLE_NOTIFY => Self::RoomRole {
                room: r.u32()?,
                uid: r.u64()?,
                roles: r.u8()?,
                by: r.str8(ANY_NAME)?,
            },
            id::ROOM_KICK_RESPONSE => Self::RoomKickResult(r.result()?),
            id::ROOM_KICKED_NOTIFY => Self::RoomKicked {
                room: r.u32()?,
                uid: r.u64()?,
                name: r.str8(ANY_NAME)?,
                by: r.str8(ANY_NAME)?,
                reason: r.str16(Text::new("reason", 0, limits::REASON))?,
            },
            id::ROOM_MODE_RESPONSE => Self::RoomModeResult(r.result()?),
            id::ROOM_MODE_NOTIFY => Self::RoomMode {
                room: r.u32()?,
                flags: r.u8()?,
                limit: r.u32()?,
                key: r.str8(Text::new("key", 0, limits::ROOM_KEY))?,
                by: r.str8(ANY_NAME)?,
            },
            id::ROOM_INVITE_RESPONSE => Self::RoomInviteResult(r.result()?),
            id::ROOM_INVITE_NOTIFY => Self::RoomInvite {
                room: r.u32()?,
                by: r.str8(ANY_NAME)?,
            },
            id::HISTORY_RESPONSE => Self::History(Replay::read(&mut r)?),
            id::ROOM_REJOIN_RESPONSE => Self::Rejoin(Replay::read(&mut r)?),
            id::ROOM_SEND_RESPONSE => Self::RoomSendResult {
                result: r.result()?,
                seq: r.u64()?,
            },
            id::REGISTER_RESPONSE => Self::RegisterResult(r.result()?),
            id::ECHO_RESPONSE => Self::EchoResult {
                result: r.result()?,
                payload: r.bytes16(limits::ECHO)?.to_vec(),
            },
            id::WHISPER_RESPONSE => Self::WhisperResult(r.result()?),
            id::WHISPER_NOTIFY => Self::Whisper {
                from: r.str8(ANY_NAME)?,
                message: r.str16(ANY_TEXT)?,
            },
            id::WHISPER_NOTICE_NOTIFY => Self::WhisperNotice {
                from: r.str8(ANY_NAME)?,
                message: r.str16(ANY_TEXT)?,
            },
            id::BROADCAST_RESPONSE => Self::BroadcastResult(r.result()?),
            id::BROADCAST_NOTIFY => Self::Broadcast {
                from: r.str8(ANY_NAME)?,
                message: r.str16(ANY_TEXT)?,
            },
            id::USER_LIST_RESPONSE => {
                let result = r.result()?;
                let total = r.u32()?;
                let n = r.u16()?;
                if usize::from(n) > USER_LIST_PAGE {
                    return Err(DecodeError::Malformed { id: pid });
                }
                let mut names = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    names.push(r.str8(ANY_NAME)?);
                }
                Self::UserList {
                    result,
                    total,
                    names,
                    more: r.u8()? != 0,
                }
            }
            id::LOGOUT_RESPONSE => Self::LogoutResult(r.result()?),
            id::ADMIN_RESPONSE => Self::AdminResult(r.result()?),
            id::KICK_RESPONSE => Self::KickResult(r.result()?),
            id::KICKED_NOTIFY => Self::Kicked {
                by: r.str8(ANY_NAME)?,
            },
            id::MUTE_RESPONSE => Self::MuteResult(r.result()?),
            id::MUTED_NOTIFY => Self::Muted { seconds: r.u32()? },
            id::SHUTDOWN_RESPONSE => Self::ShutdownResult(r.result()?),
            id::PONG_RESPONSE => Self::Pong { nonce: r.u64()? },
            id::SERVER_NOTICE => Self::Notice {
                message: r.str16(Text::new("message", 0, limits::NOTICE))?,
            },
            id::RESUME_TOKEN_NOTIFY => Self::ResumeToken {
                token: r.str8(Text::new("token", 1, limits::TOKEN))?,
                ttl_secs: r.u32()?,
            },
            id::MESSAGES_MISSED_NOTIFY => Self::Missed {
                count: r.u32()?,
                seqs: match r.is_empty() {
                    true => None,
                    false => Some((r.u64()?, r.u64()?)),
                },
            },
            id::REQUEST_ERROR => Self::RequestError {
                request_id: r.u16()?,
                result: r.result()?,
            },
            id::HELLO_RESPONSE => Self::Hello {
                result: r.result()?,
                version: r.u16()?,
                features: r.u32()?,
                rooms: r.u32()?,
            },
            other => return Err(DecodeError::UnknownId(other)),
        };
        r.end()?;
        Ok(ev)
    }
}
