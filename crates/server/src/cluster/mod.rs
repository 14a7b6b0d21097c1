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

use plaza_core::{BusMsg, Conn, Input, SeatOutcome};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

mod heartbeat;
mod scripts;
mod subscriber;
mod writer;

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
pub(super) enum PendingSeat {
    Claimed {
        conn: Conn,
        name: String,
        room: u32,
        members: Vec<(u64, String)>,
    },
    Echoed,
}

#[derive(Default)]
pub(super) struct Link {
    pub(super) up: bool,
    pub(super) error: String,
    pub(super) seats: HashMap<u64, PendingSeat>,
    pub(super) leaving: Leaving,
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
        tokio::spawn(writer::run(shared.clone(), ops_rx));
        tokio::spawn(subscriber::run(shared.clone(), client));
        tokio::spawn(heartbeat::run(shared));
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

/// What the three tasks share.
pub(super) struct Shared {
    pub(super) node: u64,
    pub(super) config: ClusterConfig,
    pub(super) conn: ConnectionManager,
    pub(super) link: Arc<Mutex<Link>>,
    pub(super) inputs: mpsc::Sender<Input>,
    pub(super) signals: mpsc::Sender<Signal>,
}

impl Shared {
    pub(super) fn key(&self, k: &str) -> String {
        format!("{}{k}", self.config.prefix)
    }

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
            } = p
            {
                self.seat_done(conn, name, uid, room, SeatOutcome::Seated(members))
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
    ) {
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
