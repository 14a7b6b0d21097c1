//! The check the hub fuzz target runs (in `fuzz/`, outside the workspace)
//! and the corpus smoke test replays. Not part of the API.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use plaza_proto::bus::Place;
use plaza_proto::{Event, Request, ResultCode, Roster};

use crate::{
    AuthOutcome, BusMsg, Config, Conn, Effect, Hub, Input, Logged, Recipient, RoomLog, SeatOutcome, Sink,
};

#[derive(Default)]
struct Out {
    effects: Vec<Effect>,
}

impl Sink for Out {
    fn send(&mut self, _: Conn, event: &Event) {
        // Everything the hub sends must encode to a decodable frame.
        let b = event.to_bytes();
        assert!(Event::decode(&b).is_ok(), "hub sent an undecodable {event:?}");
    }
    fn send_members(&mut self, _: Conn, members: &Roster) {
        for list in members.lists() {
            let mut b = BytesMut::new();
            list.encode(&mut b);
            assert!(Event::decode(&b).is_ok(), "hub sent an undecodable member list");
        }
    }
    fn fanout(&mut self, events: &[Event], to: impl IntoIterator<Item = Recipient>) {
        for r in to {
            assert!(r.from < events.len(), "a recipient of nothing: {r:?}");
        }
        for event in events {
            self.send(0, event);
        }
    }
    fn fanout_packet(
        &mut self,
        packet: &bytes::Bytes,
        _: std::time::Instant,
        _: impl IntoIterator<Item = Recipient>,
    ) {
        assert!(Event::decode(packet).is_ok(), "hub sent an undecodable packet");
    }
    fn send_packets<'a>(
        &mut self,
        _: Conn,
        packets: impl IntoIterator<Item = (&'a bytes::Bytes, std::time::Instant)>,
    ) {
        for (packet, _) in packets {
            assert!(
                Event::decode(packet).is_ok(),
                "hub replayed an undecodable packet"
            );
        }
    }
    fn disconnect(&mut self, _: Conn) {}
    fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }
}

/// Drives a hub (cluster mode, small limits, presence batched) with
/// sessions 1-4 sending whatever `data` decodes to, store and bus
/// answers in any order, other nodes' messages and time passing (with
/// presence ticks). Never panics; the counts agree.
pub fn hub(data: &[u8]) {
    // Odd first byte: one node; even: cluster mode. Dropped users with
    // history are held on both (the resume window).
    let single = data.first().is_some_and(|b| b & 1 == 1);
    let history = crate::HistoryLimits {
        messages: 3,
        bytes: 1024,
        age: Duration::from_secs(100),
    };
    let config = Config {
        rooms: 4,
        room_capacity: 3,
        max_users: 3,
        max_pending: 2,
        chat_rate: 5,
        login_timeout: Some(Duration::from_secs(30)),
        node_tag: if single { 0 } else { 1 },
        admin_secret: Some("s".into()),
        batch_presence: true,
        history,
        resume_window: Duration::from_secs(60),
        ..Config::default()
    };
    let mut hub = Hub::new(config);
    let mut out = Out::default();
    let mut now = Instant::now();
    let mut rest = data;
    // A session id is never reused (the network's promise: a held seat in
    // a room keeps its session's id): each connect of slot 1-4 is a new one.
    let mut generation = [0u64; 4];
    while let Some((&op, tail)) = rest.split_first() {
        let slot = usize::from(op & 3);
        // A connect (below: an empty argument reads as one too) is always
        // a new session.
        let len = usize::from(op >> 3).min(tail.len());
        if op & 4 != 0 && tail[..len].first().copied().unwrap_or(0) % 8 == 0 {
            generation[slot] += 1;
        }
        let conn = (slot as Conn + 1) | (generation[slot] << 8);
        let (arg, tail) = tail.split_at(len);
        rest = tail;
        let input = match op & 4 == 0 {
            // A frame from a client.
            true => match Request::decode(arg) {
                Ok(request) => Input::Request { conn, request },
                Err(e) => Input::Invalid {
                    conn,
                    request_id: plaza_proto::packet_id(arg),
                    result: e.result(),
                },
            },
            false => match arg.first().copied().unwrap_or(0) % 8 {
                0 => Input::Connect { conn },
                1 => Input::Disconnect { conn },
                2 => match out.effects.pop() {
                    Some(Effect::Authenticate { conn, ticket, .. }) => Input::AuthDone {
                        conn,
                        ticket,
                        outcome: match arg.get(1).copied().unwrap_or(0) % 3 {
                            0 => AuthOutcome::valid(arg.len() > 2),
                            1 => AuthOutcome::Invalid,
                            _ => AuthOutcome::AlreadyLoggedIn,
                        },
                    },
                    Some(Effect::ClaimSeat {
                        conn,
                        name,
                        uid,
                        room,
                        ..
                    }) => Input::SeatDone {
                        conn,
                        name,
                        uid,
                        room,
                        // Now and then the user's own seat held on node 9.
                        outcome: match arg.get(1).copied().unwrap_or(0) % 7 {
                            0 => SeatOutcome::Held(9 << 48 | (uid & 0xFF)),
                            1 => SeatOutcome::BadKey,
                            2 => SeatOutcome::Full,
                            3 => SeatOutcome::NotInvited,
                            _ => SeatOutcome::Seated(vec![(uid, 1, "x".into())]),
                        },
                    },
                    Some(Effect::Publish {
                        ack: Some(conn), msg, ..
                    }) => Input::Published {
                        conn,
                        result: [
                            ResultCode::OK,
                            ResultCode::SERVICE_UNAVAILABLE,
                            ResultCode::USER_NOT_FOUND,
                        ][arg.len() % 3],
                        place: matches!(msg, BusMsg::RoomChat { .. }).then(|| place(arg)),
                    },
                    Some(Effect::ListUsers { conn, after }) => Input::UsersListed {
                        conn,
                        result: ResultCode::OK,
                        total: 1,
                        names: vec![format!("{after}x")],
                        more: arg.len() % 2 == 0,
                    },
                    _ => continue,
                },
                3 => Input::Remote {
                    node: 9,
                    msg: Box::new(BusMsg::Enter {
                        name: format!("r{}", arg.len() % 5),
                        uid: 9 << 48 | arg.len() as u64,
                        room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                    }),
                },
                4 if arg.len() % 2 == 0 => Input::NodeState {
                    node: 9,
                    users: Vec::new(),
                },
                4 => Input::BusGap {
                    node: 9,
                    missed: arg.len() as u64,
                    room: Some(u32::from(arg.get(1).copied().unwrap_or(0) % 6)),
                    members: Vec::new(),
                },
                5 => {
                    now += Duration::from_secs(u64::from(arg.get(1).copied().unwrap_or(1)));
                    hub.upkeep(now, &mut out);
                    hub.flush_presence(&mut out);
                    continue;
                }
                6 => Input::Shutdown,
                _ if arg.len() % 4 == 0 => Input::RoomLog {
                    // A log in epoch 1 or 2 of up to 3 messages.
                    room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                    log: Box::new(log(arg)),
                },
                _ if arg.len() % 2 == 0 => Input::Remote {
                    // A copy of a numbered message, this node's or another's.
                    node: 9,
                    msg: Box::new(BusMsg::RoomChat {
                        room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                        from: "r1".into(),
                        message: "m".into(),
                        place: Some(place(arg)),
                        notice: arg.len() % 3 == 0,
                    }),
                },
                _ if arg.len() % 5 == 0 => Input::Remote {
                    // An operator change from another node, of a member
                    // here or there.
                    node: 9,
                    msg: Box::new(BusMsg::Role {
                        room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                        uid: member(arg),
                        roles: (arg.len() % 4) as u8,
                        by: "r1".into(),
                    }),
                },
                _ if arg.len() % 7 == 0 => Input::Remote {
                    // A room kick from another node.
                    node: 9,
                    msg: Box::new(BusMsg::RoomKick {
                        room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                        uid: member(arg),
                        name: format!("u{}", arg.len() % 3),
                        by: "r1".into(),
                        reason: String::new(),
                    }),
                },
                _ if arg.len() % 11 == 0 => Input::Remote {
                    // Modes from another node, older or newer.
                    node: 9,
                    msg: Box::new(BusMsg::Modes {
                        room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                        at: u64::from(arg.get(2).copied().unwrap_or(0)),
                        by: "r1".into(),
                        flags: arg.get(3).copied().unwrap_or(0) % 4,
                        limit: u32::from(arg.get(3).copied().unwrap_or(0) % 3),
                        key: "k".repeat(arg.len() % 2),
                    }),
                },
                _ if arg.len() % 13 == 0 => Input::RoomRoles {
                    room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                    roles: vec![(member(arg), arg.get(2).copied().unwrap_or(0) % 4)],
                },
                _ if arg.len() % 3 == 0 => Input::Remote {
                    // A topic from another node, older or newer.
                    node: 9,
                    msg: Box::new(BusMsg::Topic {
                        room: u32::from(arg.get(1).copied().unwrap_or(0) % 6),
                        at: u64::from(arg.get(2).copied().unwrap_or(0)),
                        by: "r1".into(),
                        topic: "t".repeat(arg.len() % 4),
                    }),
                },
                _ => Input::Remote {
                    node: 9,
                    msg: Box::new(BusMsg::Offline {
                        name: format!("r{}", arg.len() % 5),
                    }),
                },
            },
        };
        hub.handle(input, now, &mut out);
        assert!(hub.users_online() <= hub.sessions() + hub.remote_users());
        assert!(hub.history_bytes() <= 4 * history.bytes, "history over its bound");
    }
}

/// A member id: a session of this node (one node's or a cluster's) or of
/// node 9.
fn member(arg: &[u8]) -> u64 {
    let slot = 1 + u64::from(arg.get(2).copied().unwrap_or(0) % 4);
    [slot, 1 << 48 | slot, 9 << 48 | slot][usize::from(arg.get(3).copied().unwrap_or(0) % 3)]
}

/// A place in epoch 1 or 2, numbered from what the input says.
fn place(arg: &[u8]) -> Place {
    let epoch = 1 + u64::from(arg.get(2).copied().unwrap_or(0) % 2);
    let seq = 1 + u64::from(arg.get(3).copied().unwrap_or(0) % 8);
    Place::new(epoch, seq).expect("a non-zero epoch")
}

/// A room's log from the shared store, as the input says.
fn log(arg: &[u8]) -> RoomLog {
    let p = place(arg);
    let messages = (p.seq.saturating_sub(2)..=p.seq)
        .filter(|s| *s > 0)
        .map(|seq| Logged {
            seq,
            age: Duration::from_secs(seq),
            from: "r2".into(),
            message: "old".into(),
            notice: seq % 2 == 0,
        })
        .collect();
    RoomLog {
        epoch: p.epoch.get(),
        last: p.seq,
        messages,
    }
}
