//! A room's member list kept in its wire form.
//!
//! Everyone entering a room is sent the members already there
//! (ROOM_USER_LIST_NOTIFY, 209). Built per entrant from the sessions, that
//! is a lookup and a small copy per member: in a room of 190 filling up
//! after a restart, the lookups alone were 9% of the server's CPU. A
//! [`Roster`] holds the members' list entries back to back, in order, so an
//! entrant's list is one copy per 127 members.

use bytes::{BufMut, BytesMut};

use crate::codec::frame;
use crate::{ROOM_LIST_CHUNK, id, limits};

/// A room's members as ROOM_USER_LIST entries (session id u64 LE, then the
/// name with its u8 length), in the order they came in.
#[derive(Debug, Default, Clone)]
pub struct Roster {
    entries: Vec<u8>,
    len: usize,
}

/// The bytes of the entry that starts `entries`.
fn entry_len(entries: &[u8]) -> usize {
    9 + usize::from(entries[8])
}

impl Roster {
    /// Members listed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody is listed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a member at the end.
    ///
    /// # Panics
    /// If `name` is over [`limits::NAME`] bytes (a bug in the caller: names
    /// are checked when they come in).
    pub fn push(&mut self, uid: u64, name: &str) {
        assert!(name.len() <= limits::NAME, "name over {} bytes", limits::NAME);
        self.entries.put_u64_le(uid);
        self.entries.put_u8(name.len() as u8);
        self.entries.put_slice(name.as_bytes());
        self.len += 1;
    }

    /// Takes out the member at `index` (in the order they came in) and
    /// returns its id; the members after it move up. Out of range: nothing.
    pub fn remove(&mut self, index: usize) -> Option<u64> {
        if index >= self.len {
            return None;
        }
        let start = self.offsets().nth(index).expect("index checked");
        let end = start + entry_len(&self.entries[start..]);
        let uid = u64::from_le_bytes(self.entries[start..start + 8].try_into().expect("8 bytes"));
        self.entries.drain(start..end);
        self.len -= 1;
        if self.len == 0 {
            // Hold no buffer for an empty room.
            self.entries = Vec::new();
        }
        Some(uid)
    }

    /// Where each entry starts.
    fn offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let start = at;
            at += entry_len(self.entries.get(start..)?.get(..9)?);
            Some(start)
        })
    }

    /// The members (id and name), in the order they came in.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.offsets().map(|at| {
            let e = &self.entries[at..];
            let uid = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
            let len = usize::from(e[8]);
            // Pushed as a `&str` (`push`): whole characters.
            let name = std::str::from_utf8(&e[9..9 + len]).unwrap_or_default();
            (uid, name)
        })
    }

    /// The member list as ROOM_USER_LIST_NOTIFY frames of at most
    /// [`ROOM_LIST_CHUNK`] members each (none for an empty roster): what
    /// [`Event::RoomUserList`](crate::Event::RoomUserList) events of the
    /// same members encode to.
    pub fn lists(&self) -> impl Iterator<Item = RosterList<'_>> {
        let mut offsets = self.offsets().step_by(ROOM_LIST_CHUNK).peekable();
        let mut left = self.len;
        std::iter::from_fn(move || {
            let start = offsets.next()?;
            let end = offsets.peek().copied().unwrap_or(self.entries.len());
            let count = left.min(ROOM_LIST_CHUNK);
            left -= count;
            Some(RosterList {
                count: count as u8,
                entries: &self.entries[start..end],
            })
        })
    }
}

/// One ROOM_USER_LIST_NOTIFY of a [`Roster`].
#[derive(Debug, Clone, Copy)]
pub struct RosterList<'a> {
    count: u8,
    entries: &'a [u8],
}

impl RosterList<'_> {
    /// Appends the frame.
    pub fn encode(self, dst: &mut BytesMut) {
        frame(dst, id::ROOM_USER_LIST_NOTIFY, |b| {
            b.put_u8(self.count);
            b.put_slice(self.entries);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    /// What the same members encode to as events.
    fn as_events(members: &[(u64, String)]) -> Vec<u8> {
        let mut b = BytesMut::new();
        for chunk in members.chunks(ROOM_LIST_CHUNK) {
            Event::RoomUserList {
                users: chunk.to_vec(),
            }
            .encode(&mut b);
        }
        b.to_vec()
    }

    fn lists(r: &Roster) -> Vec<u8> {
        let mut b = BytesMut::new();
        r.lists().for_each(|l| l.encode(&mut b));
        b.to_vec()
    }

    #[test]
    fn matches_the_events_through_joins_and_leaves() {
        let mut roster = Roster::default();
        let mut members: Vec<(u64, String)> = Vec::new();
        assert!(lists(&roster).is_empty(), "an empty room lists nobody");
        // Names of every length, past two chunks, then leaves from the
        // front, the middle and the end, and joins between them.
        for i in 0..300u64 {
            let name = "n".repeat(1 + (i as usize * 7) % limits::NAME);
            roster.push(i * 1_000_003, &name);
            members.push((i * 1_000_003, name));
        }
        assert_eq!(lists(&roster), as_events(&members));
        for (step, at) in [0usize, 150, 126, 127, 250, 3].into_iter().enumerate() {
            let at = at.min(members.len() - 1);
            roster.remove(at);
            members.remove(at);
            let name = format!("j{step}");
            roster.push(step as u64, &name);
            members.push((step as u64, name));
            assert_eq!(roster.len(), members.len());
            assert_eq!(lists(&roster), as_events(&members), "after removing {at}");
            let listed: Vec<(u64, String)> = roster.iter().map(|(u, n)| (u, n.to_owned())).collect();
            assert_eq!(listed, members, "iter after removing {at}");
        }
        roster.remove(members.len());
        assert_eq!(lists(&roster), as_events(&members), "out of range removes nobody");
        while !roster.is_empty() {
            roster.remove(roster.len() / 2);
            members.remove(members.len() / 2);
            assert_eq!(lists(&roster), as_events(&members));
        }
        assert_eq!(roster.entries.capacity(), 0, "an empty roster holds no buffer");
    }

    #[test]
    fn frames_decode_to_the_members() {
        let mut roster = Roster::default();
        for i in 0..128u64 {
            roster.push(i, &format!("user{i}"));
        }
        let frames: Vec<Event> = roster
            .lists()
            .map(|l| {
                let mut b = BytesMut::new();
                l.encode(&mut b);
                Event::decode(&b).expect("a valid frame")
            })
            .collect();
        let Some(Event::RoomUserList { users }) = frames.first() else {
            panic!("a member list: {frames:?}")
        };
        assert_eq!(users.len(), ROOM_LIST_CHUNK);
        assert_eq!(
            frames[1],
            Event::RoomUserList {
                users: vec![(127, "user127".into())]
            }
        );
    }
}
