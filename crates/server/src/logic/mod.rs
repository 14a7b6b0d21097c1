//! The logic task: owns the hub, drains the input, control and cluster
//! channels, runs the presence and upkeep ticks, and starts the shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plaza_core::{Conn, Hub, Input};
use plaza_net::Handle;
use plaza_net::tls::TlsAcceptor;
use tokio::sync::{mpsc, oneshot};

mod commands;

use crate::cluster::{Op, Signal};
use crate::control::{Command, ControlMsg};
use crate::sink::NetSink;
use crate::{Resolved, http, limits};

/// Inputs queued for the logic task. Bounded: when the logic falls behind,
/// the gateways wait, and so the sessions stop reading (TCP back-pressure).
pub(crate) const LOGIC_QUEUE: usize = 8192;

/// The logic task: owns the hub, drains the input and control channels.
pub(crate) struct Logic {
    pub(crate) hub: Hub,
    pub(crate) sink: NetSink,
    pub(crate) ctl_tx: mpsc::Sender<ControlMsg>,
    pub(crate) control_net: Handle,
    /// Read by /livez.
    pub(crate) heartbeat: http::Heartbeat,
    pub(crate) logins: Arc<limits::LoginLimiter>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) started: Instant,
    /// Requests processed.
    pub(crate) received: u64,
    /// Requests in and packets out per second, over the last second.
    pub(crate) rates: (f64, f64),
    pub(crate) last_refresh: Instant,
    pub(crate) config: Resolved,
}

impl Logic {
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        mut ctl_rx: mpsc::Receiver<ControlMsg>,
        mut signals: mpsc::Receiver<Signal>,
        done: oneshot::Sender<()>,
    ) {
        let (stopped_tx, mut stopped) = oneshot::channel::<()>();
        let mut stopped_tx = Some(stopped_tx);
        let mut batch = Vec::with_capacity(256);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Room presence news goes out on this tick (see plaza-core's room.rs).
        let batching = self.config.chat.batch_presence;
        let mut presence = tokio::time::interval(self.config.enter_leave_delay.max(Duration::from_millis(1)));
        presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = (self.received, self.sink.sent);
        // What a turn queues for plain TCP sessions, written at its end by
        // this task (plaza-net's `Writes`): no writer task is woken per
        // recipient.
        let mut writes = plaza_net::Writes::new();
        // While the CPU is saturated (the network holds every write for its
        // gathering clock), the writes wait up to the gathering interval:
        // fewer, larger writes.
        let mut flush_at: Option<tokio::time::Instant> = None;
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        loop {
            self.heartbeat.beat();
            let turn = tokio::select! {
                // Operators first: a flood of users cannot starve the control link.
                biased;
                Some(c) = ctl_rx.recv() => Turn::Control(c),
                Some(signal) = signals.recv() => Turn::Signal(signal),
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    Turn::Inputs
                }
                _ = presence.tick(), if batching => Turn::Presence,
                _ = tick.tick() => Turn::Tick,
                () = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)),
                    if flush_at.is_some() => Turn::Flush,
                _ = &mut stopped => break,
            };
            writes.defer(|| match turn {
                Turn::Control((command, reply)) => match self.elsewhere(&command) {
                    Some(name) => self.ask_cluster(command, name, reply),
                    None => {
                        let r = self.control(command);
                        let _ = reply.send(r);
                    }
                },
                Turn::Signal(signal) => self.signal(signal),
                Turn::Inputs => self.handle(batch.drain(..)),
                Turn::Presence => self.hub.flush_presence(&mut self.sink),
                Turn::Tick => {
                    let now = (self.received, self.sink.sent);
                    self.rates = ((now.0 - last.0) as f64, (now.1 - last.1) as f64);
                    last = now;
                    self.hub.upkeep(Instant::now(), &mut self.sink);
                    self.refresh_presence();
                }
                Turn::Flush => {}
            });
            let hold = match self.config.gather {
                Some(most) if !writes.is_empty() && self.sink.net.is_saturated() => {
                    let now = tokio::time::Instant::now();
                    now < *flush_at.get_or_insert(now + most)
                }
                _ => false,
            };
            if !hold {
                if workers > 1 {
                    // Parts past the first go to the other workers, written
                    // in parallel (a task per part, not per member).
                    while writes.len() > FLUSH_PART {
                        let mut part = writes.split_off(FLUSH_PART);
                        tokio::spawn(async move { part.flush() });
                    }
                } else {
                    // A part at a time, taking in the inputs that arrived
                    // meanwhile: what they queue for members not written
                    // yet goes in the same writes (docs/BENCHMARKS.md,
                    // "Issue #32: writes made by the logic task").
                    for _ in 0..FLUSH_PARTS {
                        writes.flush_some(FLUSH_PART);
                        if writes.is_empty() {
                            break;
                        }
                        tokio::task::yield_now().await;
                        batch.extend(std::iter::from_fn(|| rx.try_recv().ok()).take(256));
                        writes.defer(|| self.handle(batch.drain(..)));
                    }
                }
                writes.flush();
                flush_at = None;
            }
            if self.sink.shutdown {
                if let Some(stopped_tx) = stopped_tx.take() {
                    // Everything acknowledged so far is queued: flush and close.
                    tracing::info!(
                        sessions = self.hub.sessions(),
                        users = self.hub.users_online(),
                        "shutting down"
                    );
                    let (net, control, grace) = (
                        self.sink.net.clone(),
                        self.control_net.clone(),
                        self.config.shutdown_grace,
                    );
                    tokio::spawn(async move {
                        net.stop(grace).await;
                        control.stop(Duration::from_secs(1)).await;
                        let _ = stopped_tx.send(());
                    });
                }
            }
        }
        writes.flush();
        // Leave the cluster: the other nodes drop this node's users now
        // instead of when its heartbeat runs out.
        if let Some(c) = &self.sink.cluster {
            let (bury, buried) = oneshot::channel();
            c.send(Op::Bury(bury));
            let _ = tokio::time::timeout(Duration::from_secs(2), buried).await;
        }
        // Effects in flight (a departing user's release, a late login)
        // finish against the store before it goes, not mid-call.
        let effects = self.sink.effects.clone();
        effects.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), effects.wait()).await;
        // The store is closed when the last reference is dropped; redb
        // commits are durable at commit time.
        drop(self);
        tracing::info!("plaza-server stopped");
        let _ = done.send(());
    }

    fn handle(&mut self, inputs: impl Iterator<Item = Input>) {
        let now = Instant::now();
        for input in inputs {
            if matches!(input, Input::Request { .. }) {
                self.received += 1;
            }
            self.hub.handle(input, now, &mut self.sink);
        }
    }

    fn signal(&mut self, signal: Signal) {
        match signal {
            Signal::Resync => {
                let users = self
                    .hub
                    .local_entries()
                    .into_iter()
                    .map(|(name, conn, uid, room)| (name, self.sink.owner(conn), uid, room))
                    .collect();
                let held = self.hub.held_seats();
                self.sink.cluster_op(Op::Replace { users, held });
            }
            Signal::Drain(seconds) => {
                tracing::info!(seconds, "cluster-wide drain requested");
                self.start_drain(seconds);
            }
            Signal::Notice { room, message } => {
                self.hub.notice(room, &message, &mut self.sink);
            }
            Signal::Lost(names) => {
                for name in names {
                    self.hub.operator_kick(&name, &mut self.sink);
                }
            }
        }
    }

    pub(crate) fn start_drain(&mut self, seconds: u64) {
        self.hub.refuse_logins();
        let (ctl, tx) = (self.ctl_tx.clone(), self.sink.tx.clone());
        tokio::spawn(drain(seconds, ctl, tx));
    }

    /// Keeps this node's logged-in marks alive in a shared store.
    fn refresh_presence(&mut self) {
        let Some(every) = self.sink.store.refresh_every() else {
            return;
        };
        if self.last_refresh.elapsed() < every {
            return;
        }
        self.last_refresh = Instant::now();
        // Names shared, not copied: the store writes the marks a chunk at a
        // time, so a refresh of many users holds little memory at once.
        let mut entries: Vec<(Arc<str>, Conn)> =
            self.hub.local_users().map(|(n, c)| (n.clone(), c)).collect();
        // Users away whose marks name this node (cluster mode).
        entries.extend(self.hub.away_names().map(|n| (n.clone(), plaza_core::AWAY)));
        let (store, node) = (self.sink.store.clone(), self.sink.node.clone());
        tokio::spawn(async move { store.refresh(&node, entries).await });
    }
}

/// Sessions the logic task writes before it lets the runtime read again.
const FLUSH_PART: usize = 8;
/// Parts at most before the rest is written at once (the other channels
/// and the ticks wait meanwhile).
const FLUSH_PARTS: usize = 64;

/// What woke the logic task.
enum Turn {
    Control(ControlMsg),
    Signal(Signal),
    /// The batch of inputs received.
    Inputs,
    Presence,
    Tick,
    /// Writes held while the CPU is short are due.
    Flush,
}

/// Counts down with notices to every user, then shuts down.
async fn drain(seconds: u64, ctl: mpsc::Sender<ControlMsg>, tx: mpsc::Sender<Input>) {
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let marks: std::collections::BTreeSet<u64> = [seconds, 60, 30, 10, 5, 1]
        .into_iter()
        .filter(|m| *m <= seconds && *m > 0)
        .collect();
    for left in marks.into_iter().rev() {
        tokio::time::sleep_until(end - Duration::from_secs(left)).await;
        let (reply, _) = oneshot::channel();
        let message = format!("server shutting down in {left} seconds");
        // Each draining node counts down for its own users.
        let notice = Command::Notice {
            room: None,
            message,
            local: true,
        };
        let _ = ctl.send((notice, reply)).await;
    }
    tokio::time::sleep_until(end).await;
    let _ = tx.send(Input::Shutdown).await;
}
