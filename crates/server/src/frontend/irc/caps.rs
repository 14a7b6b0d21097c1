//! CAP: IRCv3 capability negotiation (LS, LIST, REQ, END).

use super::Caps;
use super::inbound::{Cx, try_register};
use super::line::{self, Message, Prefix};

/// The capabilities offered (docs/IRC.md), in the order CAP LS lists
/// them. `cap-notify` costs nothing: the list never changes while a client
/// is connected, so there is never a CAP NEW or DEL to send.
const CAPS: &[&str] = &[
    "away-notify",
    "batch",
    "cap-notify",
    "draft/chathistory",
    "echo-message",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "sasl",
    "server-time",
    "setname",
    "userhost-in-names",
];

/// The switch in `caps` that capability `name` turns on or off.
fn switch<'c>(caps: &'c mut Caps, name: &str) -> Option<&'c mut bool> {
    Some(match name {
        "away-notify" => &mut caps.away_notify,
        "batch" => &mut caps.batch,
        "cap-notify" => &mut caps.notify,
        "draft/chathistory" => &mut caps.history,
        "echo-message" => &mut caps.echo,
        "labeled-response" => &mut caps.labeled,
        "message-tags" => &mut caps.tags,
        "multi-prefix" => &mut caps.multi_prefix,
        "server-time" => &mut caps.time,
        "setname" => &mut caps.setname,
        "userhost-in-names" => &mut caps.userhost,
        _ => return None,
    })
}

pub(super) fn cap(cx: &mut Cx<'_>, m: &Message<'_>) {
    let sub = m.param(0).unwrap_or("").to_ascii_uppercase();
    let me = cx.me();
    let registered = cx.s().registered;
    match sub.as_str() {
        "LS" => {
            let v302 = m
                .param(1)
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|v| v >= 302);
            let s = cx.s();
            s.caps.v302 |= v302;
            s.caps.notify |= v302;
            s.caps.negotiating = !registered;
            let offered = CAPS
                .iter()
                .map(|&c| if c == "sasl" && v302 { "sasl=PLAIN" } else { c })
                .collect::<Vec<_>>()
                .join(" ");
            reply(cx, &me, "LS", &offered);
        }
        "LIST" => {
            let mut caps = cx.s().caps;
            let on = CAPS
                .iter()
                .filter(|&&c| switch(&mut caps, c).is_some_and(|on| *on))
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            let on = on.as_str();
            reply(cx, &me, "LIST", on);
        }
        "REQ" => {
            let asked = m.param(1).unwrap_or("");
            let known = asked
                .split(' ')
                .filter(|c| !c.is_empty())
                .all(|c| CAPS.contains(&c.trim_start_matches('-')));
            cx.s().caps.negotiating = !registered;
            if !known || asked.trim().is_empty() {
                reply(cx, &me, "NAK", asked);
                return;
            }
            for c in asked.split(' ').filter(|c| !c.is_empty()) {
                let on = !c.starts_with('-');
                if let Some(switch) = switch(&mut cx.s().caps, c.trim_start_matches('-')) {
                    *switch = on;
                }
            }
            reply(cx, &me, "ACK", asked);
        }
        "END" => {
            cx.s().caps.negotiating = false;
            try_register(cx);
        }
        _ => cx.num("410", &[m.param(0).unwrap_or("*"), "Invalid CAP command"]),
    }
}

/// `:server CAP <me> <sub> :<text>`.
fn reply(cx: &mut Cx<'_>, me: &str, sub: &str, text: &str) {
    line::put(
        &mut cx.out.replies,
        Prefix::Server(&cx.irc.server),
        "CAP",
        &[me, sub, text],
    );
}
