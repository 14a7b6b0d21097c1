//! What the subscriber does with each message, and the reads of other
//! nodes' state it needs.

use std::collections::HashMap;

use plaza_core::{BusMsg, Input, RemoteEntry, SeatOutcome};
use plaza_proto::bus::{self, Decoded};

use super::{Channel, Leaving, PendingSeat, Shared, Signal, lock};

/// Every other live node's users.
pub(super) async fn snapshot(shared: &Shared) -> anyhow::Result<Vec<(u64, Vec<RemoteEntry>)>> {
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

pub(super) async fn node_users(shared: &Shared, node: u64) -> anyhow::Result<Vec<RemoteEntry>> {
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

pub(super) async fn on_message(
    shared: &Shared,
    last: &mut HashMap<(u64, Channel), u64>,
    payload: &[u8],
) -> anyhow::Result<()> {
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
            last.retain(|(n, _), _| *n != node);
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
