//! Room messages as IRC lines with their IRCv3 tags, and
//! `draft/chathistory`.
//!
//! IRC sessions take room messages as the packet the room's history keeps
//! (ROOM_MESSAGE, with its sequence number), so each line can carry
//! `msgid` (`<epoch>-<room>-<seq>`, in hex, decimal, decimal) and the
//! `time` the hub took the message: the same in the live line and in any
//! replay of it. A fan-out is written at most once per form (bare, with
//! time, with msgid, with both) and shared by every IRC recipient of that
//! form. CHATHISTORY is the hub's HISTORY request for the channel a user
//! is in; what it sends back goes out in a `chathistory` batch.

use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use plaza_net::SessionId;
use plaza_proto::{Event, HISTORY_PAGE, Page, Replay, Request};

use super::channels::Channels;
use super::inbound::Cx;
use super::line::{self, Message, Prefix};
use super::outbound::put_text;
use super::{Caps, Irc, Session, State};

/// A CHATHISTORY asked of the hub, until its answer is in.
#[derive(Debug)]
pub(crate) struct Wanted {
    sub: &'static str,
    target: String,
    /// Only messages numbered strictly between these.
    above: u64,
    below: u64,
    /// The lines of the messages sent so far.
    lines: BytesMut,
}

/// One room message (or notice) decoded from its packet.
struct RoomMessage {
    room: u32,
    seq: u64,
    name: String,
    text: String,
    /// PRIVMSG or NOTICE.
    command: &'static str,
}

fn decode(packet: &[u8]) -> Option<RoomMessage> {
    let (room, seq, name, text, command) = match Event::decode(packet) {
        Ok(Event::RoomMessage {
            room,
            seq,
            name,
            message,
        }) => (room, seq, name, message, "PRIVMSG"),
        Ok(Event::RoomNotice {
            room,
            seq,
            name,
            message,
        }) => (room, seq, name, message, "NOTICE"),
        _ => return None,
    };
    Some(RoomMessage {
        room,
        seq,
        name,
        text,
        command,
    })
}

/// The forms of a room message's lines: which tags a session takes.
fn form(caps: &Caps) -> usize {
    usize::from(caps.time) | usize::from(caps.tags) << 1
}

/// A room message's fan-out to IRC sessions, written once per form.
pub(crate) struct Chat<'p> {
    packet: &'p Bytes,
    at: Instant,
    message: Option<Option<RoomMessage>>,
    forms: [Option<Bytes>; 4],
}

impl<'p> Chat<'p> {
    pub(crate) fn new(packet: &'p Bytes, at: Instant) -> Self {
        Self {
            packet,
            at,
            message: None,
            forms: Default::default(),
        }
    }
}

impl Irc {
    /// When the hub took a message, by the wall clock.
    fn wall(&self, at: Instant) -> SystemTime {
        let (instant, wall) = self.clock;
        match at.checked_duration_since(instant) {
            Some(d) => wall + d,
            None => wall - instant.duration_since(at),
        }
    }

    /// The message's id: its room's epoch, room and sequence number (the
    /// same on every node of a cluster where the cluster numbers the room).
    fn msgid(&self, room: u32, seq: u64) -> String {
        format!("{:x}-{room}-{seq}", self.epochs.get(room))
    }

    /// The room and sequence number of a message id of its room's current
    /// epoch.
    fn seq_of(&self, msgid: &str) -> Option<(u32, u64)> {
        let mut parts = msgid.splitn(3, '-');
        let epoch = u64::from_str_radix(parts.next()?, 16).ok()?;
        let room = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        (epoch == self.epochs.get(room)).then_some((room, seq))
    }

    /// A room message's lines in `form`.
    fn lines(&self, m: &RoomMessage, at: Instant, form: usize, channels: &mut Channels) -> BytesMut {
        let mut lines = BytesMut::new();
        put_text(
            &mut lines,
            Prefix::User(&m.name),
            m.command,
            &channels.name(m.room),
            &m.text,
        );
        let mut tags = Vec::new();
        if form & 1 != 0 {
            tags.push(format!("time={}", line::time(self.wall(at))));
        }
        if form & 2 != 0 {
            tags.push(format!("msgid={}", self.msgid(m.room, m.seq)));
        }
        if tags.is_empty() {
            return lines;
        }
        line::tag_lines(&lines, &format!("@{} ", tags.join(";")), &[]).0
    }

    /// Sends a room message to `id`; returns whether it was sent. A sender
    /// hears its own only with echo-message, and with its answer when the
    /// line that sent it is labeled.
    pub(crate) fn chat(&self, chat: &mut Chat<'_>, id: SessionId, droppable: bool) -> bool {
        let frame = {
            let mut state = self.lock();
            let State {
                sessions, channels, ..
            } = &mut *state;
            let Some(s) = sessions.get_mut(&id) else {
                return false;
            };
            let Chat {
                packet,
                at,
                message,
                forms,
            } = chat;
            let Some(m) = message.get_or_insert_with(|| decode(packet)) else {
                tracing::warn!(session = %id, "not a room message: not sent to an IRC session");
                return false;
            };
            let own = s.nick.as_deref() == Some(m.name.as_str());
            if own && !s.caps.echo {
                return false;
            }
            let form = form(&s.caps);
            let lines = forms[form].get_or_insert_with(|| self.lines(m, *at, form, channels).freeze());
            if !own {
                (Some(lines.clone()), BytesMut::new())
            } else {
                // Part of the answer to the line that sent it.
                let (after, kept) = s.order.echo(&s.caps, &self.server, lines);
                (Some(lines.clone()).filter(|_| !kept), after)
            }
        };
        let (shared, after) = frame;
        if let Some(frame) = shared {
            let _ = if droppable {
                self.net.send_droppable(id, frame)
            } else {
                self.net.send(id, frame)
            };
        }
        self.send(id, after);
        true
    }

    /// Messages from a room's history for the CHATHISTORY being answered.
    pub(crate) fn history<'a>(
        &self,
        id: SessionId,
        packets: impl IntoIterator<Item = (&'a Bytes, Instant)>,
    ) -> u64 {
        let mut state = self.lock();
        let State {
            sessions, channels, ..
        } = &mut *state;
        let Some(s) = sessions.get_mut(&id) else {
            return 0;
        };
        let form = form(&s.caps);
        let Some(w) = s.wanted.front_mut() else {
            tracing::warn!(session = %id, "room history an IRC session did not ask for, skipped");
            return 0;
        };
        let mut sent = 0;
        for (packet, at) in packets {
            match decode(packet) {
                Some(m) if m.seq > w.above && m.seq < w.below => {
                    sent += 1;
                    w.lines.extend_from_slice(&self.lines(&m, at, form, channels));
                }
                Some(_) => {}
                None => tracing::warn!(session = %id, "not a room message in history, skipped"),
            }
        }
        sent
    }
}

/// The hub answered a CHATHISTORY: its batch, or why not.
pub(super) fn answered(s: &mut Session, server: &str, replay: &Replay, b: &mut BytesMut) {
    let Some(w) = s.wanted.pop_front() else {
        return;
    };
    if replay.result.is_ok() {
        put_batch(b, s, server, &w.target, &w.lines);
    } else {
        fail(
            b,
            server,
            "MESSAGE_ERROR",
            w.sub,
            &w.target,
            replay.result.describe(),
        );
    }
}

/// `lines` in a `chathistory` batch (as they are without `batch`).
fn put_batch(b: &mut BytesMut, s: &mut Session, server: &str, target: &str, lines: &[u8]) {
    if !s.caps.batch {
        return b.extend_from_slice(lines);
    }
    let id = s.order.batch();
    line::batch(b, server, &id, &["chathistory", target], lines);
}

fn fail(b: &mut BytesMut, server: &str, code: &str, sub: &str, target: &str, text: &str) {
    line::put(
        b,
        Prefix::Server(server),
        "FAIL",
        &["CHATHISTORY", code, sub, target, text],
    );
}

/// A message reference: `*`, `msgid=...` or `timestamp=...`.
enum Ref {
    Any,
    /// A message of this run, in this room.
    Seq(u64),
    /// A message this server cannot place (another run's, another room's).
    Unknown,
}

/// CHATHISTORY `sub` `target` ... `limit`: the hub's HISTORY for the
/// channel the user is in.
pub(super) fn chathistory(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 3) {
        return;
    }
    let server = cx.irc.server.clone();
    let sub = match m.params[0].to_ascii_uppercase().as_str() {
        "LATEST" => "LATEST",
        "BEFORE" => "BEFORE",
        "AFTER" => "AFTER",
        "AROUND" => "AROUND",
        "BETWEEN" => "BETWEEN",
        "TARGETS" => {
            // Direct messages keep no history: there are none to list.
            let id = cx.s().order.batch();
            let kind = ["draft/chathistory-targets"];
            return line::batch(cx.replies(), &server, &id, &kind, &[]);
        }
        _ => {
            let text = "Unknown subcommand";
            return fail(cx.replies(), &server, "INVALID_PARAMS", m.params[0], "*", text);
        }
    };
    let target = m.params[1];
    let room = cx.state.channels.find(target);
    if room.is_none() || room != cx.s().room {
        let text = "Messages are kept for the channel you are in";
        return fail(cx.replies(), &server, "INVALID_TARGET", sub, target, text);
    }
    let room = room.unwrap_or_default();
    let refs = if sub == "BETWEEN" { 2 } else { 1 };
    let parsed: Result<Vec<Ref>, &str> = (0..refs)
        .map(|i| match m.param(2 + i) {
            Some("*") if sub == "LATEST" => Ok(Ref::Any),
            Some(r) if r.starts_with("msgid=") => Ok(match cx.irc.seq_of(&r[6..]) {
                Some((r, seq)) if r == room => Ref::Seq(seq),
                _ => Ref::Unknown,
            }),
            Some(r) if r.starts_with("timestamp=") => Err("Only msgid references are taken (MSGREFTYPES)"),
            _ => Err("Expected a message reference"),
        })
        .collect();
    let limit = m
        .param(2 + refs)
        .and_then(|l| l.parse::<u16>().ok())
        .filter(|&l| l > 0);
    let (refs, limit) = match (parsed, limit) {
        (Ok(refs), Some(limit)) => (refs, limit.min(HISTORY_PAGE)),
        (Err(why), _) => return fail(cx.replies(), &server, "INVALID_PARAMS", sub, target, why),
        (_, None) => {
            let why = "Expected a limit from 1";
            return fail(cx.replies(), &server, "INVALID_PARAMS", sub, target, why);
        }
    };
    let page = match (sub, refs.as_slice()) {
        ("LATEST", [Ref::Any]) => Some((Page::Latest, 0, u64::MAX)),
        ("LATEST", [Ref::Seq(s)]) => Some((Page::Latest, *s, u64::MAX)),
        ("BEFORE", [Ref::Seq(s)]) => Some((Page::Before(*s), 0, u64::MAX)),
        ("AFTER", [Ref::Seq(s)]) => Some((Page::After(*s), 0, u64::MAX)),
        ("AROUND", [Ref::Seq(s)]) => {
            let from = s.saturating_sub(u64::from(limit / 2) + 1);
            Some((Page::After(from), 0, u64::MAX))
        }
        ("BETWEEN", [Ref::Seq(a), Ref::Seq(b)]) if a < b => Some((Page::After(*a), 0, *b)),
        ("BETWEEN", [Ref::Seq(a), Ref::Seq(b)]) => Some((Page::Before(*a), *b, u64::MAX)),
        _ => None,
    };
    let Some((page, above, below)) = page else {
        // A message this run does not know: nothing is held around it.
        let mut b = std::mem::take(cx.replies());
        put_batch(&mut b, cx.s(), &server, target, &[]);
        *cx.replies() = b;
        return;
    };
    cx.s().wanted.push_back(Wanted {
        sub,
        target: target.to_owned(),
        above,
        below,
        lines: BytesMut::new(),
    });
    cx.request(Request::History { page, limit });
}
