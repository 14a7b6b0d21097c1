//! CAP: IRCv3 capability negotiation (LS, LIST, REQ, END).

use super::inbound::{Cx, try_register};
use super::line::{self, Message, Prefix};

/// The capabilities offered (docs/IRC.md).
/// `cap-notify` costs nothing: the list never changes while a client is
/// connected, so there is never a CAP NEW or DEL to send.
const CAPS: &[&str] = &[
    "cap-notify",
    "echo-message",
    "multi-prefix",
    "sasl",
    "server-time",
    "userhost-in-names",
];

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
            let offered = if v302 {
                "cap-notify echo-message multi-prefix sasl=PLAIN server-time userhost-in-names"
            } else {
                "cap-notify echo-message multi-prefix sasl server-time userhost-in-names"
            };
            reply(cx, &me, "LS", offered);
        }
        "LIST" => {
            let caps = cx.s().caps;
            let on = [
                (caps.notify, "cap-notify"),
                (caps.echo, "echo-message"),
                (caps.multi_prefix, "multi-prefix"),
                (caps.time, "server-time"),
                (caps.userhost, "userhost-in-names"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
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
                match c.trim_start_matches('-') {
                    "echo-message" => cx.s().caps.echo = on,
                    "cap-notify" => cx.s().caps.notify = on,
                    "server-time" => cx.s().caps.time = on,
                    "userhost-in-names" => cx.s().caps.userhost = on,
                    "multi-prefix" => cx.s().caps.multi_prefix = on,
                    _ => {}
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
