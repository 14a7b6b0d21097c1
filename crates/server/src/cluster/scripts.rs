//! The cluster's Lua scripts, and the commands each writer operation
//! becomes.
//!
//! Every script declares its keys, and touches one hash slot (`crate::keys`),
//! so the same scripts run on one Redis and on a Redis Cluster. Where an
//! operation spans slots it is several commands: the seat or leave in the
//! room's slot, the node's own bookkeeping in the `{nodes}` slot. Room
//! channels share their room's slot, so a seat and its enter are one atomic
//! step on both.

use std::collections::HashMap;

use plaza_core::{BusMsg, Reach};
use plaza_proto::bus::{self, Origin};
use redis::{Cmd, Script, Value};

use super::{Channel, Op, Shared};
use crate::primary::{Conn, Step};

/// KEYS: nodes. ARGV: id, ttl_ms. Pushes this node's heartbeat forward;
/// returns {1 if this node was not in the set (buried, or new), then the
/// ids of nodes whose time has passed}. They stay in the set until a
/// burial finishes, so a node that dies while burying leaves the work to
/// the next beat.
const BEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
table.insert(dead, 1, added)
return dead
";

/// KEYS: a user's logged-in mark. ARGV: a dead node's id. Deletes the mark
/// if that node held it; 1 if no mark is left.
const FREE: &str = r"
local owner = redis.call('GET', KEYS[1])
if not owner then return 1 end
if string.sub(owner, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// KEYS: a user's logged-in mark. ARGV: owner, presence_ttl_ms. Sets it
/// unless another session holds it: 1 kept, 0 taken.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// KEYS: seats. ARGV: uid, node, then the value to write, if any. Frees
/// the seat (or, with a value, writes it) if it is that node's, or free:
/// never a seat that moved to another node (a held seat its user took
/// back there). 1 if it did.
const OWN_SEAT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' then return 0 end
if ARGV[3] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
";

/// KEYS: nodes. ARGV: id, ttl_ms. Registers the node as live.
const UP: &str = r"
local t = redis.call('TIME')
return redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2]), ARGV[1])
";

/// KEYS: seats, roles. ARGV: uid, message, channel, node, tick. Frees the
/// seat (and its holder's roles) and publishes the leave, if the seat is still that node's (a seat held
/// for a user who dropped may have moved to the node it came back on);
/// else publishes the tick (a bare stamp with the leave's number, so no
/// node sees a hole in this node's numbers). Returns the publish's count.
const LEAVE: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or string.sub(v, 1, #ARGV[4] + 1) ~= ARGV[4] .. '|' then
  return redis.call('PUBLISH', ARGV[3], ARGV[5])
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('PUBLISH', ARGV[3], ARGV[2])
";

/// KEYS: the node's hash. ARGV: name, uid, held prefix. The seat `uid`
/// is given up: the user is back in the lobby if that is its seat and it
/// is still logged in; a seat held for it while it was away is gone.
const LEFT: &str = r"
local function is(field)
  local v = redis.call('HGET', KEYS[1], field)
  return v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. '|'
end
if is(ARGV[1]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|-1') end
if is(ARGV[3] .. ARGV[1]) then redis.call('HDEL', KEYS[1], ARGV[3] .. ARGV[1]) end
return 1
";

/// KEYS: seats, numbering, log, topic, roles, modes. ARGV: id, name, uid,
/// capacity, message, channel, fill, tick (the enter's stamp alone:
/// published instead of it when the seat is refused, so no node sees a
/// hole in this node's numbers), key. Returns {0} when full (its capacity
/// or its modes' limit), {3} when the room has a key and it is not the
/// one given, else {1, log, topic, roles, modes, uid, node|name, uid,
/// node|name, ...}: every member, this one included, as of the enter it
/// publishes on the room's channel, the bus messages that set the room's
/// topic and modes ("" if none) and its members' roles (uid, bits, ...).
/// A topic, modes and roles last while the room has members: the first
/// seat of an empty room drops them, and its holder is the room's
/// operator. A user taking
/// back its own seat is not held to the limit or the key. When the room's members were all on
/// one other node, that node numbered its messages: the cluster's numbers
/// start a new epoch. `log` is {} unless `fill` > 0 and the room has
/// members on several nodes; then {epoch, last seq, newest `fill` entries
/// of the log, newest first}. A seat of the same user on another node (one
/// held there while it was away) is answered {2, its uid}, with nothing
/// done: the caller asks again with that uid, and the seat moves here.
const SEAT: &str = r"
local id, name, uid, cap, msg, ch, fill = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7])
local before = redis.call('HGETALL', KEYS[1])
if #before == 0 then redis.call('DEL', KEYS[4], KEYS[5], KEYS[6]) end
local nodes, n, mine = {}, 0, false
for i = 1, #before, 2 do
  local node, who = string.match(before[i + 1], '^(%d+)|(.*)$')
  if before[i] == uid then
    mine = true
  elseif who == name and node ~= id then
    redis.call('PUBLISH', ch, ARGV[8])
    return {2, before[i]}
  end
  if before[i] ~= uid and node and not nodes[node] then
    nodes[node] = true
    n = n + 1
  end
end
local limit = tonumber(redis.call('HGET', KEYS[6], 'l') or '0')
if limit > 0 and limit < cap then cap = limit end
if not mine and #before / 2 >= cap then
  redis.call('PUBLISH', ch, ARGV[8])
  return {0}
end
local key = redis.call('HGET', KEYS[6], 'k') or ''
if not mine and key ~= '' and key ~= ARGV[9] then
  redis.call('PUBLISH', ch, ARGV[8])
  return {3}
end
if n == 1 and not nodes[id] then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[2], 'e', t[1] .. string.format('%06d', tonumber(t[2])), 's', 0)
  redis.call('DEL', KEYS[3])
end
redis.call('HSET', KEYS[1], uid, id .. '|' .. name)
if #before == 0 then redis.call('HSET', KEYS[5], uid, 1) end
redis.call('PUBLISH', ch, msg)
local log = {}
local e = redis.call('HGET', KEYS[2], 'e')
if fill > 0 and (n > 1 or (n == 1 and not nodes[id])) and e then
  log = {e, redis.call('HGET', KEYS[2], 's'), redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', fill)}
end
local r = redis.call('HGETALL', KEYS[1])
table.insert(r, 1, redis.call('HGET', KEYS[6], 'm') or '')
table.insert(r, 1, redis.call('HGETALL', KEYS[5]))
table.insert(r, 1, redis.call('HGET', KEYS[4], 'm') or '')
table.insert(r, 1, log)
table.insert(r, 1, 1)
return r
";

/// KEYS: topic. ARGV: message, channel, at. Keeps a room's topic if it is
/// newer than the one kept (the newest wins everywhere), and publishes it
/// either way (its number in the node's stream is taken). Returns the
/// publish's count.
const TOPIC: &str = r"
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], 'at') or '0') then
  redis.call('HSET', KEYS[1], 'at', ARGV[3], 'm', ARGV[1])
end
return redis.call('PUBLISH', ARGV[2], ARGV[1])
";

/// KEYS: modes. ARGV: message, channel, at, limit, key. Keeps a room's
/// modes if they are newer than the ones kept (the newest wins, as a
/// topic's), with the limit and key apart for the seat script, and
/// publishes them either way. Returns the publish's count.
const MODES: &str = r"
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], 'at') or '0') then
  redis.call('HSET', KEYS[1], 'at', ARGV[3], 'm', ARGV[1], 'l', ARGV[4], 'k', ARGV[5])
end
return redis.call('PUBLISH', ARGV[2], ARGV[1])
";

/// KEYS: roles. ARGV: message, channel, uid, roles. Keeps a member's
/// roles (none: removed) and publishes the change. Returns the publish's
/// count.
const ROLE: &str = r"
if ARGV[4] == '0' then
  redis.call('HDEL', KEYS[1], ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
end
return redis.call('PUBLISH', ARGV[2], ARGV[1])
";

/// KEYS: numbering, log. ARGV: message, channel, known epoch, known seq,
/// log length. Numbers a room message: the room's next number in its epoch
/// (a new epoch when there is none, or when the counter is behind what
/// the sender saw: a failover lost its last writes), appended to the
/// message as `<epoch> <seq>`; keeps it in the log and publishes it.
/// Returns {publish count, epoch, seq}.
const CHAT: &str = r"
local e = redis.call('HGET', KEYS[1], 'e')
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
if not e or (e == ARGV[3] and s < tonumber(ARGV[4])) then
  local t = redis.call('TIME')
  e = t[1] .. string.format('%06d', tonumber(t[2]))
  s = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', e)
end
s = s + 1
redis.call('HSET', KEYS[1], 's', s)
local m = ARGV[1] .. e .. ' ' .. s
if tonumber(ARGV[5]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'm', m)
end
return {redis.call('PUBLISH', ARGV[2], m), e, s}
";

/// KEYS: the user's logged-in mark. ARGV: message, node channel prefix.
/// Publishes on the channel of the node the user is logged in on; -1 if
/// none is. (One Redis only: on a Redis Cluster the mark and the node's
/// channel are in different slots, and the writer reads the mark first.)
const DIRECT: &str = r"
local owner = redis.call('GET', KEYS[1])
local node = owner and string.match(owner, '^(%d+):')
if not node then return -1 end
return redis.call('PUBLISH', ARGV[2] .. node, ARGV[1])
";

/// KEYS: users. ARGV: after, count. Returns {total, name, name, ...}: the
/// users logged in on every node, and up to `count` names after `after`,
/// in byte order.
const LIST: &str = r"
local after, n = ARGV[1], tonumber(ARGV[2])
local from = '-'
if after ~= '' then from = '(' .. after end
local r = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, n)
table.insert(r, 1, redis.call('ZCARD', KEYS[1]))
return r
";

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
                        ..
                    } => {
                        let key = keys.modes(*room);
                        let mut script = evalsha(&self.modes, &key);
                        script
                            .arg(bytes.as_ref())
                            .arg(keys.room(*room))
                            .arg(at)
                            .arg(limit)
                            .arg(room_key);
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
                let (roles, modes) = (keys.roles(*room), keys.modes(*room));
                let mut seat = evalsha_keys(&self.seat, &[&seats, &numbering, &log, &topic, &roles, &modes]);
                seat.arg(s.node)
                    .arg(name)
                    .arg(uid)
                    .arg(s.config.room_capacity)
                    .arg(bytes.as_ref())
                    .arg(keys.room(*room))
                    .arg(if *fill { s.config.history } else { 0 })
                    .arg(bus::tick(at).as_ref())
                    .arg(key);
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
