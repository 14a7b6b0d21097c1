//! The subscriber: one subscription to the bus. It forwards the other
//! nodes' messages to the logic task in order, and on every (re)subscription
//! has this node rewrite its own state and takes a snapshot of the others'.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use plaza_core::{BusMsg, Input, RemoteEntry, SeatOutcome};
use plaza_proto::bus::{self, Decoded};

use super::{Leaving, PendingSeat, Shared, Signal, lock};

/// Runs for the life of the node, resubscribing after every failure.
pub(super) async fn run(shared: Arc<Shared>) {
    let backoff = plaza_net::Backoff {
        initial: Duration::from_millis(100),
        // A node is one subscriber: retrying twice a second costs Redis
        // nothing and finds a promoted replica soon after the promotion.
        max: Duration::from_millis(500),
    };
    let mut attempt = 0;
    // The last stamp seen from each other node, kept across
    // resubscriptions: what went by while the link was down shows as a jump.
    let mut last = HashMap::new();
    loop {
        let error = match subscribe(&shared, &mut last).await {
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

async fn subscribe(shared: &Shared, last: &mut HashMap<u64, u64>) -> anyhow::Result<()> {
    let timeout = shared.config.timeout;
    // Behind Sentinel, the primary as of now.
    let client = shared.primary.client().await?;
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
    {
        let mut l = lock(&shared.link);
        l.peers = nodes.iter().map(|(id, _)| *id).collect();
    }
    last.retain(|id, _| nodes.iter().any(|(n, _)| n == id));
    shared.input(Input::Snapshot { nodes }).await;
    let mut ping = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let payload = msg.get_payload_bytes();
                check_stamp(shared, last, payload).await?;
                on_message(shared, last, payload).await?;
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
    let mut c = shared.primary.conn().await?;
    let ids: Vec<u64> = tokio::time::timeout(
        shared.config.timeout,
        redis::cmd("ZRANGE")
            .arg(shared.key("nodes"))
            .arg(0)
            .arg(-1)
            .query_async(&mut c.conn),
    )
    .await??;
    let mut nodes = Vec::with_capacity(ids.len());
    for id in ids.into_iter().filter(|id| *id != shared.node) {
        nodes.push((id, node_users(shared, id).await?));
    }
    Ok(nodes)
}

async fn node_users(shared: &Shared, node: u64) -> anyhow::Result<Vec<RemoteEntry>> {
    let mut c = shared.primary.conn().await?;
    let map: Vec<(String, String)> = tokio::time::timeout(
        shared.config.timeout,
        redis::cmd("HGETALL")
            .arg(shared.key(&format!("node:{node}")))
            .query_async(&mut c.conn),
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

/// Reads another node's stamp: counts the message, times its delivery, and
/// when numbers were skipped reads that node's state again and reports the
/// gap to the hub (before the message itself is handled).
async fn check_stamp(shared: &Shared, last: &mut HashMap<u64, u64>, payload: &[u8]) -> anyhow::Result<()> {
    let Some(o) = bus::origin(payload) else {
        return Ok(());
    };
    if o.node == shared.node || o.node == 0 {
        return Ok(());
    }
    shared.counts.received(payload.len());
    if o.seq == 0 {
        return Ok(());
    }
    if let Some(took) = super::unix_micros().checked_sub(o.sent_us) {
        shared.delivery.observe(took as f64 / 1e6);
    }
    let before = last.insert(o.node, o.seq);
    if before.is_none() {
        // A node this one did not know (new since the snapshot).
        lock(&shared.link).peers.insert(o.node);
    }
    let missed = match before {
        Some(b) if o.seq > b + 1 => o.seq - b - 1,
        _ => return Ok(()),
    };
    shared.counts.gap(missed);
    tracing::warn!(
        node = o.node,
        missed,
        "missed cluster messages from a node while the bus link was cut; reading its state again"
    );
    let users = node_users(shared, o.node).await?;
    shared
        .input(Input::BusGap {
            node: o.node,
            missed,
            users,
        })
        .await;
    Ok(())
}

async fn on_message(shared: &Shared, last: &mut HashMap<u64, u64>, payload: &[u8]) -> anyhow::Result<()> {
    let msg = match bus::decode(payload) {
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
        Decoded::Tick { .. } => {}
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
            lock(&shared.link).peers.remove(&node);
            last.remove(&node);
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
