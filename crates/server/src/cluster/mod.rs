//! Cluster mode: several nodes share users and rooms through Redis.
//!
//! Redis is the shared engine; there is no cluster protocol of our own. It
//! is one Redis (or the primary Sentinel names), or a Redis Cluster, where
//! the channels are shard channels (SPUBLISH/SSUBSCRIBE) and every key a
//! script touches shares a hash tag (`crate::keys` names them all):
//!
//! - `bus`: the channel every node subscribes to: broadcasts, operators'
//!   notices, drains, state resets, burials, ticks.
//! - `to:<id>`: node id's own channel: whispers, kicks and mutes for its
//!   users, sent to the node the user's `online:` mark names.
//! - `room:{n}`: room n's chat and seats (enter, leave). A node subscribes
//!   while it has a member in the room or a seat claim on its way
//!   (`plaza_core`'s `Effect::Interest`), so it receives nothing of rooms
//!   it has no member in, and publishes a room's chat only while another
//!   node has a member there.
//! - `seats:{n}`: hash, uid → `node|name`, the room's members on every
//!   node, in the room channel's slot: the seat script checks capacity,
//!   seats and publishes the enter atomically, and answers with the
//!   members, so a node that starts following the room takes that list as
//!   of its own enter's place in the channel.
//! - `numbering:{n}`, `log:{n}`: while the room has members on several
//!   nodes, its epoch and last message number, and a stream of its recent
//!   messages, in the same slot: the chat script numbers, logs and
//!   publishes each message atomically, every node (the sender's too)
//!   delivers it from the channel, and the seat script of a node that
//!   starts following the room answers with the log (`plaza_core`'s
//!   `numbering.rs`).
//! - `{nodes}:live`, `{nodes}:node:<id>`, `{nodes}:users`, `{nodes}:seq`:
//!   the live nodes (scored by when their heartbeat runs out), each node's
//!   users (name → `uid|room`), the directory the user list pages through,
//!   and the counter that hands out node ids; one slot.
//!
//! Each node's messages are stamped with their number in its stream on that
//! channel and the time they were sent (`plaza_proto::bus`): a receiver
//! whose link was cut sees the numbers jump, reads the sender's state again
//! and marks the gap in the rooms concerned (`Input::BusGap`). A message a
//! client waits on is acknowledged only if its publish reached every
//! subscription it must (every node with a member in the room; for the
//! bus, every live node); else 112.
//!
//! Where an operation spans slots it is several single-slot commands (a
//! seat, then the node's record of it; `rewrite` for burials and a node's
//! rewrite of its own state). Chat frames are plain publishes, pipelined in
//! batches (one pipeline per slot on a Redis Cluster).
//!
//! Three tasks: the **writer** (the only publisher; one batch of operations
//! at a time, acknowledgements back to the logic task), the **subscriber**
//! (forwards messages in order; on every (re)subscription takes a snapshot
//! and has the node rewrite its own state), and the **heartbeat** (keeps
//! this node alive, buries dead ones).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plaza_core::{BusMsg, Conn, Input, Reach, RoomLog, SeatHolder, SeatOutcome};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use crate::keys::Keys;
use crate::primary::{Primary, Target};

mod heartbeat;
mod lua;
mod pubsub;
mod received;
mod rewrite;
mod scripts;
mod shards;
mod subscriber;
mod writer;

/// A writer that published nothing for this long publishes a tick, so a
/// node whose link was cut learns within about this long what it missed on
/// the bus. Every node receives every node's ticks: at 100 nodes, 20 a
/// second cluster-wide, 2,000 deliveries a second for Redis.
pub(super) const TICK: Duration = Duration::from_secs(5);

/// Cluster settings (the Redis connection is the store's).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `redis://host:port/db`, `redis+sentinel://...` or
    /// `redis+cluster://...` (as `--store`).
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
    /// Messages each shared room's log keeps (`--history-messages`; 0:
    /// none).
    pub history: usize,
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
        /// Its channel, and whose subscriptions must get it.
        reach: Reach,
    },
    /// A page of every node's users, from the directory.
    ListUsers {
        conn: Conn,
        after: String,
    },
    /// Follow a room's channel, or stop.
    Interest {
        room: u32,
        on: bool,
    },
    Seat {
        conn: Conn,
        name: String,
        uid: u64,
        room: u32,
        /// Read the room's log too (`plaza_core`'s `Effect::ClaimSeat`).
        fill: bool,
        /// The room's key, as the entrant gave it.
        key: String,
    },
    /// This node's users as (name, owner, uid, room), and the seats it
    /// holds for users away as (name, uid, room).
    Replace {
        users: Vec<(String, String, u64, Option<u32>)>,
        held: Vec<(String, u64, u32)>,
    },
    /// A seat held for a user who dropped (`plaza_core`'s
    /// `Effect::HoldSeat`).
    Hold {
        name: String,
        uid: u64,
        room: u32,
    },
    /// A held seat moved to another node (`Effect::Unhold`).
    Unhold {
        name: String,
        uid: u64,
    },
    Drain(u64),
    /// An operator's notice for the users of the other nodes.
    Notice {
        room: Option<u32>,
        message: String,
    },
    /// Remove this node from Redis (graceful stop).
    Bury(oneshot::Sender<()>),
    /// Publish a stamp alone (the writer, after a quiet [`TICK`]).
    Tick,
}

/// A pub/sub channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Channel {
    /// `bus`: every node.
    Bus,
    /// `room:<n>`: the nodes following room n.
    Room(u32),
    /// `to:<id>`: that node alone.
    Node(u64),
}

impl Channel {
    /// Where `msg` is published.
    /// Where `msg` is published (a message for one user: that user's
    /// node's, found by the script that publishes it).
    pub(super) fn of(msg: &BusMsg) -> Self {
        match msg {
            BusMsg::RoomChat { room, .. }
            | BusMsg::Enter { room, .. }
            | BusMsg::Leave { room, .. }
            | BusMsg::Topic { room, .. }
            | BusMsg::Role { room, .. }
            | BusMsg::RoomKick { room, .. }
            | BusMsg::Modes { room, .. } => Self::Room(*room),
            _ => Self::Bus,
        }
    }

    /// Its name in Redis.
    pub(super) fn name(self, keys: &Keys) -> String {
        match self {
            Self::Bus => keys.bus(),
            Self::Room(r) => keys.room(r),
            Self::Node(id) => keys.to(id),
        }
    }

    /// The channel named `name`.
    pub(super) fn parse(keys: &Keys, name: &str) -> Option<Self> {
        let rest = name.strip_prefix(keys.prefix())?;
        if rest == "bus" {
            return Some(Self::Bus);
        }
        if let Some(r) = rest.strip_prefix("room:{") {
            return r.strip_suffix('}')?.parse().ok().map(Self::Room);
        }
        rest.strip_prefix("to:")?.parse().ok().map(Self::Node)
    }
}

/// What the writer asks of the subscriber.
#[derive(Debug)]
pub(super) enum Follow {
    /// Subscribe to these rooms' channels; answered once subscribed (at
    /// once while the link is down: the next subscription includes them).
    Start(Vec<u32>, oneshot::Sender<()>),
    /// Unsubscribe from these.
    Stop(Vec<u32>),
}

/// A seat the writer got, waiting for its own message to come back on the
/// room's channel, so that the newcomer's list and the replica agree.
pub(super) enum PendingSeat {
    Claimed {
        conn: Conn,
        name: String,
        room: u32,
        members: Vec<SeatHolder>,
        read: Box<SeatRead>,
    },
    Echoed,
}

/// What the seat script read with a seat: the room's log (a room with
/// members on several nodes), its topic and modes, as the bus messages
/// that set them, with their origins, and its members' roles.
#[derive(Clone, Default)]
pub(super) struct SeatRead {
    pub(super) log: Option<Box<RoomLog>>,
    pub(super) topic: Option<(u64, BusMsg)>,
    pub(super) modes: Option<(u64, BusMsg)>,
    pub(super) roles: Vec<(u64, u8)>,
}

#[derive(Default)]
pub(super) struct Link {
    pub(super) up: bool,
    pub(super) error: String,
    pub(super) seats: HashMap<u64, PendingSeat>,
    pub(super) leaving: Leaving,
    /// The other live nodes (from the last snapshot, then their messages
    /// and burials): a bus publish must reach all of them, and this node.
    pub(super) peers: HashSet<u64>,
    /// Channels subscribed.
    pub(super) channels: usize,
}

/// Bus traffic, counted by the writer and the subscriber.
#[derive(Default)]
pub(super) struct Counts {
    published_messages: AtomicU64,
    published_bytes: AtomicU64,
    received_messages: AtomicU64,
    received_bytes: AtomicU64,
    received_room_messages: AtomicU64,
    received_room_bytes: AtomicU64,
    gaps: AtomicU64,
    missed: AtomicU64,
    lookups: AtomicU64,
}

impl Counts {
    pub(super) fn published(&self, bytes: usize) {
        self.published_messages.fetch_add(1, Ordering::Relaxed);
        self.published_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn received(&self, bytes: usize, room: bool) {
        self.received_messages.fetch_add(1, Ordering::Relaxed);
        self.received_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if room {
            self.received_room_messages.fetch_add(1, Ordering::Relaxed);
            self.received_room_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// A read of the directory (a user's node, a page of users).
    pub(crate) fn lookup(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn gap(&self, missed: u64) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
        self.missed.fetch_add(missed, Ordering::Relaxed);
    }

    fn snapshot(&self) -> crate::control::BusCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        crate::control::BusCounts {
            published_messages: get(&self.published_messages),
            published_bytes: get(&self.published_bytes),
            received_messages: get(&self.received_messages),
            received_bytes: get(&self.received_bytes),
            received_room_messages: get(&self.received_room_messages),
            received_room_bytes: get(&self.received_room_bytes),
            gaps: get(&self.gaps),
            missed: get(&self.missed),
            directory_lookups: get(&self.lookups),
        }
    }
}

/// A graceful stop buries this node, then waits for its own "gone" to come
/// back on the bus: then every node subscribed has had it too. (It may come
/// back before the bury script's own answer.)
#[derive(Default)]
pub(super) enum Leaving {
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
    counts: Arc<Counts>,
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
        delivery: Histogram,
    ) -> anyhow::Result<Self> {
        let target = Target::parse(&config.url).map_err(|e| anyhow::anyhow!(e))?;
        let keys = Keys::new(&config.prefix, target.is_cluster());
        let publish = if target.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let primary = Primary::new(target, config.timeout);
        let mut c = primary.conn().await?;
        let node: u64 = tokio::time::timeout(
            config.timeout,
            redis::cmd("INCR").arg(keys.node_seq()).query_async(&mut c.conn),
        )
        .await
        .map_err(|_| anyhow::anyhow!("cluster mode: Redis did not answer in time"))??;
        let link = Arc::new(Mutex::new(Link {
            error: "not subscribed yet".into(),
            ..Link::default()
        }));
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let (follow, follow_rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let shared = Shared {
            node,
            keys,
            publish,
            config,
            primary,
            link: link.clone(),
            counts: counts.clone(),
            follow,
            delivery,
            inputs,
            signals,
        };
        let shared = Arc::new(shared);
        tokio::spawn(writer::run(shared.clone(), ops_rx));
        tokio::spawn(subscriber::run(shared.clone(), follow_rx));
        tokio::spawn(heartbeat::run(shared));
        Ok(Self {
            node,
            ops,
            link,
            counts,
        })
    }

    /// The tag in this node's member ids: 1..=65535.
    pub(crate) fn tag(&self) -> u16 {
        plaza_core::node_tag(self.node)
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

    /// The other live nodes this node knows of.
    pub(crate) fn peers(&self) -> usize {
        lock(&self.link).peers.len()
    }

    /// Channels subscribed (the bus and followed rooms), while the link
    /// is up.
    pub(crate) fn channels(&self) -> usize {
        let l = lock(&self.link);
        if l.up { l.channels } else { 0 }
    }

    /// Bus traffic since the start.
    pub(crate) fn counts(&self) -> crate::control::BusCounts {
        self.counts.snapshot()
    }

    /// Counts a directory read made outside the cluster tasks.
    pub(crate) fn looked_up(&self) {
        self.counts.lookup();
    }
}

/// What the three tasks share.
pub(super) struct Shared {
    pub(super) node: u64,
    pub(super) keys: Keys,
    /// PUBLISH, or SPUBLISH (sharded) on a Redis Cluster.
    pub(super) publish: &'static str,
    pub(super) config: ClusterConfig,
    /// The Redis primary, followed across failovers behind Sentinel.
    pub(super) primary: Primary,
    pub(super) link: Arc<Mutex<Link>>,
    pub(super) counts: Arc<Counts>,
    /// To the subscriber: rooms to follow or leave.
    pub(super) follow: mpsc::UnboundedSender<Follow>,
    /// Seconds from another node's publish to its arrival here.
    pub(super) delivery: Histogram,
    pub(super) inputs: mpsc::Sender<Input>,
    pub(super) signals: mpsc::Sender<Signal>,
}

impl Shared {
    pub(super) async fn input(&self, input: Input) {
        let _ = self.inputs.send(input).await;
    }

    /// The link went down: say so, and finish the seats whose echo will
    /// not come (they were taken; the replica is stale until the resync).
    pub(super) async fn link_down(&self, error: String) {
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
                read,
            } = p
            {
                self.seat_done(conn, name, uid, room, SeatOutcome::Seated(members), *read)
                    .await;
            }
        }
    }

    pub(super) async fn seat_done(
        &self,
        conn: Conn,
        name: String,
        uid: u64,
        room: u32,
        outcome: SeatOutcome,
        read: SeatRead,
    ) {
        if let Some(log) = read.log {
            self.input(Input::RoomLog { room, log }).await;
        }
        // Before the seat: the entrant is told the topic, modes and
        // roles with its list.
        for (node, msg) in read.topic.into_iter().chain(read.modes) {
            let msg = Box::new(msg);
            self.input(Input::Remote { node, msg }).await;
        }
        if matches!(outcome, SeatOutcome::Seated(_)) {
            self.input(Input::RoomRoles {
                room,
                roles: read.roles,
            })
            .await;
        }
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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Now, in Unix microseconds (0 if the clock is before 1970).
pub(super) fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
