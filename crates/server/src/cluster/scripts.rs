//! The cluster's Lua scripts, and the one pipeline command each writer
//! operation becomes.
//!
//! Keys are built inside the scripts from the prefix, so this needs one
//! Redis primary (with replicas or Sentinel), not Redis Cluster.

use std::collections::HashMap;

use plaza_core::{BusMsg, Reach};
use plaza_proto::bus::{self, Origin};
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Channel, Leaving, Op, Shared, lock};

/// Removes a node: its seats, its users' logged-in marks and directory
/// entries (only those it still owns), its hash and its heartbeat; tells
/// everyone.
const BURY_FN: &str = r"
local function bury(p, id)
  local nk = p .. 'node:' .. id
  local users = redis.call('HGETALL', nk)
  for i = 1, #users, 2 do
    local uid, room = string.match(users[i + 1], '^(%d+)|(-?%d+)$')
    if room and room ~= '-1' then redis.call('HDEL', p .. 'seats:' .. room, uid) end
    local ok = p .. 'online:' .. users[i]
    local owner = redis.call('GET', ok)
    if not owner then
      redis.call('ZREM', p .. 'users', users[i])
    elseif string.sub(owner, 1, #id + 1) == id .. ':' then
      redis.call('DEL', ok)
      redis.call('ZREM', p .. 'users', users[i])
    end
  end
  redis.call('DEL', nk)
  redis.call('ZREM', p .. 'nodes', id)
  redis.call('PUBLISH', p .. 'bus', string.char(11) .. string.rep(string.char(0), 8) .. id)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

/// ARGV: prefix, id, ttl_ms. Returns 1 if this node was not registered (it
/// was buried, or is new).
const BEAT: &str = r"
local p, id, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local added = redis.call('ZADD', p .. 'nodes', now + ttl, id)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', p .. 'nodes', '-inf', now)) do bury(p, dead) end
return added
";

/// ARGV: prefix, id.
const BURY: &str = "bury(ARGV[1], ARGV[2]) return 1";

/// ARGV: prefix, id, op (on, off, leave), name, uid, room, message. A login
/// or logout changes the node's hash and the directory (`users`) and is
/// published nowhere: no node keeps other nodes' users but its rooms'. A
/// leave is published on the room's channel; returns PUBLISH's answer.
const STATE: &str = r"
local p, id, op, name, uid, room, msg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local nk = p .. 'node:' .. id
if op == 'on' then
  redis.call('HSET', nk, name, uid .. '|-1')
  redis.call('ZADD', p .. 'users', 0, name)
  return 1
elseif op == 'off' then
  redis.call('HDEL', nk, name)
  redis.call('ZREM', p .. 'users', name)
  return 1
end
redis.call('HDEL', p .. 'seats:' .. room, uid)
if redis.call('HEXISTS', nk, name) == 1 then redis.call('HSET', nk, name, uid .. '|-1') end
return redis.call('PUBLISH', p .. 'room:' .. room, msg)
";

/// ARGV: prefix, name, message. Publishes on the channel of the node the
/// user is logged in on (from its `online:` mark); -1 if none is.
const DIRECT: &str = r"
local p, name, msg = ARGV[1], ARGV[2], ARGV[3]
local owner = redis.call('GET', p .. 'online:' .. name)
local node = owner and string.match(owner, '^(%d+):')
if not node then return -1 end
return redis.call('PUBLISH', p .. 'to:' .. node, msg)
";

/// ARGV: prefix, after, count. Returns {total, name, name, ...}: the users
/// logged in on every node, and up to `count` names after `after`, in
/// byte order.
const LIST: &str = r"
local k, after, n = ARGV[1] .. 'users', ARGV[2], tonumber(ARGV[3])
local from = '-'
if after ~= '' then from = '(' .. after end
local r = redis.call('ZRANGEBYLEX', k, from, '+', 'LIMIT', 0, n)
table.insert(r, 1, redis.call('ZCARD', k))
return r
";

/// ARGV: prefix, id, name, uid, room, capacity, message. Returns {0} when
/// full, else {1, uid, node|name, uid, node|name, ...}: every member, this
/// one included, as of the enter it publishes on the room's channel.
const SEAT: &str = r"
local p, id, name, uid, room, cap, msg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local sk = p .. 'seats:' .. room
if redis.call('HEXISTS', sk, uid) == 0 and redis.call('HLEN', sk) >= cap then return {0} end
redis.call('HSET', sk, uid, id .. '|' .. name)
redis.call('HSET', p .. 'node:' .. id, name, uid .. '|' .. room)
redis.call('PUBLISH', p .. 'room:' .. room, msg)
local r = redis.call('HGETALL', sk)
table.insert(r, 1, 1)
return r
";

/// ARGV: prefix, id, node_ttl_ms, presence_ttl_ms, message, then (name,
/// owner, uid, room) per user. Rewrites the node's hash and seats, restores
/// its users' marks; returns the names another node took meanwhile.
const REPLACE: &str = r"
local p, id, ttl, pttl, msg = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local nk = p .. 'node:' .. id
local old = redis.call('HGETALL', nk)
for i = 1, #old, 2 do
  local uid, room = string.match(old[i + 1], '^(%d+)|(-?%d+)$')
  if room and room ~= '-1' then redis.call('HDEL', p .. 'seats:' .. room, uid) end
end
redis.call('DEL', nk)
local lost, kept = {}, {}
for i = 6, #ARGV, 4 do
  local name, owner, uid, room = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local ok = p .. 'online:' .. name
  local cur = redis.call('GET', ok)
  if cur and cur ~= owner then
    table.insert(lost, name)
  else
    kept[name] = true
    redis.call('SET', ok, owner, 'PX', pttl)
    redis.call('HSET', nk, name, uid .. '|' .. room)
    redis.call('ZADD', p .. 'users', 0, name)
    if room ~= '-1' then redis.call('HSET', p .. 'seats:' .. room, uid, id .. '|' .. name) end
  end
end
for i = 1, #old, 2 do
  local name = old[i]
  if not kept[name] and not redis.call('GET', p .. 'online:' .. name) then
    redis.call('ZREM', p .. 'users', name)
  end
end
redis.call('ZADD', p .. 'nodes', now_ms() + ttl, id)
redis.call('PUBLISH', p .. 'bus', msg)
return lost
";

fn script(body: &str) -> Script {
    Script::new(&format!("{BURY_FN}\n{body}"))
}

/// The heartbeat's script: ARGV prefix, id, ttl_ms.
pub(super) fn beat() -> Script {
    script(BEAT)
}

/// The writer's scripts, hashed once and sent by hash (EVALSHA).
pub(super) struct Scripts {
    state: Script,
    seat: Script,
    replace: Script,
    bury: Script,
    direct: Script,
    list: Script,
    /// Whether Redis is known to have them. A pipeline cannot fall back
    /// from EVALSHA to EVAL, so they are loaded before the first batch and
    /// again after any failed one (a restarted or failed-over Redis has an
    /// empty script cache).
    loaded: bool,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            state: script(STATE),
            seat: script(SEAT),
            replace: script(REPLACE),
            bury: script(BURY),
            direct: script(DIRECT),
            list: script(LIST),
            loaded: false,
        }
    }

    /// Loads the scripts unless Redis is known to have them.
    pub(super) async fn load(&mut self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        if !self.loaded {
            for s in [
                &self.state,
                &self.seat,
                &self.replace,
                &self.bury,
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

    /// Adds exactly one command for `op` (none for an interest), stamping
    /// what it publishes with the next number of its channel in `seqs`;
    /// returns the bytes it publishes.
    pub(super) fn add(
        &self,
        s: &Shared,
        pipe: &mut redis::Pipeline,
        op: &Op,
        seqs: &mut HashMap<Channel, u64>,
    ) -> usize {
        let (p, id) = (&s.config.prefix, s.node.to_string());
        let mut origin = |channel| {
            let seq = seqs.entry(channel).or_insert(0);
            *seq += 1;
            Origin {
                node: s.node,
                seq: *seq,
                sent_us: super::unix_micros(),
            }
        };
        let eval = |pipe: &mut redis::Pipeline, script: &Script| {
            pipe.cmd("EVALSHA").arg(script.get_hash()).arg(0).arg(p).arg(&id);
        };
        match op {
            Op::Publish {
                msg,
                reach: Reach::User,
                ..
            } => {
                // Not numbered: the node is found in the script, and a
                // message that must reach it is acknowledged only if it did.
                let name = match msg {
                    BusMsg::Whisper { to, .. } => to,
                    BusMsg::Kick { name, .. } | BusMsg::Mute { name, .. } => name,
                    _ => unreachable!("only a message for one user goes to its node"),
                };
                let bytes = bus::encode(s.node, msg);
                pipe.cmd("EVALSHA")
                    .arg(self.direct.get_hash())
                    .arg(0)
                    .arg(p)
                    .arg(name)
                    .arg(bytes.as_ref());
                bytes.len()
            }
            Op::ListUsers { after, .. } => {
                pipe.cmd("EVALSHA")
                    .arg(self.list.get_hash())
                    .arg(0)
                    .arg(p)
                    .arg(after)
                    .arg(plaza_proto::USER_LIST_PAGE + 1);
                0
            }
            Op::Publish { msg, .. } => {
                let channel = Channel::of(msg);
                let bytes = bus::encode(origin(channel), msg);
                let state = match msg {
                    BusMsg::Online { name, uid } => Some(("on", name, *uid, -1)),
                    BusMsg::Offline { name } => Some(("off", name, 0, -1)),
                    BusMsg::Leave { name, uid, room } => Some(("leave", name, *uid, i64::from(*room))),
                    _ => None,
                };
                match state {
                    Some((what, name, uid, room)) => {
                        eval(pipe, &self.state);
                        pipe.arg(what).arg(name).arg(uid).arg(room).arg(bytes.as_ref());
                    }
                    None => {
                        pipe.cmd("PUBLISH").arg(channel.name(p)).arg(bytes.as_ref());
                    }
                }
                bytes.len()
            }
            Op::Seat { name, uid, room, .. } => {
                let msg = BusMsg::Enter {
                    name: name.clone(),
                    uid: *uid,
                    room: *room,
                };
                let bytes = bus::encode(origin(Channel::Room(*room)), &msg);
                eval(pipe, &self.seat);
                pipe.arg(name)
                    .arg(uid)
                    .arg(room)
                    .arg(s.config.room_capacity)
                    .arg(bytes.as_ref());
                bytes.len()
            }
            Op::Replace(users) => {
                let b = bus::reset(origin(Channel::Bus));
                eval(pipe, &self.replace);
                pipe.arg(s.config.node_ttl.as_millis() as u64)
                    .arg(s.config.presence_ttl.as_millis() as u64)
                    .arg(b.as_ref());
                for (name, owner, uid, room) in users {
                    pipe.arg(name).arg(owner).arg(uid).arg(room.map_or(-1, i64::from));
                }
                b.len()
            }
            Op::Drain(seconds) => {
                let b = bus::drain(origin(Channel::Bus), *seconds);
                pipe.cmd("PUBLISH").arg(s.key("bus")).arg(b.as_ref());
                b.len()
            }
            Op::Notice { room, message } => {
                let b = bus::notice(origin(Channel::Bus), *room, message);
                pipe.cmd("PUBLISH").arg(s.key("bus")).arg(b.as_ref());
                b.len()
            }
            Op::Tick => {
                let b = bus::tick(origin(Channel::Bus));
                pipe.cmd("PUBLISH").arg(s.key("bus")).arg(b.as_ref());
                b.len()
            }
            Op::Bury(_) => {
                lock(&s.link).leaving = Leaving::Asked;
                eval(pipe, &self.bury);
                0
            }
            Op::Interest { .. } => 0,
        }
    }
}
