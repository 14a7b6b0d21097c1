//! `Writes`: packets queued inside `Writes::defer` are written by the
//! caller's `flush`, not by each session's writer task; what a socket does
//! not take is the writer's. Real sockets on 127.0.0.1; the tests run on
//! one thread, so no writer task runs between a `flush` and the next await.

mod common;

use bytes::Bytes;
use common::harness::{Harness, frame, read_frame, within};
use plaza_net::{SessionId, Writes};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// `n` clients, each joined and past its first write (a hello written by
/// its writer, so the socket is known to be writable).
async fn members(h: &mut Harness, n: usize) -> Vec<(SessionId, TcpStream)> {
    let mut all = Vec::new();
    for _ in 0..n {
        let mut c = TcpStream::connect(h.addr).await.unwrap();
        let id = h.joined().await;
        h.handle.send_slice(id, &frame(1, b"hello")).unwrap();
        assert_eq!(read_frame(&mut c).await, frame(1, b"hello"));
        all.push((id, c));
    }
    all
}

#[tokio::test]
async fn a_deferred_fan_out_is_written_by_the_flush_one_write_per_member() {
    let mut h = Harness::start(false, |_| {}).await;
    let mut clients = members(&mut h, 20).await;
    let shared = Bytes::from(frame(2, b"to everyone"));
    let before = h.handle.stats().writes;
    let mut writes = Writes::new();
    writes.defer(|| {
        for (id, _) in &clients {
            h.handle.send(*id, shared.clone()).unwrap();
            h.handle.send_slice(*id, &frame(3, b"just you")).unwrap();
            h.handle.send(*id, shared.clone()).unwrap();
        }
    });
    // Each member noted once, however many packets it was sent.
    assert_eq!(writes.len(), 20);
    assert_eq!(h.handle.stats().writes, before, "no writer wrote");
    writes.flush();
    assert!(writes.is_empty());
    assert_eq!(
        h.handle.stats().writes,
        before + 20,
        "the flush wrote each member's three packets in one write"
    );
    for (_, c) in &mut clients {
        assert_eq!(read_frame(c).await, frame(2, b"to everyone"));
        assert_eq!(read_frame(c).await, frame(3, b"just you"));
        assert_eq!(read_frame(c).await, frame(2, b"to everyone"));
    }
    assert_eq!(h.handle.pending_bytes_total(), 0);
}

#[tokio::test]
async fn what_a_full_socket_does_not_take_the_writer_sends_in_order() {
    let mut h = Harness::start(false, |c| {
        c.max_send_queue = 64 << 20;
        c.soft_send_queue = 64 << 20;
    })
    .await;
    let (id, mut c) = members(&mut h, 1).await.pop().unwrap();
    // Far more than a loopback socket holds, in frames numbered in order.
    let body = vec![7u8; 60_000];
    let frames: Vec<Bytes> = (0..200u16).map(|i| Bytes::from(frame(i, &body))).collect();
    let mut writes = Writes::new();
    writes.defer(|| {
        for f in &frames[..100] {
            h.handle.send(id, f.clone()).unwrap();
        }
    });
    writes.flush();
    assert!(
        h.handle.pending_bytes(id).unwrap() > 0,
        "the socket took only part of it"
    );
    // Queued while the writer holds the rest: it goes after, never between.
    writes.defer(|| {
        for f in &frames[100..] {
            h.handle.send(id, f.clone()).unwrap();
        }
    });
    writes.flush();
    for (i, f) in frames.iter().enumerate() {
        let got = read_frame(&mut c).await;
        assert!(got == f[..], "frame {i} out of order or damaged");
    }
    within("the queue to empty", async {
        while h.handle.pending_bytes(id) != Some(0) {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn writes_dropped_unflushed_wake_the_writers() {
    let mut h = Harness::start(false, |_| {}).await;
    let mut clients = members(&mut h, 3).await;
    {
        let mut writes = Writes::new();
        writes.defer(|| {
            for (id, _) in &clients {
                h.handle.send_slice(*id, &frame(4, b"late")).unwrap();
            }
        });
    }
    for (_, c) in &mut clients {
        assert_eq!(read_frame(c).await, frame(4, b"late"));
    }
}

#[tokio::test]
async fn outside_defer_and_for_a_closing_session_the_writer_writes() {
    let mut h = Harness::start(false, |_| {}).await;
    let mut clients = members(&mut h, 2).await;
    let (quitting, _) = &clients[1];
    let quitting = *quitting;
    let mut writes = Writes::new();
    writes.defer(|| {
        for (id, _) in &clients {
            h.handle.send_slice(*id, &frame(5, b"bye")).unwrap();
        }
    });
    // Disconnected before the flush: its writer writes and closes.
    h.handle.disconnect(quitting).unwrap();
    writes.flush();
    // Sent outside `defer`: the writer's, as always.
    h.handle.send_slice(clients[0].0, &frame(6, b"more")).unwrap();
    assert_eq!(read_frame(&mut clients[0].1).await, frame(5, b"bye"));
    assert_eq!(read_frame(&mut clients[0].1).await, frame(6, b"more"));
    let c = &mut clients[1].1;
    assert_eq!(read_frame(c).await, frame(5, b"bye"));
    let mut rest = Vec::new();
    within("the close", c.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
}
