//! The two wire framings: where one packet ends and the next begins.
//!
//! Both are documented byte for byte in `docs/PROTOCOL.md`. The session layer
//! hands each complete frame to the handler *including* its header; use
//! [`Framing::payload`] for the bytes after the header.

use bytes::{BufMut, BytesMut};

/// How a byte stream is cut into frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Framing {
    /// Server-to-server framing (seed 003's LAN modules): a 2-byte
    /// little-endian payload length (header excluded), then the payload.
    Lan,
    /// The user-facing chat framing (the seeds' chat protocol): a 5-byte
    /// header of total length u16 LE (header included), packet id u16 LE and
    /// a flags byte that must be 0, then the body.
    Chat,
}

/// Why a frame header was rejected. The session that sent it is disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The declared frame length exceeds the configured cap.
    #[error("declared frame length {len} exceeds the limit of {max}")]
    TooLarge {
        /// Declared total frame length, header included.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// The declared frame length is smaller than the header itself.
    #[error("declared frame length {len} is below the header size {min}")]
    TooShort {
        /// Declared total frame length.
        len: usize,
        /// The header size.
        min: usize,
    },
    /// The chat header's flags byte is not 0.
    #[error("unsupported header flags {0:#04x}")]
    BadFlags(u8),
}

/// Chat header size in bytes.
pub const CHAT_HEADER_LEN: usize = 5;
/// LAN header size in bytes.
pub const LAN_HEADER_LEN: usize = 2;

impl Framing {
    /// Header size in bytes.
    pub const fn header_len(self) -> usize {
        match self {
            Self::Lan => LAN_HEADER_LEN,
            Self::Chat => CHAT_HEADER_LEN,
        }
    }

    /// The largest frame (header included) this framing can express.
    pub const fn max_frame(self) -> usize {
        match self {
            Self::Lan => LAN_HEADER_LEN + u16::MAX as usize,
            Self::Chat => u16::MAX as usize,
        }
    }

    /// The payload of a complete frame: the bytes after the header.
    pub fn payload(self, frame: &[u8]) -> &[u8] {
        &frame[self.header_len()..]
    }

    /// Looks at the start of `buf` and returns the length of the complete
    /// frame there, `Ok(None)` if more bytes are needed, or an error if the
    /// header is invalid or declares more than `max` bytes. Never allocates.
    pub fn next_frame(self, buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
        if buf.len() < self.header_len() {
            return Ok(None);
        }
        let len = match self {
            Self::Lan => LAN_HEADER_LEN + usize::from(u16::from_le_bytes([buf[0], buf[1]])),
            Self::Chat => {
                let len = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
                if len < CHAT_HEADER_LEN {
                    return Err(FrameError::TooShort {
                        len,
                        min: CHAT_HEADER_LEN,
                    });
                }
                if buf[4] != 0 {
                    return Err(FrameError::BadFlags(buf[4]));
                }
                len
            }
        };
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        Ok((buf.len() >= len).then_some(len))
    }
}

impl Framing {
    /// The total length declared by a complete header at the start of
    /// `buf`, unvalidated; `None` before the header is complete.
    pub(crate) fn declared_len(self, buf: &[u8]) -> Option<usize> {
        (buf.len() >= self.header_len()).then(|| {
            let n = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
            match self {
                Self::Lan => LAN_HEADER_LEN + n,
                Self::Chat => n,
            }
        })
    }
}

/// Appends a LAN frame carrying `payload` to `dst`.
///
/// # Panics
/// If `payload` is longer than 65,535 bytes.
pub fn put_lan_frame(dst: &mut BytesMut, payload: &[u8]) {
    let len = u16::try_from(payload.len()).expect("LAN payload over 65535 bytes");
    dst.reserve(LAN_HEADER_LEN + payload.len());
    dst.put_u16_le(len);
    dst.put_slice(payload);
}

/// Appends a chat frame with packet `id` and `body` to `dst`.
///
/// # Panics
/// If the frame would be longer than 65,535 bytes.
pub fn put_chat_frame(dst: &mut BytesMut, id: u16, body: &[u8]) {
    let len = u16::try_from(CHAT_HEADER_LEN + body.len()).expect("chat frame over 65535 bytes");
    dst.reserve(usize::from(len));
    dst.put_u16_le(len);
    dst.put_u16_le(id);
    dst.put_u8(0);
    dst.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_frame_needs_header_then_payload() {
        let mut b = BytesMut::new();
        put_lan_frame(&mut b, b"hello");
        assert_eq!(&b[..2], &[5, 0]);
        for cut in 0..b.len() {
            assert_eq!(Framing::Lan.next_frame(&b[..cut], 100), Ok(None));
        }
        assert_eq!(Framing::Lan.next_frame(&b, 100), Ok(Some(7)));
        assert_eq!(Framing::Lan.payload(&b), b"hello");
    }

    #[test]
    fn chat_frame_rejects_short_long_and_flags() {
        assert_eq!(
            Framing::Chat.next_frame(&[4, 0, 1, 0, 0], 100),
            Err(FrameError::TooShort { len: 4, min: 5 })
        );
        assert_eq!(
            Framing::Chat.next_frame(&[0, 0, 1, 0, 0], 100),
            Err(FrameError::TooShort { len: 0, min: 5 })
        );
        assert_eq!(
            Framing::Chat.next_frame(&[101, 0, 1, 0, 0], 100),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        assert_eq!(
            Framing::Chat.next_frame(&[5, 0, 1, 0, 9], 100),
            Err(FrameError::BadFlags(9))
        );
        assert_eq!(Framing::Chat.next_frame(&[5, 0, 1, 0, 0], 100), Ok(Some(5)));
    }

    #[test]
    fn lan_rejects_over_cap_before_payload_arrives() {
        // Only the header has arrived, declaring 60,000 bytes: rejected now.
        assert_eq!(
            Framing::Lan.next_frame(&[0x60, 0xEA], 1024),
            Err(FrameError::TooLarge {
                len: 60_002,
                max: 1024
            })
        );
    }
}
