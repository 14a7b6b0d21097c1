//! Framing: where one frame ends and the next begins in a byte stream.
//!
//! A session reads a frame's header, asks its [`Framing`] how long the frame
//! is (checking the length against a cap before it allocates anything), and
//! hands the handler each complete frame, header included. Implement
//! [`Framing`] for your own wire format; plaza-net ships [`Lan`], the
//! server-to-server framing of `docs/PROTOCOL.md`. (Plaza's chat framing is
//! `plaza_proto::ChatFraming`, beside the rest of the chat protocol.)

use std::fmt;

use bytes::{BufMut, BytesMut};

/// How a byte stream is cut into frames. Each frame starts with a header
/// of [`header_len`](Self::header_len) bytes that tells its whole length
/// (or, for a header that grows, [`full_header_len`](Self::full_header_len)).
pub trait Framing: fmt::Debug + Send + Sync + 'static {
    /// Bytes of the header: what must have arrived before the frame's length
    /// is known (for a header that grows, before its full length is known).
    fn header_len(&self) -> usize;

    /// The whole header's length, from its first
    /// [`header_len`](Self::header_len) bytes: for headers whose size
    /// depends on their first bytes (WebSocket's extended length and mask).
    /// At least `header_len`; by default exactly that.
    fn full_header_len(&self, start: &[u8]) -> usize {
        let _ = start;
        self.header_len()
    }

    /// The largest frame (header included) this framing can express.
    fn max_frame(&self) -> usize;

    /// For a text protocol whose frames are lines: the byte that ends each
    /// frame (included in it), instead of a length in a header. A frame is
    /// then everything up to and including the next such byte, and a
    /// stream that holds none within the session's largest frame is
    /// refused with [`FrameError::TooLarge`]. `header_len` and
    /// `frame_len` are not used.
    fn delimiter(&self) -> Option<u8> {
        None
    }

    /// The whole frame's length, header included, from its header (exactly
    /// [`full_header_len`](Self::full_header_len) bytes), or why the header is
    /// refused (the session is then closed). Below the header's own length
    /// is [`FrameError::TooShort`].
    ///
    /// # Errors
    /// When the header is not valid.
    fn frame_len(&self, header: &[u8]) -> Result<usize, FrameError>;
}

/// Looks at the start of `buf` and returns the length of the complete
/// frame there, `Ok(None)` if more bytes are needed, or an error if the
/// header is invalid or declares more than `max` bytes. Never allocates.
///
/// # Errors
/// As [`Framing::frame_len`], and [`FrameError::TooLarge`] over `max`.
pub fn next_frame(framing: &dyn Framing, buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if let Some(end) = framing.delimiter() {
        let window = &buf[..buf.len().min(max)];
        return match window.iter().position(|&b| b == end) {
            Some(at) => Ok(Some(at + 1)),
            None if buf.len() >= max => Err(FrameError::TooLarge { len: buf.len(), max }),
            None => Ok(None),
        };
    }
    let Some(header) = header_in(framing, buf) else {
        return Ok(None);
    };
    let len = framing.frame_len(&buf[..header])?;
    if len < header {
        return Err(FrameError::TooShort { len, min: header });
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok((buf.len() >= len).then_some(len))
}

/// How many bytes the frame at the start of `buf` needs in all (the header
/// alone until it is complete): how much room to read into.
pub(crate) fn wanted(framing: &dyn Framing, buf: &[u8]) -> usize {
    if framing.delimiter().is_some() {
        // A line ends somewhere in what comes next.
        return buf.len() + 1;
    }
    match header_in(framing, buf) {
        Some(header) => framing.frame_len(&buf[..header]).unwrap_or(header).max(header),
        None => match buf.get(..framing.header_len()) {
            Some(start) => framing.full_header_len(start),
            None => framing.header_len(),
        },
    }
}

/// The whole header's length if all of it is in `buf`.
fn header_in(framing: &dyn Framing, buf: &[u8]) -> Option<usize> {
    let start = buf.get(..framing.header_len())?;
    let header = framing.full_header_len(start).max(start.len());
    (buf.len() >= header).then_some(header)
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
    /// The header's flags hold a value the framing does not support.
    #[error("unsupported header flags {0:#04x}")]
    BadFlags(u8),
    /// The header breaks a rule of its framing.
    #[error("{0}")]
    Invalid(&'static str),
}

/// LAN header size in bytes.
pub const LAN_HEADER_LEN: usize = 2;

/// The server-to-server framing (seed 003's LAN modules): a 2-byte
/// little-endian payload length (header excluded), then the payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lan;

impl Lan {
    /// The payload of a complete frame: the bytes after the header.
    pub fn payload(frame: &[u8]) -> &[u8] {
        &frame[LAN_HEADER_LEN..]
    }
}

impl Framing for Lan {
    fn header_len(&self) -> usize {
        LAN_HEADER_LEN
    }

    fn max_frame(&self) -> usize {
        LAN_HEADER_LEN + usize::from(u16::MAX)
    }

    fn frame_len(&self, header: &[u8]) -> Result<usize, FrameError> {
        Ok(LAN_HEADER_LEN + usize::from(u16::from_le_bytes([header[0], header[1]])))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::Five;

    #[test]
    fn lan_frame_needs_header_then_payload() {
        let mut b = BytesMut::new();
        put_lan_frame(&mut b, b"hello");
        assert_eq!(&b[..2], &[5, 0]);
        for cut in 0..b.len() {
            assert_eq!(next_frame(&Lan, &b[..cut], 100), Ok(None));
        }
        assert_eq!(next_frame(&Lan, &b, 100), Ok(Some(7)));
        assert_eq!(Lan::payload(&b), b"hello");
    }

    #[test]
    fn a_users_framing_is_checked_for_short_long_and_its_own_errors() {
        assert_eq!(
            next_frame(&Five, &[4, 0, 1, 0, 0], 100),
            Err(FrameError::TooShort { len: 4, min: 5 })
        );
        assert_eq!(
            next_frame(&Five, &[0, 0, 1, 0, 0], 100),
            Err(FrameError::TooShort { len: 0, min: 5 })
        );
        assert_eq!(
            next_frame(&Five, &[101, 0, 1, 0, 0], 100),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        assert_eq!(
            next_frame(&Five, &[5, 0, 1, 0, 9], 100),
            Err(FrameError::BadFlags(9))
        );
        assert_eq!(next_frame(&Five, &[5, 0, 1, 0, 0], 100), Ok(Some(5)));
    }

    #[test]
    fn lan_rejects_over_cap_before_payload_arrives() {
        // Only the header has arrived, declaring 60,000 bytes: rejected now.
        assert_eq!(
            next_frame(&Lan, &[0x60, 0xEA], 1024),
            Err(FrameError::TooLarge {
                len: 60_002,
                max: 1024
            })
        );
    }

    /// Lines ending in `\n`, as a text protocol cuts them.
    #[derive(Debug)]
    struct Lines;

    impl Framing for Lines {
        fn header_len(&self) -> usize {
            1
        }
        fn max_frame(&self) -> usize {
            usize::MAX
        }
        fn frame_len(&self, _: &[u8]) -> Result<usize, FrameError> {
            unreachable!("a delimited framing has no header")
        }
        fn delimiter(&self) -> Option<u8> {
            Some(b'\n')
        }
    }

    #[test]
    fn a_line_framing_cuts_at_its_delimiter_and_refuses_a_line_past_the_cap() {
        assert_eq!(next_frame(&Lines, b"PING a\r\nPI", 16), Ok(Some(8)));
        assert_eq!(next_frame(&Lines, b"PI", 16), Ok(None));
        assert_eq!(wanted(&Lines, b"PI"), 3);
        // No end within the cap: refused as soon as the cap is reached,
        // whatever follows.
        assert_eq!(
            next_frame(&Lines, b"0123456789abcdef\n", 16),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
        assert_eq!(next_frame(&Lines, b"0123456789abcde\n", 16), Ok(Some(16)));
    }
}
