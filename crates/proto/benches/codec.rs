//! The chat codec: decoding what clients send and encoding what they get,
//! for the packets on the hot path (room chat both ways, and a room's
//! member list).
//!
//! `cargo bench -p plaza-proto --bench codec`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use plaza_proto::{Event, Request, Roster};

fn codec(c: &mut Criterion) {
    let message = "x".repeat(64);
    let mut chat = BytesMut::new();
    Request::RoomChat {
        message: message.clone(),
    }
    .encode(&mut chat);
    let event = Event::RoomChat {
        name: "member0042".into(),
        message,
    };
    let mut roster = Roster::default();
    for i in 0..200u64 {
        roster.push(i, &format!("member{i:04}"));
    }

    let mut group = c.benchmark_group("codec");
    group.bench_function("decode room chat request", |b| {
        b.iter(|| Request::decode(black_box(&chat)).unwrap());
    });
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("encode room chat event", |b| {
        b.iter(|| {
            out.clear();
            black_box(&event).encode(&mut out);
        });
    });
    group.bench_function("encode a member list of 200", |b| {
        b.iter(|| {
            out.clear();
            for list in black_box(&roster).lists() {
                list.encode(&mut out);
            }
        });
    });
    let mut frame = BytesMut::new();
    event.encode(&mut frame);
    group.bench_function("decode room chat event", |b| {
        b.iter(|| Event::decode(black_box(&frame)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
