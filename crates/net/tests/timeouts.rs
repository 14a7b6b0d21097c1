//! Session time over real sockets on 127.0.0.1, on paused time: idle,
//! write and linger timeouts, and the send queue's soft limit.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::harness::{Ev, Harness, frame, read_frame, read_to_close};
use plaza_net::{Handle, SessionId};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

// The timeout tests run on paused time: the watchdog is on tokio's clock,
// which jumps to its next look whenever the runtime has nothing else to do.
// The timeouts are a server's real ones, and nothing waits for them.

#[tokio::test(start_paused = true)]
async fn idle_sessions_time_out() {
    let mut h = Harness::start(false, |c| c.idle_timeout = Some(Duration::from_secs(20))).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    let id = h.joined().await;
    assert!(matches!(h.next().await, Ev::Error(x, e) if x == id && e.contains("idle")));
    assert!(matches!(h.next().await, Ev::Leave(x) if x == id));
    read_to_close(&mut c).await;
    assert_eq!(h.handle.stats().idle_timeouts, 1);
}

/// A client that never reads, with a small receive window, so the
/// server's writes stall once the kernel buffers between them are full.
async fn connect_non_reader(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Queues 16 MiB for `id`: far more than loopback's socket buffers hold.
fn flood(handle: &Handle, id: SessionId) {
    let chunk = Bytes::from(frame(9, &[0x5A; 60_000]));
    for _ in 0..16 * 1024 * 1024 / chunk.len() {
        handle.send(id, chunk.clone()).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_is_cut_after_the_write_timeout() {
    let mut h = Harness::start(false, |c| {
        c.write_timeout = Duration::from_secs(10);
        c.max_send_queue = 64 * 1024 * 1024;
        c.soft_send_queue = c.max_send_queue;
    })
    .await;
    let c = connect_non_reader(h.addr).await;
    let id = h.joined().await;
    flood(&h.handle, id);
    assert!(matches!(h.next().await, Ev::Error(x, e) if x == id && e.contains("write")));
    assert!(matches!(h.next().await, Ev::Leave(x) if x == id));
    assert_eq!(h.handle.stats().write_timeouts, 1);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn a_disconnect_that_cannot_deliver_ends_when_the_linger_runs_out() {
    let mut h = Harness::start(false, |c| {
        c.linger = Duration::from_secs(10);
        c.write_timeout = Duration::from_secs(3600);
        c.max_send_queue = 64 * 1024 * 1024;
        c.soft_send_queue = c.max_send_queue;
    })
    .await;
    let c = connect_non_reader(h.addr).await;
    let id = h.joined().await;
    flood(&h.handle, id);
    h.handle.disconnect(id).unwrap();
    match h.next().await {
        Ev::Error(x, e) if x == id => assert!(e.contains("linger"), "{e}"),
        other => panic!("expected the linger to run out, got {other:?}"),
    }
    assert!(matches!(h.next().await, Ev::Leave(x) if x == id));
    assert_eq!(h.handle.stats().write_timeouts, 0);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn a_burst_may_pass_the_soft_limit_but_a_reader_that_stays_behind_is_cut_after_the_grace() {
    const GRACE: Duration = Duration::from_secs(10);
    let mut h = Harness::start(false, |c| {
        c.write_timeout = Duration::from_secs(3600);
        c.max_send_queue = 64 * 1024 * 1024;
        c.soft_send_queue = 64 * 1024;
        c.soft_send_grace = GRACE;
    })
    .await;
    // A burst four times the soft limit to a reader: queued, not refused.
    let mut reader = TcpStream::connect(h.addr).await.unwrap();
    let reader_id = h.joined().await;
    let chunk = Bytes::from(frame(9, &[0x5A; 1019]));
    for _ in 0..256 {
        h.handle.send(reader_id, chunk.clone()).unwrap();
    }
    for _ in 0..256 {
        assert_eq!(read_frame(&mut reader).await.len(), 1024);
    }
    // 16 MiB to one that never reads: queued too (under the hard limit),
    // then cut as a slow consumer once it has stayed behind for the grace.
    let start = tokio::time::Instant::now();
    let c = connect_non_reader(h.addr).await;
    let id = h.joined().await;
    flood(&h.handle, id);
    match h.next().await {
        Ev::Error(x, e) if x == id => assert!(e.contains("slow"), "{e}"),
        other => panic!("expected the slow reader to be cut, got {other:?}"),
    }
    assert!(matches!(h.next().await, Ev::Leave(x) if x == id));
    assert!(start.elapsed() >= GRACE, "cut after {:?}", start.elapsed());
    assert_eq!(h.handle.stats().slow_consumers, 1);
    // The reader that kept up is still there.
    h.handle.send(reader_id, chunk.clone()).unwrap();
    assert_eq!(read_frame(&mut reader).await.len(), 1024);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn a_session_that_keeps_talking_outlives_its_idle_timeout() {
    let mut h = Harness::start(true, |c| c.idle_timeout = Some(Duration::from_secs(20))).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    h.joined().await;
    // Two minutes of talk, a frame every 5 s: six idle timeouts pass, and
    // none of them may close the session.
    let start = tokio::time::Instant::now();
    for i in 0..24u32 {
        let f = frame(5, &i.to_le_bytes());
        c.write_all(&f).await.unwrap();
        assert_eq!(read_frame(&mut c).await, f);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!(start.elapsed() >= Duration::from_secs(120));
    assert_eq!(h.handle.stats().idle_timeouts, 0);
    assert_eq!(h.handle.session_count(), 1);
}
