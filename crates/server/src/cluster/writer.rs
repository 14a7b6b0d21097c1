//! The writer: the node's only publisher. It takes the logic task's
//! operations in batches, sends each batch as one pipeline (one per slot on
//! a Redis Cluster; a replace or a bury is its own few round trips), and
//! hands the outcomes back as inputs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use plaza_core::{BusMsg, Input, Logged, Reach, RoomLog, SeatHolder, SeatOutcome};
use plaza_proto::ResultCode;
use plaza_proto::bus::{self, Decoded, Place};
use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::scripts::{Answer, Scripts, stamp};
use super::{Channel, Follow, Leaving, Op, PendingSeat, SeatRead, Shared, Signal, lock, rewrite};
use crate::primary::Conn;

/// Runs until the logic task is gone.
pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut scripts = Scripts::new(shared.publish);
    let mut batch = Vec::with_capacity(256);
    let mut sizes = Vec::with_capacity(256);
    // This node's publishes on each channel, numbered from 1 (the stamps'
    // `seq`).
    let mut seqs = HashMap::new();
    // Log the first failure of an outage, not every batch of it.
    let mut failing = false;
    loop {
        match tokio::time::timeout(super::TICK, rx.recv_many(&mut batch, 256)).await {
            Ok(0) => return,
            Ok(_) => {}
            // Quiet: say where this node's stream is.
            Err(_) => batch.push(Op::Tick),
        }
        let (start, stop) = interest(&batch);
        if !start.is_empty() {
            // Subscribed before this batch's seats publish their enters.
            let (done, subscribed) = oneshot::channel();
            let _ = shared.follow.send(Follow::Start(start, done));
            let _ = subscribed.await;
        }
        sizes.clear();
        let result = match shared.primary.conn().await {
            Ok(mut c) => {
                let work = send(&shared, &mut c.conn, &mut scripts, &batch, &mut seqs, &mut sizes);
                match tokio::time::timeout(shared.config.timeout, work).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => {
                        shared.primary.failed(&c, &e);
                        Err(e.to_string())
                    }
                    Err(_) => {
                        shared.primary.timed_out(&c);
                        Err("timed out".to_owned())
                    }
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let values = match result {
            Ok(v) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("cluster publishing works again");
                }
                for n in sizes.iter().filter(|n| **n > 0) {
                    shared.counts.published(*n);
                }
                v
            }
            Err(error) => {
                scripts.forget();
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "cluster publish failed; senders are told (112)");
                }
                tracing::debug!(%error, ops = batch.len(), "cluster batch failed");
                Vec::new()
            }
        };
        let mut values = values.into_iter();
        for op in batch.drain(..) {
            let v = values.next().flatten();
            if !matches!(op, Op::Interest { .. }) {
                complete(&shared, op, v).await;
            }
        }
        if !stop.is_empty() {
            let _ = shared.follow.send(Follow::Stop(stop));
        }
    }
}

/// Sends `batch`: its answers, one per operation (none where nothing is
/// waited for), and in `sizes` the bytes each publish sent. A replace or a
/// bury is its own few round trips, after what came before it.
async fn send(
    s: &Shared,
    c: &mut Conn,
    scripts: &mut Scripts,
    batch: &[Op],
    seqs: &mut HashMap<Channel, u64>,
    sizes: &mut Vec<usize>,
) -> redis::RedisResult<Vec<Option<Value>>> {
    scripts.load(c).await?;
    let owners = rewrite::owners(s, c, batch).await?;
    let mut out = vec![None; batch.len()];
    let mut steps = Vec::new();
    let mut piped = Vec::new();
    for (i, op) in batch.iter().enumerate() {
        let v = match op {
            Op::Replace { users, held } => {
                flush(c, &mut steps, &mut piped, &mut out).await?;
                let reset = plaza_proto::bus::reset(stamp(s, seqs, Channel::Bus));
                sizes.push(reset.len());
                let lost = rewrite::replace(s, c, scripts, users, held, &reset).await?;
                Value::Array(
                    lost.into_iter()
                        .map(|n| Value::BulkString(n.into_bytes()))
                        .collect(),
                )
            }
            Op::Bury(_) => {
                flush(c, &mut steps, &mut piped, &mut out).await?;
                lock(&s.link).leaving = Leaving::Asked;
                rewrite::bury(s, c, scripts, s.node).await?;
                Value::Okay
            }
            _ => {
                let (n, answer) = scripts.add(s, &mut steps, op, seqs, &owners);
                sizes.push(n);
                match answer {
                    Answer::Piped => piped.push(i),
                    Answer::Known(v) => out[i] = Some(v),
                    Answer::Nothing => {}
                }
                continue;
            }
        };
        out[i] = Some(v);
    }
    flush(c, &mut steps, &mut piped, &mut out).await?;
    Ok(out)
}

/// Runs the steps gathered so far; their answers go to the operations
/// `piped` names, in order.
async fn flush(
    c: &mut Conn,
    steps: &mut Vec<crate::primary::Step>,
    piped: &mut Vec<usize>,
    out: &mut [Option<Value>],
) -> redis::RedisResult<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let values = c.run(std::mem::take(steps)).await?;
    for (i, v) in piped.drain(..).zip(values) {
        out[i] = Some(v);
    }
    Ok(())
}

/// The rooms a batch starts following (any start in it: subscribed before
/// it) and stops following (the last word on the room is stop: after it).
fn interest(batch: &[Op]) -> (Vec<u32>, Vec<u32>) {
    let mut last = BTreeMap::new();
    let mut start = Vec::new();
    for op in batch {
        if let Op::Interest { room, on } = op {
            last.insert(*room, *on);
            if *on && !start.contains(room) {
                start.push(*room);
            }
        }
    }
    let stop = last.into_iter().filter(|(_, on)| !on).map(|(r, _)| r).collect();
    (start, stop)
}

async fn complete(shared: &Shared, op: Op, v: Option<redis::Value>) {
    match op {
        Op::Publish {
            ack: Some(conn),
            reach,
            ..
        } => {
            if reach == Reach::User {
                shared.counts.lookup();
            }
            // PUBLISH answers how many subscriptions got it: each that must
            // (every live node's for the bus, this one's included), or the
            // client is told 112. To a user's node: -1 when no node has it.
            // Room chat's numbering script: {count, epoch, seq}.
            let (reached, place) = match v {
                Some(Value::Array(a)) => numbered(&a),
                v => (v.and_then(|v| redis::from_redis_value::<i64>(v).ok()), None),
            };
            let must = match reach {
                Reach::Every => lock(&shared.link).peers.len() + 1,
                Reach::Nodes(n) => n,
                Reach::User => 1,
            };
            let result = match reached {
                Some(-1) if reach == Reach::User => ResultCode::USER_NOT_FOUND,
                Some(n) if usize::try_from(n).is_ok_and(|n| n >= must) => ResultCode::OK,
                _ => {
                    if reached.is_some() {
                        tracing::debug!(
                            ?reached,
                            must,
                            "a publish missed a node's subscription; answered 112"
                        );
                    }
                    ResultCode::SERVICE_UNAVAILABLE
                }
            };
            shared.input(Input::Published { conn, result, place }).await
        }
        Op::ListUsers { conn, after: _ } => {
            shared.counts.lookup();
            // {total, name, name, ...}
            let page = v
                .and_then(|v| redis::from_redis_value::<Vec<redis::Value>>(v).ok())
                .and_then(|flat| {
                    let (total, names) = flat.split_first()?;
                    let total = redis::from_redis_value_ref::<u32>(total).ok()?;
                    let names = names
                        .iter()
                        .map(redis::from_redis_value_ref::<String>)
                        .collect::<Result<Vec<_>, _>>()
                        .ok()?;
                    Some((total, names))
                });
            let input = match page {
                Some((total, mut names)) => {
                    let more = names.len() > plaza_proto::USER_LIST_PAGE;
                    names.truncate(plaza_proto::USER_LIST_PAGE);
                    Input::UsersListed {
                        conn,
                        result: ResultCode::OK,
                        total,
                        names,
                        more,
                    }
                }
                None => Input::UsersListed {
                    conn,
                    result: ResultCode::SERVICE_UNAVAILABLE,
                    total: 0,
                    names: Vec::new(),
                    more: false,
                },
            };
            shared.input(input).await
        }
        Op::Publish {
            ack: None,
            reach: Reach::User,
            ..
        } => shared.counts.lookup(),
        Op::Publish { ack: None, .. }
        | Op::Drain(_)
        | Op::Notice { .. }
        | Op::Tick
        | Op::Interest { .. }
        | Op::Hold { .. }
        | Op::Unhold { .. } => {}
        Op::Seat {
            conn,
            name,
            uid,
            room,
            fill: _,
            key: _,
        } => {
            let members = v.map(|v| redis::from_redis_value::<Vec<redis::Value>>(v).unwrap_or_default());
            // {1, log, topic, roles, modes, uid, node|name, ...}, {0} when
            // full, {3} for a wrong key, {4} when not invited.
            let (outcome, read) = match members.as_deref() {
                None | Some([]) => (SeatOutcome::Unavailable, SeatRead::default()),
                Some([first, rest @ ..]) => match (redis::from_redis_value_ref::<i64>(first), rest) {
                    (Ok(1), [log, topic, roles, modes, rest @ ..]) => {
                        let read = SeatRead {
                            log: room_log(log),
                            topic: room_state(topic),
                            modes: room_state(modes),
                            roles: redis::from_redis_value_ref::<Vec<(u64, u8)>>(roles).unwrap_or_default(),
                        };
                        (SeatOutcome::Seated(members_of(rest)), read)
                    }
                    (Ok(0), _) => (SeatOutcome::Full, SeatRead::default()),
                    (Ok(3), _) => (SeatOutcome::BadKey, SeatRead::default()),
                    (Ok(4), _) => (SeatOutcome::NotInvited, SeatRead::default()),
                    (Ok(2), [held]) => match redis::from_redis_value_ref::<String>(held).map(|u| u.parse()) {
                        Ok(Ok(held)) => (SeatOutcome::Held(held), SeatRead::default()),
                        _ => (SeatOutcome::Unavailable, SeatRead::default()),
                    },
                    _ => (SeatOutcome::Unavailable, SeatRead::default()),
                },
            };
            let SeatOutcome::Seated(members) = outcome else {
                lock(&shared.link).seats.remove(&uid);
                return shared.seat_done(conn, name, uid, room, outcome, read).await;
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
                                read: Box::new(read.clone()),
                            },
                        );
                        false
                    }
                }
            };
            if now {
                shared
                    .seat_done(conn, name, uid, room, SeatOutcome::Seated(members), read)
                    .await;
            }
        }
        Op::Replace { .. } => {
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

/// The seat script's members: uid, `node|name` pairs.
fn members_of(flat: &[redis::Value]) -> Vec<SeatHolder> {
    flat.chunks_exact(2)
        .filter_map(|kv| {
            let uid: String = redis::from_redis_value_ref(&kv[0]).ok()?;
            let value: String = redis::from_redis_value_ref(&kv[1]).ok()?;
            let (node, name) = value.split_once('|')?;
            Some((uid.parse().ok()?, node.parse().ok()?, name.to_owned()))
        })
        .collect()
}

/// The numbering script's answer: how many subscriptions got the message,
/// and where it was numbered.
fn numbered(a: &[Value]) -> (Option<i64>, Option<Place>) {
    let [count, epoch, seq] = a else {
        return (None, None);
    };
    let place = match (
        redis::from_redis_value_ref::<u64>(epoch),
        redis::from_redis_value_ref::<u64>(seq),
    ) {
        (Ok(epoch), Ok(seq)) => Place::new(epoch, seq),
        _ => None,
    };
    (redis::from_redis_value_ref::<i64>(count).ok(), place)
}

/// The seat script's topic or modes: "" (none set), or the bus message
/// that set them (one that does not decode as either is left out).
fn room_state(v: &Value) -> Option<(u64, BusMsg)> {
    let m = redis::from_redis_value_ref::<Vec<u8>>(v).ok()?;
    match bus::decode(&m).ok()? {
        Decoded::Msg {
            node,
            msg: msg @ (BusMsg::Topic { .. } | BusMsg::Modes { .. }),
        } => Some((node, msg)),
        _ => None,
    }
}

/// A stream entry as XRANGE answers it: its id, then field-value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// The seat script's log: {} (none asked, or the room is not shared), or
/// {epoch, last seq, entries newest first}. An entry that does not decode
/// as numbered room chat is skipped (the history then says it has a gap).
fn room_log(v: &Value) -> Option<Box<RoomLog>> {
    let Value::Array(a) = v else {
        return None;
    };
    let [epoch, last, entries] = a.as_slice() else {
        return None;
    };
    let epoch = redis::from_redis_value_ref::<u64>(epoch).ok()?;
    let last = redis::from_redis_value_ref::<u64>(last).ok()?;
    let entries: Vec<StreamEntry> = redis::from_redis_value_ref(entries).ok()?;
    let now = super::unix_micros();
    let mut messages: Vec<Logged> = entries
        .into_iter()
        .filter_map(|(_, fields)| {
            let (_, m) = fields.into_iter().next()?;
            let sent = bus::origin(&m)?.sent_us;
            match bus::decode(&m).ok()? {
                Decoded::Msg {
                    msg:
                        BusMsg::RoomChat {
                            from,
                            message,
                            place: Some(p),
                            notice,
                            ..
                        },
                    ..
                } if p.epoch.get() == epoch => Some(Logged {
                    seq: p.seq,
                    age: Duration::from_micros(now.saturating_sub(sent)),
                    from,
                    message,
                    notice,
                }),
                _ => None,
            }
        })
        .collect();
    messages.reverse();
    Some(Box::new(RoomLog {
        epoch,
        last,
        messages,
    }))
}
