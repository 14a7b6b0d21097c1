//! Field readers and writers shared by requests and events.

use bytes::{BufMut, BytesMut};

use crate::{HEADER_LEN, ResultCode};

/// Why a frame could not be decoded. Each maps to the result code sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is shorter than its header.
    #[error("frame shorter than the header")]
    Short,
    /// No such packet id (or one a client may not send).
    #[error("unknown packet id {0}")]
    UnknownId(u16),
    /// The body does not have the packet's layout.
    #[error("packet {id}: malformed body")]
    Malformed {
        /// The packet id.
        id: u16,
    },
    /// A text field is too long, empty where it may not be, not UTF-8, or
    /// contains a forbidden character.
    #[error("packet {id}: invalid {field}")]
    Invalid {
        /// The packet id.
        id: u16,
        /// The field's name.
        field: &'static str,
    },
}

impl DecodeError {
    /// The result code a server answers this error with.
    pub fn result(&self) -> ResultCode {
        match self {
            Self::Short | Self::Malformed { .. } => ResultCode::BAD_REQUEST,
            Self::UnknownId(_) => ResultCode::UNKNOWN_PACKET,
            Self::Invalid { field, .. } => match *field {
                "name" | "target" => ResultCode::INVALID_NAME,
                "password" | "token" => ResultCode::INVALID_PASSWORD,
                "message" => ResultCode::INVALID_MESSAGE,
                _ => ResultCode::BAD_REQUEST,
            },
        }
    }
}

/// What a text field must satisfy.
#[derive(Clone, Copy)]
pub(crate) struct Text {
    pub(crate) field: &'static str,
    pub(crate) min: usize,
    pub(crate) max: usize,
    /// Names: no whitespace or control characters.
    pub(crate) name: bool,
}

impl Text {
    pub(crate) const fn new(field: &'static str, min: usize, max: usize) -> Self {
        Self {
            field,
            min,
            max,
            name: false,
        }
    }
    pub(crate) const fn name(field: &'static str, max: usize) -> Self {
        Self {
            field,
            min: 1,
            max,
            name: true,
        }
    }

    pub(crate) fn check<'a>(&self, id: u16, bytes: &'a [u8]) -> Result<&'a str, DecodeError> {
        let bad = DecodeError::Invalid {
            id,
            field: self.field,
        };
        if bytes.len() < self.min || bytes.len() > self.max || bytes.contains(&0) {
            return Err(bad);
        }
        let s = std::str::from_utf8(bytes).map_err(|_| bad.clone())?;
        if self.name && s.chars().any(refused_in_name) {
            return Err(bad);
        }
        Ok(s)
    }

    /// The field as owned text: checked, and a name in Unicode's composed
    /// form (NFC), so that two spellings of one name are one name. A name
    /// whose composed form is over the cap is refused.
    pub(crate) fn text(&self, id: u16, bytes: &[u8]) -> Result<String, DecodeError> {
        let s = self.check(id, bytes)?;
        if !self.name || unicode_normalization::is_nfc(s) {
            return Ok(s.to_owned());
        }
        let composed: String = unicode_normalization::UnicodeNormalization::nfc(s).collect();
        self.check(id, composed.as_bytes())?;
        Ok(composed)
    }
}

/// Characters a user name may not hold: whitespace and control characters,
/// and the invisible ones that make a name look like another's (format
/// characters such as zero-width spaces, soft hyphens and joiners, bidi
/// controls, fillers, variation selectors and tags). The list is short and
/// fixed, so it is spelt out here rather than taken from a Unicode property
/// crate.
pub(crate) fn refused_in_name(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// A bounds-checked cursor over a packet body.
pub(crate) struct Reader<'a> {
    id: u16,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The body of `frame`, after checking the header against the frame.
    pub(crate) fn body(frame: &'a [u8]) -> Result<(u16, Self), DecodeError> {
        if frame.len() < HEADER_LEN {
            return Err(DecodeError::Short);
        }
        let id = u16::from_le_bytes([frame[2], frame[3]]);
        Ok((
            id,
            Self {
                id,
                buf: &frame[HEADER_LEN..],
            },
        ))
    }

    fn malformed(&self) -> DecodeError {
        DecodeError::Malformed { id: self.id }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(self.malformed());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("4 bytes")))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }
    pub(crate) fn result(&mut self) -> Result<ResultCode, DecodeError> {
        self.u16().map(ResultCode)
    }

    /// A u8-length-prefixed text field.
    pub(crate) fn str8(&mut self, rule: Text) -> Result<String, DecodeError> {
        let n = usize::from(self.u8()?);
        let b = self.bytes(n)?;
        rule.text(self.id, b)
    }

    /// A u16-length-prefixed text field.
    pub(crate) fn str16(&mut self, rule: Text) -> Result<String, DecodeError> {
        let n = usize::from(self.u16()?);
        let b = self.bytes(n)?;
        rule.text(self.id, b)
    }

    /// A u16-length-prefixed byte field of at most `max` bytes.
    pub(crate) fn bytes16(&mut self, max: usize) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(DecodeError::Invalid {
                id: self.id,
                field: "payload",
            });
        }
        self.bytes(n)
    }

    /// A seed-style fixed field of `size` bytes holding NUL-padded text.
    pub(crate) fn fixed(&mut self, size: usize, rule: Text) -> Result<String, DecodeError> {
        let b = self.bytes(size)?;
        rule.text(self.id, unpad(self.id, b, rule.field)?)
    }

    /// Whether the body has been read to its end.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// What is left of the body.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless the body has been read to its end.
    pub(crate) fn end(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }
}

/// The text of a NUL-padded field: the bytes before the first NUL, which
/// must be followed by nothing but NULs (a field holding `pw\0junk` is
/// refused, not cut to `pw`).
pub(crate) fn unpad<'a>(id: u16, field: &'a [u8], name: &'static str) -> Result<&'a [u8], DecodeError> {
    let Some(nul) = field.iter().position(|&c| c == 0) else {
        return Ok(field);
    };
    if field[nul..].iter().any(|&c| c != 0) {
        return Err(DecodeError::Invalid { id, field: name });
    }
    Ok(&field[..nul])
}

/// Writes one frame: reserves the header, lets `body` append, then fills in
/// the length.
pub(crate) fn frame(dst: &mut BytesMut, id: u16, body: impl FnOnce(&mut BytesMut)) {
    let start = dst.len();
    dst.put_u16_le(0);
    dst.put_u16_le(id);
    dst.put_u8(0);
    body(dst);
    let len = u16::try_from(dst.len() - start).expect("frame over 64 KiB");
    dst[start..start + 2].copy_from_slice(&len.to_le_bytes());
}

/// Appends a whole frame: the header for packet `id`, then `body`.
///
/// # Panics
/// If the frame would be longer than 65,535 bytes.
pub fn put_frame(dst: &mut BytesMut, id: u16, body: &[u8]) {
    dst.reserve(HEADER_LEN + body.len());
    frame(dst, id, |b| b.put_slice(body));
}

pub(crate) fn put_str8(dst: &mut BytesMut, s: &str) {
    let n = u8::try_from(s.len()).expect("string over 255 bytes");
    dst.put_u8(n);
    dst.put_slice(s.as_bytes());
}

pub(crate) fn put_str16(dst: &mut BytesMut, s: &[u8]) {
    let n = u16::try_from(s.len()).expect("string over 65535 bytes");
    dst.put_u16_le(n);
    dst.put_slice(s);
}

/// A seed-style fixed NUL-padded field; `s` must be shorter than `size`.
pub(crate) fn put_fixed(dst: &mut BytesMut, s: &str, size: usize) {
    let n = s.len().min(size - 1);
    dst.put_slice(&s.as_bytes()[..n]);
    dst.put_bytes(0, size - n);
}
