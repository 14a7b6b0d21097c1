//! Result codes carried by every response.

use std::fmt;

/// A response's result code (u16 LE on the wire; the seed's i16 fields carry
/// the same bytes). 0 is success. Codes below 100 are the seed's; 100 and up
/// are Plaza's.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResultCode(pub u16);

macro_rules! codes {
    ($($name:ident = $v:literal, $text:literal;)*) => {
        impl ResultCode {
            $(#[doc = $text] pub const $name: Self = Self($v);)*

            /// The code's name, or `UNKNOWN`.
            pub fn name(self) -> &'static str {
                match self.0 { $($v => stringify!($name),)* _ => "UNKNOWN" }
            }

            /// A sentence for people.
            pub fn describe(self) -> &'static str {
                match self.0 { $($v => $text,)* _ => "unknown result code" }
            }
        }
    };
}

codes! {
    OK = 0, "success";
    USER_NOT_IN_ROOM = 13, "you are not in a room";
    LOGIN_ALREADY = 31, "that user is already logged in";
    SERVER_FULL = 32, "the server is full";
    INVALID_CREDENTIALS = 33, "wrong user name or password";
    NOT_IN_LOBBY = 53, "you are already in a room; leave it first";
    ROOM_FULL = 54, "the room is full";
    INVALID_ROOM = 61, "no such room number";
    INVALID_ROOM_NUMBER = 81, "invalid room number";
    USER_IN_LOBBY = 82, "you are in the lobby, not in a room";
    NOT_LOGGED_IN = 100, "log in first";
    SESSION_ALREADY_LOGGED_IN = 101, "this connection is already logged in (or logging in)";
    INVALID_NAME = 102, "invalid user name";
    INVALID_PASSWORD = 103, "invalid password";
    INVALID_MESSAGE = 104, "invalid message (empty, too long, or not UTF-8)";
    MUTED = 105, "you are muted";
    NOT_ADMIN = 106, "administrator rights required";
    USER_NOT_FOUND = 107, "no such user is logged in";
    NAME_TAKEN = 108, "that user name is taken";
    REGISTRATION_DISABLED = 109, "registration is disabled on this server";
    SHUTTING_DOWN = 110, "the server is shutting down";
    BAD_REQUEST = 111, "malformed request";
    SERVICE_UNAVAILABLE = 112, "a service the server needs (accounts or the cluster bus) is unavailable; try again";
    BUSY = 113, "the server is busy; try again";
    UNKNOWN_PACKET = 114, "unknown packet id";
    RATE_LIMITED = 115, "too many requests; slow down and try again";
    UNREACHABLE = 116, "that user's client cannot receive this (it speaks only the seed protocol)";
    NOT_ROOM_OPERATOR = 117, "you are not an operator of your room";
    NOT_IN_YOUR_ROOM = 118, "that user is not in your room";
    MODERATED = 119, "the room is moderated: only its operators and voiced members speak";
    BAD_ROOM_KEY = 120, "the room has a key, and this is not it";
    INVITE_ONLY_ROOM = 121, "the room is invite-only, and you were not invited";
    ALREADY_IN_ROOM = 122, "that user is in your room already";
}

impl ResultCode {
    /// Whether this is [`ResultCode::OK`].
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }
}

impl fmt::Debug for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.describe(), self.0)
    }
}
