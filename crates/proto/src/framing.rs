//! The chat framing, for plaza-net's sessions: the chat header is defined
//! here, with the rest of the protocol, and nowhere else.

use plaza_net::{FrameError, Framing};

use crate::HEADER_LEN;

/// The chat framing: a 5-byte header of total length (u16 LE, header
/// included), packet id (u16 LE) and a flags byte that must be 0, then the
/// body (`docs/PROTOCOL.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatFraming;

impl Framing for ChatFraming {
    fn header_len(&self) -> usize {
        HEADER_LEN
    }

    fn max_frame(&self) -> usize {
        usize::from(u16::MAX)
    }

    fn frame_len(&self, header: &[u8]) -> Result<usize, FrameError> {
        if header[4] != 0 {
            return Err(FrameError::BadFlags(header[4]));
        }
        Ok(usize::from(u16::from_le_bytes([header[0], header[1]])))
    }
}

#[cfg(test)]
mod tests {
    use plaza_net::next_frame;

    use super::*;

    #[test]
    fn short_long_and_flagged_headers_are_refused() {
        let f = &ChatFraming;
        assert_eq!(
            next_frame(f, &[4, 0, 1, 0, 0], 100),
            Err(FrameError::TooShort { len: 4, min: 5 })
        );
        assert_eq!(
            next_frame(f, &[101, 0, 1, 0, 0], 100),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        assert_eq!(next_frame(f, &[5, 0, 1, 0, 9], 100), Err(FrameError::BadFlags(9)));
        assert_eq!(next_frame(f, &[5, 0, 1, 0, 0], 100), Ok(Some(5)));
        let mut b = bytes::BytesMut::new();
        crate::put_frame(&mut b, 300, b"hi");
        assert_eq!(next_frame(f, &b, 100), Ok(Some(7)));
        assert_eq!(crate::frame_len(&b), Ok(Some(7)));
    }
}
