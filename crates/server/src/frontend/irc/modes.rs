//! MODE: the modes Plaza has. A channel is `+n` (members only); `+o nick`
//! / `-o nick` makes a member a channel operator or takes it away (a room
//! operator's, or an admin's, right); `+q nick` / `-q nick` mutes and
//! unmutes (Plaza's mute is server-wide, and for admins only); users have
//! no modes to set.

use plaza_proto::Request;

use super::Target;
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
    let Some(&modes) = args.first() else {
        return cx.num("324", &[name, "+n"]);
    };
    if cx.s().room != Some(room) {
        return cx.num("442", &[name, "You're not on that channel"]);
    }
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
            'o' => {
                let Some(&nick) = nicks.next() else {
                    continue;
                };
                cx.s().targets.push_back(Target::Op(nick.to_owned()));
                cx.request(Request::RoomOp {
                    name: nick.to_owned(),
                    op: on,
                });
            }
            'n' => {}
            other => cx.num("472", &[&other.to_string(), "is an unknown mode char to me"]),
        }
    }
}
