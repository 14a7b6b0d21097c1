//! The logic task's answers to operators' commands.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{LOGIC_QUEUE, Logic};
use plaza_core::{BusMsg, Input, Reach};
use tokio::sync::oneshot;

use crate::cluster::Op;
use crate::control::{ClusterStatus, Command, Reply, SlowRoom, Status, TlsStatus, WsStatus};
use crate::frontend::Fronts;

impl Logic {
    /// This node's state and counters.
    pub(crate) fn status(&self) -> Status {
        let net = &self.sink.net;
        let stats = net.stats();
        let health = |r: Result<(), String>| match r {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("down: {e}"),
        };
        let drops = self.hub.drops();
        Status {
            uptime_secs: self.started.elapsed().as_secs(),
            sessions: net.session_count(),
            users_online: self.hub.users_online(),
            rooms_in_use: self.hub.rooms_in_use(),
            history_bytes: self.hub.history_bytes(),
            users_away: self.hub.away_users(),
            requests_per_sec: self.rates.0,
            packets_out_per_sec: self.rates.1,
            requests_total: self.received,
            packets_out_total: self.sink.sent,
            deliveries_total: self.sink.shared_sent,
            accepted_total: stats.accepted,
            frames_in_total: stats.frames_in,
            bytes_in_total: stats.bytes_in,
            bytes_out_total: stats.bytes_out,
            writes_total: stats.writes,
            writes_held_total: stats.writes_held,
            writes_gathering: stats.gathering,
            logins: (self.hub.login_results().0.iter())
                .map(|(code, n)| (plaza_proto::ResultCode(*code).name().to_owned(), *n))
                .collect(),
            logic_queue_depth: LOGIC_QUEUE - self.sink.tx.capacity(),
            send_queue_bytes: net.pending_bytes_total(),
            refused_connections: stats.refused_full,
            refused_connections_per_ip: stats.refused_per_ip,
            slow_consumer_disconnects: stats.slow_consumers,
            room_messages_dropped: stats.dropped,
            logins_rate_limited: self.logins.refused.load(std::sync::atomic::Ordering::Relaxed),
            chat_rate_limited: drops.chat_rate_limited,
            login_timeouts: drops.login_timeouts,
            queue_overflows: drops.queue_overflows,
            bad_frames: stats.bad_frames,
            idle_timeouts: stats.idle_timeouts,
            write_timeouts: stats.write_timeouts,
            tls_handshake_failures: stats.tls_handshake_failures,
            websocket: net.ws.as_ref().map(|ws| WsStatus {
                addr: ws.local_addr().to_string(),
                tls_addr: ws.tls_addr().map(|a| a.to_string()),
                sessions: ws.session_count(),
            }),
            tls: net.binary.tls_addr().map(|a| TlsStatus {
                addr: a.to_string(),
                handshakes_total: stats.tls_accepted,
            }),
            slow_rooms: (self.hub.slow_rooms().iter())
                .map(|(room, d)| SlowRoom {
                    room: *room,
                    seconds: d.as_secs(),
                })
                .collect(),
            store: health(self.sink.store.health()),
            draining: self.hub.is_draining(),
            cluster: self.sink.cluster.as_ref().map(|c| ClusterStatus {
                node: c.node,
                bus: health(c.health()),
                remote_users: self.hub.remote_users(),
                peers: c.peers(),
                channels: c.channels(),
                bus_stats: c.counts(),
            }),
        }
    }

    /// The user an operator's `user`, `kick` or `mute` names, when it is not
    /// on this node and other nodes may have it (cluster mode).
    pub(crate) fn elsewhere(&self, command: &Command) -> Option<String> {
        let (Command::User { name } | Command::Kick { name } | Command::Mute { name, .. }) = command else {
            return None;
        };
        let local = self.hub.user(name, Instant::now()).is_some();
        (!local && self.sink.cluster.is_some()).then(|| name.clone())
    }

    /// Answers `command` for `name` on another node: the shared store's
    /// directory says which node it is on, and a kick or mute goes to that
    /// node (off the logic task: the reply waits for the store).
    pub(crate) fn ask_cluster(&self, command: Command, name: String, reply: oneshot::Sender<Reply>) {
        let (store, cluster) = (self.sink.store.clone(), self.sink.cluster.clone());
        if let Some(c) = &cluster {
            c.looked_up();
        }
        tokio::spawn(async move {
            let node = match store.locate(&name).await {
                Ok(Some(node)) => node,
                Ok(None) => {
                    let _ = reply.send(Reply::err(format!("{name} is not logged in")));
                    return;
                }
                Err(e) => {
                    let _ = reply.send(Reply::err(format!("the directory did not answer: {e}")));
                    return;
                }
            };
            let to = name.clone();
            let (msg, what) = match command {
                Command::Kick { .. } => (
                    BusMsg::Kick {
                        name: to,
                        by: "operator".into(),
                    },
                    "kick",
                ),
                Command::Mute { seconds, .. } => (BusMsg::Mute { name: to, seconds }, "mute"),
                _ => {
                    let r = json!({ "name": name, "node": node, "room": null, "remote": true });
                    let _ = reply.send(Reply::ok(r));
                    return;
                }
            };
            if let Some(c) = &cluster {
                c.send(Op::Publish {
                    msg,
                    ack: None,
                    reach: Reach::User,
                });
            }
            let _ = reply.send(Reply::ok(json!(format!("asked node {node} to {what} {name}"))));
        });
    }

    pub(crate) fn control(&mut self, command: Command) -> Reply {
        let now = Instant::now();
        let user_json = |u: &plaza_core::UserInfo, net: &Fronts| {
            json!({
                "name": u.name,
                "session": u.conn,
                "room": u.room,
                "admin": u.admin,
                "address": net.peer_addr(u.conn).map(|a| a.to_string()),
                "send_queue_bytes": net.pending_bytes(u.conn),
                "muted": match u.muted {
                    None => Value::Null,
                    Some(None) => json!("indefinitely"),
                    Some(Some(d)) => json!(d.as_secs()),
                },
            })
        };
        match command {
            Command::Auth { .. } => Reply::ok(json!("authenticated")),
            Command::Status => Reply::ok(serde_json::to_value(self.status()).expect("a status serializes")),
            Command::Users => Reply::ok(Value::Array(
                self.hub
                    .users(now)
                    .iter()
                    .map(|u| user_json(u, &self.sink.net))
                    .collect(),
            )),
            Command::Rooms => Reply::ok(Value::Array(
                self.hub
                    .rooms()
                    .into_iter()
                    .map(|(room, members)| json!({ "room": room, "members": members }))
                    .collect(),
            )),
            Command::User { name } => match self.hub.user(&name, now) {
                Some(u) => Reply::ok(user_json(&u, &self.sink.net)),
                None => match self.hub.remote_user(&name) {
                    Some((node, room)) => Reply::ok(json!({
                        "name": name,
                        "node": node,
                        "room": room,
                        "remote": true,
                    })),
                    None => Reply::err(format!("{name} is not logged in")),
                },
            },
            Command::Kick { name } => {
                if self.hub.operator_kick(&name, &mut self.sink) {
                    Reply::ok(json!(format!("kicked {name}")))
                } else {
                    Reply::err(format!("{name} is not logged in"))
                }
            }
            Command::Mute { name, seconds } => self.mute(&name, seconds, now),
            Command::Unmute { name } => self.mute(&name, 0, now),
            Command::Slow { room, seconds } => {
                if self.hub.set_slow_mode(room, Some(Duration::from_secs(seconds))) {
                    Reply::ok(json!({ "room": room, "seconds": seconds }))
                } else {
                    Reply::err("no such room")
                }
            }
            Command::Notice { room, message, local } => {
                if message.len() > plaza_proto::limits::NOTICE {
                    return Reply::err("notice longer than 1024 bytes");
                }
                let Some(n) = self.hub.notice(room, &message, &mut self.sink) else {
                    return Reply::err("no such room");
                };
                // In cluster mode, every node's users (each node tells its own).
                let cluster = !local && self.sink.cluster.is_some();
                if cluster {
                    self.sink.cluster_op(Op::Notice { room, message });
                }
                Reply::ok(json!({ "delivered_to": n, "other_nodes": cluster }))
            }
            Command::Drain { seconds, cluster } => {
                if cluster {
                    if self.sink.cluster.is_none() {
                        return Reply::err("this node is not in cluster mode");
                    }
                    self.sink.cluster_op(Op::Drain(seconds));
                }
                self.start_drain(seconds);
                Reply::ok(json!({ "shutdown_in_secs": seconds, "cluster": cluster }))
            }
            Command::Shutdown => {
                self.hub.handle(Input::Shutdown, now, &mut self.sink);
                Reply::ok(json!("shutting down"))
            }
            Command::ReloadTls => match &self.tls {
                None => Reply::err("TLS is not on"),
                Some(tls) => match tls.reload() {
                    Ok(()) => Reply::ok(json!("TLS certificate reloaded")),
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS reload failed; the old certificate stays");
                        Reply::err(format!("reload failed, the old certificate stays: {e}"))
                    }
                },
            },
        }
    }

    fn mute(&mut self, name: &str, seconds: u32, now: Instant) -> Reply {
        if self.hub.operator_mute(name, seconds, now, &mut self.sink) {
            Reply::ok(json!(if seconds == 0 {
                format!("unmuted {name}")
            } else {
                format!("muted {name}")
            }))
        } else {
            Reply::err(format!("{name} is not logged in"))
        }
    }
}
