//! plaza-proto: Plaza's chat protocol, shared by the server and clients.
//!
//! Frames use the 5-byte chat header (total length u16 LE including the
//! header, packet id u16 LE, flags u8 = 0); `docs/PROTOCOL.md` is the
//! normative description. This crate turns frames into typed [`Request`]s
//! (client to server) and [`Event`]s (server to client) and back. Every
//! decoder checks lengths before reading and caps every string, and nothing
//! here allocates more than the frame it was given.
//!
//! The seeds' packets (201-223) keep their wire form, so a client written for
//! the seed course talks to Plaza unchanged; Plaza's own commands use ids from
//! 301 up with length-prefixed fields.
#![warn(missing_docs)]

pub mod bus;
mod codec;
#[cfg(feature = "net")]
mod conn;
mod event;
#[cfg(feature = "net")]
mod framing;
mod request;
mod result;
mod roster;

pub use codec::{DecodeError, put_frame};
#[cfg(feature = "net")]
pub use conn::{Conn, ConnError, Endpoint};
pub use event::{
    Event, HISTORY_PAGE, ROOM_LIST_CHUNK, Replay, USER_LIST_PAGE, put_room_message, put_room_notice,
};
#[cfg(feature = "net")]
pub use framing::ChatFraming;
pub use request::{Page, Request};
pub use result::ResultCode;
pub use roster::{Roster, RosterList};

/// Chat header size.
pub const HEADER_LEN: usize = 5;
/// Largest frame the server accepts from a client (header included).
pub const MAX_REQUEST_FRAME: usize = 4096;

/// Byte caps of every text field. Text is UTF-8 without NUL bytes.
pub mod limits {
    /// User name: 1..=32 bytes (after composing to NFC), no whitespace,
    /// control or invisible format characters.
    pub const NAME: usize = 32;
    /// Password: 1..=32 bytes (the seed's fixed login field holds 32).
    pub const PASSWORD: usize = 32;
    /// Room chat message: 1..=256 bytes (the seed's fixed chat field).
    pub const ROOM_MESSAGE: usize = 256;
    /// Whisper and broadcast message: 1..=1024 bytes.
    pub const MESSAGE: usize = 1024;
    /// Echo payload: 0..=1024 bytes.
    pub const ECHO: usize = 1024;
    /// Admin secret: 0..=64 bytes.
    pub const SECRET: usize = 64;
    /// Resume token: 1..=128 bytes.
    pub const TOKEN: usize = 128;
    /// Server notice: 0..=1024 bytes.
    pub const NOTICE: usize = 1024;
    /// A room's topic: 0..=256 bytes (empty: none).
    pub const TOPIC: usize = 256;
    /// Why a member was put out of a room: 0..=256 bytes.
    pub const REASON: usize = 256;
    /// A room's key: 0..=23 bytes (empty: none) of printable ASCII without
    /// spaces, as IRC's channel keys.
    pub const ROOM_KEY: usize = 23;
    /// Size of the seed's fixed user-id field (32 bytes + NUL).
    pub const SEED_ID_FIELD: usize = 33;
    /// Size of the seed's fixed chat-message field (256 bytes + NUL).
    pub const SEED_MSG_FIELD: usize = 257;
}

/// Packet ids. 1-200 are never valid from a client: the seeds used low ids
/// (11, 12) and 1001/1002 for internal events, and Plaza refuses all of them.
pub mod id {
    #![allow(missing_docs)]
    pub const LOGIN_REQUEST: u16 = 201;
    pub const LOGIN_RESPONSE: u16 = 202;
    pub const ROOM_ENTER_REQUEST: u16 = 206;
    pub const ROOM_ENTER_RESPONSE: u16 = 207;
    pub const ROOM_NEW_USER_NOTIFY: u16 = 208;
    pub const ROOM_USER_LIST_NOTIFY: u16 = 209;
    pub const ROOM_LEAVE_REQUEST: u16 = 215;
    pub const ROOM_LEAVE_RESPONSE: u16 = 216;
    pub const ROOM_LEAVE_USER_NOTIFY: u16 = 217;
    pub const ROOM_CHAT_REQUEST: u16 = 221;
    pub const ROOM_CHAT_RESPONSE: u16 = 222;
    pub const ROOM_CHAT_NOTIFY: u16 = 223;
    pub const REGISTER_REQUEST: u16 = 301;
    pub const REGISTER_RESPONSE: u16 = 302;
    pub const ECHO_REQUEST: u16 = 303;
    pub const ECHO_RESPONSE: u16 = 304;
    pub const WHISPER_REQUEST: u16 = 305;
    pub const WHISPER_RESPONSE: u16 = 306;
    pub const WHISPER_NOTIFY: u16 = 307;
    pub const BROADCAST_REQUEST: u16 = 309;
    pub const BROADCAST_RESPONSE: u16 = 310;
    pub const BROADCAST_NOTIFY: u16 = 311;
    pub const USER_LIST_REQUEST: u16 = 313;
    pub const USER_LIST_RESPONSE: u16 = 314;
    pub const LOGOUT_REQUEST: u16 = 315;
    pub const LOGOUT_RESPONSE: u16 = 316;
    pub const ADMIN_REQUEST: u16 = 317;
    pub const ADMIN_RESPONSE: u16 = 318;
    pub const KICK_REQUEST: u16 = 319;
    pub const KICK_RESPONSE: u16 = 320;
    pub const KICKED_NOTIFY: u16 = 321;
    pub const MUTE_REQUEST: u16 = 323;
    pub const MUTE_RESPONSE: u16 = 324;
    pub const MUTED_NOTIFY: u16 = 325;
    pub const SHUTDOWN_REQUEST: u16 = 327;
    pub const SHUTDOWN_RESPONSE: u16 = 328;
    pub const PING_REQUEST: u16 = 331;
    pub const PONG_RESPONSE: u16 = 332;
    pub const SERVER_NOTICE: u16 = 333;
    pub const REQUEST_ERROR: u16 = 335;
    pub const RESUME_TOKEN_NOTIFY: u16 = 337;
    pub const RESUME_REQUEST: u16 = 339;
    pub const MESSAGES_MISSED_NOTIFY: u16 = 341;
    pub const HELLO_REQUEST: u16 = 343;
    pub const HELLO_RESPONSE: u16 = 344;
    pub const ROOM_MESSAGE_NOTIFY: u16 = 345;
    pub const HISTORY_REQUEST: u16 = 346;
    pub const HISTORY_RESPONSE: u16 = 347;
    pub const ROOM_REJOIN_REQUEST: u16 = 348;
    pub const ROOM_REJOIN_RESPONSE: u16 = 349;
    pub const ROOM_SEND_REQUEST: u16 = 350;
    pub const ROOM_SEND_RESPONSE: u16 = 351;
    pub const ROOM_NOTICE_REQUEST: u16 = 352;
    pub const ROOM_NOTICE_NOTIFY: u16 = 354;
    pub const WHISPER_NOTICE_REQUEST: u16 = 355;
    pub const WHISPER_NOTICE_NOTIFY: u16 = 357;
    pub const ROOM_TOPIC_REQUEST: u16 = 358;
    pub const ROOM_TOPIC_RESPONSE: u16 = 359;
    pub const ROOM_TOPIC_NOTIFY: u16 = 360;
    pub const ROOM_ROLE_REQUEST: u16 = 361;
    pub const ROOM_ROLE_RESPONSE: u16 = 362;
    pub const ROOM_ROLE_NOTIFY: u16 = 363;
    pub const ROOM_KICK_REQUEST: u16 = 364;
    pub const ROOM_KICK_RESPONSE: u16 = 365;
    pub const ROOM_KICKED_NOTIFY: u16 = 366;
    pub const ROOM_MODE_REQUEST: u16 = 367;
    pub const ROOM_MODE_RESPONSE: u16 = 368;
    pub const ROOM_MODE_NOTIFY: u16 = 369;
    pub const ROOM_ENTER_KEY_REQUEST: u16 = 370;
    pub const ROOM_INVITE_REQUEST: u16 = 371;
    pub const ROOM_INVITE_RESPONSE: u16 = 372;
    pub const ROOM_INVITE_NOTIFY: u16 = 373;
}

/// A room member's roles (ROOM_ROLE, 361-363).
pub mod roles {
    /// An operator of the room (IRC's `@`, `+o`).
    pub const OPERATOR: u8 = 1;
    /// May speak when the room is moderated (IRC's `+`, `+v`).
    pub const VOICE: u8 = 2;
    /// Every role.
    pub const ALL: u8 = OPERATOR | VOICE;
}

/// ROOM_MODE's flags: what a room's operators may switch on.
pub mod room_modes {
    /// Only the room's operators set its topic (IRC's `+t`).
    pub const TOPIC: u8 = 1;
    /// Only the room's operators and voiced members speak in it (IRC's
    /// `+m`).
    pub const MODERATED: u8 = 2;
    /// Not listed to those outside it (IRC's `+s`: not in LIST, and
    /// NAMES says `@`).
    pub const SECRET: u8 = 4;
    /// Only members invited (ROOM_INVITE) may enter (IRC's `+i`).
    pub const INVITE_ONLY: u8 = 8;
    /// Every flag.
    pub const ALL: u8 = TOPIC | MODERATED | SECRET | INVITE_ONLY;
}

/// Whether `key` may be a room's key (empty: none).
pub fn valid_room_key(key: &str) -> bool {
    key.len() <= limits::ROOM_KEY && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The protocol version this crate speaks (HELLO's `version`).
pub const VERSION: u16 = 1;

/// HELLO's feature bits.
pub mod features {
    /// Plaza's notifications: WHISPER (307), BROADCAST (311), KICKED (321),
    /// MUTED (325), SERVER_NOTICE (333), RESUME_TOKEN (337) and
    /// MESSAGES_MISSED (341). Without it a connection gets only the seed's
    /// packets and the responses to its own requests. REGISTER and RESUME
    /// turn it on by themselves.
    pub const NOTIFICATIONS: u32 = 1;
    /// Room history: room messages come as ROOM_MESSAGE (345), with the
    /// room and the message's sequence number, instead of the seed's 223.
    /// HISTORY (346) and ROOM_REJOIN (348) turn it on by themselves.
    pub const HISTORY: u32 = 2;
    /// Notices: a room notice comes as ROOM_NOTICE (354) instead of 345 or
    /// 223, a whispered notice as WHISPER_NOTICE (357) instead of 307.
    /// A notice is a message that must never be answered automatically
    /// (IRC's NOTICE: what bots and services send).
    pub const NOTICES: u32 = 4;
    /// Every feature this server has.
    pub const ALL: u32 = NOTIFICATIONS | HISTORY | NOTICES;
}

/// The sequence number in a ROOM_MESSAGE (345) or ROOM_NOTICE (354)
/// frame, or 0 for any other frame (numbers start at 1).
pub fn room_message_seq(frame: &[u8]) -> u64 {
    match frame.get(2..4).zip(frame.get(HEADER_LEN + 4..HEADER_LEN + 12)) {
        Some((pid, seq))
            if pid == id::ROOM_MESSAGE_NOTIFY.to_le_bytes()
                || pid == id::ROOM_NOTICE_NOTIFY.to_le_bytes() =>
        {
            u64::from_le_bytes(seq.try_into().expect("8 bytes"))
        }
        _ => 0,
    }
}

/// Whether `frame` is a ROOM_NOTICE (354).
pub fn is_room_notice(frame: &[u8]) -> bool {
    frame.get(2..4) == Some(&id::ROOM_NOTICE_NOTIFY.to_le_bytes()[..])
}

/// A room frame for a connection without [`features::NOTICES`]: a
/// ROOM_NOTICE (354) as the ROOM_MESSAGE (345) with the same body (a
/// copy), anything else as it is (shared).
pub fn without_notice(frame: &bytes::Bytes) -> bytes::Bytes {
    if !is_room_notice(frame) {
        return frame.clone();
    }
    let mut b = bytes::BytesMut::from(&frame[..]);
    b[2..4].copy_from_slice(&id::ROOM_MESSAGE_NOTIFY.to_le_bytes());
    b.freeze()
}

/// Whether `name` is a valid user name (see [`limits::NAME`]).
pub fn valid_name(name: &str) -> bool {
    codec::Text::name("name", limits::NAME)
        .check(0, name.as_bytes())
        .is_ok()
}

/// The form of a user name that decides whether two names are the same
/// account: lower case (Unicode's full lower-casing of the composed form).
/// Names are kept and shown as registered; no two accounts may have the
/// same key, so `Amy` cannot register beside `amy`.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// Whether `password` is a valid password (see [`limits::PASSWORD`]).
pub fn valid_password(password: &str) -> bool {
    codec::Text::new("password", 1, limits::PASSWORD)
        .check(0, password.as_bytes())
        .is_ok()
}

/// The packet id of a frame (bytes 2..4 of the header); 0 for a frame too
/// short to have one.
pub fn packet_id(frame: &[u8]) -> u16 {
    frame.get(2..4).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

/// The length of the frame at the front of `buf`, once all of it is
/// there: `Ok(None)` while some has not arrived.
///
/// # Errors
/// [`DecodeError::Short`] when the header gives a length below the
/// header's own: nothing after it can be framed, so the stream is done.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(&[a, b]) = buf.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_le_bytes([a, b]));
    if len < HEADER_LEN {
        return Err(DecodeError::Short);
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Takes the first whole frame off the front of `buf`, as bytes come in
/// from a stream: `Ok(None)` while the rest of it has not arrived.
///
/// # Errors
/// As [`frame_len`].
pub fn split_frame(buf: &mut bytes::BytesMut) -> Result<Option<bytes::BytesMut>, DecodeError> {
    Ok(frame_len(buf)?.map(|len| buf.split_to(len)))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    #[test]
    fn split_frame_waits_for_whole_frames_and_refuses_short_lengths() {
        let mut both = BytesMut::new();
        Event::LoginResult(ResultCode::OK).encode(&mut both);
        Event::RoomLeaveUser { uid: 7 }.encode(&mut both);
        let mut buf = BytesMut::new();
        for (i, b) in both.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = split_frame(&mut buf).unwrap();
            if let Some(f) = got {
                assert!(i == 6 || i == both.len() - 1, "a frame came out after byte {i}");
                assert!(Event::decode(&f).is_ok());
            }
        }
        assert!(buf.is_empty());
        for len in [0u8, 4] {
            let mut bad = BytesMut::from(&[len, 0, 202, 0, 0, 0][..]);
            assert_eq!(split_frame(&mut bad), Err(DecodeError::Short), "length {len}");
        }
    }
}

/// Checks the fuzz targets run (in `fuzz/`, outside the workspace) and the
/// corpus smoke tests replay. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::BytesMut;

    use crate::{Event, Request};

    /// Decoding any frame as a request never panics, and what decodes
    /// re-encodes to a frame that decodes to the same request.
    pub fn request(frame: &[u8]) {
        if let Ok(r) = Request::decode(frame) {
            let mut b = BytesMut::new();
            r.encode(&mut b);
            assert_eq!(Request::decode(&b).as_ref(), Ok(&r), "re-encoded request differs");
        }
    }

    /// The same for events (what a client decodes).
    pub fn event(frame: &[u8]) {
        if let Ok(e) = Event::decode(frame) {
            let b = e.to_bytes();
            assert_eq!(Event::decode(&b).as_ref(), Ok(&e), "re-encoded event differs");
        }
    }
}
