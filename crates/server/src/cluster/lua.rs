//! The cluster's Lua scripts. Every script declares its keys, and touches
//! one hash slot (`crate::keys`), so the same scripts run on one Redis and
//! on a Redis Cluster.

/// KEYS: nodes. ARGV: id, ttl_ms. Pushes this node's heartbeat forward;
/// returns {1 if this node was not in the set (buried, or new), then the
/// ids of nodes whose time has passed}. They stay in the set until a
/// burial finishes, so a node that dies while burying leaves the work to
/// the next beat.
pub(super) const BEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
table.insert(dead, 1, added)
return dead
";

/// KEYS: a user's logged-in mark. ARGV: a dead node's id. Deletes the mark
/// if that node held it; 1 if no mark is left.
pub(super) const FREE: &str = r"
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
pub(super) const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// KEYS: seats. ARGV: uid, node, then the value to write, if any. Frees
/// the seat (or, with a value, writes it) if it is that node's, or free:
/// never a seat that moved to another node (a held seat its user took
/// back there). 1 if it did.
pub(super) const OWN_SEAT: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' then return 0 end
if ARGV[3] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
";

/// KEYS: nodes. ARGV: id, ttl_ms. Registers the node as live.
pub(super) const UP: &str = r"
local t = redis.call('TIME')
return redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2]), ARGV[1])
";

/// KEYS: seats, roles. ARGV: uid, message, channel, node, tick. Frees the
/// seat (and its holder's roles) and publishes the leave, if the seat is
/// still that node's (a seat held for a user who dropped may have moved to
/// the node it came back on);
/// else publishes the tick (a bare stamp with the leave's number, so no
/// node sees a hole in this node's numbers). Returns the publish's count.
pub(super) const LEAVE: &str = r"
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
pub(super) const LEFT: &str = r"
local function is(field)
  local v = redis.call('HGET', KEYS[1], field)
  return v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. '|'
end
if is(ARGV[1]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|-1') end
if is(ARGV[3] .. ARGV[1]) then redis.call('HDEL', KEYS[1], ARGV[3] .. ARGV[1]) end
return 1
";

/// KEYS: seats, numbering, log, topic, roles, modes, invites. ARGV: id,
/// name, uid, capacity, message, channel, fill, tick (the enter's stamp
/// alone: published instead of it when the seat is refused, so no node
/// sees a hole in this node's numbers), key, the name's key. Returns {0}
/// when full (its capacity, or its modes' limit unless the user was
/// invited), {3} when the room has a key and it is not the one given, {4}
/// when it is invite-only and the user was not invited, else {1, log,
/// topic, roles, modes, uid, node|name, uid, node|name, ...}: every member,
/// this one included, as of the enter it publishes on the room's channel,
/// the bus messages that set the room's topic and modes ("" if none) and
/// its members' roles (uid, bits, ...). A topic, modes, roles and
/// invitations last while the room has members: the first seat of an
/// empty room drops them, and its holder is the room's operator. A user
/// taking back its own seat is not held to the limit, the key or an
/// invitation; an invitation lets one in once. When the room's members
/// were all on one other node, that node numbered its messages: the
/// cluster's numbers start a new epoch. `log` is {} unless `fill` > 0 and
/// the room has members on several nodes; then {epoch, last seq, newest
/// `fill` entries of the log, newest first}. A seat of the same user on
/// another node (one held there while it was away) is answered {2, its
/// uid}, with nothing done: the caller asks again with that uid, and the
/// seat moves here.
pub(super) const SEAT: &str = r"
local id, name, uid, cap, msg, ch, fill = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7])
local before = redis.call('HGETALL', KEYS[1])
if #before == 0 then redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7]) end
local invited = redis.call('SISMEMBER', KEYS[7], ARGV[10]) == 1
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
if limit > 0 and limit < cap and not invited then cap = limit end
if not mine and #before / 2 >= cap then
  redis.call('PUBLISH', ch, ARGV[8])
  return {0}
end
local key = redis.call('HGET', KEYS[6], 'k') or ''
if not mine and key ~= '' and key ~= ARGV[9] then
  redis.call('PUBLISH', ch, ARGV[8])
  return {3}
end
if not mine and not invited and redis.call('HGET', KEYS[6], 'i') == '1' then
  redis.call('PUBLISH', ch, ARGV[8])
  return {4}
end
if invited then redis.call('SREM', KEYS[7], ARGV[10]) end
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
pub(super) const TOPIC: &str = r"
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], 'at') or '0') then
  redis.call('HSET', KEYS[1], 'at', ARGV[3], 'm', ARGV[1])
end
return redis.call('PUBLISH', ARGV[2], ARGV[1])
";

/// KEYS: modes. ARGV: message, channel, at, limit, key, invite-only ("1"
/// or "0"). Keeps a room's modes if they are newer than the ones kept (the
/// newest wins, as a topic's), with the limit, key and invite-only flag
/// apart for the seat script, and
/// publishes them either way. Returns the publish's count.
pub(super) const MODES: &str = r"
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], 'at') or '0') then
  redis.call('HSET', KEYS[1], 'at', ARGV[3], 'm', ARGV[1], 'l', ARGV[4], 'k', ARGV[5], 'i', ARGV[6])
end
return redis.call('PUBLISH', ARGV[2], ARGV[1])
";

/// KEYS: roles. ARGV: message, channel, uid, roles. Keeps a member's
/// roles (none: removed) and publishes the change. Returns the publish's
/// count.
pub(super) const ROLE: &str = r"
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
pub(super) const CHAT: &str = r"
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
pub(super) const DIRECT: &str = r"
local owner = redis.call('GET', KEYS[1])
local node = owner and string.match(owner, '^(%d+):')
if not node then return -1 end
return redis.call('PUBLISH', ARGV[2] .. node, ARGV[1])
";

/// KEYS: users. ARGV: after, count. Returns {total, name, name, ...}: the
/// users logged in on every node, and up to `count` names after `after`,
/// in byte order.
pub(super) const LIST: &str = r"
local after, n = ARGV[1], tonumber(ARGV[2])
local from = '-'
if after ~= '' then from = '(' .. after end
local r = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, n)
table.insert(r, 1, redis.call('ZCARD', KEYS[1]))
return r
";
