//! A short smoke run of the fuzz targets (`fuzz/`, run with `cargo +nightly
//! fuzz`) as a normal test: every input in `fuzz/corpus/<target>/` (what the
//! bounded fuzz runs kept, crashes included once fixed) goes through the same
//! check the target runs, plus a valid frame of every request and event.

use std::path::Path;

use bytes::BytesMut;
use plaza_proto::{Event, Request, ResultCode};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            p.is_file().then(|| std::fs::read(p).expect("read corpus file"))
        })
        .collect();
    assert!(!inputs.is_empty(), "empty corpus for {target}");
    inputs.sort();
    inputs
}

fn requests() -> Vec<Vec<u8>> {
    let all = [
        Request::Login {
            name: "amy".into(),
            password: "pw".into(),
        },
        Request::RoomEnter { room: 3 },
        Request::RoomLeave,
        Request::RoomChat { message: "hi".into() },
        Request::Whisper {
            to: "bob".into(),
            message: "psst".into(),
        },
        Request::Broadcast {
            message: "all".into(),
        },
        Request::UserList { after: String::new() },
        Request::Logout,
        Request::Kick { name: "bob".into() },
        Request::Mute {
            name: "bob".into(),
            seconds: 5,
        },
        Request::Shutdown,
        Request::Ping { nonce: 1 },
    ];
    all.iter()
        .map(|r| {
            let mut b = BytesMut::new();
            r.encode(&mut b);
            b.to_vec()
        })
        .collect()
}

#[test]
fn request_and_event_decoders_survive_their_corpus() {
    for input in corpus("request_decode").iter().chain(&requests()) {
        plaza_proto::fuzzing::request(input);
    }
    let events = [
        Event::LoginResult(ResultCode::OK),
        Event::RoomUserList {
            users: vec![(1, "amy".into())],
        },
        Event::RoomChat {
            name: "amy".into(),
            message: "hi".into(),
        },
    ];
    for input in corpus("event_decode")
        .into_iter()
        .chain(events.iter().map(|e| e.to_bytes().to_vec()))
    {
        plaza_proto::fuzzing::event(&input);
    }
}

#[test]
fn framing_survives_its_corpus() {
    for input in corpus("framing") {
        plaza_net::fuzzing::framing(&input);
    }
}

#[test]
fn the_hub_survives_its_corpus() {
    for input in corpus("hub") {
        plaza_core::fuzzing::hub(&input);
    }
    // Logins, enters and chats from every session, with answers.
    let mut script = Vec::new();
    for conn in 0u8..4 {
        script.extend([4 | conn | (1 << 3), 0]); // connect
    }
    for frame in requests() {
        for conn in 0u8..4 {
            let len = frame.len().min(31) as u8;
            script.push(conn | (len << 3));
            script.extend(&frame[..usize::from(len)]);
            script.extend([4 | conn | (2 << 3), 2, 0]); // answer a pending check
        }
    }
    plaza_core::fuzzing::hub(&script);
}
