//! MODE: the modes Plaza has. A channel is `+n` (members only, always);
//! its operators (or an admin) set `+t` (only operators set the topic),
//! `+m` (only operators and voiced members speak), `+s` (not listed), `+i`
//! (invited users only), `+l N` (a member limit) and `+k key`: the
//! room's modes (PROTOCOL.md, "Room modes"), set as one ROOM_MODE;
//! `+o nick` / `-o nick` makes a member a channel operator or takes it
//! away, `+v nick` / `-v nick` voices a member (it speaks under `+m`); `+q nick` / `-q nick` mutes and unmutes (Plaza's mute is
//! server-wide, and for admins only); users have no modes to set.

use plaza_proto::{Request, roles, valid_room_key};

use super::Target;
use super::channels::ChannelModes;
use super::inbound::Cx;
use super::line::Message;

pub(super) fn mode(cx: &mut Cx<'_>, m: &Message<'_>) {
    if !cx.need_params(m, 1) {
        return;
    }
    let target = m.params[0];
    if target.starts_with('#') {
        channel(cx, target, &m.params[1..]);
    } else if target.eq_ignore_ascii_case(&cx.me()) {
        match m.param(1) {
            None => {
                let modes = if cx.s().oper { "+o" } else { "+" };
                cx.num("221", &[modes]);
            }
            // Clients set +i as they connect: every Plaza user is as
            // invisible as it makes them (no WHO or NAMES from outside).
            Some(m) if m.chars().all(|c| "+-i".contains(c)) => {}
            Some(_) => cx.num("501", &["Plaza has no user modes to set"]),
        }
    } else if cx
        .state
        .sessions
        .values()
        .any(|s| s.nick.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(target)))
    {
        cx.num("502", &["Can't change mode for other users"]);
    } else {
        cx.num("401", &[target, "No such nick"]);
    }
}

fn channel(cx: &mut Cx<'_>, name: &str, args: &[&str]) {
    let Some(room) = cx.state.channels.find(name) else {
        return cx.num("403", &[name, "No such channel"]);
    };
    let member = cx.s().present(room);
    let old = (cx.state.channels.get(room)).map_or_else(ChannelModes::default, |c| c.modes.clone());
    let Some(&modes) = args.first() else {
        let shown = old.shown(member);
        let mut params: Vec<&str> = vec![name];
        params.extend(shown.iter().map(String::as_str));
        return cx.num("324", &params);
    };
    if !member {
        return cx.num("442", &[name, "You're not on that channel"]);
    }
    let mut new = old.clone();
    let mut on = true;
    let mut nicks = args[1..].iter();
    for c in modes.chars() {
        match c {
            '+' => on = true,
            '-' => on = false,
            // A list of bans asked for: Plaza keeps none.
            'b' if args.len() == 1 => cx.num("368", &[name, "End of channel ban list"]),
            'q' => {
                let Some(&nick) = nicks.next() else {
                    continue;
                };
                cx.s().targets.push_back(Target::Mute {
                    nick: nick.to_owned(),
                    on,
                });
                let seconds = if on { u32::MAX } else { 0 };
                cx.request(Request::Mute {
                    name: nick.to_owned(),
                    seconds,
                });
            }
            'o' | 'v' => {
                let Some(&nick) = nicks.next() else {
                    continue;
                };
                cx.s().targets.push_back(Target::Op(nick.to_owned()));
                let role = if c == 'o' { roles::OPERATOR } else { roles::VOICE };
                cx.request(Request::RoomRole {
                    name: nick.to_owned(),
                    role,
                    on,
                });
            }
            't' | 'm' | 's' | 'i' => {
                let flag = match c {
                    't' => plaza_proto::room_modes::TOPIC,
                    'm' => plaza_proto::room_modes::MODERATED,
                    's' => plaza_proto::room_modes::SECRET,
                    _ => plaza_proto::room_modes::INVITE_ONLY,
                };
                new.flags = if on { new.flags | flag } else { new.flags & !flag };
            }
            'l' if !on => new.limit = 0,
            'l' => match nicks.next().map(|n| n.parse::<u32>()) {
                Some(Ok(limit)) if limit > 0 => new.limit = limit,
                Some(_) => cx.num(
                    "696",
                    &[name, "l", "*", "Invalid limit: a number of members above 0"],
                ),
                None => cx.num("461", &["MODE", "Not enough parameters"]),
            },
            'k' if !on => {
                nicks.next();
                new.key.clear();
            }
            'k' => match nicks.next() {
                Some(key) if !key.is_empty() && valid_room_key(key) => new.key = (*key).to_owned(),
                Some(_) => cx.num(
                    "696",
                    &[name, "k", "*", "Invalid key: 1-23 characters without spaces"],
                ),
                None => cx.num("461", &["MODE", "Not enough parameters"]),
            },
            'n' => {}
            other => cx.num("472", &[&other.to_string(), "is an unknown mode char to me"]),
        }
    }
    if new != old {
        cx.s().targets.push_back(Target::Mode);
        cx.request(Request::RoomMode {
            flags: new.flags,
            limit: new.limit,
            key: new.key,
        });
    }
}
