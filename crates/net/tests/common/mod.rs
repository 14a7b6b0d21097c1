//! A framing of the tests' own, as a library user writes one: a five-byte
//! header (total length u16 LE, an id u16 LE, flags that must be 0), the
//! shape of the seeds' chat framing.

use bytes::{BufMut, BytesMut};
use plaza_net::{FrameError, Framing};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Chat;

impl Framing for Chat {
    fn header_len(&self) -> usize {
        5
    }
    fn max_frame(&self) -> usize {
        usize::from(u16::MAX)
    }
    fn frame_len(&self, h: &[u8]) -> Result<usize, FrameError> {
        if h[4] != 0 {
            return Err(FrameError::BadFlags(h[4]));
        }
        Ok(usize::from(u16::from_le_bytes([h[0], h[1]])))
    }
}

/// Appends a frame with `id` and `body`.
#[allow(dead_code)] // Not every test file sends frames of its own.
pub(crate) fn put_chat_frame(dst: &mut BytesMut, id: u16, body: &[u8]) {
    let len = u16::try_from(5 + body.len()).expect("frame over 65535 bytes");
    dst.put_u16_le(len);
    dst.put_u16_le(id);
    dst.put_u8(0);
    dst.put_slice(body);
}
