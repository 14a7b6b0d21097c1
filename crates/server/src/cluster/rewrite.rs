//! The operations that touch many slots: burying a node, rewriting this
//! node's state, and finding the nodes of users that messages go to on a
//! Redis Cluster. Each is a few round trips of single-slot steps; they are
//! not atomic. A burial ends by taking the node out of the live set, so
//! one cut short (its node died, Redis failed) is done again by the next
//! heartbeat of any node; doing one twice is harmless.

use std::collections::{HashMap, HashSet};

use plaza_core::BusMsg;
use plaza_proto::bus;
use redis::Value;

use super::scripts::{Scripts, evalsha};
use super::{Op, Shared};
use crate::keys::HELD;
use crate::primary::{Conn, Step};

/// A node's users as read from its hash: (name, uid, room or -1); a held
/// seat's name starts with [`HELD`].
fn entries(flat: Vec<Value>) -> Vec<(String, String, String)> {
    flat.chunks_exact(2)
        .filter_map(|kv| {
            let name: String = redis::from_redis_value_ref(&kv[0]).ok()?;
            let v: String = redis::from_redis_value_ref(&kv[1]).ok()?;
            let (uid, room) = v.split_once('|')?;
            Some((name, uid.to_owned(), room.to_owned()))
        })
        .collect()
}

/// Takes `names` out of the directory (nothing when there are none).
fn unlist(s: &Shared, names: &[&str]) -> Option<Step> {
    let users = s.keys.users();
    let mut zrem = redis::cmd("ZREM");
    zrem.arg(&users).arg(names);
    (!names.is_empty()).then(|| Step::new(zrem, users, false))
}

/// Frees member `uid`'s seat in `room` if node `node` holds it.
fn unseat(s: &Shared, scripts: &Scripts, node: u64, room: u32, uid: &str) -> Step {
    let seats = s.keys.seats(room);
    let mut own = evalsha(&scripts.own_seat, &seats);
    own.arg(uid).arg(node);
    Step::new(own, seats, false)
}

/// The fields of node hash `key`.
async fn read_node(c: &mut Conn, key: &str) -> redis::RedisResult<Vec<(String, String, String)>> {
    let flat: Vec<Value> = redis::cmd("HGETALL").arg(key).query_async(c).await?;
    Ok(entries(flat))
}

/// Frees node `id`'s seats, its users' marks (those it still holds) and
/// their directory entries, deletes its hash, takes it out of the live
/// nodes, and tells everyone it is gone.
pub(super) async fn bury(s: &Shared, c: &mut Conn, scripts: &Scripts, id: u64) -> redis::RedisResult<()> {
    let k = &s.keys;
    let node = k.node(id);
    let users = read_node(c, &node).await?;
    scripts.free.load_async(c).await?;
    scripts.own_seat.load_async(c).await?;
    let mut steps = Vec::new();
    let mut marked = Vec::new();
    for (name, uid, room) in &users {
        if let Ok(room) = room.parse() {
            steps.push(unseat(s, scripts, id, room, uid));
        }
        if name.starts_with(HELD) {
            // A seat held for a user away: no mark, not in the directory.
            continue;
        }
        let mark = k.user("online", name);
        let mut free = evalsha(&scripts.free, &mark);
        free.arg(id);
        steps.push(Step::new(free, mark, true));
        marked.push(name.as_str());
    }
    let freed = c.run(steps).await?;
    let gone: Vec<&str> = marked
        .into_iter()
        .zip(&freed)
        .filter(|(_, v)| matches!(v, Value::Int(1)))
        .map(|(name, _)| name)
        .collect();
    let mut steps: Vec<Step> = unlist(s, &gone).into_iter().collect();
    let mut del = redis::cmd("DEL");
    del.arg(&node);
    steps.push(Step::new(del, node, false));
    let mut zrem = redis::cmd("ZREM");
    zrem.arg(k.nodes()).arg(id);
    steps.push(Step::new(zrem, k.nodes(), false));
    let mut publish = redis::cmd(s.publish);
    publish.arg(k.bus()).arg(bus::gone(id).as_ref());
    steps.push(Step::new(publish, k.bus(), true));
    c.run(steps).await?;
    Ok(())
}

/// Rewrites this node's state from `users` (name, owner, uid, room) and
/// `held` (seats held for users away: name, uid, room): its users' marks,
/// its hash, its seats and directory entries, its place among the live
/// nodes; then publishes `reset`. Returns the names another session took
/// meanwhile (they are not restored).
///
/// What stays is written over before what went is removed, so another node
/// that reads a room's seats meanwhile never misses a member who stayed (it
/// would stop sending that member's node the room's chat).
pub(super) async fn replace(
    s: &Shared,
    c: &mut Conn,
    scripts: &Scripts,
    users: &[(String, String, u64, Option<u32>)],
    held: &[(String, u64, u32)],
    reset: &[u8],
) -> redis::RedisResult<Vec<String>> {
    let k = &s.keys;
    let node = k.node(s.node);
    let old = read_node(c, &node).await?;
    scripts.claim.load_async(c).await?;
    scripts.own_seat.load_async(c).await?;
    scripts.up.load_async(c).await?;
    // The marks first: a name another session took is not restored.
    let pttl = s.config.presence_ttl.as_millis() as u64;
    let mut steps = Vec::new();
    for (name, owner, _, _) in users {
        let mark = k.user("online", name);
        let mut claim = evalsha(&scripts.claim, &mark);
        claim.arg(owner).arg(pttl);
        steps.push(Step::new(claim, mark, true));
    }
    let claimed = c.run(steps).await?;
    let mut lost = Vec::new();
    let mut kept = HashMap::new();
    for ((name, _, uid, room), v) in users.iter().zip(&claimed) {
        if matches!(v, Value::Int(1)) {
            kept.insert(
                name.as_str(),
                (uid.to_string(), room.map_or(-1, i64::from).to_string()),
            );
        } else {
            lost.push(name.clone());
        }
    }
    // What stays, written over.
    let mut steps = Vec::new();
    let mut seated: HashSet<(String, String)> = HashSet::new();
    let mut holding = HashSet::new();
    for (name, uid, room) in held {
        let field = format!("{HELD}{name}");
        let mut hset = redis::cmd("HSET");
        hset.arg(&node).arg(&field).arg(format!("{uid}|{room}"));
        steps.push(Step::new(hset, node.clone(), false));
        // Not over a seat its user took back on another node meanwhile.
        let seats = k.seats(*room);
        let mut seat = evalsha(&scripts.own_seat, &seats);
        seat.arg(uid).arg(s.node).arg(format!("{}|{name}", s.node));
        steps.push(Step::new(seat, seats, false));
        seated.insert((uid.to_string(), room.to_string()));
        holding.insert(field);
    }
    for (name, (uid, room)) in &kept {
        seated.insert((uid.clone(), room.clone()));
        let mut hset = redis::cmd("HSET");
        hset.arg(&node).arg(name).arg(format!("{uid}|{room}"));
        steps.push(Step::new(hset, node.clone(), false));
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(k.users()).arg(0).arg(name);
        steps.push(Step::new(zadd, k.users(), false));
        if let Ok(room) = room.parse::<u32>() {
            let seats = k.seats(room);
            let mut seat = redis::cmd("HSET");
            seat.arg(&seats).arg(uid).arg(format!("{}|{name}", s.node));
            steps.push(Step::new(seat, seats, false));
        }
    }
    // What went: seats no user of this node holds now, users gone since
    // (out of the directory unless logged in elsewhere).
    let mut vanished = Vec::new();
    for (name, uid, room) in &old {
        if let Ok(r) = room.parse::<u32>()
            && !seated.contains(&(uid.clone(), room.clone()))
        {
            steps.push(unseat(s, scripts, s.node, r, uid));
        }
        if name.starts_with(HELD) {
            if !holding.contains(name) {
                let mut hdel = redis::cmd("HDEL");
                hdel.arg(&node).arg(name);
                steps.push(Step::new(hdel, node.clone(), false));
            }
        } else if !kept.contains_key(name.as_str()) {
            let mut hdel = redis::cmd("HDEL");
            hdel.arg(&node).arg(name);
            steps.push(Step::new(hdel, node.clone(), false));
            let mark = k.user("online", name);
            let mut exists = redis::cmd("EXISTS");
            exists.arg(&mark);
            steps.push(Step::new(exists, mark, true));
            vanished.push(name.as_str());
        }
    }
    let mut up = evalsha(&scripts.up, &k.nodes());
    up.arg(s.node).arg(s.config.node_ttl.as_millis() as u64);
    steps.push(Step::new(up, k.nodes(), false));
    let marks = c.run(steps).await?;
    let gone: Vec<&str> = vanished
        .into_iter()
        .zip(marks)
        .filter(|(_, v)| matches!(v, Value::Int(0)))
        .map(|(n, _)| n)
        .collect();
    let mut steps: Vec<Step> = unlist(s, &gone).into_iter().collect();
    // Published last: a node that reads this node's state on the reset
    // finds it whole.
    let mut publish = redis::cmd(s.publish);
    publish.arg(k.bus()).arg(reset);
    steps.push(Step::new(publish, k.bus(), false));
    c.run(steps).await?;
    Ok(lost)
}

/// On a Redis Cluster, the nodes the users that `batch`'s messages go to
/// are logged in on, from their marks (a user's mark and its node's channel
/// are in different slots). Empty on one Redis, where one script does both.
pub(super) async fn owners(
    s: &Shared,
    c: &mut Conn,
    batch: &[Op],
) -> redis::RedisResult<HashMap<String, Option<u64>>> {
    let mut names: Vec<&str> = Vec::new();
    if s.keys.tagged() {
        for op in batch {
            if let Op::Publish {
                msg:
                    BusMsg::Whisper { to: name, .. }
                    | BusMsg::Invite { to: name, .. }
                    | BusMsg::Kick { name, .. }
                    | BusMsg::Mute { name, .. },
                ..
            } = op
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let steps = names
        .iter()
        .map(|n| {
            let mark = s.keys.user("online", n);
            let mut get = redis::cmd("GET");
            get.arg(&mark);
            Step::new(get, mark, true)
        })
        .collect();
    let marks = c.run(steps).await?;
    Ok(names
        .into_iter()
        .zip(marks)
        .map(|(n, v)| {
            let node = redis::from_redis_value::<Option<String>>(v)
                .ok()
                .flatten()
                .and_then(|o| o.split_once(':')?.0.parse().ok());
            (n.to_owned(), node)
        })
        .collect())
}
