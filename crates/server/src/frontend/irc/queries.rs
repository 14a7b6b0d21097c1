//! Commands that ask and change nothing: NAMES, WHO, WHOIS, WHOWAS,
//! USERHOST, TOPIC, LIST, TIME, INFO, and INVITE (a notification). They
//! are answered from what the front end knows: its own sessions on this
//! node, and the members of the asker's channel (whatever front end they
//! use).

use std::sync::Arc;

use plaza_net::SessionId;
use plaza_proto::{Request, limits};

use super::inbound::Cx;
use super::line::{self, Message};
use super::{Session, State};

/// A user as a query shows them.
struct Seen {
    nick: Arc<str>,
    username: String,
    realname: String,
    room: Option<u32>,
    away: Option<String>,
    oper: bool,
}

/// The registered IRC session (on this node) holding `nick`.
pub(super) fn irc_session<'s>(state: &'s State, nick: &str) -> Option<&'s Session> {
    irc_session_id(state, nick).map(|(_, s)| s)
}

/// The same, with its session id.
fn irc_session_id<'s>(state: &'s State, nick: &str) -> Option<(SessionId, &'s Session)> {
    let mut sessions = state.sessions.iter();
    sessions
        .find(|(_, s)| {
            s.registered && !s.quitting && s.nick.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(nick))
        })
        .map(|(id, s)| (*id, s))
}

/// AWAY (`away`: the message; `None`: back) from this session, to the IRC
/// users of its channel that asked for away-notify.
pub(super) fn tell_away(cx: &mut Cx<'_>, away: Option<&str>) {
    let mut line = bytes::BytesMut::new();
    line::put(&mut line, line::Prefix::User(&cx.me()), "AWAY", away.as_slice());
    tell_channel(cx, |c| c.away_notify, &line);
}

/// `line` to the other IRC users of this session's channel (on this node)
/// whose capabilities `want` it.
fn tell_channel(cx: &mut Cx<'_>, want: impl Fn(&super::Caps) -> bool, line: &[u8]) {
    let Some(room) = cx.s().room else {
        return;
    };
    for (id, s) in &cx.state.sessions {
        if *id != cx.id && s.room == Some(room) && want(&s.caps) {
            let line = bytes::BytesMut::from(line);
            cx.out.others.push((*id, s.caps.stamp(line)));
        }
    }
}

/// The longest real name SETNAME takes (ISUPPORT NAMELEN).
pub(super) const NAMELEN: usize = 128;

/// SETNAME (IRCv3 `setname`): a new real name, confirmed to the session
/// and told to the IRC users of its channel that asked for `setname`.
pub(super) fn setname(cx: &mut Cx<'_>, m: &Message<'_>) {
    let Some(name) = m.param(0).filter(|n| !n.is_empty() && n.len() <= NAMELEN) else {
        let server = cx.irc.server.clone();
        let text = "The real name is empty or too long (NAMELEN)";
        return line::put(
            cx.replies(),
            line::Prefix::Server(&server),
            "FAIL",
            &["SETNAME", "INVALID_REALNAME", text],
        );
    };
    cx.s().realname = name.to_owned();
    let mut line = bytes::BytesMut::new();
    line::put(&mut line, line::Prefix::User(&cx.me()), "SETNAME", &[name]);
    cx.replies().extend_from_slice(&line);
    tell_channel(cx, |c| c.setname, &line);
}

/// INVITE `nick` `#channel`: a notification to an IRC user on this node
/// from a member of the channel (channels are never invite-only, so it
/// lets nobody in who could not join).
pub(super) fn invite(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 2) {
        return;
    }
    let (nick, channel) = (m.params[0], m.params[1]);
    let Some(room) = cx.state.channels.find(channel) else {
        return cx.num("403", &[channel, "No such channel"]);
    };
    if !cx.s().present(room) {
        return cx.num("442", &[channel, "You're not on that channel"]);
    }
    // The hub's ROOM_INVITE: the invitee hears it wherever it is.
    cx.s().targets.push_back(super::Target::Invite {
        nick: nick.to_owned(),
        channel: channel.to_owned(),
    });
    cx.request(plaza_proto::Request::RoomInvite {
        name: nick.to_owned(),
    });
}

/// `nick!user@host` for each of `names` in `room` (userhost-in-names): the
/// user an IRC session gave, or (a Plaza user) the name itself.
pub(super) fn userhosts(state: &State, room: u32, names: &[&str]) -> Vec<String> {
    let users: std::collections::HashMap<&str, &str> = (state.sessions.values())
        .filter(|s| s.room == Some(room))
        .filter_map(|s| Some((s.nick.as_deref()?, s.username.as_str())))
        .collect();
    let user = |n: &str| users.get(n).copied().unwrap_or(n).to_owned();
    names
        .iter()
        .map(|n| format!("{n}!{}@{}", user(n), line::USER_HOST))
        .collect()
}

/// `room`'s members as NAMES lists them: sorted, with their prefixes
/// (`@`, `+`; both with multi-prefix), and with userhost-in-names each as
/// `nick!user@host`.
pub(super) fn name_list(state: &State, room: u32, caps: super::Caps) -> Vec<String> {
    let Some(c) = state.channels.get(room) else {
        return Vec::new();
    };
    let nicks = c.nicks();
    let plain: Vec<&str> = nicks.iter().map(|(_, n)| &**n).collect();
    let shown = match caps.userhost {
        true => userhosts(state, room, &plain),
        false => plain.iter().map(|n| n.to_string()).collect(),
    };
    (nicks.iter().zip(shown))
        .map(|((roles, _), n)| format!("{}{n}", super::channels::prefixes(*roles, caps.multi_prefix)))
        .collect()
}

/// `nick`, if an IRC session here holds it or it is in the asker's channel.
fn lookup(cx: &Cx<'_>, nick: &str) -> Option<Seen> {
    if let Some(s) = irc_session(cx.state, nick) {
        return Some(Seen {
            nick: s.nick.clone()?,
            username: s.username.clone(),
            realname: s.realname.clone(),
            room: s.room,
            away: s.away.clone(),
            oper: s.oper,
        });
    }
    let room = cx.state.sessions[&cx.id].room?;
    let found = cx
        .state
        .channels
        .get(room)?
        .names
        .values()
        .find(|n| n.eq_ignore_ascii_case(nick))?;
    Some(Seen {
        nick: found.clone(),
        username: found.to_string(),
        realname: found.to_string(),
        room: Some(room),
        away: None,
        oper: false,
    })
}

/// The users a mask can find (the asker, and its channel's members: every
/// Plaza user is invisible to those who share no channel with it) whose
/// nick matches `mask`, each once, by nick.
fn visible(cx: &Cx<'_>, mask: &str) -> Vec<Seen> {
    let me = &cx.state.sessions[&cx.id];
    let own = me.room.and_then(|r| cx.state.channels.get(r));
    let mut nicks: Vec<Arc<str>> = (me.nick.clone().into_iter())
        .chain(own.into_iter().flat_map(|c| c.names.values().cloned()))
        .filter(|n| glob(mask, n))
        .collect();
    nicks.sort_unstable_by_key(|n| n.to_ascii_lowercase());
    nicks.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    nicks.iter().filter_map(|n| lookup(cx, n)).collect()
}

/// Whether `name` matches `mask` (`*` any run, `?` any one character),
/// ignoring ASCII case.
fn glob(mask: &str, name: &str) -> bool {
    let (m, n) = (mask.as_bytes(), name.as_bytes());
    // The last `*` seen in the mask, and where in the name it was tried.
    let (mut i, mut j, mut star) = (0, 0, None);
    while j < n.len() {
        if i < m.len() && (m[i] == b'?' || m[i].eq_ignore_ascii_case(&n[j])) {
            i += 1;
            j += 1;
        } else if i < m.len() && m[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    m[i..].iter().all(|c| *c == b'*')
}

/// The channel's nicks, if the asker is in `name`.
fn members(cx: &Cx<'_>, name: &str) -> Option<Vec<Arc<str>>> {
    let room = cx.state.channels.find(name)?;
    if cx.state.sessions[&cx.id].room != Some(room) {
        return None;
    }
    let mut names: Vec<_> = cx.state.channels.get(room)?.names.values().cloned().collect();
    names.sort();
    Some(names)
}

pub(super) fn names(cx: &mut Cx<'_>, channel: Option<&str>) {
    let channel = match channel {
        Some(c) => c.split(',').next().unwrap_or(c).to_owned(),
        None => match cx.s().room {
            Some(r) => cx.state.channels.name(r),
            None => return cx.num("366", &["*", "End of /NAMES list"]),
        },
    };
    if let (Some(_), Some(room)) = (members(cx, &channel), cx.s().room) {
        let me = cx.me();
        let caps = cx.s().caps;
        let names = name_list(cx.state, room, caps);
        let kind = cx.state.channels.get(room).map_or("=", |c| c.modes.names_type());
        let mut b = std::mem::take(cx.replies());
        super::outbound::put_names(
            &mut b,
            &cx.irc.server,
            &me,
            (&channel, kind),
            names.iter().map(String::as_str),
        );
        *cx.replies() = b;
    } else {
        cx.num("366", &[&channel, "End of /NAMES list"]);
    }
}

/// WHO of your channel (its members), of a nick (the user WHOIS would
/// find), or of a mask (`*` and `?`: every user is invisible, so only you
/// and your channel's members); the channel is shown as `*` but for WHO
/// of your channel.
pub(super) fn who(cx: &mut Cx<'_>, m: &Message<'_>) {
    let mask = m.param(0).unwrap_or("*").to_owned();
    let (found, in_channel): (Vec<Seen>, bool) = match members(cx, &mask) {
        Some(all) => (all.iter().filter_map(|n| lookup(cx, n)).collect(), true),
        None if mask.contains(['*', '?']) => (visible(cx, &mask), false),
        None => (lookup(cx, &mask).into_iter().collect(), false),
    };
    for u in found {
        let channel = match u.room {
            Some(r) if in_channel => cx.state.channels.name(r),
            _ => "*".to_owned(),
        };
        let roles = match in_channel {
            true => (u.room.and_then(|r| cx.state.channels.get(r))).map_or(0, |c| c.roles_of(&u.nick)),
            false => 0,
        };
        let flags = format!(
            "{}{}{}",
            if u.away.is_some() { "G" } else { "H" },
            if u.oper { "*" } else { "" },
            super::channels::prefixes(roles, cx.s().caps.multi_prefix)
        );
        let real = format!("0 {}", u.realname);
        let server = cx.irc.server.clone();
        cx.num(
            "352",
            &[
                &channel,
                &u.username,
                line::USER_HOST,
                &server,
                &u.nick,
                &flags,
                &real,
            ],
        );
    }
    cx.num("315", &[&mask, "End of WHO list"]);
}

pub(super) fn whois(cx: &mut Cx<'_>, m: &Message<'_>) {
    let Some(nick) = m.params.last().filter(|n| !n.is_empty()).map(|n| n.to_string()) else {
        return cx.num("431", &["No nickname given"]);
    };
    let Some(u) = lookup(cx, &nick) else {
        cx.num("401", &[&nick, "No such nick"]);
        return cx.num("318", &[&nick, "End of /WHOIS list"]);
    };
    let n = u.nick.to_string();
    cx.num("311", &[&n, &u.username, line::USER_HOST, "*", &u.realname]);
    if let Some(r) = u.room {
        let roles = cx.state.channels.get(r).map_or(0, |c| c.roles_of(&n));
        let prefixes = super::channels::prefixes(roles, cx.s().caps.multi_prefix);
        let channel = format!("{prefixes}{}", cx.state.channels.name(r));
        cx.num("319", &[&n, &channel]);
    }
    let server = cx.irc.server.clone();
    cx.num("312", &[&n, &server, "Plaza"]);
    if u.oper {
        cx.num("313", &[&n, "is an IRC operator (a Plaza admin)"]);
    }
    if let Some(away) = &u.away {
        cx.num("301", &[&n, away]);
    }
    cx.num("318", &[&n, "End of /WHOIS list"]);
}

/// Nicks one WHOWAS answers for.
const WHOWAS_NICKS: usize = 8;

/// IRC users who left this node lately (the last
/// [`WHOWAS_KEPT`](super::WHOWAS_KEPT)), newest first, at most `count` of
/// each nick (none or not positive: all).
pub(super) fn whowas(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 1) {
        return;
    }
    let count = m
        .params
        .get(1)
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c > 0)
        .unwrap_or(usize::MAX);
    let server = cx.irc.server.clone();
    for nick in m.params[0]
        .split(',')
        .filter(|n| !n.is_empty())
        .take(WHOWAS_NICKS)
    {
        let found: Vec<[String; 3]> = cx
            .state
            .gone
            .iter()
            .filter(|g| g.nick.eq_ignore_ascii_case(nick))
            .take(count)
            .map(|g| [g.nick.to_string(), g.username.clone(), g.realname.clone()])
            .collect();
        if found.is_empty() {
            cx.num("406", &[nick, "There was no such nickname"]);
        }
        for [n, user, real] in found {
            cx.num("314", &[&n, &user, line::USER_HOST, "*", &real]);
            cx.num("312", &[&n, &server, "Plaza"]);
        }
        cx.num("369", &[nick, "End of WHOWAS"]);
    }
}

pub(super) fn userhost(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 1) {
        return;
    }
    let replies: Vec<String> = m
        .params
        .iter()
        .take(5)
        .filter_map(|n| lookup(cx, n))
        .map(|u| {
            let oper = if u.oper { "*" } else { "" };
            let away = if u.away.is_some() { '-' } else { '+' };
            format!("{}{oper}={away}{}@{}", u.nick, u.username, line::USER_HOST)
        })
        .collect();
    cx.num("302", &[&replies.join(" ")]);
}

/// TOPIC: a channel's topic (332, 333; 331 when it has none), or with a
/// second parameter, Plaza's ROOM_TOPIC ("" clears it; longer than
/// TOPICLEN is cut). The new topic comes back as TOPIC to every member.
pub(super) fn topic(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 1) {
        return;
    }
    let name = m.params[0];
    match cx.state.channels.find(name) {
        None => cx.num("403", &[name, "No such channel"]),
        Some(room) if !cx.s().present(room) => cx.num("442", &[name, "You're not on that channel"]),
        Some(_) if m.params.len() > 1 => {
            let topic = line::pieces(m.params[1], limits::TOPIC).next().unwrap_or("");
            cx.out.requests.push(Request::RoomTopic {
                topic: topic.to_owned(),
            });
        }
        Some(room) => {
            let topic = (cx.state.channels.get_mut(room))
                .and_then(|c| c.topic.clone())
                .filter(|t| !t.text.is_empty());
            match topic {
                Some(t) => {
                    cx.num("332", &[name, &t.text]);
                    cx.num("333", &[name, &t.by, &t.at.to_string()]);
                }
                None => cx.num("331", &[name, "No topic is set"]),
            }
        }
    }
}

/// The channels IRC users are in on this node (Plaza's other rooms are
/// joined by number: `#0` to `#N-1`).
pub(super) fn list(cx: &mut Cx<'_>) {
    cx.num("321", &["Channel", "Users  Name"]);
    let mine = cx.s().room;
    let all = &cx.state.channels;
    let channels: Vec<_> = (all.iter())
        .filter(|(_, c)| !c.names.is_empty())
        // A secret channel: only to its members.
        .filter(|(name, c)| c.modes.flags & plaza_proto::room_modes::SECRET == 0 || all.find(name) == mine)
        .map(|(name, c)| (name, c.names.len().to_string()))
        .collect();
    for (name, count) in channels {
        cx.num("322", &[&name, &count, ""]);
    }
    cx.num("323", &["End of /LIST"]);
}

pub(super) fn time(cx: &mut Cx<'_>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let server = cx.irc.server.clone();
    cx.num(
        "391",
        &[&server, &now, "0", &format!("{now} seconds since 1970 (UTC)")],
    );
}

pub(super) fn info(cx: &mut Cx<'_>) {
    cx.num(
        "371",
        &[concat!(
            "Plaza ",
            env!("CARGO_PKG_VERSION"),
            ": a chat server; IRC is one of its front ends"
        )],
    );
    cx.num("374", &["End of INFO list"]);
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn masks_match_like_irc_servers_do() {
        for (mask, name) in [
            ("*", "amy"),
            ("coolni*", "coolNick"),
            ("*ck", "coolnick"),
            ("a?y", "AMY"),
            ("*o*l*", "coolNick"),
        ] {
            assert!(glob(mask, name), "{mask} {name}");
        }
        for (mask, name) in [("coolni", "coolNick"), ("a?y", "ay"), ("*x*", "amy"), ("", "amy")] {
            assert!(!glob(mask, name), "{mask} {name}");
        }
    }
}
