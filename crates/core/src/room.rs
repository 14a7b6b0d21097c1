//! A room's members on this node, and the presence news not sent to them yet.
//!
//! Every arrival and departure is news for the other members. Sent to each
//! member as it happens, a room of n members filling up costs n²/2 packets
//! queued, one per member per arrival. With batching
//! ([`Config::batch_presence`](crate::Config::batch_presence)) an arrival or
//! departure is appended to the room's news, and the server's presence tick
//! ([`Hub::flush_presence`](crate::Hub::flush_presence)) sends every member
//! the news gathered so far as one fan-out (one shared buffer per front
//! end): a room
//! costs a packet per member per tick however busy its door is. Members who
//! came in since the last flush get only the news after their own arrival;
//! what came before is in the member list they were sent on entering.
//!
//! A big room's news waits longer, one tick for every [`MEMBERS_PER_TICK`]
//! members (at most [`MAX_TICKS`]), so that a room costs its members about
//! the same number of writes a second whatever its size: about 100 at the
//! default 100 ms tick, up to 2,000 members (docs/BENCHMARKS.md, "Room
//! presence is gathered per room", has what fewer ticks cost). Chat in the room
//! flushes the news first: nobody hears from a member before hearing that
//! the member came in.
//!
//! A room also keeps its members' list entries encoded
//! ([`Roster`]), so the list an entrant is sent is a copy, not a lookup
//! per member.

use std::sync::Arc;

use plaza_proto::{Event, Roster};

use crate::history::History;
use crate::{Conn, Recipient, Sink};

/// Members a room may have per tick its news waits (at least one tick).
pub const MEMBERS_PER_TICK: usize = 10;
/// The most ticks a room's news waits.
pub const MAX_TICKS: u32 = 20;
/// News of this many arrivals and departures goes out at the next tick, due
/// or not (about 64 KiB of frames).
const NEWS_CAP: usize = 2048;

/// An arrival or departure, kept until it is told: the name is the hub's
/// own shared one, so news waiting for its tick copies nothing.
#[derive(Debug, Clone)]
pub(crate) enum News {
    /// ROOM_NEW_USER.
    Enter {
        /// Member id.
        uid: u64,
        /// Name.
        name: Arc<str>,
    },
    /// ROOM_LEAVE_USER.
    Leave {
        /// Member id.
        uid: u64,
    },
}

impl News {
    fn event(&self) -> Event {
        match self {
            Self::Enter { uid, name } => Event::RoomNewUser {
                uid: *uid,
                name: name.to_string(),
            },
            Self::Leave { uid } => Event::RoomLeaveUser { uid: *uid },
        }
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Room {
    /// Members on this node, in the order they came in.
    members: Vec<Conn>,
    /// The same members' list entries, as an entrant is sent them.
    roster: Roster,
    /// Arrivals and departures not told yet, in order.
    news: Vec<News>,
    /// For the last `newcomers.len()` members (those who came in since the
    /// last flush): the first event of `news` they hear.
    newcomers: Vec<usize>,
    /// Presence ticks the news has waited.
    waited: u32,
    /// In the hub's list of rooms to look at each tick.
    pub(crate) listed: bool,
    /// Members that are seed clients (kept by the hub).
    pub(crate) seed: usize,
    /// Members that take room messages with sequence numbers (kept by the
    /// hub).
    pub(crate) sequenced: usize,
    /// Seats held for members who dropped and may come back (`away.rs`):
    /// in the list, but nobody to send to.
    pub(crate) held: usize,
    /// Sequence numbers and recent messages.
    pub(crate) history: History,
    /// Cluster: seat claims on their way (`interest.rs`).
    pub(crate) claims: u32,
    /// Its topic, if one was ever set (`topic.rs`).
    pub(crate) topic: Option<Box<crate::topic::Topic>>,
    /// Its members' roles, by member id, for those that have any
    /// (`ops.rs`).
    pub(crate) roles: Vec<(u64, u8)>,
    /// Its modes, if any were ever set (`modes.rs`).
    pub(crate) modes: Option<Box<crate::modes::Modes>>,
    /// Users invited in and not entered yet, by name key (`modes.rs`).
    pub(crate) invited: Vec<String>,
}

impl Room {
    /// An empty room whose history starts in `epoch`.
    pub(crate) fn new(epoch: u64) -> Self {
        Self {
            history: History::new(epoch),
            ..Self::default()
        }
    }

    pub(crate) fn members(&self) -> &[Conn] {
        &self.members
    }

    pub(crate) fn roster(&self) -> &Roster {
        &self.roster
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Tells the members `event`: at once, or appended to the news when
    /// `batch`. Returns true when the room has news and was not listed yet.
    pub(crate) fn tell(&mut self, news: News, batch: bool, sink: &mut impl Sink) -> bool {
        if self.members.is_empty() {
            return false;
        }
        if !batch {
            let to = self.members.iter().map(|&m| Recipient::all(m));
            sink.fanout(&[news.event()], to);
            return false;
        }
        self.news.push(news);
        !std::mem::replace(&mut self.listed, true)
    }

    /// Adds `conn` (`uid`, `name`), who hears only news told after this.
    pub(crate) fn push(&mut self, conn: Conn, uid: u64, name: &str, batch: bool) {
        self.members.push(conn);
        self.roster.push(uid, name);
        if batch {
            self.newcomers.push(self.news.len());
        }
    }

    /// Takes `conn` out, if it is a member; returns its member id.
    pub(crate) fn remove(&mut self, conn: Conn) -> Option<u64> {
        let pos = self.members.iter().position(|m| *m == conn)?;
        let old = self.members.len() - self.newcomers.len();
        self.members.remove(pos);
        let uid = self.roster.remove(pos);
        if pos >= old {
            self.newcomers.remove(pos - old);
        }
        if self.members.is_empty() {
            // Nobody left to tell; hold no buffer. A topic, operators
            // and modes last while the room has members (in cluster mode: here; a
            // seat reads them again, and the shared store drops them with
            // the last seat).
            self.news = Vec::new();
            self.topic = None;
            self.roles = Vec::new();
            self.modes = None;
            self.invited = Vec::new();
        }
        uid
    }

    /// Member `uid`'s roles ([`plaza_proto::roles`] bits; 0: none).
    pub(crate) fn role_of(&self, uid: u64) -> u8 {
        self.roles.iter().find(|(u, _)| *u == uid).map_or(0, |(_, r)| *r)
    }

    /// Gives member `uid` `roles`; returns whether they changed.
    pub(crate) fn set_roles(&mut self, uid: u64, roles: u8) -> bool {
        if self.role_of(uid) == roles {
            return false;
        }
        self.roles.retain(|(u, _)| *u != uid);
        if roles != 0 {
            self.roles.push((uid, roles));
        }
        true
    }

    /// The member id `conn` has in the list, if it is a member.
    pub(crate) fn uid_of(&self, conn: Conn) -> Option<u64> {
        let pos = self.members.iter().position(|m| *m == conn)?;
        self.roster.iter().nth(pos).map(|(uid, _)| uid)
    }

    /// `new` takes `old`'s place (its seat, member id and list entry).
    pub(crate) fn replace(&mut self, old: Conn, new: Conn) {
        if let Some(m) = self.members.iter_mut().find(|m| **m == old) {
            *m = new;
        }
    }

    /// One more tick: whether the news has waited long enough.
    pub(crate) fn tick(&mut self) -> bool {
        self.waited += 1;
        let due = (self.members.len() / MEMBERS_PER_TICK).clamp(1, MAX_TICKS as usize);
        self.news.is_empty() || self.waited as usize >= due || self.news.len() >= NEWS_CAP
    }

    /// Sends the news: all of it to the members who were here at the last
    /// flush, the part after their arrival to those who came since.
    pub(crate) fn flush(&mut self, sink: &mut impl Sink) {
        if !self.news.is_empty() {
            // Taken, not cleared: a quiet room holds no news buffer. The
            // events are made now, all together, and freed together.
            let news: Vec<Event> = std::mem::take(&mut self.news).iter().map(News::event).collect();
            let newcomers = &self.newcomers;
            let old = self.members.len() - newcomers.len();
            let to = self.members.iter().enumerate().filter_map(|(i, &conn)| {
                let from = i.checked_sub(old).map_or(0, |k| newcomers[k]);
                (from < news.len()).then_some(Recipient {
                    conn,
                    from,
                    droppable: false,
                })
            });
            sink.fanout(&news, to);
        }
        self.newcomers.clear();
        self.waited = 0;
    }
}
