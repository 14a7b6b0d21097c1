//! Request layouts and round trips.

use super::*;

fn login_frame(name: &[u8], password: &[u8]) -> Vec<u8> {
    let mut b = vec![71, 0, 201, 0, 0];
    for field in [name, password] {
        let mut f = field.to_vec();
        f.resize(limits::SEED_ID_FIELD, 0);
        b.extend_from_slice(&f);
    }
    b
}

#[test]
fn bytes_after_the_nul_of_a_fixed_field_are_refused_not_cut() {
    assert_eq!(
        Request::decode(&login_frame(b"amy", b"pw")),
        Ok(Request::Login {
            name: "amy".into(),
            password: "pw".into()
        })
    );
    let e = Request::decode(&login_frame(b"amy", b"pw\0junk")).unwrap_err();
    assert_eq!(e.result(), ResultCode::INVALID_PASSWORD);
    let e = Request::decode(&login_frame(b"amy\0x", b"pw")).unwrap_err();
    assert_eq!(e.result(), ResultCode::INVALID_NAME);
    let mut chat = vec![0, 0, 221, 0, 0];
    chat.extend_from_slice(b"ab\0cd");
    chat[0] = chat.len() as u8;
    assert_eq!(
        Request::decode(&chat).unwrap_err().result(),
        ResultCode::INVALID_MESSAGE
    );
}

fn register(name: &str) -> Result<Request, DecodeError> {
    let mut b = BytesMut::new();
    frame(&mut b, id::REGISTER_REQUEST, |b| {
        put_str8(b, name);
        put_str8(b, "pw");
    });
    Request::decode(&b)
}

#[test]
fn names_with_invisible_or_bidi_characters_are_refused_and_names_are_composed() {
    for bad in [
        "a\u{200B}my",
        "amy\u{2060}",
        "a\u{00AD}my",
        "\u{202E}yma",
        "am y",
        "amy\u{FEFF}",
        "a\u{3164}",
    ] {
        assert_eq!(
            register(bad).unwrap_err().result(),
            ResultCode::INVALID_NAME,
            "{bad:?}"
        );
    }
    // "é" typed as e + a combining accent is the same name as "é".
    let Ok(Request::Register { name, .. }) = register("re\u{0301}my") else {
        panic!("a decomposed name is valid")
    };
    assert_eq!(name, "r\u{00E9}my");
    assert!(valid_name_of("日本語の名前"));
}

fn valid_name_of(name: &str) -> bool {
    register(name).is_ok()
}

#[test]
fn hello_is_encoded_as_protocol_md_shows_it() {
    let mut b = BytesMut::new();
    Request::Hello {
        version: 1,
        features: crate::features::NOTIFICATIONS,
    }
    .encode(&mut b);
    assert_eq!(&b[..], [0x0b, 0, 0x57, 1, 0, 1, 0, 1, 0, 0, 0]);
    let answer = Event::Hello {
        result: ResultCode::OK,
        version: 1,
        features: 1,
        rooms: 1000,
    }
    .to_bytes();
    assert_eq!(
        &answer[..],
        [0x11, 0, 0x58, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0xe8, 3, 0, 0]
    );
}

#[test]
fn room_message_and_rejoin_are_encoded_as_protocol_md_shows_them() {
    let message = Event::RoomMessage {
        room: 3,
        seq: 7,
        name: "amy".into(),
        message: "hi".into(),
    }
    .to_bytes();
    let doc = "19 00 59 01 00 03 00 00 00 07 00 00 00 00 00 00 00 03 61 6d 79 02 00 68 69";
    assert_eq!(hex(&message), doc);
    assert_eq!(crate::room_message_seq(&message), 7);
    let mut rejoin = BytesMut::new();
    Request::RoomRejoin {
        room: 3,
        epoch: 0x2a,
        after: 7,
    }
    .encode(&mut rejoin);
    let doc = "19 00 5c 01 00 03 00 00 00 2a 00 00 00 00 00 00 00 07 00 00 00 00 00 00 00";
    assert_eq!(hex(&rejoin), doc);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn a_history_request_with_a_bad_mode_is_answered_with_its_own_response() {
    for (mode, limit) in [(3u8, 10u16), (255, 10), (4, 0)] {
        let mut b = BytesMut::new();
        frame(&mut b, id::HISTORY_REQUEST, |b| {
            b.put_u8(mode);
            b.put_u64_le(7);
            b.put_u16_le(limit);
        });
        let e = Request::decode(&b).unwrap_err();
        assert_eq!(e.result(), ResultCode::BAD_REQUEST);
        assert_eq!(
            Request::failure(id::HISTORY_REQUEST, e.result()),
            Event::History(Replay::failed(ResultCode::BAD_REQUEST))
        );
    }
    assert_eq!(
        Request::failure(id::ROOM_REJOIN_REQUEST, ResultCode::BAD_REQUEST),
        Event::Rejoin(Replay::failed(ResultCode::BAD_REQUEST))
    );
}

#[test]
fn a_malformed_echo_or_user_list_is_answered_with_its_own_response() {
    assert!(matches!(
        Request::failure(id::ECHO_REQUEST, ResultCode::BAD_REQUEST),
        Event::EchoResult {
            result: ResultCode::BAD_REQUEST,
            ..
        }
    ));
    assert!(matches!(
        Request::failure(id::USER_LIST_REQUEST, ResultCode::BAD_REQUEST),
        Event::UserList {
            result: ResultCode::BAD_REQUEST,
            ..
        }
    ));
    assert!(matches!(
        Request::failure(id::PING_REQUEST, ResultCode::BAD_REQUEST),
        Event::RequestError { .. }
    ));
}

#[test]
fn a_room_role_request_is_encoded_as_protocol_md_shows_it_and_a_bad_role_is_refused() {
    let mut b = bytes::BytesMut::new();
    Request::RoomRole {
        name: "bob".into(),
        role: crate::roles::VOICE,
        on: true,
    }
    .encode(&mut b);
    assert_eq!(hex(&b), "0b 00 69 01 00 03 62 6f 62 02 01");
    // Both roles at once, or an `on` of 2: malformed.
    for (at, bad) in [(b.len() - 2, crate::roles::ALL), (b.len() - 1, 2)] {
        let mut bad_frame = b.clone();
        bad_frame[at] = bad;
        let err = Request::decode(&bad_frame).unwrap_err();
        assert_eq!(err.result(), ResultCode::BAD_REQUEST);
    }
    assert_eq!(
        Request::failure(id::ROOM_ROLE_REQUEST, ResultCode::BAD_REQUEST),
        Event::RoomRoleResult(ResultCode::BAD_REQUEST)
    );
}

#[test]
fn a_room_mode_with_an_unknown_flag_or_a_key_with_a_space_is_refused() {
    let mode = |flags, key: &str| {
        let mut b = bytes::BytesMut::new();
        Request::RoomMode {
            flags,
            limit: 0,
            key: key.into(),
        }
        .encode(&mut b);
        Request::decode(&b).map_err(|e| e.result())
    };
    assert!(mode(crate::room_modes::ALL, "beer").is_ok());
    assert_eq!(mode(16, ""), Err(ResultCode::BAD_REQUEST));
    assert_eq!(mode(0, "two words"), Err(ResultCode::BAD_REQUEST));
    assert!(crate::valid_room_key("") && !crate::valid_room_key(&"k".repeat(24)));
}
