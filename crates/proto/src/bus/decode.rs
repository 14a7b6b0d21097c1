//! Reading a bus message: every length checked before it is read, names
//! checked as a login checks them, chat frames decoded as a client would.

use bytes::Buf;

use super::*;

fn name(b: &[u8]) -> Result<String, BusError> {
    let s = std::str::from_utf8(b).map_err(|_| BusError::Name)?;
    if crate::valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err(BusError::Name)
    }
}

/// The client frame carried inside: its length field must match, and it
/// must decode.
fn event(b: &[u8]) -> Result<Event, BusError> {
    if b.len() < HEADER_LEN || usize::from(u16::from_le_bytes([b[0], b[1]])) != b.len() {
        return Err(BusError::Frame);
    }
    Event::decode(b).map_err(|_| BusError::Frame)
}

/// The place after a chat frame: none, or `<epoch> <seq>` in decimal,
/// both non-zero.
fn place(b: &[u8]) -> Result<Option<Place>, BusError> {
    if b.is_empty() {
        return Ok(None);
    }
    let number = |s: &[u8]| {
        let ok = !s.is_empty() && s.len() <= 20 && s.iter().all(u8::is_ascii_digit);
        ok.then(|| std::str::from_utf8(s).ok()?.parse::<u64>().ok())
            .flatten()
            .filter(|n| *n != 0)
    };
    let mut parts = b.splitn(2, |c| *c == b' ');
    let (Some(epoch), Some(seq)) = (parts.next(), parts.next()) else {
        return Err(BusError::Frame);
    };
    match (b.len() <= PLACE_MAX, number(epoch), number(seq)) {
        (true, Some(epoch), Some(seq)) => Ok(Place::new(epoch, seq)),
        _ => Err(BusError::Frame),
    }
}

fn short<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], BusError> {
    let n = usize::from(*b.first().ok_or(BusError::Truncated)?);
    if b.len() < 1 + n {
        return Err(BusError::Truncated);
    }
    let s = &b[1..=n];
    *b = &b[1 + n..];
    Ok(s)
}

fn need(b: &[u8], n: usize) -> Result<(), BusError> {
    if b.len() < n {
        Err(BusError::Truncated)
    } else {
        Ok(())
    }
}

/// Decodes a message, checking every length before reading.
pub fn decode(mut b: &[u8]) -> Result<Decoded, BusError> {
    need(b, 9)?;
    let mut kind = b.get_u8();
    let node = b.get_u64_le();
    if kind & STAMPED != 0 {
        // The stamp is read by `origin`.
        need(b, 16)?;
        b.advance(16);
        kind &= !STAMPED;
    }
    let msg = match kind {
        KIND_ONLINE => {
            need(b, 8)?;
            let uid = b.get_u64_le();
            BusMsg::Online { name: name(b)?, uid }
        }
        KIND_OFFLINE => BusMsg::Offline { name: name(b)? },
        KIND_ENTER | KIND_LEAVE => {
            need(b, 12)?;
            let (uid, room) = (b.get_u64_le(), b.get_u32_le());
            let name = name(b)?;
            if kind == KIND_ENTER {
                BusMsg::Enter { name, uid, room }
            } else {
                BusMsg::Leave { name, uid, room }
            }
        }
        KIND_ROOM => {
            need(b, 6)?;
            let room = b.get_u32_le();
            let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
            if len > b.len() {
                return Err(BusError::Frame);
            }
            let (frame, trailer) = b.split_at(len);
            let (from, message, notice) = match event(frame)? {
                Event::RoomChat { name, message } => (name, message, false),
                // As long as a room message may be (223's field holds no more).
                Event::RoomNotice { name, message, .. } if message.len() <= limits::ROOM_MESSAGE => {
                    (name, message, true)
                }
                _ => return Err(BusError::Frame),
            };
            BusMsg::RoomChat {
                room,
                from,
                message,
                place: place(trailer)?,
                notice,
            }
        }
        KIND_BROADCAST => match event(b)? {
            Event::Broadcast { from, message } => BusMsg::Broadcast { from, message },
            _ => return Err(BusError::Frame),
        },
        KIND_WHISPER => {
            let to = name(short(&mut b)?)?;
            let (from, message, notice) = match event(b)? {
                Event::Whisper { from, message } => (from, message, false),
                Event::WhisperNotice { from, message } => (from, message, true),
                _ => return Err(BusError::Frame),
            };
            BusMsg::Whisper {
                to,
                from,
                message,
                notice,
            }
        }
        KIND_KICK => {
            // `by` is an admin's name or "operator": a name either way, so
            // it is checked as one rather than cut or repaired.
            let target = name(short(&mut b)?)?;
            BusMsg::Kick {
                name: target,
                by: name(b)?,
            }
        }
        KIND_MUTE => {
            need(b, 4)?;
            let seconds = b.get_u32_le();
            BusMsg::Mute {
                name: name(b)?,
                seconds,
            }
        }
        KIND_TOPIC => {
            need(b, 12)?;
            let (room, at) = (b.get_u32_le(), b.get_u64_le());
            let by = name(short(&mut b)?)?;
            if b.len() > limits::TOPIC {
                return Err(BusError::Frame);
            }
            let topic = std::str::from_utf8(b).map_err(|_| BusError::Frame)?.to_owned();
            BusMsg::Topic { room, at, by, topic }
        }
        KIND_ROLE => {
            need(b, 13)?;
            let (room, uid, roles) = (b.get_u32_le(), b.get_u64_le(), b.get_u8());
            if roles & !crate::roles::ALL != 0 {
                return Err(BusError::Frame);
            }
            BusMsg::Role {
                room,
                uid,
                roles,
                by: name(b)?,
            }
        }
        KIND_ROOM_KICK => {
            need(b, 12)?;
            let (room, uid) = (b.get_u32_le(), b.get_u64_le());
            let name_ = name(short(&mut b)?)?;
            let by = name(short(&mut b)?)?;
            if b.len() > limits::REASON {
                return Err(BusError::Frame);
            }
            let reason = std::str::from_utf8(b).map_err(|_| BusError::Frame)?.to_owned();
            BusMsg::RoomKick {
                room,
                uid,
                name: name_,
                by,
                reason,
            }
        }
        KIND_MODES => {
            need(b, 17)?;
            let (room, at, flags, limit) = (b.get_u32_le(), b.get_u64_le(), b.get_u8(), b.get_u32_le());
            let key = std::str::from_utf8(short(&mut b)?).map_err(|_| BusError::Frame)?;
            if flags & !crate::room_modes::ALL != 0 || !crate::valid_room_key(key) {
                return Err(BusError::Frame);
            }
            BusMsg::Modes {
                room,
                at,
                by: name(b)?,
                flags,
                limit,
                key: key.to_owned(),
            }
        }
        KIND_INVITE => {
            need(b, 4)?;
            let room = b.get_u32_le();
            let to = name(short(&mut b)?)?;
            BusMsg::Invite {
                room,
                to,
                by: name(b)?,
            }
        }
        KIND_RESET => return Ok(Decoded::Reset { node }),
        KIND_TICK => return Ok(Decoded::Tick { node }),
        KIND_GONE => {
            let id = std::str::from_utf8(b).ok().and_then(|s| s.parse().ok());
            return id.map(|node| Decoded::Gone { node }).ok_or(BusError::Truncated);
        }
        KIND_DRAIN => {
            need(b, 8)?;
            return Ok(Decoded::Drain {
                node,
                seconds: b.get_u64_le(),
            });
        }
        KIND_NOTICE => {
            need(b, 8)?;
            let room = u32::try_from(b.get_i64_le()).ok();
            if b.len() > limits::NOTICE {
                return Err(BusError::Frame);
            }
            let message = std::str::from_utf8(b).map_err(|_| BusError::Frame)?.to_owned();
            return Ok(Decoded::Notice { node, room, message });
        }
        k => return Err(BusError::Kind(k)),
    };
    Ok(Decoded::Msg { node, msg })
}
