//! The hub's room fan-out without a network: one room of 200 members, one
//! of them chatting 64-byte messages. Each iteration is one message: the
//! request through the chat rules, the event encoded once (as the binary
//! front end does) and its bytes handed to 200 outboxes (a clone each, as
//! the network sink does). Divide by 200 for the cost per delivery.
//!
//! `cargo bench -p plaza-core --bench fanout`

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plaza_core::{AuthOutcome, Config, Conn, Effect, Hub, Input, Recipient, Sink};
use plaza_proto::{Event, Request, Roster};

const MEMBERS: u64 = 200;

/// A sink like the server's: events encoded once per fan-out, shared bytes
/// queued per recipient; the outboxes are emptied as a writer would.
#[derive(Default)]
struct Outboxes {
    queued: Vec<(Conn, Bytes)>,
    replies: BytesMut,
    tickets: Vec<(Conn, u64)>,
}

impl Sink for Outboxes {
    fn send(&mut self, _: Conn, event: &Event) {
        event.encode(&mut self.replies);
    }
    fn send_members(&mut self, _: Conn, members: &Roster) {
        for list in members.lists() {
            list.encode(&mut self.replies);
        }
    }
    fn fanout(&mut self, events: &[Event], to: impl IntoIterator<Item = Recipient>) {
        let mut frame = BytesMut::with_capacity(512);
        for event in events {
            event.encode(&mut frame);
        }
        let frame = frame.freeze();
        for r in to {
            self.queued.push((r.conn, frame.clone()));
        }
    }
    fn fanout_packet(
        &mut self,
        packet: &Bytes,
        _: std::time::Instant,
        to: impl IntoIterator<Item = Recipient>,
    ) {
        for r in to {
            self.queued.push((r.conn, packet.clone()));
        }
    }
    fn send_packets<'a>(
        &mut self,
        conn: Conn,
        packets: impl IntoIterator<Item = (&'a Bytes, std::time::Instant)>,
    ) {
        for (packet, _) in packets {
            self.queued.push((conn, packet.clone()));
        }
    }
    fn disconnect(&mut self, _: Conn) {}
    fn effect(&mut self, effect: Effect) {
        if let Effect::Authenticate { conn, ticket, .. } = effect {
            self.tickets.push((conn, ticket));
        }
    }
}

impl Outboxes {
    /// What the writers do: take what is queued.
    fn write(&mut self) {
        self.queued.clear();
        self.replies.clear();
    }
}

/// A hub with `MEMBERS` users in room 0, who said HELLO with `features`,
/// keeping `history` messages per room.
fn room(features: u32, history: usize) -> (Hub, Outboxes) {
    let config = Config {
        room_capacity: MEMBERS as usize,
        history: plaza_core::HistoryLimits {
            messages: history,
            ..Default::default()
        },
        ..Config::default()
    };
    let mut hub = Hub::new(config);
    let mut sink = Outboxes::default();
    let now = Instant::now();
    for conn in 1..=MEMBERS {
        hub.handle(Input::Connect { conn }, now, &mut sink);
        let hello = Request::Hello {
            version: plaza_proto::VERSION,
            features,
        };
        hub.handle(Input::Request { conn, request: hello }, now, &mut sink);
        let login = Request::Login {
            name: format!("m{conn}"),
            password: "pw".into(),
        };
        hub.handle(Input::Request { conn, request: login }, now, &mut sink);
        for (conn, ticket) in std::mem::take(&mut sink.tickets) {
            let outcome = AuthOutcome::valid(false);
            let done = Input::AuthDone {
                conn,
                ticket,
                outcome,
            };
            hub.handle(done, now, &mut sink);
        }
        let enter = Request::RoomEnter { room: 0 };
        hub.handle(Input::Request { conn, request: enter }, now, &mut sink);
        sink.write();
    }
    (hub, sink)
}

fn fanout(c: &mut Criterion) {
    use plaza_proto::features::{ALL, NOTIFICATIONS};
    let mut group = c.benchmark_group("hub");
    group.throughput(Throughput::Elements(MEMBERS));
    // Room history on (the default: 100 messages kept), off, and on with
    // members that take numbered messages (the kept packet, shared).
    for (label, features, history) in [
        ("room of 200, 64-byte chat", NOTIFICATIONS, 100),
        ("room of 200, 64-byte chat, history off", NOTIFICATIONS, 0),
        ("room of 200, 64-byte chat, members with history", ALL, 100),
    ] {
        let (mut hub, mut sink) = room(features, history);
        let now = Instant::now();
        let message = "x".repeat(64);
        // Every member heard the chat: the set-up is right.
        let chat = Request::RoomChat {
            message: message.clone(),
        };
        hub.handle(
            Input::Request {
                conn: 1,
                request: chat,
            },
            now,
            &mut sink,
        );
        assert_eq!(sink.queued.len(), MEMBERS as usize);
        sink.write();
        group.bench_function(label, |b| {
            b.iter(|| {
                let request = Request::RoomChat {
                    message: message.clone(),
                };
                hub.handle(Input::Request { conn: 1, request }, now, &mut sink);
                black_box(&sink.queued);
                sink.write();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
