//! What the subscriber does with each message, and the reads of other
//! nodes' state it needs.

use std::collections::HashMap;

use plaza_core::{BusMsg, Input, SeatHolder, SeatOutcome};
use plaza_proto::bus::{self, Decoded};

use super::{Channel, Leaving, PendingSeat, Shared, Signal, lock};

/// The other live nodes.
pub(super) async fn peers(shared: &Shared) -> anyhow::Result<Vec<u64>> {
    let mut c = shared.primary.conn().await?;
    let ids: Vec<u64> = tokio::time::timeout(
        shared.config.timeout,
        redis::cmd("ZRANGE")
            .arg(shared.keys.nodes())
            .arg(0)
            .arg(-1)
            .query_async(&mut c.conn),
    )
    .await??;
    Ok(ids.into_iter().filter(|id| *id != shared.node).collect())
}

/// The members of each of `rooms` on every node, as (member id, node,
/// name).
pub(super) async fn rooms(
    shared: &Shared,
    rooms: impl IntoIterator<Item = u32>,
) -> anyhow::Result<Vec<(u32, Vec<SeatHolder>)>> {
    let mut out = Vec::new();
    for room in rooms {
        out.push((room, members(shared, room).await?));
    }
    Ok(out)
}

/// Room `room`'s members on every node, from its seats.
pub(super) async fn members(shared: &Shared, room: u32) -> anyhow::Result<Vec<SeatHolder>> {
    let mut c = shared.primary.conn().await?;
    let map: Vec<(String, String)> = tokio::time::timeout(
        shared.config.timeout,
        redis::cmd("HGETALL")
            .arg(shared.keys.seats(room))
            .query_async(&mut c.conn),
    )
    .await??;
    Ok(map
        .into_iter()
        .filter_map(|(uid, v)| {
            let (node, name) = v.split_once('|')?;
            Some((uid.parse().ok()?, node.parse().ok()?, name.to_owned()))
        })
        .collect())
}

/// What the subscriber does after a message, besides what it did itself.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum After {
    Nothing,
    /// Another node rewrote its state: read the followed rooms' members.
    Reread,
    /// The others buried this node while it lived: they sent it nothing of
    /// the followed rooms meanwhile, so each has a gap of unknown size.
    Buried,
}

/// Acts on one message; says what the caller must do next.
pub(super) async fn on_message(
    shared: &Shared,
    last: &mut HashMap<(u64, Channel), u64>,
    payload: &[u8],
) -> anyhow::Result<After> {
    let msg = match bus::decode(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, len = payload.len(), "undecodable cluster message skipped");
            return Ok(After::Nothing);
        }
    };
    match msg {
        Decoded::Msg { node, msg } if node == shared.node => {
            // Our own; only a seat's echo and numbered chat matter.
            if let BusMsg::Enter { uid, .. } = msg {
                let claimed = {
                    let mut l = lock(&shared.link);
                    match l.seats.remove(&uid) {
                        Some(PendingSeat::Claimed {
                            conn,
                            name,
                            room,
                            members,
                            read,
                        }) => Some((conn, name, room, members, *read)),
                        _ => {
                            l.seats.insert(uid, PendingSeat::Echoed);
                            None
                        }
                    }
                };
                if let Some((conn, name, room, members, read)) = claimed {
                    let seated = SeatOutcome::Seated(members);
                    shared.seat_done(conn, name, uid, room, seated, read).await;
                }
            }
            // Our own room chat, numbered by the cluster: delivered here
            // now, in the room's order (`plaza_core`'s `numbering.rs`).
            if let BusMsg::RoomChat { place: Some(_), .. } = msg {
                let msg = Box::new(msg);
                shared.input(Input::Remote { node, msg }).await;
            }
        }
        Decoded::Msg { node, msg } => {
            let msg = Box::new(msg);
            shared.input(Input::Remote { node, msg }).await
        }
        Decoded::Reset { node } if node == shared.node => {}
        Decoded::Tick { .. } => {}
        Decoded::Reset { .. } => return Ok(After::Reread),
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
                return Ok(After::Buried);
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
    Ok(After::Nothing)
}
