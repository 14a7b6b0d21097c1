//! The hub's output: events into the sessions' outboxes (through their
//! front end), effects into tasks.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use plaza_core::{Conn, Effect, Input, Recipient, Sink};
use plaza_proto::{Event, Roster};
use tokio::sync::mpsc;

use crate::cluster::{Cluster, Op};
use crate::frontend::Fronts;
use crate::{Store, http};

/// The hub's output, into the network and the effect tasks.
pub(crate) struct NetSink {
    pub(crate) net: Fronts,
    pub(crate) tx: mpsc::Sender<Input>,
    pub(crate) store: Store,
    /// This process's id in the store's logged-in marks.
    pub(crate) node: String,
    /// Cluster mode.
    pub(crate) cluster: Option<Arc<Cluster>>,
    pub(crate) metrics: http::Metrics,
    /// Room chat goes out droppable (the drop-oldest slow-consumer policy).
    pub(crate) drop_oldest: bool,
    pub(crate) shutdown: bool,
    /// Packets handed to the network.
    pub(crate) sent: u64,
    /// Of those, shared fan-out frames.
    pub(crate) shared_sent: u64,
    /// The effects' tasks (password checks, registrations, releases), so
    /// that a shutdown lets them finish before the store goes.
    pub(crate) effects: tokio_util::task::TaskTracker,
}

impl Sink for NetSink {
    fn send(&mut self, to: Conn, event: &Event) {
        self.sent += 1;
        self.net.send(to, event);
    }

    fn send_members(&mut self, to: Conn, members: &Roster) {
        self.sent += self.net.send_members(to, members);
    }

    fn fanout(&mut self, events: &[Event], to: impl IntoIterator<Item = Recipient>) {
        let n = self.net.fanout(events, to, self.drop_oldest);
        self.sent += n;
        self.shared_sent += n;
    }

    fn fanout_packet(&mut self, packet: &Bytes, at: Instant, to: impl IntoIterator<Item = Recipient>) {
        let n = self.net.fanout_packet(packet, at, to, self.drop_oldest);
        self.sent += n;
        self.shared_sent += n;
    }

    fn send_packets<'a>(&mut self, to: Conn, packets: impl IntoIterator<Item = (&'a Bytes, Instant)>) {
        self.sent += self.net.send_packets(to, packets);
    }

    fn disconnect(&mut self, conn: Conn) {
        self.net.disconnect(conn);
    }

    fn effect(&mut self, effect: Effect) {
        let (tx, store) = (self.tx.clone(), self.store.clone());
        match effect {
            Effect::Authenticate {
                conn,
                ticket,
                name,
                credential,
            } => {
                let owner = self.owner(conn);
                let latency = self.metrics.store_latency.clone();
                self.effects.spawn(async move {
                    let t = Instant::now();
                    let outcome = store.login(name, credential, owner).await;
                    latency.observe(t.elapsed().as_secs_f64());
                    let _ = tx
                        .send(Input::AuthDone {
                            conn,
                            ticket,
                            outcome,
                        })
                        .await;
                });
            }
            Effect::Register { conn, name, password } => {
                let latency = self.metrics.store_latency.clone();
                self.effects.spawn(async move {
                    let t = Instant::now();
                    let outcome = store.register(name, password).await;
                    latency.observe(t.elapsed().as_secs_f64());
                    let _ = tx.send(Input::RegisterDone { conn, outcome }).await;
                });
            }
            Effect::Release { conn, name } => {
                let owner = self.owner(conn);
                self.effects
                    .spawn(async move { store.release(name, owner).await });
            }
            Effect::Away { conn, name } => {
                let (owner, away) = (self.owner(conn), self.owner(plaza_core::AWAY));
                self.effects
                    .spawn(async move { store.away(name, owner, away).await });
            }
            Effect::Mute { name, seconds } => store.set_mute(name, seconds),
            Effect::Shutdown => self.shutdown = true,
            Effect::Publish { msg, ack, reach } => self.cluster_op(Op::Publish { msg, ack, reach }),
            Effect::Interest { room, on } => self.cluster_op(Op::Interest { room, on }),
            Effect::HoldSeat { name, uid, room } => self.cluster_op(Op::Hold { name, uid, room }),
            Effect::Unhold { name, uid } => self.cluster_op(Op::Unhold { name, uid }),
            Effect::ListUsers { conn, after } => self.cluster_op(Op::ListUsers { conn, after }),
            Effect::ClaimSeat {
                conn,
                name,
                uid,
                room,
                fill,
                key,
            } => {
                self.cluster_op(Op::Seat {
                    conn,
                    name,
                    uid,
                    room,
                    fill,
                    key,
                });
            }
        }
    }
}

impl NetSink {
    pub(crate) fn owner(&self, conn: Conn) -> String {
        crate::store::owner(&self.node, conn)
    }

    pub(crate) fn cluster_op(&self, op: Op) {
        match &self.cluster {
            Some(c) => c.send(op),
            None => tracing::error!(?op, "cluster operation without cluster mode"),
        }
    }
}
