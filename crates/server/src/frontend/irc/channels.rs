//! Channels: Plaza's rooms under IRC names. `#7` is room 7. Any other
//! name (`#chan`) is given a free room, counted down from the last, for as
//! long as IRC users are in it on this node: binary and WebSocket users
//! see that room by its number (docs/IRC.md, "Channels").

use std::collections::HashMap;

use plaza_proto::roles;
use std::sync::Arc;

/// The longest channel name (ISUPPORT CHANNELLEN).
pub(crate) const CHANNELLEN: usize = 50;

/// A room IRC users are in or joining.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// Its members' nicks, by user id (a departure names only the id).
    pub(crate) names: HashMap<u64, Arc<str>>,
    /// Why an IRC member on this node is leaving, by user id, until its
    /// departure reaches the channel (the hub's carries no reason).
    pub(crate) departures: HashMap<u64, Departure>,
    /// IRC sessions in it or joining it: the entry goes with the last.
    irc: usize,
    /// Its name, if it is not `#<room>`.
    name: Option<Arc<str>>,
    /// Its topic, as the hub last told it (a JOIN's answer and TOPIC's).
    pub(crate) topic: Option<ChannelTopic>,
    /// Its members' roles (operator, voice) by user id, as the hub last
    /// told them.
    pub(crate) roles: HashMap<u64, u8>,
    /// Its modes, as the hub last told them.
    pub(crate) modes: ChannelModes,
}

/// A channel's modes: [`plaza_proto::room_modes`] flags, a member limit
/// (0: none) and a key ("": none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChannelModes {
    pub(crate) flags: u8,
    pub(crate) limit: u32,
    pub(crate) key: String,
}

/// The flag modes, with their letters.
const FLAGS: [(u8, char); 4] = [
    (plaza_proto::room_modes::INVITE_ONLY, 'i'),
    (plaza_proto::room_modes::MODERATED, 'm'),
    (plaza_proto::room_modes::SECRET, 's'),
    (plaza_proto::room_modes::TOPIC, 't'),
];

impl ChannelModes {
    /// NAMES's channel type: `@` for a secret channel, `=` for the others.
    pub(crate) fn names_type(&self) -> &'static str {
        match self.flags & plaza_proto::room_modes::SECRET {
            0 => "=",
            _ => "@",
        }
    }

    /// As RPL_CHANNELMODEIS (324) shows them: `+n` (always), then the
    /// others, and their parameters (the key only to a member).
    pub(crate) fn shown(&self, member: bool) -> Vec<String> {
        let mut modes = String::from("+n");
        let mut params = Vec::new();
        modes.extend(FLAGS.iter().filter(|(f, _)| self.flags & f != 0).map(|(_, c)| c));
        if self.limit > 0 {
            modes.push('l');
            params.push(self.limit.to_string());
        }
        if !self.key.is_empty() {
            modes.push('k');
            params.push(if member { self.key.clone() } else { "*".into() });
        }
        std::iter::once(modes).chain(params).collect()
    }

    /// What changed from `old` to these, as a MODE line's parameters
    /// (`+tl 5`, `-k beer`); empty when nothing did.
    pub(crate) fn changes_from(&self, old: &Self) -> Vec<String> {
        let (mut on, mut off) = (String::new(), String::new());
        let (mut on_args, mut off_args) = (Vec::new(), Vec::new());
        for (f, c) in FLAGS {
            match (self.flags & f != 0, old.flags & f != 0) {
                (true, false) => on.push(c),
                (false, true) => off.push(c),
                _ => {}
            }
        }
        if self.limit != old.limit {
            if self.limit > 0 {
                on.push('l');
                on_args.push(self.limit.to_string());
            } else {
                off.push('l');
            }
        }
        if self.key != old.key {
            if !self.key.is_empty() {
                on.push('k');
                on_args.push(self.key.clone());
            } else {
                off.push('k');
                off_args.push(old.key.clone());
            }
        }
        let modes = mode_string(&on, &off);
        if modes.is_empty() {
            return Vec::new();
        }
        std::iter::once(modes).chain(on_args).chain(off_args).collect()
    }
}

impl Channel {
    /// Its members' nicks, sorted, each with its roles.
    pub(crate) fn nicks(&self) -> Vec<(u8, Arc<str>)> {
        let mut nicks: Vec<(u8, Arc<str>)> = (self.names.iter())
            .map(|(uid, n)| (self.roles.get(uid).copied().unwrap_or(0), n.clone()))
            .collect();
        nicks.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        nicks
    }

    /// The member `nick`'s roles (0: none, or no such member).
    pub(crate) fn roles_of(&self, nick: &str) -> u8 {
        let uid = self.names.iter().find(|(_, n)| n.eq_ignore_ascii_case(nick));
        uid.and_then(|(uid, _)| self.roles.get(uid)).copied().unwrap_or(0)
    }

    /// Keeps member `uid`'s roles.
    pub(crate) fn set_roles(&mut self, uid: u64, roles: u8) {
        match roles {
            0 => self.roles.remove(&uid),
            r => self.roles.insert(uid, r),
        };
    }
}

/// A MODE line's mode string: `+` and the letters switched on, `-` and
/// those switched off (`+tl-k`); empty when both are.
pub(crate) fn mode_string(on: &str, off: &str) -> String {
    let mut modes = String::new();
    for (sign, letters) in [('+', on), ('-', off)] {
        if !letters.is_empty() {
            modes.push(sign);
            modes.push_str(letters);
        }
    }
    modes
}

/// The prefixes of a member with `roles`: `@` for an operator, `+` for
/// a voiced member; with multi-prefix both, else the higher.
pub(crate) fn prefixes(roles: u8, multi: bool) -> &'static str {
    match (roles & roles::OPERATOR != 0, roles & roles::VOICE != 0) {
        (true, true) if multi => "@+",
        (true, _) => "@",
        (false, true) => "+",
        (false, false) => "",
    }
}

/// A channel's topic: who set it, when (Unix seconds), and the text ("":
/// none).
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelTopic {
    pub(crate) by: String,
    pub(crate) at: u64,
    pub(crate) text: String,
}

/// How an IRC user leaves a channel, as the channel's IRC users hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Departure {
    /// PART with a reason.
    Part(String),
    /// QUIT (or a dropped connection), with its reason.
    Quit(String),
}

#[derive(Debug)]
pub(crate) struct Channels {
    rooms: u32,
    by_room: HashMap<u32, Channel>,
    /// Named channels' rooms, by lower-case name.
    by_name: HashMap<String, u32>,
}

impl Channels {
    pub(crate) fn new(rooms: u32) -> Self {
        Self {
            rooms,
            by_room: HashMap::new(),
            by_name: HashMap::new(),
        }
    }

    /// The room a channel name stands for now, if any.
    pub(crate) fn find(&self, name: &str) -> Option<u32> {
        match number(name) {
            Some(n) => n.filter(|&r| r < self.rooms),
            None => self.by_name.get(&name.to_ascii_lowercase()).copied(),
        }
    }

    /// The room for a JOIN of `name`, counted as joined: the one it stands
    /// for, or for a new name a free room. `None` if the name is not a
    /// channel's or no room is free.
    pub(crate) fn claim(&mut self, name: &str) -> Option<u32> {
        let room = match self.find(name) {
            Some(room) => room,
            None if number(name).is_none() && valid(name) => {
                let room = (0..self.rooms).rev().find(|r| !self.by_room.contains_key(r))?;
                self.by_name.insert(name.to_ascii_lowercase(), room);
                self.by_room.entry(room).or_default().name = Some(Arc::from(name));
                room
            }
            None => return None,
        };
        self.by_room.entry(room).or_default().irc += 1;
        Some(room)
    }

    /// `nick`, in `room`, is leaving for `why`: its departure will say so.
    pub(crate) fn depart(&mut self, room: u32, nick: &str, why: Departure) {
        if let Some(c) = self.by_room.get_mut(&room)
            && let Some((&uid, _)) = c.names.iter().find(|(_, n)| &***n == nick)
        {
            c.departures.insert(uid, why);
        }
    }

    /// What the hub said `room`'s topic is now (if IRC users are in it).
    pub(crate) fn keep_topic(&mut self, room: u32, by: &str, at: u64, text: &str) {
        if let Some(c) = self.by_room.get_mut(&room) {
            c.topic = Some(ChannelTopic {
                by: by.to_owned(),
                at,
                text: text.to_owned(),
            });
        }
    }

    /// An IRC session left `room`, or did not get in.
    pub(crate) fn release(&mut self, room: u32) {
        let Some(c) = self.by_room.get_mut(&room) else {
            return;
        };
        c.irc = c.irc.saturating_sub(1);
        if c.irc == 0 {
            if let Some(name) = self.by_room.remove(&room).and_then(|c| c.name) {
                self.by_name.remove(&name.to_ascii_lowercase());
            }
        }
    }

    /// `room`'s channel name.
    pub(crate) fn name(&self, room: u32) -> String {
        match self.by_room.get(&room).and_then(|c| c.name.as_deref()) {
            Some(name) => name.to_owned(),
            None => format!("#{room}"),
        }
    }

    pub(crate) fn get(&self, room: u32) -> Option<&Channel> {
        self.by_room.get(&room)
    }

    pub(crate) fn get_mut(&mut self, room: u32) -> Option<&mut Channel> {
        self.by_room.get_mut(&room)
    }

    /// The channels IRC users are in, with their names.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (String, &Channel)> {
        self.by_room.iter().map(|(&r, c)| (self.name(r), c))
    }
}

/// `#<digits>`: a room's number (`Some(None)` if too large); `None` for
/// any other name.
fn number(name: &str) -> Option<Option<u32>> {
    let n = name.strip_prefix('#')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(n.parse().ok().filter(|_| n.len() == 1 || !n.starts_with('0')))
}

/// Whether `name` may name a channel: `#`, then up to [`CHANNELLEN`]
/// bytes in all without spaces, commas, BEL or other control characters.
pub(crate) fn valid(name: &str) -> bool {
    name.len() > 1
        && name.len() <= CHANNELLEN
        && name.starts_with('#')
        && !name.chars().any(|c| c == ' ' || c == ',' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_channels_are_rooms_and_named_ones_borrow_free_rooms_while_used() {
        let mut c = Channels::new(10);
        assert_eq!(c.find("#3"), Some(3));
        assert_eq!(c.find("#10"), None, "past the last room");
        assert_eq!(c.find("#03"), None);
        assert_eq!(c.claim("#9"), Some(9));
        // The last free room, not 9, which is in use.
        assert_eq!(c.claim("#Chan"), Some(8));
        assert_eq!(c.find("#chan"), Some(8), "names are case-insensitive");
        assert_eq!(c.name(8), "#Chan");
        assert_eq!(c.claim("#CHAN"), Some(8));
        c.release(8);
        assert_eq!(c.find("#chan"), Some(8), "one member is left");
        c.release(8);
        assert_eq!(c.find("#chan"), None, "the name goes with its last member");
        assert_eq!(c.name(8), "#8");
        assert_eq!(c.claim("#bad name"), None);
        assert_eq!(c.claim("chan"), None);
    }
}
