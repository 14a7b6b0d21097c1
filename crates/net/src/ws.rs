//! WebSocket frames (RFC 6455). The server's side: [`WebSocket`] cuts a
//! client's frames (always masked) for a session's reader, [`Frame`] reads
//! one, and [`put_message`] writes the server's frames (never masked, so
//! one frame's bytes serve every recipient of a fan-out). The HTTP upgrade
//! before the frames is the application's [`Preamble`](crate::Preamble);
//! [`accept_key`] answers its `Sec-WebSocket-Key`.
//!
//! The client's side, for tools and tests: [`upgrade_request`],
//! [`put_masked`] and [`unframe`]. Written here rather than taken from a WebSocket
//! crate because the frames must go through plaza-net's own sessions (its
//! one-write-per-turn writer, shared fan-out buffers, pools, watchdog and
//! slow-consumer policy): every crate measured owns the socket and writes
//! each message per connection.

use base64::Engine as _;
use bytes::{BufMut, BytesMut};

use crate::{FrameError, Framing};

/// Opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// The rest of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A UTF-8 text message.
    pub const TEXT: u8 = 0x1;
    /// A binary message.
    pub const BINARY: u8 = 0x2;
    /// Close, with an optional code and reason.
    pub const CLOSE: u8 = 0x8;
    /// Ping: answered with a pong carrying the same payload.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Close codes (RFC 6455 §7.4.1) a server sends.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutting down).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A kind of data the endpoint does not accept (text where binary was
    /// expected, say).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A message's bytes are not what the subprotocol allows.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy was broken (too slow a reader, too many requests).
    pub const POLICY: u16 = 1008;
    /// A message was too big.
    pub const TOO_BIG: u16 = 1009;
    /// The server is overloaded: try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// The GUID RFC 6455 §1.3 appends to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// The framing of a client's WebSocket frames. Frames must be masked (as
/// RFC 6455 requires of clients) and use no extension bits; control frames
/// must be whole and at most 125 bytes. Payloads of up to 64 KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebSocket;

/// The largest payload [`WebSocket`] takes.
const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Extended length bytes after the first two, from the 7-bit length.
fn ext_len(len7: u8) -> usize {
    match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    }
}

impl Framing for WebSocket {
    fn header_len(&self) -> usize {
        2
    }

    fn full_header_len(&self, start: &[u8]) -> usize {
        let mask = if start[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext_len(start[1] & 0x7F) + mask
    }

    fn max_frame(&self) -> usize {
        2 + 2 + 4 + MAX_PAYLOAD
    }

    fn frame_len(&self, header: &[u8]) -> Result<usize, FrameError> {
        let (b0, b1) = (header[0], header[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::BadFlags(b0 & 0x70));
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Invalid("a client's WebSocket frame must be masked"));
        }
        let len7 = b1 & 0x7F;
        let ext = &header[2..2 + ext_len(len7)];
        let payload = match ext.len() {
            0 => u64::from(len7),
            2 => u64::from(u16::from_be_bytes([ext[0], ext[1]])),
            _ => u64::from_be_bytes(ext.try_into().unwrap_or([0xFF; 8])),
        };
        if b0 & 0x08 != 0 && (b0 & 0x80 == 0 || payload > 125) {
            return Err(FrameError::Invalid(
                "a WebSocket control frame must be whole and at most 125 bytes",
            ));
        }
        let payload = usize::try_from(payload).unwrap_or(usize::MAX);
        Ok(header.len().saturating_add(payload))
    }
}

/// One client frame, as [`WebSocket`] cut it.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The last frame of its message.
    pub fin: bool,
    /// See [`opcode`].
    pub opcode: u8,
    mask: [u8; 4],
    masked: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads a frame that [`WebSocket`] accepted (as a session hands it
    /// over, header included).
    ///
    /// # Panics
    /// If `frame` is not one whole frame [`WebSocket`] accepted.
    pub fn parse(frame: &'a [u8]) -> Self {
        let header = WebSocket.full_header_len(frame);
        let mask = frame[header - 4..header].try_into().expect("a masked frame");
        Self {
            fin: frame[0] & 0x80 != 0,
            opcode: frame[0] & 0x0F,
            mask,
            masked: &frame[header..],
        }
    }

    /// The payload's length.
    pub fn len(&self) -> usize {
        self.masked.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.masked.is_empty()
    }

    /// Unmasks the payload into `dst`, which must be [`len`](Self::len)
    /// bytes long.
    ///
    /// # Panics
    /// If `dst` is not as long as the payload.
    pub fn unmask_into(&self, dst: &mut [u8]) {
        assert_eq!(
            dst.len(),
            self.masked.len(),
            "unmask into a buffer of the payload's size"
        );
        for (i, (d, s)) in dst.iter_mut().zip(self.masked).enumerate() {
            *d = s ^ self.mask[i & 3];
        }
    }
}

/// Appends one whole, unmasked server frame with `opcode`, its payload
/// written by `encode` (which must only append), with the shortest length
/// field, as RFC 6455 requires.
pub fn put_message(dst: &mut BytesMut, opcode: u8, encode: impl FnOnce(&mut BytesMut)) {
    let start = dst.len();
    // Room for the longest header this writes (the 16-bit length); moved
    // down over the unused bytes once the payload's length is known.
    dst.put_slice(&[0; 4]);
    encode(dst);
    let len = dst.len() - start - 4;
    let header: &[u8] = &match len {
        0..=125 => [0x80 | opcode, len as u8, 0, 0],
        126..=MAX_PAYLOAD => {
            let [hi, lo] = (len as u16).to_be_bytes();
            [0x80 | opcode, 126, hi, lo]
        }
        _ => {
            // Rare (over 64 KiB): shift the payload up for the 64-bit length.
            let payload = dst.split_off(start + 4);
            dst.truncate(start);
            dst.put_u8(0x80 | opcode);
            dst.put_u8(127);
            dst.put_u64(len as u64);
            dst.unsplit(payload);
            return;
        }
    };
    let used = if len <= 125 { 2 } else { 4 };
    dst[start + 4 - used..start + 4].copy_from_slice(&header[..used]);
    if used < 4 {
        dst.copy_within(start + 2.., start);
        dst.truncate(dst.len() - 2);
    }
}

/// Appends a close frame with `code` and a short `reason` (cut to fit the
/// 125-byte control payload).
pub fn put_close(dst: &mut BytesMut, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    put_message(dst, opcode::CLOSE, |b| {
        b.put_u16(code);
        b.put_slice(&reason.as_bytes()[..end]);
    });
}

/// A client's upgrade request for `path` on `host`, asking for `protocol`.
pub fn upgrade_request(host: &str, path: &str, protocol: Option<&str>) -> String {
    // Any 16 bytes in base64 do: the server only hashes the key back.
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: cGxhemEtY2xpZW50LWtleQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        head += &format!("Sec-WebSocket-Protocol: {p}\r\n");
    }
    head + "\r\n"
}

/// A client's mask. Any value is valid; masking exists against
/// intermediaries that a client's bytes could mislead, which a load tool
/// need not vary for.
const CLIENT_MASK: [u8; 4] = [0x1F, 0x2E, 0x3D, 0x4C];

/// Appends `payload` as one whole masked (client) frame with `opcode`.
pub fn put_masked(dst: &mut BytesMut, opcode: u8, payload: &[u8]) {
    dst.put_u8(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => dst.put_u8(0x80 | n as u8),
        n @ 126..=MAX_PAYLOAD => {
            dst.put_u8(0x80 | 126);
            dst.put_u16(n as u16);
        }
        n => {
            dst.put_u8(0x80 | 127);
            dst.put_u64(n as u64);
        }
    }
    dst.put_slice(&CLIENT_MASK);
    dst.extend(payload.iter().enumerate().map(|(i, b)| b ^ CLIENT_MASK[i & 3]));
}

/// Moves the payloads of the whole server frames at the front of `raw`
/// into `payloads`, in order; control frames (pings, pongs) are dropped,
/// and a close frame ends it: `Ok(true)`, the close frame left at the front
/// of `raw` (so that every later call says so too). Frames over `max`
/// bytes, or masked (a server never masks), are refused.
///
/// # Errors
/// [`FrameError`] for a frame a server may not send.
pub fn unframe(raw: &mut BytesMut, payloads: &mut BytesMut, max: usize) -> Result<bool, FrameError> {
    loop {
        let Some(&[b0, b1]) = raw.get(..2) else {
            return Ok(false);
        };
        if b1 & 0x80 != 0 {
            return Err(FrameError::Invalid(
                "a server's WebSocket frame must not be masked",
            ));
        }
        let header = 2 + ext_len(b1 & 0x7F);
        let Some(ext) = raw.get(2..header) else {
            return Ok(false);
        };
        let len = match ext.len() {
            0 => u64::from(b1 & 0x7F),
            2 => u64::from(u16::from_be_bytes([ext[0], ext[1]])),
            _ => u64::from_be_bytes(ext.try_into().unwrap_or([0xFF; 8])),
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        if raw.len() < header + len {
            return Ok(false);
        }
        if b0 & 0x0F == opcode::CLOSE {
            return Ok(true);
        }
        let frame = raw.split_to(header + len);
        if matches!(b0 & 0x0F, opcode::CONTINUATION | opcode::TEXT | opcode::BINARY) {
            payloads.put_slice(&frame[header..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::next_frame;

    #[test]
    fn a_client_frame_is_cut_by_the_server_framing_and_unmasks_to_its_payload() {
        for len in [0, 5, 200, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut b = BytesMut::new();
            put_masked(&mut b, opcode::BINARY, &payload);
            assert_eq!(next_frame(&WebSocket, &b, 1 << 20), Ok(Some(b.len())));
            let frame = Frame::parse(&b);
            let mut out = vec![0; frame.len()];
            frame.unmask_into(&mut out);
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn server_frames_unframe_to_their_payloads_and_a_close_ends() {
        let mut raw = BytesMut::new();
        put_message(&mut raw, opcode::PING, |_| {});
        put_message(&mut raw, opcode::BINARY, |b| b.put_slice(b"abc"));
        put_message(&mut raw, opcode::BINARY, |b| b.put_bytes(7, 300));
        let whole = raw.len();
        put_message(&mut raw, opcode::BINARY, |b| b.put_slice(b"cut"));
        raw.truncate(whole + 3);
        let mut payloads = BytesMut::new();
        assert_eq!(unframe(&mut raw, &mut payloads, 1000), Ok(false));
        assert_eq!(payloads.len(), 303);
        assert_eq!(&payloads[..3], b"abc");
        assert_eq!(raw.len(), 3, "the cut frame waits for the rest");
        let mut closing = BytesMut::new();
        put_close(&mut closing, close::GOING_AWAY, "bye");
        assert_eq!(unframe(&mut closing, &mut payloads, 1000), Ok(true));
        assert_eq!(unframe(&mut closing, &mut payloads, 1000), Ok(true), "and again");
        let mut masked = BytesMut::new();
        put_masked(&mut masked, opcode::BINARY, b"x");
        assert!(unframe(&mut masked, &mut payloads, 1000).is_err());
    }

    /// A client frame as a browser sends it.
    fn client_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        let mut f = vec![if fin { 0x80 } else { 0 } | op];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn the_rfc_example_key_is_accepted() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn client_frames_of_every_length_form_are_cut_and_unmasked() {
        for len in [0, 5, 125, 126, 300, 65535] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let f = client_frame(true, opcode::BINARY, &payload);
            for cut in 0..f.len() {
                assert_eq!(
                    next_frame(&WebSocket, &f[..cut], 1 << 20),
                    Ok(None),
                    "len {len} cut {cut}"
                );
            }
            assert_eq!(next_frame(&WebSocket, &f, 1 << 20), Ok(Some(f.len())));
            let frame = Frame::parse(&f);
            assert!(frame.fin);
            assert_eq!(frame.opcode, opcode::BINARY);
            let mut out = vec![0; frame.len()];
            frame.unmask_into(&mut out);
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn bad_client_frames_are_refused_from_their_header() {
        let unmasked = [0x82, 0x05, 1, 2, 3, 4, 5];
        assert!(matches!(
            next_frame(&WebSocket, &unmasked, 1000),
            Err(FrameError::Invalid(_))
        ));
        let rsv = client_frame(true, 0x40 | opcode::BINARY, b"x");
        assert_eq!(
            next_frame(&WebSocket, &rsv, 1000),
            Err(FrameError::BadFlags(0x40))
        );
        let split_ping = client_frame(false, opcode::PING, b"x");
        assert!(matches!(
            next_frame(&WebSocket, &split_ping, 1000),
            Err(FrameError::Invalid(_))
        ));
        let long_ping = client_frame(true, opcode::PING, &[0; 126]);
        assert!(matches!(
            next_frame(&WebSocket, &long_ping, 1000),
            Err(FrameError::Invalid(_))
        ));
        // A 64-bit length is refused from the header alone, before any
        // payload arrives.
        let huge = [0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4];
        assert!(matches!(
            next_frame(&WebSocket, &huge, 1000),
            Err(FrameError::TooLarge { .. })
        ));
        let max = [
            0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
        ];
        assert!(matches!(
            next_frame(&WebSocket, &max, 1000),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn server_messages_use_the_shortest_length() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut b = BytesMut::from(&b"before"[..]);
            put_message(&mut b, opcode::BINARY, |b| b.put_bytes(7, len));
            assert_eq!(&b[..6], b"before");
            let f = &b[6..];
            assert_eq!(f.len(), header + len, "len {len}");
            assert_eq!(f[0], 0x82);
            match header {
                2 => assert_eq!(usize::from(f[1]), len),
                4 => assert_eq!((f[1], usize::from(u16::from_be_bytes([f[2], f[3]]))), (126, len)),
                _ => assert_eq!(
                    (f[1], u64::from_be_bytes(f[2..10].try_into().unwrap())),
                    (127, len as u64)
                ),
            }
            assert!(f[header..].iter().all(|&x| x == 7));
        }
    }

    #[test]
    fn a_close_frame_carries_its_code_and_a_reason_cut_on_a_char_boundary() {
        let mut b = BytesMut::new();
        put_close(&mut b, close::GOING_AWAY, &"é".repeat(100));
        assert_eq!(b[0], 0x88);
        let len = usize::from(b[1]);
        assert!(len <= 125);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), 1001);
        assert!(std::str::from_utf8(&b[4..]).is_ok());
    }
}
