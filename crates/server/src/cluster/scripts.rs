//! The commands each writer operation becomes, with the cluster's Lua
//! scripts (`lua.rs`) hashed once and sent by hash. Where an
//! operation spans slots it is several commands: the seat or leave in the
//! room's slot, the node's own bookkeeping in the `{nodes}` slot. Room
//! channels share their room's slot, so a seat and its enter are one atomic
//! step on both.

use std::collections::HashMap;

use plaza_core::{BusMsg, Reach};
use plaza_proto::bus::{self, Origin};
use redis::{Cmd, Script, Value};

use super::lua::*;
use super::{Channel, Op, Shared};
use crate::primary::{Conn, Step};

/// The scripts, hashed once and sent by hash (EVALSHA).
pub(super) struct Scripts {
    pub(super) beat: Script,
    pub(super) free: Script,
    pub(super) claim: Script,
    pub(super) up: Script,
    pub(super) own_seat: Script,
    leave: Script,
    left: Script,
    seat: Script,
    topic: Script,
    role: Script,
    modes: Script,
    chat: Script,
    direct: Script,
    list: Script,
    /// Whether Redis is known to have them. A pipeline cannot fall back
    /// from EVALSHA to EVAL, so they are loaded before the first batch and
    /// again after any failed one (a restarted or failed-over Redis has an
    /// empty script cache).
    loaded: bool,
}

/// What an operation's answer is.
pub(super) enum Answer {
    /// Its one kept step's.
    Piped,
    /// Known without asking (a user no node has: -1).
    Known(Value),
    /// None is waited for.
    Nothing,
}

impl Scripts {
    /// `publish` is PUBLISH, or SPUBLISH on a Redis Cluster.
    pub(super) fn new(publish: &str) -> Self {
        let script = |body: &str| Script::new(&body.replace("'PUBLISH'", &format!("'{publish}'")));
        Self {
            beat: script(BEAT),
            free: script(FREE),
            claim: script(CLAIM),
            up: script(UP),
            own_seat: script(OWN_SEAT),
            leave: script(LEAVE),
            left: script(LEFT),
            seat: script(SEAT),
            topic: script(TOPIC),
            role: script(ROLE),
            modes: script(MODES),
            chat: script(CHAT),
            direct: script(DIRECT),
            list: script(LIST),
            loaded: false,
        }
    }

    /// Loads the scripts unless Redis is known to have them.
    pub(super) async fn load(&mut self, conn: &mut Conn) -> redis::RedisResult<()> {
        if !self.loaded {
            for s in [
                &self.beat,
                &self.free,
                &self.claim,
                &self.up,
                &self.own_seat,
                &self.leave,
                &self.left,
                &self.seat,
                &self.topic,
                &self.role,
                &self.modes,
                &self.chat,
                &self.direct,
                &self.list,
            ] {
                s.load_async(conn).await?;
            }
            self.loaded = true;
        }
        Ok(())
    }

    /// A batch failed: load them again before the next.
    pub(super) fn forget(&mut self) {
        self.loaded = false;
    }

    /// Adds the steps for `op` (a replace and a bury are the writer's own),
    /// stamping what it publishes with the next number of its channel in
    /// `seqs`; `owners` has the nodes of users that messages go to on a
    /// Redis Cluster. Returns the bytes it publishes and how it is answered.
    pub(super) fn add(
        &self,
        s: &Shared,
        steps: &mut Vec<Step>,
        op: &Op,
        seqs: &mut HashMap<Channel, u64>,
        owners: &HashMap<String, Option<u64>>,
    ) -> (usize, Answer) {
        let keys = &s.keys;
        let mut origin = |channel| stamp(s, seqs, channel);
        let publish = |channel: String, bytes: &[u8]| {
            let mut cmd = redis::cmd(s.publish);
            cmd.arg(&channel).arg(bytes);
            Step::new(cmd, channel, true)
        };
        match op {
            Op::Publish {
                msg,
                reach: Reach::User,
                ..
            } => {
                // Not numbered: the node is found from the user's mark, and
                // a message that must reach it is acknowledged only if it did.
                let name = match msg {
                    BusMsg::Whisper { to, .. } => to,
                    BusMsg::Kick { name, .. } | BusMsg::Mute { name, .. } => name,
                    BusMsg::Invite { room, to, .. } => {
                        // The pass, for the seat script wherever it enters.
                        let invites = keys.invites(*room);
                        let mut sadd = redis::cmd("SADD");
                        sadd.arg(&invites).arg(plaza_proto::name_key(to));
                        steps.push(Step::new(sadd, invites, false));
                        to
                    }
                    _ => unreachable!("only a message for one user goes to its node"),
                };
                let bytes = bus::encode(s.node, msg);
                let mark = keys.user("online", name);
                if !keys.tagged() {
                    let mut cmd = evalsha(&self.direct, &mark);
                    cmd.arg(bytes.as_ref()).arg(keys.to_prefix());
                    steps.push(Step::new(cmd, mark, true));
                } else if let Some(Some(node)) = owners.get(name.as_str()) {
                    steps.push(publish(keys.to(*node), &bytes));
                } else {
                    return (0, Answer::Known(Value::Int(-1)));
                }
                (bytes.len(), Answer::Piped)
            }
            Op::ListUsers { after, .. } => {
                let users = keys.users();
                let mut cmd = evalsha(&self.list, &users);
                cmd.arg(after).arg(plaza_proto::USER_LIST_PAGE + 1);
                steps.push(Step::new(cmd, users, true));
                (0, Answer::Piped)
            }
            Op::Publish {
                msg:
                    BusMsg::RoomChat {
                        room,
                        from,
                        message,
                        place,
                        notice,
                    },
                ..
            } => {
                // Numbered as Redis publishes it (`Place` in `bus`).
                let bytes = bus::chat(origin(Channel::Room(*room)), *room, from, message, *notice);
                let known = place.map_or((0, 0), |p| (p.epoch.get(), p.seq));
                let (numbering, log) = (keys.numbering(*room), keys.log(*room));
                let mut chat = evalsha_keys(&self.chat, &[&numbering, &log]);
                chat.arg(bytes.as_ref())
                    .arg(keys.room(*room))
                    .arg(known.0)
                    .arg(known.1)
                    .arg(s.config.history);
                steps.push(Step::new(chat, numbering, true));
                (bytes.len(), Answer::Piped)
            }
            Op::Publish { msg, .. } => {
                let channel = Channel::of(msg);
                let at = origin(channel);
                let bytes = bus::encode(at, msg);
                match msg {
                    // A login or logout changes the node's hash and the
                    // directory and is published nowhere: no node keeps
                    // other nodes' users but its rooms'.
                    BusMsg::Online { name, uid } => {
                        let (node, users) = (keys.node(s.node), keys.users());
                        let mut hset = redis::cmd("HSET");
                        hset.arg(&node).arg(name).arg(format!("{uid}|-1"));
                        steps.push(Step::new(hset, node, false));
                        let mut zadd = redis::cmd("ZADD");
                        zadd.arg(&users).arg(0).arg(name);
                        steps.push(Step::new(zadd, users, true));
                    }
                    BusMsg::Offline { name } => {
                        let (node, users) = (keys.node(s.node), keys.users());
                        let mut hdel = redis::cmd("HDEL");
                        hdel.arg(&node).arg(name);
                        steps.push(Step::new(hdel, node, false));
                        let mut zrem = redis::cmd("ZREM");
                        zrem.arg(&users).arg(name);
                        steps.push(Step::new(zrem, users, true));
                    }
                    BusMsg::Leave { name, uid, room } => {
                        let (seats, node) = (keys.seats(*room), keys.node(s.node));
                        let mut leave = evalsha_keys(&self.leave, &[&seats, &keys.roles(*room)]);
                        leave
                            .arg(uid)
                            .arg(bytes.as_ref())
                            .arg(keys.room(*room))
                            .arg(s.node)
                            .arg(bus::tick(at).as_ref());
                        steps.push(Step::new(leave, seats, true));
                        let mut left = evalsha(&self.left, &node);
                        left.arg(name).arg(uid).arg(crate::keys::HELD);
                        steps.push(Step::new(left, node, false));
                    }
                    BusMsg::Topic { room, at, .. } => {
                        let key = keys.topic(*room);
                        let mut topic = evalsha(&self.topic, &key);
                        topic.arg(bytes.as_ref()).arg(keys.room(*room)).arg(at);
                        steps.push(Step::new(topic, key, true));
                    }
                    BusMsg::Role { room, uid, roles, .. } => {
                        let key = keys.roles(*room);
                        let mut script = evalsha(&self.role, &key);
                        script
                            .arg(bytes.as_ref())
                            .arg(keys.room(*room))
                            .arg(uid)
                            .arg(roles);
                        steps.push(Step::new(script, key, true));
                    }
                    BusMsg::Modes {
                        room,
                        at,
                        limit,
                        key: room_key,
                        flags,
                        ..
                    } => {
                        let key = keys.modes(*room);
                        let mut script = evalsha(&self.modes, &key);
                        script
                            .arg(bytes.as_ref())
                            .arg(keys.room(*room))
                            .arg(at)
                            .arg(limit)
                            .arg(room_key)
                            .arg(u8::from(flags & plaza_proto::room_modes::INVITE_ONLY != 0));
                        steps.push(Step::new(script, key, true));
                    }
                    _ => steps.push(publish(channel.name(keys), &bytes)),
                }
                (bytes.len(), Answer::Piped)
            }
            Op::Seat {
                name,
                uid,
                room,
                fill,
                key,
                ..
            } => {
                let msg = BusMsg::Enter {
                    name: name.clone(),
                    uid: *uid,
                    room: *room,
                };
                let at = origin(Channel::Room(*room));
                let bytes = bus::encode(at, &msg);
                let seats = keys.seats(*room);
                let (numbering, log, topic) = (keys.numbering(*room), keys.log(*room), keys.topic(*room));
                let (roles, modes, invites) = (keys.roles(*room), keys.modes(*room), keys.invites(*room));
                let all: [&str; 7] = [&seats, &numbering, &log, &topic, &roles, &modes, &invites];
                let mut seat = evalsha_keys(&self.seat, &all);
                seat.arg(s.node)
                    .arg(name)
                    .arg(uid)
                    .arg(s.config.room_capacity)
                    .arg(bytes.as_ref())
                    .arg(keys.room(*room))
                    .arg(if *fill { s.config.history } else { 0 })
                    .arg(bus::tick(at).as_ref())
                    .arg(key)
                    .arg(plaza_proto::name_key(name));
                steps.push(Step::new(seat, seats, true));
                // In the node's slot, so not in the seat's step: written
                // even when the room was full, which costs a bury or replace
                // one HDEL of a seat the user does not hold.
                let node = keys.node(s.node);
                let mut hset = redis::cmd("HSET");
                hset.arg(&node).arg(name).arg(format!("{uid}|{room}"));
                steps.push(Step::new(hset, node, false));
                (bytes.len(), Answer::Piped)
            }
            Op::Drain(seconds) => {
                let b = bus::drain(origin(Channel::Bus), *seconds);
                steps.push(publish(keys.bus(), &b));
                (b.len(), Answer::Piped)
            }
            Op::Notice { room, message } => {
                let b = bus::notice(origin(Channel::Bus), *room, message);
                steps.push(publish(keys.bus(), &b));
                (b.len(), Answer::Piped)
            }
            Op::Tick => {
                let b = bus::tick(origin(Channel::Bus));
                steps.push(publish(keys.bus(), &b));
                (b.len(), Answer::Piped)
            }
            Op::Hold { name, uid, room } => {
                // In the node's hash, where a burial finds it.
                let node = keys.node(s.node);
                let mut hset = redis::cmd("HSET");
                let field = format!("{}{name}", crate::keys::HELD);
                hset.arg(&node).arg(field).arg(format!("{uid}|{room}"));
                steps.push(Step::new(hset, node, false));
                (0, Answer::Nothing)
            }
            Op::Unhold { name, uid } => {
                let node = keys.node(s.node);
                let mut left = evalsha(&self.left, &node);
                left.arg(name).arg(uid).arg(crate::keys::HELD);
                steps.push(Step::new(left, node, false));
                (0, Answer::Nothing)
            }
            Op::Replace { .. } | Op::Bury(_) | Op::Interest { .. } => (0, Answer::Nothing),
        }
    }
}

/// The stamp of this node's next publish on `channel` (its numbers there
/// start at 1).
pub(super) fn stamp(s: &Shared, seqs: &mut HashMap<Channel, u64>, channel: Channel) -> Origin {
    let seq = seqs.entry(channel).or_insert(0);
    *seq += 1;
    Origin {
        node: s.node,
        seq: *seq,
        sent_us: super::unix_micros(),
    }
}

/// EVALSHA of `script` with its one key.
pub(super) fn evalsha(script: &Script, key: &str) -> Cmd {
    evalsha_keys(script, &[key])
}

/// EVALSHA of `script` with its keys.
pub(super) fn evalsha_keys(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}
