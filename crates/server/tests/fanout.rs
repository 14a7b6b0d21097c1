//! Room fan-out as the logic task writes it (plaza-net's `Writes`), on both
//! kinds of runtime the server runs on: one worker (members written a part
//! at a time, taking in the messages that arrive between parts) and
//! several (parts handed to the other workers). Every member hears every
//! message, each sender's in the order sent.

use plaza_proto::Event;
use plaza_test_support::{TestClient, TestServer};

/// More members than one part of a flush, so that a fan-out is written in
/// several.
const LISTENERS: usize = 40;
const SENDERS: usize = 3;
const EACH: usize = 30;

async fn everyone_hears_everything_in_order() {
    let s = TestServer::start().await;
    let mut listeners = Vec::new();
    for i in 0..LISTENERS {
        let mut c = s.user(&format!("listener{i}")).await;
        c.enter(1).await;
        listeners.push(c);
    }
    let mut senders = tokio::task::JoinSet::new();
    for k in 0..SENDERS {
        let mut c = s.user(&format!("sender{k}")).await;
        c.enter(1).await;
        // The senders talk at once: their messages reach the logic task
        // between the parts of each other's fan-outs.
        senders.spawn(async move {
            for i in 0..EACH {
                c.say(&format!("{k} {i}")).await;
            }
            c
        });
    }
    let _senders: Vec<TestClient> = senders.join_all().await;
    for (n, listener) in listeners.iter_mut().enumerate() {
        let mut next = [0; SENDERS];
        while next.iter().sum::<usize>() < SENDERS * EACH {
            if let Event::RoomChat { message, .. } = listener.recv().await {
                let (k, i) = message.split_once(' ').expect("a test message");
                let (k, i): (usize, usize) = (k.parse().unwrap(), i.parse().unwrap());
                assert_eq!(i, next[k], "listener {n}: sender {k}'s messages out of order");
                next[k] += 1;
            }
        }
    }
}

#[tokio::test]
async fn on_one_worker_every_member_hears_every_message_in_order() {
    everyone_hears_everything_in_order().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_workers_every_member_hears_every_message_in_order() {
    everyone_hears_everything_in_order().await;
}
