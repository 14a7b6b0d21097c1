//! The `status` answer: one type for the control link that sends it,
//! `plaza-ctl` that prints it and `/metrics` and `/readyz` that read it, so
//! a field is named in one place and a misspelling does not compile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A node's state and counters.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Seconds since start.
    pub uptime_secs: u64,
    /// TCP connections open.
    pub sessions: usize,
    /// Users logged in on this node.
    pub users_online: usize,
    /// Rooms with a member on this node.
    pub rooms_in_use: usize,
    /// Bytes of room history held (packets and 64 bytes each).
    pub history_bytes: usize,
    /// Users who dropped and whose seat and whispers are kept (the resume
    /// window).
    pub users_away: usize,
    /// Requests processed over the last second.
    pub requests_per_sec: f64,
    /// Packets handed to the network over the last second.
    pub packets_out_per_sec: f64,
    /// Requests processed.
    pub requests_total: u64,
    /// Packets handed to the network.
    pub packets_out_total: u64,
    /// Of those, fan-out deliveries (room chat, broadcast, notices).
    pub deliveries_total: u64,
    /// Connections accepted.
    pub accepted_total: u64,
    /// Frames received.
    pub frames_in_total: u64,
    /// Bytes received.
    pub bytes_in_total: u64,
    /// Bytes written.
    pub bytes_out_total: u64,
    /// Write system calls.
    pub writes_total: u64,
    /// Writes held for the next tick while the CPU is short.
    pub writes_held_total: u64,
    /// Whether writes are gathered now.
    pub writes_gathering: bool,
    /// Login and resume answers by result name.
    pub logins: BTreeMap<String, u64>,
    /// Inputs waiting for the logic task.
    pub logic_queue_depth: usize,
    /// Bytes queued for clients, not yet written.
    pub send_queue_bytes: usize,
    /// Connections refused: the server was full.
    pub refused_connections: u64,
    /// Connections refused: too many from one address.
    pub refused_connections_per_ip: u64,
    /// Sessions disconnected for reading too slowly.
    pub slow_consumer_disconnects: u64,
    /// Room messages dropped for slow readers (drop-oldest policy).
    pub room_messages_dropped: u64,
    /// Login attempts refused by the rate limit.
    pub logins_rate_limited: u64,
    /// Chat refused by the chat rate or slow mode.
    pub chat_rate_limited: u64,
    /// Connections closed for not logging in in time.
    pub login_timeouts: u64,
    /// Sessions closed for queueing too many requests.
    pub queue_overflows: u64,
    /// Sessions closed for a bad frame.
    pub bad_frames: u64,
    /// Sessions closed for idling.
    pub idle_timeouts: u64,
    /// Sessions closed for a write that made no progress.
    pub write_timeouts: u64,
    /// TLS handshakes that failed.
    pub tls_handshake_failures: u64,
    /// The TLS listener, if on.
    pub tls: Option<TlsStatus>,
    /// The WebSocket listeners, if on. (Their sessions are also counted in
    /// `sessions` and the other totals.)
    pub websocket: Option<WsStatus>,
    /// Rooms in slow mode.
    pub slow_rooms: Vec<SlowRoom>,
    /// The account store: "ok" or "down: <why>".
    pub store: String,
    /// New logins are refused (a drain or shutdown has begun).
    pub draining: bool,
    /// Cluster mode, if on.
    pub cluster: Option<ClusterStatus>,
}

/// The TLS listener.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsStatus {
    /// Its address.
    pub addr: String,
    /// Handshakes completed.
    pub handshakes_total: u64,
}

/// The WebSocket front end.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WsStatus {
    /// The plain (ws) listener's address.
    pub addr: String,
    /// The TLS (wss) listener's address, if on.
    pub tls_addr: Option<String>,
    /// WebSocket sessions open now.
    pub sessions: usize,
}

/// A room in slow mode.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlowRoom {
    /// Room number.
    pub room: u32,
    /// A member's interval between messages.
    pub seconds: u64,
}

/// This node in its cluster.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterStatus {
    /// This node's id.
    pub node: u64,
    /// The bus link: "ok" or "down: <why>".
    pub bus: String,
    /// Other nodes' users kept here: members of the rooms it follows.
    pub remote_users: usize,
    /// The other live nodes this node knows of.
    pub peers: usize,
    /// Bus channels subscribed.
    pub channels: usize,
    /// Bus traffic and losses.
    pub bus_stats: BusCounts,
}

/// A node's bus traffic since it started.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BusCounts {
    /// Messages this node published.
    pub published_messages: u64,
    /// Their bytes (payloads).
    pub published_bytes: u64,
    /// Messages received from other nodes.
    pub received_messages: u64,
    /// Their bytes (payloads).
    pub received_bytes: u64,
    /// Of those, messages on room channels (rooms this node follows).
    pub received_room_messages: u64,
    /// Their bytes.
    pub received_room_bytes: u64,
    /// Times another node's stamps jumped: messages went by unseen.
    pub gaps: u64,
    /// How many went by unseen, in all (an upper bound).
    pub missed: u64,
    /// Reads of the directory in Redis: a user's node (whisper, kick, mute),
    /// a page of the user list.
    pub directory_lookups: u64,
}

impl Status {
    /// Why the node should not get traffic now, if it should not.
    pub fn not_ready(&self) -> Option<String> {
        if self.draining {
            return Some("draining".into());
        }
        if self.store != "ok" {
            return Some(format!("account store {}", self.store));
        }
        match &self.cluster {
            Some(c) if c.bus != "ok" => Some(format!("cluster bus {}", c.bus)),
            _ => None,
        }
    }
}
