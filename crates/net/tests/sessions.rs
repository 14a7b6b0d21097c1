//! plaza-net over real sockets on 127.0.0.1. Every wait is for an event,
//! with a generous timeout; nothing sleeps to synchronise. (Timeouts, on
//! paused time: `timeouts.rs`.)

mod common;

use common::harness::{Ev, Harness, frame, read_frame, read_to_close, within};
use common::{Chat, put_chat_frame};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use plaza_net::{
    Backoff, Client, ClientConfig, ClientHandler, Handle, Handler, Lan, SendError, Server, ServerConfig,
    SessionId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[tokio::test]
async fn frames_split_at_every_byte_boundary_and_coalesced() {
    let mut h = Harness::start(false, |_| {}).await;
    let mut stream: Vec<u8> = Vec::new();
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|i| frame(300 + i, &vec![i as u8; 7 + usize::from(i)]))
        .collect();
    for f in &frames {
        stream.extend_from_slice(f);
    }
    for cut in 1..stream.len() {
        let mut c = TcpStream::connect(h.addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        let id = h.joined().await;
        c.write_all(&stream[..cut]).await.unwrap();
        c.flush().await.unwrap();
        c.write_all(&stream[cut..]).await.unwrap();
        for f in &frames {
            match h.next().await {
                Ev::Recv(from, got) => {
                    assert_eq!(from, id);
                    assert_eq!(&got, f, "cut at {cut}");
                }
                other => panic!("expected a frame, got {other:?}"),
            }
        }
        drop(c);
        assert!(matches!(h.next().await, Ev::Leave(x) if x == id));
    }

    // Many frames in one write arrive as many receive events, in order.
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    let id = h.joined().await;
    let many: Vec<Vec<u8>> = (0..500u16).map(|i| frame(1000 + i, &i.to_le_bytes())).collect();
    c.write_all(&many.concat()).await.unwrap();
    for f in &many {
        match h.next().await {
            Ev::Recv(from, got) => assert_eq!((from, &got), (id, f)),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_lengths_disconnect_the_sender_with_an_error_naming_it() {
    let mut h = Harness::start(false, |c| c.max_frame = 1024).await;
    for (header, what) in [
        (vec![0xFF, 0xFF, 1, 0, 0], "exceeds the limit"),
        (vec![0x01, 0x04, 1, 0, 0], "exceeds the limit"),
        (vec![4, 0, 1, 0, 0], "below the header size"),
        (vec![0, 0, 1, 0, 0], "below the header size"),
        (vec![5, 0, 1, 0, 1], "flags"),
    ] {
        let mut c = TcpStream::connect(h.addr).await.unwrap();
        let id = h.joined().await;
        c.write_all(&header).await.unwrap();
        match h.next().await {
            Ev::Error(from, e) => {
                assert_eq!(from, id);
                assert!(e.contains(what), "{e}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(matches!(h.next().await, Ev::Leave(x) if x == id));
        read_to_close(&mut c).await;
    }
    assert_eq!(h.handle.stats().bad_frames, 5);
}

#[tokio::test]
async fn a_departed_id_never_reaches_the_session_that_reuses_its_slot() {
    let mut h = Harness::start(false, |c| c.max_sessions = 1).await;
    let a = TcpStream::connect(h.addr).await.unwrap();
    let old = h.joined().await;
    drop(a);
    assert!(matches!(h.next().await, Ev::Leave(x) if x == old));

    let mut b = TcpStream::connect(h.addr).await.unwrap();
    let new = h.joined().await;
    assert_eq!(new.slot(), old.slot(), "the only slot is reused");
    assert_ne!(new, old);
    assert_eq!(
        h.handle.send_slice(old, &frame(1, b"stale")),
        Err(SendError::NoSession)
    );
    assert_eq!(h.handle.disconnect(old), Err(SendError::NoSession));
    h.handle.send_slice(new, &frame(2, b"fresh")).unwrap();
    assert_eq!(read_frame(&mut b).await, frame(2, b"fresh"));
    assert_eq!(h.handle.session_count(), 1);
}

#[tokio::test]
async fn connections_over_max_sessions_are_refused_and_counted() {
    let mut h = Harness::start(false, |c| c.max_sessions = 2).await;
    let _a = TcpStream::connect(h.addr).await.unwrap();
    let _b = TcpStream::connect(h.addr).await.unwrap();
    h.joined().await;
    h.joined().await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let r = within("the refusal", c.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "refused connection must be closed: {r:?}"
    );
    assert_eq!(h.handle.stats().refused_full, 1);
    assert_eq!(h.handle.session_count(), 2);
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share() {
    let mut h = Harness::start(false, |c| c.max_sessions_per_ip = Some(2)).await;
    let a = TcpStream::connect(h.addr).await.unwrap();
    let _b = TcpStream::connect(h.addr).await.unwrap();
    let first = h.joined().await;
    h.joined().await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let r = within("the refusal", c.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "third from one address must be closed: {r:?}"
    );
    assert_eq!(h.handle.stats().refused_per_ip, 1);
    // Another address is not affected.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let _d = other.connect(h.addr).await.unwrap();
    h.joined().await;
    // A slot of the full address frees when one of its sessions leaves.
    drop(a);
    assert!(matches!(h.next().await, Ev::Leave(x) if x == first));
    let _e = TcpStream::connect(h.addr).await.unwrap();
    h.joined().await;
    assert_eq!(h.handle.session_count(), 3);
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_while_a_fast_reader_gets_everything() {
    const LIMIT: usize = 64 * 1024;
    let mut h = Harness::start(false, |c| c.max_send_queue = LIMIT).await;
    let slow = TcpStream::connect(h.addr).await.unwrap(); // never reads
    let slow_id = h.joined().await;
    let mut fast = TcpStream::connect(h.addr).await.unwrap();
    let fast_id = h.joined().await;

    const ROUND: usize = 32;
    const ROUNDS: usize = 1000;
    let payload = Bytes::from(frame(7, &[0xAB; 1019])); // 1 KiB, shared by both
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        for _ in 0..ROUNDS * ROUND {
            assert_eq!(read_frame(&mut fast).await.len(), 1024);
            got += 1;
            if got % ROUND == 0 {
                let _ = progress_tx.send(got);
            }
        }
        got
    });
    let mut slow_gone = false;
    for round in 0..ROUNDS {
        for _ in 0..ROUND {
            h.handle.send(fast_id, payload.clone()).unwrap();
            if !slow_gone {
                slow_gone = h.handle.send(slow_id, payload.clone()).is_err();
            }
        }
        // Pace by the fast reader's progress, so only the slow one falls behind.
        assert_eq!(
            within("fast reader progress", progress.recv()).await,
            Some((round + 1) * ROUND)
        );
    }
    assert_eq!(within("fast reader", reader).await.unwrap(), ROUNDS * ROUND);
    assert!(slow_gone, "the slow reader must have been cut off");
    let mut saw_error = false;
    loop {
        match h.next().await {
            Ev::Error(id, e) if id == slow_id => {
                assert!(e.contains("slow consumer"), "{e}");
                saw_error = true;
            }
            Ev::Leave(id) if id == slow_id => break,
            Ev::Leave(id) if id == fast_id => {} // its reader finished and closed
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_error);
    assert_eq!(h.handle.stats().slow_consumers, 1);
    drop(slow);
}

#[tokio::test]
async fn graceful_stop_delivers_every_queued_packet_before_closing() {
    let mut h = Harness::start(false, |_| {}).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let c = TcpStream::connect(h.addr).await.unwrap();
        let id = h.joined().await;
        clients.push((id, c));
    }
    const N: usize = 2000;
    for (id, _) in &clients {
        for i in 0..N {
            h.handle
                .send_slice(*id, &frame(9, &(i as u32).to_le_bytes()))
                .unwrap();
        }
    }
    let stop = {
        let handle = h.handle.clone();
        tokio::spawn(async move { handle.stop(Duration::from_secs(20)).await })
    };
    for (_, c) in &mut clients {
        let all = read_to_close(c).await;
        assert_eq!(all.len(), N * 9);
        for (i, f) in all.chunks(9).enumerate() {
            assert_eq!(f, frame(9, &(i as u32).to_le_bytes()));
        }
    }
    within("stop", stop).await.unwrap();
    assert_eq!(h.handle.session_count(), 0);
    // New connections are no longer accepted.
    assert!(TcpStream::connect(h.addr).await.is_err());
}

/// Polls `cond` until it holds (or the wait times out).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

// The test body runs on its own thread; the server's tasks and a spinner
// that keeps the one worker busy run on the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_busy_server_gathers_writes_and_still_delivers_every_packet_in_order() {
    let mut h = Harness::start(false, |c| c.gather = Some(Duration::from_millis(1))).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    let id = h.joined().await;
    assert!(!h.handle.stats().gathering, "an idle server writes at once");
    let spinning = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let spinner = tokio::spawn({
        let spinning = spinning.clone();
        async move {
            while spinning.load(std::sync::atomic::Ordering::Relaxed) {
                let t = std::time::Instant::now();
                while t.elapsed() < Duration::from_micros(200) {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
        }
    });
    until("the busy worker to turn gathering on", || {
        h.handle.stats().gathering
    })
    .await;
    // Bursts a millisecond apart (a write each, at most one a tick) until
    // the clock has held a write; then every packet must arrive, in order.
    let mut sent = 0u32;
    within("a write held for the clock's tick", async {
        while h.handle.stats().writes_held == 0 {
            assert!(sent < 50_000, "no write held after {sent} packets");
            for _ in 0..10 {
                h.handle.send_slice(id, &frame(9, &sent.to_le_bytes())).unwrap();
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    for i in 0..sent {
        assert_eq!(read_frame(&mut c).await, frame(9, &i.to_le_bytes()));
    }
    spinning.store(false, std::sync::atomic::Ordering::Relaxed);
    spinner.await.unwrap();
    until("gathering to stop once the worker is idle", || {
        !h.handle.stats().gathering
    })
    .await;
    // And writes go out at once again.
    h.handle.send_slice(id, &frame(9, b"last")).unwrap();
    assert_eq!(read_frame(&mut c).await, frame(9, b"last"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_sessions_echo_every_byte() {
    let h = Harness::start(true, |_| {}).await;
    const SESSIONS: usize = 3000;
    const FRAMES: usize = 20;
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..SESSIONS {
        let addr = h.addr;
        tasks.spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut sent = Vec::new();
            for i in 0..FRAMES {
                let len = (s * 31 + i * 17) % 200;
                let body: Vec<u8> = (0..len).map(|k| (s + i + k) as u8).collect();
                sent.extend_from_slice(&frame(100 + i as u16, &body));
            }
            // Send in odd-sized pieces so frames straddle writes.
            for piece in sent.chunks(37) {
                c.write_all(piece).await.unwrap();
            }
            let mut back = vec![0u8; sent.len()];
            c.read_exact(&mut back).await.unwrap();
            assert!(back == sent, "session {s}: echoed bytes differ");
        });
    }
    within("every session", async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await;
    let stats = h.handle.stats();
    assert_eq!(stats.accepted, SESSIONS as u64);
    assert_eq!(stats.frames_in, (SESSIONS * FRAMES) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_leave_happen_exactly_once_per_session_under_churn() {
    let mut h = Harness::start(true, |c| c.max_sessions = 64).await;
    let mut tasks = tokio::task::JoinSet::new();
    const CLIENTS: usize = 400;
    for i in 0..CLIENTS {
        let addr = h.addr;
        tasks.spawn(async move {
            let Ok(mut c) = TcpStream::connect(addr).await else {
                return;
            };
            match i % 4 {
                0 => drop(c),
                1 => {
                    let _ = c.write_all(&frame(1, b"hi")).await;
                }
                2 => {
                    let _ = c.write_all(&[1, 0, 0, 0, 0]).await; // bad length
                    let mut sink = Vec::new();
                    let _ = c.read_to_end(&mut sink).await;
                }
                _ => {
                    // A zero linger makes drop send a reset (it never blocks).
                    let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                    let _ = c.write_all(&frame(2, b"x")).await;
                }
            }
        });
    }
    within("clients", async { while tasks.join_next().await.is_some() {} }).await;
    let mut joins: HashMap<SessionId, usize> = HashMap::new();
    let mut leaves: HashMap<SessionId, usize> = HashMap::new();
    let accepted = loop {
        match h.next().await {
            Ev::Join(id) => *joins.entry(id).or_default() += 1,
            Ev::Leave(id) => {
                assert!(joins.contains_key(&id), "leave before join for {id}");
                *leaves.entry(id).or_default() += 1;
            }
            _ => {}
        }
        let st = h.handle.stats();
        if st.accepted + st.refused_full == CLIENTS as u64 && leaves.len() as u64 == st.accepted {
            break st.accepted;
        }
    };
    assert_eq!(joins.len() as u64, accepted);
    assert!(joins.values().all(|&n| n == 1));
    assert!(leaves.values().all(|&n| n == 1));
    assert_eq!(h.handle.session_count(), 0);
}

#[tokio::test]
async fn refused_by_the_handler_closes_before_any_byte_is_read() {
    struct Refuse;
    impl Handler for Refuse {
        fn on_connection_request(&self, _peer: SocketAddr) -> bool {
            false
        }
        async fn on_recv(&self, _id: SessionId, _frame: &[u8]) {
            unreachable!("refused sessions never receive");
        }
    }
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), Chat))
        .await
        .unwrap();
    let addr = server.local_addr();
    let handle = server.start(Refuse);
    let mut c = TcpStream::connect(addr).await.unwrap();
    let _ = c.write_all(&frame(1, b"hello")).await;
    read_to_close(&mut c).await;
    assert_eq!(handle.stats().refused_by_handler, 1);
    assert_eq!(handle.stats().accepted, 0);
}

struct ClientRec(mpsc::UnboundedSender<String>);

impl ClientHandler for ClientRec {
    async fn on_connect(&self) {
        let _ = self.0.send("connect".into());
    }
    async fn on_disconnect(&self) {
        let _ = self.0.send("disconnect".into());
    }
    async fn on_recv(&self, frame: &[u8]) {
        let _ = self.0.send(String::from_utf8_lossy(&frame[5..]).into_owned());
    }
}

#[tokio::test]
async fn client_round_trips_and_reconnects_after_the_server_drops_it() {
    let mut h = Harness::start(true, |_| {}).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut config = ClientConfig::new(h.addr, Chat);
    config.reconnect = Some(Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(100),
    });
    let client = Client::connect(config, ClientRec(tx)).await.unwrap();
    let mut next = async || within("client event", rx.recv()).await.unwrap();
    assert_eq!(next().await, "connect");
    let first = h.joined().await;
    client.send(Bytes::from(frame(5, b"one"))).unwrap();
    assert_eq!(next().await, "one");

    h.handle.disconnect(first).unwrap();
    assert_eq!(next().await, "disconnect");
    assert_eq!(next().await, "connect");
    assert!(matches!(h.next().await, Ev::Leave(x) if x == first));
    let second = h.joined().await;
    assert_ne!(first, second);
    client.send_with(|b| put_chat_frame(b, 5, b"two")).unwrap();
    assert_eq!(next().await, "two");

    client.disconnect().await;
    assert_eq!(next().await, "disconnect");
    assert!(!client.is_connected());
    assert!(matches!(h.next().await, Ev::Leave(x) if x == second));
}

#[tokio::test]
async fn client_connect_to_a_closed_port_fails_cleanly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (tx, _rx) = mpsc::unbounded_channel();
    let r = Client::connect(ClientConfig::new(addr, Chat), ClientRec(tx)).await;
    assert!(r.is_err());
}

#[tokio::test]
async fn stopping_a_server_that_never_started_returns() {
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), Lan))
        .await
        .unwrap();
    within("stop", server.handle().stop(Duration::from_secs(1))).await;
}

#[test]
fn shared_state_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Handle>();
    check::<Client>();
    let _ = Arc::new(Mutex::new(0)); // keeps imports honest
}
