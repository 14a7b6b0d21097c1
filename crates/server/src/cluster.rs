//! Cluster mode: several nodes share users and rooms through Redis.
//!
//! Redis is the shared engine; there is no cluster protocol of our own.
//! Keys (under the store's prefix, `plaza:` by default):
//!
//! - `bus`: the one pub/sub channel. Every node subscribes once and
//!   publishes through one connection, so a node's messages reach every
//!   other node in the order it sent them.
//! - `nodes`: sorted set of live node ids, scored by the time (Redis's own
//!   clock, ms) their heartbeat runs out. A live node pushes it forward every
//!   third of the presence TTL; any node buries nodes whose time has passed.
//! - `node:<id>`: hash, name → `uid|room` (room -1: the lobby), for each user
//!   logged in on that node. Nodes read it to build their replica.
//! - `seats:<room>`: hash, uid → name, the room's members on every node.
//!   The seat script checks capacity and seats atomically.
//! - `nodes:seq`: counter that hands out node ids.
//!
//! State changes (login, logout, seat, leave) are Lua scripts that change the
//! keys and publish in one step, so a snapshot and the messages around it
//! agree. Chat frames are plain PUBLISHes, pipelined in batches.
//!
//! Three tasks: the **writer** (the only publisher; one pipeline per batch
//! of operations, acknowledgements back to the logic task), the
//! **subscriber** (forwards messages in order; on every (re)subscription
//! takes a snapshot and has the node rewrite its own state), and the
//! **heartbeat** (keeps this node alive, buries dead ones).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use plaza_core::{BusMsg, Conn, Input, RemoteEntry, SeatOutcome};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

/// Cluster settings (the Redis connection is the store's).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Key prefix.
    pub prefix: String,
    /// Time allowed for one Redis call.
    pub timeout: Duration,
    /// A node whose heartbeat is this old is buried by the others.
    pub node_ttl: Duration,
    /// TTL of the users' logged-in marks (rewritten on resync).
    pub presence_ttl: Duration,
    /// Members per room (checked by the seat script).
    pub room_capacity: usize,
}

/// What the cluster tasks ask of the logic task, besides hub inputs.
#[derive(Debug)]
pub(crate) enum Signal {
    /// Rewrite this node's state in Redis (after a (re)subscription, or
    /// after the others buried this node).
    Resync,
    /// An operator asked every node to drain.
    Drain(u64),
    /// An operator's notice, sent on another node, for this node's users
    /// (in `room`, or all).
    Notice { room: Option<u32>, message: String },
    /// These local users' names were taken by other nodes while this node was
    /// cut off: they must go.
    Lost(Vec<String>),
}

/// Work for the writer.
#[derive(Debug)]
pub(crate) enum Op {
    Publish {
        msg: BusMsg,
        ack: Option<Conn>,
    },
    Seat {
        conn: Conn,
        name: String,
        uid: u64,
        room: u32,
    },
    /// This node's users as (name, owner, uid, room).
    Replace(Vec<(String, String, u64, Option<u32>)>),
    Drain(u64),
    /// An operator's notice for the users of the other nodes.
    Notice {
        room: Option<u32>,
        message: String,
    },
    /// Remove this node from Redis (graceful stop).
    Bury(oneshot::Sender<()>),
}

/// A seat the writer got, waiting for its own message to come back on the
/// bus, so that the newcomer's list and the replica agree.
enum PendingSeat {
    Claimed {
        conn: Conn,
        name: String,
        room: u32,
        members: Vec<(u64, String)>,
    },
    Echoed,
}

#[derive(Default)]
struct Link {
    up: bool,
    error: String,
    seats: HashMap<u64, PendingSeat>,
    leaving: Leaving,
}

/// A graceful stop buries this node, then waits for its own "gone" to come
/// back on the bus: then every node subscribed has had it too. (It may come
/// back before the bury script's own answer.)
#[derive(Default)]
enum Leaving {
    #[default]
    No,
    /// The bury is on its way: this node's "gone" is expected.
    Asked,
    /// The script answered; the stop waits for the "gone".
    Waiting(oneshot::Sender<()>),
    /// The "gone" came back.
    Gone,
}

/// A node's handle on the cluster.
pub(crate) struct Cluster {
    /// This node's id.
    pub(crate) node: u64,
    ops: mpsc::UnboundedSender<Op>,
    link: Arc<Mutex<Link>>,
}

impl Cluster {
    /// Takes a node id from Redis and starts the tasks.
    ///
    /// # Errors
    /// If Redis cannot be reached: a node needs it to get its id.
    pub(crate) async fn start(
        config: ClusterConfig,
        inputs: mpsc::Sender<Input>,
        signals: mpsc::Sender<Signal>,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1);
        let mut conn = tokio::time::timeout(
            config.timeout,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("cluster mode: connecting to Redis timed out"))??;
        let node: u64 = redis::cmd("INCR")
            .arg(format!("{}nodes:seq", config.prefix))
            .query_async(&mut conn)
            .await?;
        let link = Arc::new(Mutex::new(Link {
            error: "not subscribed yet".into(),
            ..Link::default()
        }));
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let shared = Shared {
            node,
            config,
            conn,
            link: link.clone(),
            inputs,
            signals,
        };
        let shared = Arc::new(shared);
        tokio::spawn(writer(shared.clone(), ops_rx));
        tokio::spawn(subscriber(shared.clone(), client));
        tokio::spawn(heartbeat(shared));
        Ok(Self { node, ops, link })
    }

    /// The tag in this node's member ids: 1..=65535.
    pub(crate) fn tag(&self) -> u16 {
        u16::try_from((self.node - 1) % 65_535 + 1).expect("in range")
    }

    pub(crate) fn send(&self, op: Op) {
        // The writer lives as long as the runtime.
        let _ = self.ops.send(op);
    }

    /// `Ok` while subscribed to the bus, else why not.
    pub(crate) fn health(&self) -> Result<(), String> {
        let l = lock(&self.link);
        if l.up { Ok(()) } else { Err(l.error.clone()) }
    }
}

struct Shared {
    node: u64,
    config: ClusterConfig,
    conn: ConnectionManager,
    link: Arc<Mutex<Link>>,
    inputs: mpsc::Sender<Input>,
    signals: mpsc::Sender<Signal>,
}

impl Shared {
    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.config.prefix)
    }

    async fn input(&self, input: Input) {
        let _ = self.inputs.send(input).await;
    }

    /// The link went down: say so, and finish the seats whose echo will
    /// not come (they were taken; the replica is stale until the resync).
    async fn link_down(&self, error: String) {
        let finished: Vec<_> = {
            let mut l = lock(&self.link);
            if l.up {
                tracing::warn!(error = %error, "cluster bus link down; local delivery goes on");
            }
            l.up = false;
            l.error = error;
            l.seats.drain().collect()
        };
        for (uid, p) in finished {
            if let PendingSeat::Claimed {
                conn,
                name,
                room,
                members,
            } = p
            {
                self.seat_done(conn, name, uid, room, SeatOutcome::Seated(members))
                    .await;
            }
        }
    }

    async fn seat_done(&self, conn: Conn, name: String, uid: u64, room: u32, outcome: SeatOutcome) {
        self.input(Input::SeatDone {
            conn,
            name,
            uid,
            room,
            outcome,
        })
        .await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- Lua. Keys are built inside the scripts from the prefix, so this needs
// one Redis primary (with replicas or Sentinel), not Redis Cluster.

/// Removes a node: its seats, its users' logged-in marks (only those it
/// still owns), its hash and its heartbeat; tells everyone.
const BURY_FN: &str = r"
local function bury(p, id)
  local nk = p .. 'node:' .. id
  local users = redis.call('HGETALL', nk)
  for i = 1, #users, 2 do
    local uid, room = string.match(users[i + 1], '^(%d+)|(-?%d+)$')
    if room and room ~= '-1' then redis.call('HDEL', p .. 'seats:' .. room, uid) end
    local ok = p .. 'online:' .. users[i]
    local owner = redis.call('GET', ok)
    if owner and string.sub(owner, 1, #id + 1) == id .. ':' then redis.call('DEL', ok) end
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

/// ARGV: prefix, id, op (on, off, leave), name, uid, room, message.
const STATE: &str = r"
local p, id, op, name, uid, room, msg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local nk = p .. 'node:' .. id
if op == 'on' then
  redis.call('HSET', nk, name, uid .. '|-1')
elseif op == 'off' then
  redis.call('HDEL', nk, name)
else
  redis.call('HDEL', p .. 'seats:' .. room, uid)
  if redis.call('HEXISTS', nk, name) == 1 then redis.call('HSET', nk, name, uid .. '|-1') end
end
redis.call('PUBLISH', p .. 'bus', msg)
return 1
";

/// ARGV: prefix, id, name, uid, room, capacity, message. Returns {0} when
/// full, else {1, uid, name, uid, name, ...}: every member, this one included.
const SEAT: &str = r"
local p, id, name, uid, room, cap, msg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local sk = p .. 'seats:' .. room
if redis.call('HEXISTS', sk, uid) == 0 and redis.call('HLEN', sk) >= cap then return {0} end
redis.call('HSET', sk, uid, name)
redis.call('HSET', p .. 'node:' .. id, name, uid .. '|' .. room)
redis.call('PUBLISH', p .. 'bus', msg)
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
local lost = {}
for i = 6, #ARGV, 4 do
  local name, owner, uid, room = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local ok = p .. 'online:' .. name
  local cur = redis.call('GET', ok)
  if cur and cur ~= owner then
    table.insert(lost, name)
  else
    redis.call('SET', ok, owner, 'PX', pttl)
    redis.call('HSET', nk, name, uid .. '|' .. room)
    if room ~= '-1' then redis.call('HSET', p .. 'seats:' .. room, uid, name) end
  end
end
redis.call('ZADD', p .. 'nodes', now_ms() + ttl, id)
redis.call('PUBLISH', p .. 'bus', msg)
return lost
";

fn script(body: &str) -> String {
    format!("{BURY_FN}\n{body}")
}

// ---- The writer.

async fn writer(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Op>) {
    let scripts = Scripts {
        state: script(STATE),
        seat: script(SEAT),
        replace: script(REPLACE),
        bury: script(BURY),
    };
    let mut batch = Vec::with_capacity(256);
    let mut conn = shared.conn.clone();
    // Log the first failure of an outage, not every batch of it.
    let mut failing = false;
    loop {
        if rx.recv_many(&mut batch, 256).await == 0 {
            return;
        }
        let mut pipe = redis::pipe();
        for op in &batch {
            scripts.add(&shared, &mut pipe, op);
        }
        let result: Result<Vec<redis::Value>, String> =
            match tokio::time::timeout(shared.config.timeout, pipe.query_async(&mut conn)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".into()),
            };
        let result = match result {
            Ok(v) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("cluster publishing works again");
                }
                Some(v)
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "cluster publish failed; senders are told (112)");
                }
                tracing::debug!(%error, ops = batch.len(), "cluster batch failed");
                None
            }
        };
        let mut values = result.map(Vec::into_iter);
        for op in batch.drain(..) {
            let v = values.as_mut().and_then(Iterator::next);
            complete(&shared, op, v).await;
        }
    }
}

struct Scripts {
    state: String,
    seat: String,
    replace: String,
    bury: String,
}

impl Scripts {
    /// Adds exactly one command for `op`.
    fn add(&self, s: &Shared, pipe: &mut redis::Pipeline, op: &Op) {
        let (p, id) = (&s.config.prefix, s.node.to_string());
        let eval = |pipe: &mut redis::Pipeline, body: &str| {
            pipe.cmd("EVAL").arg(body).arg(0).arg(p).arg(&id);
        };
        match op {
            Op::Publish { msg, .. } => {
                let bytes = encode(s.node, msg);
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
                        pipe.cmd("PUBLISH").arg(s.key("bus")).arg(bytes.as_ref());
                    }
                }
            }
            Op::Seat { name, uid, room, .. } => {
                let msg = BusMsg::Enter {
                    name: name.clone(),
                    uid: *uid,
                    room: *room,
                };
                eval(pipe, &self.seat);
                pipe.arg(name)
                    .arg(uid)
                    .arg(room)
                    .arg(s.config.room_capacity)
                    .arg(encode(s.node, &msg).as_ref());
            }
            Op::Replace(users) => {
                eval(pipe, &self.replace);
                pipe.arg(s.config.node_ttl.as_millis() as u64)
                    .arg(s.config.presence_ttl.as_millis() as u64)
                    .arg(header(KIND_RESET, s.node).as_ref());
                for (name, owner, uid, room) in users {
                    pipe.arg(name).arg(owner).arg(uid).arg(room.map_or(-1, i64::from));
                }
            }
            Op::Drain(seconds) => {
                let mut b = header(KIND_DRAIN, s.node);
                b.put_u64_le(*seconds);
                pipe.cmd("PUBLISH").arg(s.key("bus")).arg(b.as_ref());
            }
            Op::Notice { room, message } => {
                let mut b = header(KIND_NOTICE, s.node);
                b.put_i64_le(room.map_or(-1, i64::from));
                b.put_slice(message.as_bytes());
                pipe.cmd("PUBLISH").arg(s.key("bus")).arg(b.as_ref());
            }
            Op::Bury(_) => {
                lock(&s.link).leaving = Leaving::Asked;
                eval(pipe, &self.bury);
            }
        }
    }
}

async fn complete(shared: &Shared, op: Op, v: Option<redis::Value>) {
    match op {
        Op::Publish { ack: Some(conn), .. } => {
            shared
                .input(Input::Published {
                    conn,
                    ok: v.is_some(),
                })
                .await
        }
        Op::Publish { ack: None, .. } | Op::Drain(_) | Op::Notice { .. } => {}
        Op::Seat {
            conn,
            name,
            uid,
            room,
        } => {
            let members = v.map(|v| redis::from_redis_value::<Vec<redis::Value>>(v).unwrap_or_default());
            let outcome = match members.as_deref() {
                None | Some([]) => SeatOutcome::Unavailable,
                Some([first, rest @ ..]) => match redis::from_redis_value_ref::<i64>(first) {
                    Ok(1) => SeatOutcome::Seated(members_of(rest)),
                    Ok(_) => SeatOutcome::Full,
                    Err(_) => SeatOutcome::Unavailable,
                },
            };
            let SeatOutcome::Seated(members) = outcome else {
                lock(&shared.link).seats.remove(&uid);
                return shared.seat_done(conn, name, uid, room, outcome).await;
            };
            // Answer after our own Enter came back on the bus (everything
            // published before it has then reached the replica), or now if
            // the bus link is down.
            let now = {
                let mut l = lock(&shared.link);
                match l.seats.remove(&uid) {
                    Some(PendingSeat::Echoed) => true,
                    _ if !l.up => true,
                    _ => {
                        l.seats.insert(
                            uid,
                            PendingSeat::Claimed {
                                conn,
                                name: name.clone(),
                                room,
                                members: members.clone(),
                            },
                        );
                        false
                    }
                }
            };
            if now {
                shared
                    .seat_done(conn, name, uid, room, SeatOutcome::Seated(members))
                    .await;
            }
        }
        Op::Replace(_) => {
            let lost: Vec<String> = v
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or_default();
            if !lost.is_empty() {
                tracing::warn!(?lost, "names taken by other nodes while this node was cut off");
                let _ = shared.signals.send(Signal::Lost(lost)).await;
            }
        }
        Op::Bury(done) => {
            let mut l = lock(&shared.link);
            if v.is_some() && matches!(l.leaving, Leaving::Asked) {
                l.leaving = Leaving::Waiting(done);
            } else {
                // Back already, or not published (nothing will come back).
                let _ = done.send(());
            }
        }
    }
}

fn members_of(flat: &[redis::Value]) -> Vec<(u64, String)> {
    flat.chunks_exact(2)
        .filter_map(|kv| {
            let uid: String = redis::from_redis_value_ref(&kv[0]).ok()?;
            let name: String = redis::from_redis_value_ref(&kv[1]).ok()?;
            Some((uid.parse().ok()?, name))
        })
        .collect()
}

// ---- The subscriber.

async fn subscriber(shared: Arc<Shared>, client: redis::Client) {
    let backoff = plaza_net::Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    let mut attempt = 0;
    loop {
        let error = match subscribe(&shared, &client).await {
            Ok(()) => "subscription closed".to_owned(),
            Err(e) => e.to_string(),
        };
        if lock(&shared.link).up {
            attempt = 0;
        }
        shared.link_down(error).await;
        tokio::time::sleep(backoff.delay(attempt, shared.node.wrapping_add(u64::from(attempt)))).await;
        attempt += 1;
    }
}

async fn subscribe(shared: &Shared, client: &redis::Client) -> anyhow::Result<()> {
    let timeout = shared.config.timeout;
    let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| anyhow::anyhow!("connect timed out"))??;
    let (mut sink, mut stream) = pubsub.split();
    tokio::time::timeout(timeout, sink.subscribe(shared.key("bus")))
        .await
        .map_err(|_| anyhow::anyhow!("subscribe timed out"))??;
    {
        let mut l = lock(&shared.link);
        l.up = true;
        l.error.clear();
    }
    tracing::info!(node = shared.node, "cluster bus link up");
    // Our own state first (the others re-read it when told), then theirs.
    let _ = shared.signals.send(Signal::Resync).await;
    let nodes = snapshot(shared).await?;
    shared.input(Input::Snapshot { nodes }).await;
    let mut ping = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return Ok(()) };
                on_message(shared, msg.get_payload_bytes()).await?;
            }
            _ = ping.tick() => {
                tokio::time::timeout(timeout, sink.ping::<redis::Value>())
                    .await
                    .map_err(|_| anyhow::anyhow!("ping timed out"))??;
            }
        }
    }
}

/// Every other live node's users.
async fn snapshot(shared: &Shared) -> anyhow::Result<Vec<(u64, Vec<RemoteEntry>)>> {
    let mut conn = shared.conn.clone();
    let ids: Vec<u64> = tokio::time::timeout(
        shared.config.timeout,
        redis::cmd("ZRANGE")
            .arg(shared.key("nodes"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn),
    )
    .await??;
    let mut nodes = Vec::with_capacity(ids.len());
    for id in ids.into_iter().filter(|id| *id != shared.node) {
        nodes.push((id, node_users(shared, id).await?));
    }
    Ok(nodes)
}

async fn node_users(shared: &Shared, node: u64) -> anyhow::Result<Vec<RemoteEntry>> {
    let mut conn = shared.conn.clone();
    let map: Vec<(String, String)> = tokio::time::timeout(
        shared.config.timeout,
        redis::cmd("HGETALL")
            .arg(shared.key(&format!("node:{node}")))
            .query_async(&mut conn),
    )
    .await??;
    Ok(map
        .into_iter()
        .filter_map(|(name, v)| {
            let (uid, room) = v.split_once('|')?;
            let room: i64 = room.parse().ok()?;
            Some(RemoteEntry {
                name,
                uid: uid.parse().ok()?,
                room: u32::try_from(room).ok(),
            })
        })
        .collect())
}

async fn on_message(shared: &Shared, payload: &[u8]) -> anyhow::Result<()> {
    let msg = match decode(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, len = payload.len(), "undecodable cluster message skipped");
            return Ok(());
        }
    };
    match msg {
        Decoded::Msg { node, msg } if node == shared.node => {
            // Our own; only a seat's echo matters.
            if let BusMsg::Enter { uid, .. } = msg {
                let claimed = {
                    let mut l = lock(&shared.link);
                    match l.seats.remove(&uid) {
                        Some(PendingSeat::Claimed {
                            conn,
                            name,
                            room,
                            members,
                        }) => Some((conn, name, room, members)),
                        _ => {
                            l.seats.insert(uid, PendingSeat::Echoed);
                            None
                        }
                    }
                };
                if let Some((conn, name, room, members)) = claimed {
                    shared
                        .seat_done(conn, name, uid, room, SeatOutcome::Seated(members))
                        .await;
                }
            }
        }
        Decoded::Msg { node, msg } => shared.input(Input::Remote { node, msg }).await,
        Decoded::Reset { node } if node == shared.node => {}
        Decoded::Reset { node } => {
            let users = node_users(shared, node).await?;
            shared.input(Input::NodeState { node, users }).await;
        }
        Decoded::Gone { node } if node == shared.node => {
            let leaving = {
                let mut l = lock(&shared.link);
                match std::mem::take(&mut l.leaving) {
                    Leaving::No => false,
                    Leaving::Waiting(done) => {
                        let _ = done.send(());
                        l.leaving = Leaving::Gone;
                        true
                    }
                    Leaving::Asked | Leaving::Gone => {
                        l.leaving = Leaving::Gone;
                        true
                    }
                }
            };
            if leaving {
                tracing::debug!("this node left the cluster");
            } else {
                tracing::warn!("the other nodes buried this one (heartbeat missed); rewriting its state");
                let _ = shared.signals.send(Signal::Resync).await;
            }
        }
        Decoded::Gone { node } => {
            tracing::info!(node, "cluster node gone; its users are logged out here");
            shared
                .input(Input::NodeState {
                    node,
                    users: Vec::new(),
                })
                .await;
        }
        // The node that was asked started its own drain and told its users.
        Decoded::Drain { node, .. } | Decoded::Notice { node, .. } if node == shared.node => {}
        Decoded::Drain { seconds, .. } => {
            let _ = shared.signals.send(Signal::Drain(seconds)).await;
        }
        Decoded::Notice { room, message, .. } => {
            let _ = shared.signals.send(Signal::Notice { room, message }).await;
        }
    }
    Ok(())
}

// ---- The heartbeat.

async fn heartbeat(shared: Arc<Shared>) {
    let beat = script(BEAT);
    let mut conn = shared.conn.clone();
    let mut tick = tokio::time::interval((shared.config.node_ttl / 3).max(Duration::from_millis(200)));
    let mut registered = false;
    loop {
        tick.tick().await;
        let r: Result<redis::RedisResult<i64>, _> = tokio::time::timeout(
            shared.config.timeout,
            redis::cmd("EVAL")
                .arg(&beat)
                .arg(0)
                .arg(&shared.config.prefix)
                .arg(shared.node)
                .arg(shared.config.node_ttl.as_millis() as u64)
                .query_async(&mut conn),
        )
        .await;
        match r {
            Ok(Ok(added)) => {
                if added == 1 && registered {
                    tracing::warn!("this node's heartbeat had lapsed; rewriting its state");
                    let _ = shared.signals.send(Signal::Resync).await;
                }
                registered = true;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cluster heartbeat failed"),
            Err(_) => tracing::debug!("cluster heartbeat timed out"),
        }
    }
}

// ---- The bus codec: kind (1 byte), origin node (u64 LE), then the body.

const KIND_ONLINE: u8 = 1;
const KIND_OFFLINE: u8 = 2;
const KIND_ENTER: u8 = 3;
const KIND_LEAVE: u8 = 4;
const KIND_ROOM: u8 = 5;
const KIND_BROADCAST: u8 = 6;
const KIND_WHISPER: u8 = 7;
const KIND_KICK: u8 = 8;
const KIND_MUTE: u8 = 9;
const KIND_RESET: u8 = 10;
/// Written by the Lua `bury`: origin 0, then the dead node's id in ASCII.
const KIND_GONE: u8 = 11;
const KIND_DRAIN: u8 = 12;
/// An operator's notice: room (i64, -1 for every user), then the text.
const KIND_NOTICE: u8 = 13;

fn header(kind: u8, node: u64) -> BytesMut {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(kind);
    b.put_u64_le(node);
    b
}

fn put_short(b: &mut BytesMut, s: &str) {
    // Names are at most limits::NAME bytes; checked again on decode.
    let s = &s.as_bytes()[..s.len().min(255)];
    b.put_u8(s.len() as u8);
    b.put_slice(s);
}

/// Encodes a message from `node`.
pub(crate) fn encode(node: u64, msg: &BusMsg) -> Bytes {
    let (kind, b) = match msg {
        BusMsg::Online { name, uid } => {
            let mut b = header(KIND_ONLINE, node);
            b.put_u64_le(*uid);
            b.put_slice(name.as_bytes());
            (KIND_ONLINE, b)
        }
        BusMsg::Offline { name } => {
            let mut b = header(KIND_OFFLINE, node);
            b.put_slice(name.as_bytes());
            (KIND_OFFLINE, b)
        }
        BusMsg::Enter { name, uid, room } | BusMsg::Leave { name, uid, room } => {
            let kind = if matches!(msg, BusMsg::Enter { .. }) {
                KIND_ENTER
            } else {
                KIND_LEAVE
            };
            let mut b = header(kind, node);
            b.put_u64_le(*uid);
            b.put_u32_le(*room);
            b.put_slice(name.as_bytes());
            (kind, b)
        }
        BusMsg::RoomFrame { room, frame } => {
            let mut b = header(KIND_ROOM, node);
            b.put_u32_le(*room);
            b.put_slice(frame);
            (KIND_ROOM, b)
        }
        BusMsg::Broadcast { frame } => {
            let mut b = header(KIND_BROADCAST, node);
            b.put_slice(frame);
            (KIND_BROADCAST, b)
        }
        BusMsg::Whisper { to, frame } => {
            let mut b = header(KIND_WHISPER, node);
            put_short(&mut b, to);
            b.put_slice(frame);
            (KIND_WHISPER, b)
        }
        BusMsg::Kick { name, by } => {
            let mut b = header(KIND_KICK, node);
            put_short(&mut b, name);
            b.put_slice(by.as_bytes());
            (KIND_KICK, b)
        }
        BusMsg::Mute { name, seconds } => {
            let mut b = header(KIND_MUTE, node);
            b.put_u32_le(*seconds);
            b.put_slice(name.as_bytes());
            (KIND_MUTE, b)
        }
    };
    debug_assert_eq!(b[0], kind);
    b.freeze()
}

#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Msg {
        node: u64,
        msg: BusMsg,
    },
    Reset {
        node: u64,
    },
    Gone {
        node: u64,
    },
    Drain {
        node: u64,
        seconds: u64,
    },
    Notice {
        node: u64,
        room: Option<u32>,
        message: String,
    },
}

/// Why a bus message was skipped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BusError {
    #[error("truncated")]
    Truncated,
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("bad name")]
    Name,
    #[error("bad frame")]
    Frame,
}

fn name(b: &[u8]) -> Result<String, BusError> {
    let s = std::str::from_utf8(b).map_err(|_| BusError::Name)?;
    if plaza_proto::valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err(BusError::Name)
    }
}

/// A client frame carried inside: its length field must match.
fn frame(b: &[u8]) -> Result<Bytes, BusError> {
    if b.len() < plaza_net::CHAT_HEADER_LEN || usize::from(u16::from_le_bytes([b[0], b[1]])) != b.len() {
        return Err(BusError::Frame);
    }
    Ok(Bytes::copy_from_slice(b))
}

fn short<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], BusError> {
    let n = usize::from(*b.first().ok_or(BusError::Truncated)?);
    if b.len() < 1 + n {
        return Err(BusError::Truncated);
    }
    let s = &b[1..=n];
    *b = &b[1 + n..];
    Ok(s)
}

fn decode(mut b: &[u8]) -> Result<Decoded, BusError> {
    if b.len() < 9 {
        return Err(BusError::Truncated);
    }
    let kind = b.get_u8();
    let node = b.get_u64_le();
    let need = |b: &[u8], n: usize| {
        if b.len() < n {
            Err(BusError::Truncated)
        } else {
            Ok(())
        }
    };
    let msg = match kind {
        KIND_ONLINE => {
            need(b, 8)?;
            let uid = b.get_u64_le();
            BusMsg::Online { name: name(b)?, uid }
        }
        KIND_OFFLINE => BusMsg::Offline { name: name(b)? },
        KIND_ENTER | KIND_LEAVE => {
            need(b, 12)?;
            let (uid, room) = (b.get_u64_le(), b.get_u32_le());
            let name = name(b)?;
            if kind == KIND_ENTER {
                BusMsg::Enter { name, uid, room }
            } else {
                BusMsg::Leave { name, uid, room }
            }
        }
        KIND_ROOM => {
            need(b, 4)?;
            let room = b.get_u32_le();
            BusMsg::RoomFrame {
                room,
                frame: frame(b)?,
            }
        }
        KIND_BROADCAST => BusMsg::Broadcast { frame: frame(b)? },
        KIND_WHISPER => {
            let to = name(short(&mut b)?)?;
            BusMsg::Whisper { to, frame: frame(b)? }
        }
        KIND_KICK => {
            let target = name(short(&mut b)?)?;
            let by = String::from_utf8_lossy(&b[..b.len().min(64)]).into_owned();
            BusMsg::Kick { name: target, by }
        }
        KIND_MUTE => {
            need(b, 4)?;
            let seconds = b.get_u32_le();
            BusMsg::Mute {
                name: name(b)?,
                seconds,
            }
        }
        KIND_RESET => return Ok(Decoded::Reset { node }),
        KIND_GONE => {
            let id = std::str::from_utf8(b).ok().and_then(|s| s.parse().ok());
            return id.map(|node| Decoded::Gone { node }).ok_or(BusError::Truncated);
        }
        KIND_DRAIN => {
            need(b, 8)?;
            return Ok(Decoded::Drain {
                node,
                seconds: b.get_u64_le(),
            });
        }
        KIND_NOTICE => {
            need(b, 8)?;
            let room = u32::try_from(b.get_i64_le()).ok();
            if b.len() > plaza_proto::limits::NOTICE {
                return Err(BusError::Frame);
            }
            let message = std::str::from_utf8(b).map_err(|_| BusError::Frame)?.to_owned();
            return Ok(Decoded::Notice { node, room, message });
        }
        k => return Err(BusError::Kind(k)),
    };
    Ok(Decoded::Msg { node, msg })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaza_proto::Event;

    #[test]
    fn every_message_round_trips() {
        let frame = Event::RoomChat {
            name: "amy".into(),
            message: "hi".into(),
        }
        .to_bytes();
        let msgs = [
            BusMsg::Online {
                name: "amy".into(),
                uid: 1 << 48 | 7,
            },
            BusMsg::Offline { name: "amy".into() },
            BusMsg::Enter {
                name: "amy".into(),
                uid: 9,
                room: 3,
            },
            BusMsg::Leave {
                name: "amy".into(),
                uid: 9,
                room: 3,
            },
            BusMsg::RoomFrame {
                room: 3,
                frame: frame.clone(),
            },
            BusMsg::Broadcast { frame: frame.clone() },
            BusMsg::Whisper {
                to: "bob".into(),
                frame,
            },
            BusMsg::Kick {
                name: "bob".into(),
                by: "amy".into(),
            },
            BusMsg::Mute {
                name: "bob".into(),
                seconds: 60,
            },
        ];
        for msg in msgs {
            let b = encode(42, &msg);
            assert_eq!(decode(&b), Ok(Decoded::Msg { node: 42, msg }));
        }
    }

    #[test]
    fn truncated_and_hostile_messages_are_refused_not_trusted() {
        let b = encode(
            1,
            &BusMsg::Online {
                name: "amy".into(),
                uid: 5,
            },
        );
        // Header, uid, and an empty name: all refused.
        for cut in 0..=17 {
            assert!(decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        // A frame whose length field lies.
        let mut bad = header(KIND_BROADCAST, 1);
        bad.put_slice(&[200, 0, 1, 2, 3]);
        assert_eq!(decode(&bad), Err(BusError::Frame));
        assert_eq!(decode(&[99, 0, 0, 0, 0, 0, 0, 0, 0]), Err(BusError::Kind(99)));
        // What the Lua `bury` writes.
        let mut gone = vec![KIND_GONE];
        gone.extend([0; 8]);
        gone.extend(b"17");
        assert_eq!(decode(&gone), Ok(Decoded::Gone { node: 17 }));
    }
}
