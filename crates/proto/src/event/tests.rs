//! Every event's layout, round trips, and decoders that never panic.

use proptest::prelude::*;

use super::*;
use crate::Request;

fn round_trip_event(e: Event) {
    let mut b = BytesMut::new();
    e.encode(&mut b);
    assert_eq!(usize::from(u16::from_le_bytes([b[0], b[1]])), b.len());
    assert_eq!(Event::decode(&b), Ok(e));
}

#[test]
fn seed_layouts_have_the_seed_sizes() {
    let mut b = BytesMut::new();
    Request::Login {
        name: "alice".into(),
        password: "pw".into(),
    }
    .encode(&mut b);
    assert_eq!(b.len(), 71);
    b.clear();
    Event::RoomChat {
        name: "alice".into(),
        message: "hi".into(),
    }
    .encode(&mut b);
    assert_eq!(b.len(), 295);
    b.clear();
    Request::RoomChat { message: "hi".into() }.encode(&mut b);
    assert_eq!(b.len(), 262);
    for (e, len) in [
        (Event::LoginResult(ResultCode::OK), 7),
        (Event::RoomLeaveUser { uid: 5 }, 13),
    ] {
        b.clear();
        e.encode(&mut b);
        assert_eq!(b.len(), len);
    }
}

#[test]
fn every_event_round_trips() {
    for e in [
        Event::LoginResult(ResultCode::INVALID_CREDENTIALS),
        Event::RoomNewUser {
            uid: u64::MAX,
            name: "bob".into(),
        },
        Event::RoomUserList {
            users: vec![(1, "a".into()), (2, "b".into())],
        },
        Event::RoomChat {
            name: "bob".into(),
            message: "héllo".into(),
        },
        Event::EchoResult {
            result: ResultCode::OK,
            payload: vec![0, 1, 2],
        },
        Event::Whisper {
            from: "a".into(),
            message: "b".into(),
        },
        Event::WhisperNotice {
            from: "a".into(),
            message: "b".into(),
        },
        Event::RoomTopic {
            room: 2,
            at: 1_796_000_000,
            by: "amy".into(),
            topic: "héllo".into(),
        },
        Event::RoomTopicResult(ResultCode::MUTED),
        Event::RoomRole {
            room: 3,
            uid: 1 << 50,
            roles: crate::roles::ALL,
            by: "amy".into(),
        },
        Event::RoomRole {
            room: 0,
            uid: 7,
            roles: 0,
            by: String::new(),
        },
        Event::RoomRoleResult(ResultCode::NOT_ROOM_OPERATOR),
        Event::RoomKicked {
            room: 9,
            uid: 12,
            name: "bob".into(),
            by: "amy".into(),
            reason: "héllo".into(),
        },
        Event::RoomKickResult(ResultCode::NOT_IN_YOUR_ROOM),
        Event::RoomMode {
            room: 2,
            flags: crate::room_modes::ALL,
            limit: 10,
            key: "beer".into(),
            by: "amy".into(),
        },
        Event::RoomModeResult(ResultCode::BAD_REQUEST),
        Event::RoomInvite {
            room: 4,
            by: "amy".into(),
        },
        Event::RoomInviteResult(ResultCode::INVITE_ONLY_ROOM),
        Event::RoomNotice {
            room: 7,
            seq: 1 << 40,
            name: "bob".into(),
            message: "héllo".into(),
        },
        Event::UserList {
            result: ResultCode::OK,
            total: 3,
            names: vec!["a".into(), "b".into()],
            more: true,
        },
        Event::Kicked { by: "root".into() },
        Event::Muted { seconds: 60 },
        Event::Pong { nonce: 9 },
        Event::ResumeToken {
            token: "abc".into(),
            ttl_secs: 600,
        },
        Event::Notice {
            message: "bye".into(),
        },
        Event::Missed { count: 7, seqs: None },
        Event::Missed {
            count: 7,
            seqs: Some((12, 20)),
        },
        Event::RoomMessage {
            room: 3,
            seq: u64::MAX,
            name: "amy".into(),
            message: "hi".into(),
        },
        Event::History(Replay::failed(ResultCode::USER_NOT_IN_ROOM)),
        Event::RoomSendResult {
            result: ResultCode::OK,
            seq: 77,
        },
        Event::Rejoin(Replay {
            result: ResultCode::OK,
            epoch: 9,
            first: 4,
            next: 12,
            count: 8,
            gap: true,
        }),
        Event::Hello {
            result: ResultCode::OK,
            version: 1,
            features: 1,
            rooms: 1000,
        },
        Event::RequestError {
            request_id: 12,
            result: ResultCode::UNKNOWN_PACKET,
        },
    ] {
        round_trip_event(e);
    }
}

#[test]
fn internal_and_unknown_ids_are_refused() {
    for pid in [11u16, 12, 30, 1001, 1002, 202, 0, 65535] {
        let mut b = BytesMut::new();
        frame(&mut b, pid, |b| b.put_u16_le(0));
        assert_eq!(Request::decode(&b), Err(DecodeError::UnknownId(pid)));
    }
}

#[test]
fn bad_fields_map_to_result_codes() {
    let mut b = BytesMut::new();
    frame(&mut b, id::LOGIN_REQUEST, |b| b.put_bytes(0, 66));
    assert_eq!(
        Request::decode(&b).unwrap_err().result(),
        ResultCode::INVALID_NAME
    );
    b.clear();
    frame(&mut b, id::LOGIN_REQUEST, |b| b.put_bytes(b'a', 10));
    assert_eq!(Request::decode(&b).unwrap_err().result(), ResultCode::BAD_REQUEST);
    b.clear();
    frame(&mut b, id::ROOM_CHAT_REQUEST, |b| b.put_slice(&[0xFF, 0xFE]));
    assert_eq!(
        Request::decode(&b).unwrap_err().result(),
        ResultCode::INVALID_MESSAGE
    );
    b.clear();
    frame(&mut b, id::WHISPER_REQUEST, |b| {
        put_str8(b, "bad name");
        put_str16(b, b"x");
    });
    assert_eq!(
        Request::decode(&b).unwrap_err().result(),
        ResultCode::INVALID_NAME
    );
}

proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bodies(pid in 0u16..400, body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut b = BytesMut::new();
        frame(&mut b, pid, |b| b.put_slice(&body));
        let _ = Request::decode(&b);
        let _ = Event::decode(&b);
    }

    #[test]
    fn text_requests_round_trip(name in "[a-z0-9_]{1,32}", msg in "\\PC{1,60}", n in any::<u32>()) {
        for r in [
            Request::Login { name: name.clone(), password: name.clone() },
            Request::Register { name: name.clone(), password: name.clone() },
            Request::Whisper { to: name.clone(), message: msg.clone() },
            Request::WhisperNotice { to: name.clone(), message: msg.clone() },
            Request::RoomTopic { topic: msg.chars().take(60).collect() },
            Request::RoomRole { name: name.clone(), role: 1 + (n % 2) as u8, on: n % 3 == 0 },
            Request::RoomKick { name: name.clone(), reason: msg.chars().take(60).collect() },
            Request::RoomKick { name: name.clone(), reason: String::new() },
            Request::RoomMode { flags: (n % 4) as u8, limit: n, key: name.chars().take(23).collect() },
            Request::RoomEnterKey { room: n as i32, key: name.chars().take(23).collect() },
            Request::RoomInvite { name: name.clone() },
            Request::Broadcast { message: msg.clone() },
            Request::Mute { name: name.clone(), seconds: n },
            Request::RoomEnter { room: n as i32 },
            Request::UserList { after: name.clone() },
            Request::Ping { nonce: u64::from(n) },
            Request::History { page: crate::Page::Before(u64::from(n)), limit: 5 },
            Request::History { page: crate::Page::After(u64::MAX - u64::from(n)), limit: u16::MAX },
            Request::History { page: crate::Page::Latest, limit: 1 },
            Request::RoomRejoin { room: n as i32, epoch: u64::from(n) << 20, after: u64::from(n) },
        ] {
            let mut b = BytesMut::new();
            r.encode(&mut b);
            prop_assert_eq!(Request::decode(&b), Ok(r));
        }
        if msg.len() <= limits::ROOM_MESSAGE {
            for r in [
                Request::RoomChat { message: msg.clone() },
                Request::RoomSend { id: u64::from(n) << 7, message: msg.clone() },
                Request::RoomNotice { id: u64::from(n), message: msg.clone() },
            ] {
                let mut b = BytesMut::new();
                r.encode(&mut b);
                prop_assert_eq!(Request::decode(&b), Ok(r));
            }
        }
    }
}

#[test]
fn a_room_notice_is_a_room_message_with_another_id() {
    let mut b = BytesMut::new();
    crate::put_room_notice(&mut b, 3, 9, "amy", "hi");
    let notice = b.freeze();
    assert!(crate::is_room_notice(&notice));
    assert_eq!(crate::room_message_seq(&notice), 9);
    let plain = crate::without_notice(&notice);
    assert_eq!(
        Event::decode(&plain),
        Ok(Event::RoomMessage {
            room: 3,
            seq: 9,
            name: "amy".into(),
            message: "hi".into(),
        })
    );
    assert_eq!(crate::room_message_seq(&plain), 9);
    // Anything else is shared as it is.
    assert_eq!(crate::without_notice(&plain).as_ptr(), plain.as_ptr());
}
