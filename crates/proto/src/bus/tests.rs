//! The bus codec: round trips, stamps, hostile input.

use proptest::prelude::*;

use super::*;

proptest! {
    /// Whatever Redis hands the subscriber, decoding answers a message
    /// or an error, and a message encodes back to what was read (for
    /// every kind that carries one).
    #[test]
    fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(Decoded::Msg { node, msg }) = decode(&bytes) {
            prop_assert_eq!(decode(&encode(node, &msg)), Ok(Decoded::Msg { node, msg }));
        }
    }

    #[test]
    fn a_valid_header_with_any_body_never_panics(kind in 0u8..16, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = header(kind, 7);
        b.extend_from_slice(&body);
        let _ = decode(&b);
    }
}

#[test]
fn a_stamp_is_read_back_and_leaves_the_message_as_it_was() {
    let msg = BusMsg::RoomChat {
        room: 3,
        from: "amy".into(),
        message: "hi".into(),
        place: None,
        notice: false,
    };
    let o = Origin {
        node: 5,
        seq: 42,
        sent_us: 1_800_000_000_000_000,
    };
    let stamped = encode(o, &msg);
    assert_eq!(origin(&stamped), Some(o));
    assert_eq!(
        decode(&stamped),
        Ok(Decoded::Msg {
            node: 5,
            msg: msg.clone()
        })
    );
    assert_eq!(stamped.len(), encode(5, &msg).len() + 16);
    assert_eq!(origin(&encode(5, &msg)), Some(Origin::from(5)));
    // Cut inside the stamp: refused, not misread.
    assert_eq!(decode(&stamped[..20]), Err(BusError::Truncated));
    assert_eq!(origin(&stamped[..20]), None);
    assert_eq!(origin(&stamped[..8]), None);
    assert_eq!(decode(&tick(o)), Ok(Decoded::Tick { node: 5 }));
    for b in [reset(o), tick(o), drain(o, 9), notice(o, Some(2), "hello")] {
        assert_eq!(origin(&b), Some(o));
    }
    assert_eq!(decode(&drain(o, 9)), Ok(Decoded::Drain { node: 5, seconds: 9 }));
}

#[test]
fn every_message_round_trips() {
    let (from, message) = ("amy".to_owned(), "hi".to_owned());
    let msgs = [
        BusMsg::Online {
            name: "amy".into(),
            uid: 1 << 48 | 7,
        },
        BusMsg::Offline { name: "amy".into() },
        BusMsg::Enter {
            name: "amy".into(),
            uid: 9,
            room: 3,
        },
        BusMsg::Leave {
            name: "amy".into(),
            uid: 9,
            room: 3,
        },
        BusMsg::RoomChat {
            room: 3,
            from: from.clone(),
            message: message.clone(),
            place: None,
            notice: false,
        },
        BusMsg::RoomChat {
            room: 3,
            from: from.clone(),
            message: message.clone(),
            place: Place::new(1_796_000_000_123_456, 7),
            notice: false,
        },
        BusMsg::RoomChat {
            room: 3,
            from: from.clone(),
            message: message.clone(),
            place: Place::new(1_796_000_000_123_456, 8),
            notice: true,
        },
        BusMsg::Broadcast {
            from: from.clone(),
            message: message.clone(),
        },
        BusMsg::Whisper {
            to: "bob".into(),
            from: from.clone(),
            message: message.clone(),
            notice: false,
        },
        BusMsg::Whisper {
            to: "bob".into(),
            from,
            message,
            notice: true,
        },
        BusMsg::Kick {
            name: "bob".into(),
            by: "amy".into(),
        },
        BusMsg::Mute {
            name: "bob".into(),
            seconds: 60,
        },
        BusMsg::Topic {
            room: 3,
            at: 1_796_000_000_123_456,
            by: "amy".into(),
            topic: "release at noon".into(),
        },
        BusMsg::Topic {
            room: 3,
            at: 1,
            by: "amy".into(),
            topic: String::new(),
        },
        BusMsg::Role {
            room: 4,
            uid: (3 << 48) | 17,
            roles: crate::roles::OPERATOR,
            by: "amy".into(),
        },
        BusMsg::Role {
            room: 4,
            uid: 1,
            roles: 0,
            by: "root".into(),
        },
        BusMsg::RoomKick {
            room: 5,
            uid: 9,
            name: "bob".into(),
            by: "amy".into(),
            reason: "spam".into(),
        },
        BusMsg::RoomKick {
            room: 5,
            uid: 9,
            name: "bob".into(),
            by: "amy".into(),
            reason: String::new(),
        },
        BusMsg::Modes {
            room: 6,
            at: 1_796_000_000_123_456,
            by: "amy".into(),
            flags: crate::room_modes::TOPIC,
            limit: 5,
            key: "beer".into(),
        },
        BusMsg::Invite {
            room: 6,
            to: "bob".into(),
            by: "amy".into(),
        },
    ];
    for msg in msgs {
        let b = encode(42, &msg);
        assert_eq!(decode(&b), Ok(Decoded::Msg { node: 42, msg }));
    }
    assert_eq!(decode(&reset(5)), Ok(Decoded::Reset { node: 5 }));
    // What the burying node sends (the Lua scripts built the same bytes).
    assert_eq!(&gone(77)[..], b"\x0b\x00\x00\x00\x00\x00\x00\x00\x0077");
    assert_eq!(decode(&gone(77)), Ok(Decoded::Gone { node: 77 }));
    assert_eq!(decode(&drain(5, 30)), Ok(Decoded::Drain { node: 5, seconds: 30 }));
    let n = Decoded::Notice {
        node: 5,
        room: None,
        message: "hi".into(),
    };
    assert_eq!(decode(&notice(5, None, "hi")), Ok(n));
}

#[test]
fn truncated_and_hostile_messages_are_refused_not_trusted() {
    let b = encode(
        1,
        &BusMsg::Online {
            name: "amy".into(),
            uid: 5,
        },
    );
    // Header, uid, and an empty name: all refused.
    for cut in 0..=17 {
        assert!(decode(&b[..cut]).is_err(), "cut at {cut}");
    }
    // A frame whose length field lies.
    let mut bad = header(KIND_BROADCAST, 1);
    bad.put_slice(&[200, 0, 1, 2, 3]);
    assert_eq!(decode(&bad), Err(BusError::Frame));
    // A well-formed frame of the wrong kind.
    let mut wrong = header(KIND_BROADCAST, 1);
    Event::Pong { nonce: 1 }.encode(&mut wrong);
    assert_eq!(decode(&wrong), Err(BusError::Frame));
    assert_eq!(decode(&[99, 0, 0, 0, 0, 0, 0, 0, 0]), Err(BusError::Kind(99)));
    // What the Lua `bury` writes.
    let mut gone = vec![KIND_GONE];
    gone.extend([0; 8]);
    gone.extend(b"17");
    assert_eq!(decode(&gone), Ok(Decoded::Gone { node: 17 }));
    // A kick whose `by` is not a name (once cut to 64 bytes and
    // repaired, which did not survive a second trip).
    let mut kick = header(KIND_KICK, 1);
    kick.put_slice(&[1, b'!']);
    kick.put_slice(&[0x80; 40]);
    assert_eq!(decode(&kick), Err(BusError::Name));
}

#[test]
fn a_place_is_what_the_numbering_script_appends_to_a_chat() {
    let o = Origin {
        node: 5,
        seq: 42,
        sent_us: 1_800_000_000_000_000,
    };
    let sent = chat(o, 3, "amy", "hi", false);
    // What the script publishes: the node's bytes, then "<epoch> <seq>".
    let mut numbered = sent.to_vec();
    numbered.extend_from_slice(b"1796000000123456 12");
    let place = Place::new(1_796_000_000_123_456, 12);
    let expected = BusMsg::RoomChat {
        room: 3,
        from: "amy".into(),
        message: "hi".into(),
        place,
        notice: false,
    };
    assert_eq!(
        decode(&numbered),
        Ok(Decoded::Msg {
            node: 5,
            msg: expected
        })
    );
    assert_eq!(origin(&numbered), Some(o));
    for bad in [
        &b"0 12"[..],
        b"5 0",
        b"5",
        b"5 ",
        b" 5",
        b"5 x",
        b"5 1 2",
        b"99999999999999999999999 1",
    ] {
        let mut b = sent.to_vec();
        b.extend_from_slice(bad);
        assert_eq!(
            decode(&b),
            Err(BusError::Frame),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Room chat, numbered or not, is no larger than a whisper.
    assert_eq!(std::mem::size_of::<Option<Place>>(), 16);
    // A frame longer than what follows is refused, not read past.
    let mut short = sent.to_vec();
    short.truncate(sent.len() - 1);
    assert_eq!(decode(&short), Err(BusError::Frame));
}
