//! A reader that stops reading while its room is busy, under both policies:
//! disconnect it (the default), or drop the oldest room messages queued for it
//! and tell it how many it missed. The sender is paced by what the readers
//! that read have received (an event), never by time.

use bytes::BytesMut;
use plaza_proto::{Event, Request, ResultCode};
use plaza_server::control::Command;
use plaza_test_support::{TestClient, TestServer, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A member that never reads: its receive window is tiny, so what the server
/// sends it piles up in the server's queue.
async fn stalled_member(s: &TestServer, name: &str) -> TestClient {
    let mut c = TestClient::connect_small_window(s.addr).await;
    c.register(name, "pw").await;
    c.login(name, "pw").await;
    c.enter(1).await;
    c
}

const FLOOD: usize = 20_000;

/// A member that sends `n` room messages, 100 at a time, each hundred only
/// once it has read back what the server answered for the previous one (its
/// own copies and acknowledgements) and `watcher` (if any) has counted them
/// too: readers that read are never more than a hundred messages behind, and
/// only a reader that stopped falls further.
async fn flood(
    s: &TestServer,
    name: &str,
    n: usize,
    mut watcher: Option<mpsc::UnboundedReceiver<usize>>,
) -> tokio::net::tcp::OwnedWriteHalf {
    // Per message, the sender reads its own copy (295 bytes) and its
    // acknowledgement (7 bytes).
    const BACK: usize = 295 + 7;
    let mut c = s.user(name).await;
    c.enter(1).await;
    let (mut rd, mut wr) = c.into_stream().into_split();
    let (read_tx, mut read_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut buf, mut total) = (vec![0u8; 64 * 1024], 0);
        while let Ok(k) = rd.read(&mut buf).await {
            if k == 0 {
                return;
            }
            total += k;
            let _ = read_tx.send(total);
        }
    });
    let mut frames = BytesMut::new();
    for chunk in 0..n / 100 {
        frames.clear();
        for i in 0..100 {
            Request::RoomChat {
                message: format!("{:0>200}", chunk * 100 + i),
            }
            .encode(&mut frames);
        }
        within("a hundred messages to be written", wr.write_all(&frames))
            .await
            .unwrap();
        let done = (chunk + 1) * 100;
        within("the sender to read its hundred back", async {
            while read_rx.recv().await.expect("sender connected") < done * BACK {}
        })
        .await;
        if let Some(w) = &mut watcher {
            within("the watcher to read the hundred", async {
                while w.recv().await.expect("watcher reading") < done {}
            })
            .await;
        }
    }
    // The caller keeps the write half open (dropping it logs the sender out).
    wr
}

async fn status(s: &TestServer, key: &str) -> u64 {
    let reply = s.control().await.cmd(Command::Status).await;
    reply.data[key].as_u64().unwrap()
}

/// Waits until the status field `key` is non-zero. The server counts it when
/// it happens; nothing is sent to the test, so this asks (on one link).
async fn until_counted(s: &TestServer, key: &str) {
    let ctl = s.control().await;
    within(&format!("{key} to be counted"), async {
        while ctl.cmd(Command::Status).await.data[key].as_u64() == Some(0) {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_stalled_reader_is_disconnected_and_the_room_goes_on() {
    // A 256 KiB queue: the watcher, reading all along, stays within it (the
    // kernel's buffers absorb its lag); the stalled reader does not.
    stalled_reader_is_disconnected(|s| s.max_send_queue_kib = Some(256)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stays_over_the_soft_limit_is_disconnected_after_the_grace() {
    // The hard limit (16 MiB) is never reached: the stalled reader's queue
    // stays over the 256 KiB soft limit, and the grace (1 s) ends it.
    stalled_reader_is_disconnected(|s| {
        s.send_queue_soft_kib = Some(256);
        s.send_queue_soft_secs = Some(1);
    })
    .await;
}

async fn stalled_reader_is_disconnected(configure: impl FnOnce(&mut plaza_server::Settings)) {
    let s = TestServer::with(configure).await;
    let mut stalled = stalled_member(&s, "slow").await;
    let mut watcher = s.user("watch").await;
    watcher.enter(1).await;
    // The watcher reads all along, and says how far it got.
    let (progress, watched) = mpsc::unbounded_channel();
    let watching = tokio::spawn(async move {
        let mut got = 0;
        while got < FLOOD {
            if let Event::RoomChat { name, .. } = watcher.recv().await {
                assert_eq!(name, "loud");
                got += 1;
                let _ = progress.send(got);
            }
        }
        got
    });
    let _sender = flood(&s, "loud", FLOOD, Some(watched)).await;
    until_counted(&s, "slow_consumer_disconnects").await;
    // The stalled reader's connection is closed (after whatever the kernel
    // had already taken); the watcher got every message.
    let _ = stalled.until_closed().await;
    assert_eq!(within("the watcher", watching).await.unwrap(), FLOOD);
    assert_eq!(
        status(&s, "slow_consumer_disconnects").await,
        1,
        "only the stalled reader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_drop_oldest_a_stalled_reader_misses_messages_is_told_and_stays() {
    let s = TestServer::with(|s| {
        s.max_send_queue_kib = Some(64);
        s.slow_consumer_policy = Some("drop-oldest".into());
    })
    .await;
    let mut stalled = stalled_member(&s, "slow").await;
    let _sender = flood(&s, "loud", FLOOD, None).await;
    until_counted(&s, "room_messages_dropped").await;
    assert_eq!(status(&s, "slow_consumer_disconnects").await, 0);

    // Reading again: the messages that were kept, the notice of how many
    // were dropped, and the connection is still there.
    let (mut kept, mut missed) = (0u64, 0u64);
    while kept + missed < FLOOD as u64 {
        match stalled.recv().await {
            Event::RoomChat { .. } => kept += 1,
            Event::Missed { count, .. } => missed += u64::from(count),
            Event::RoomNewUser { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(missed > 0, "some were dropped");
    assert_eq!(
        kept + missed,
        FLOOD as u64,
        "every message was delivered or counted"
    );
    assert_eq!(
        stalled.call(Request::Ping { nonce: 9 }).await,
        Event::Pong { nonce: 9 }
    );
    assert_eq!(
        stalled
            .call(Request::RoomChat {
                message: "back".into()
            })
            .await,
        Event::RoomChatResult(ResultCode::OK)
    );
}

/// With room history, the notice says which messages were dropped (their
/// sequence numbers), and the reader fetches them from the room's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_the_notice_names_what_was_dropped_and_history_has_it() {
    let s = TestServer::with(|s| {
        s.max_send_queue_kib = Some(64);
        s.slow_consumer_policy = Some("drop-oldest".into());
        s.history_messages = Some(FLOOD);
        s.history_bytes = Some(16 << 20);
    })
    .await;
    let mut stalled = stalled_member(&s, "slow").await;
    let hello = Request::Hello {
        version: 1,
        features: plaza_proto::features::NOTIFICATIONS | plaza_proto::features::HISTORY,
    };
    assert!(matches!(
        stalled.call(hello).await,
        Event::Hello { features: 3, .. }
    ));
    let _sender = flood(&s, "loud", FLOOD, None).await;
    until_counted(&s, "room_messages_dropped").await;

    let mut seen = vec![false; FLOOD + 1];
    let mut ranges = Vec::new();
    let mut accounted = 0u64;
    while accounted < FLOOD as u64 {
        match stalled.recv().await {
            Event::RoomMessage { seq, .. } => {
                seen[seq as usize] = true;
                accounted += 1;
            }
            Event::Missed { count, seqs } => {
                ranges.push(seqs.expect("a history reader is told the numbers"));
                accounted += u64::from(count);
            }
            Event::RoomNewUser { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Every message not received lies in a range the notices named.
    let missing: Vec<u64> = (1..=FLOOD as u64).filter(|&n| !seen[n as usize]).collect();
    assert!(!missing.is_empty(), "some were dropped");
    for n in &missing {
        assert!(
            ranges.iter().any(|(a, b)| a <= n && n <= b),
            "{n} in no range: {ranges:?}"
        );
    }
    // And history has them.
    let first = missing[0];
    stalled
        .send(Request::History {
            page: plaza_proto::Page::After(first - 1),
            limit: 3,
        })
        .await;
    for n in first..first + 3 {
        match stalled.recv().await {
            Event::RoomMessage { seq, message, .. } => {
                assert_eq!(seq, n);
                assert_eq!(message, format!("{:0>200}", n - 1));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(stalled.recv().await, Event::History(r) if r.count == 3));
}
