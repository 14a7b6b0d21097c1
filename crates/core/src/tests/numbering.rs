//! Cluster mode: rooms the cluster numbers (`numbering.rs`).

use super::*;
use plaza_proto::bus::Place;
use plaza_proto::{Page, Replay, features};

/// The room's epoch in the shared store.
const SHARED: u64 = 1_796_000_000_123_456;
const AMY: u64 = 1 << 48 | 1;
const BOB: u64 = 9 << 48 | 5;

fn at(seq: u64) -> Place {
    Place::new(SHARED, seq).expect("a non-zero epoch")
}

fn msg(seq: u64, name: &str, message: &str) -> Event {
    Event::RoomMessage {
        room: 3,
        seq,
        name: name.into(),
        message: message.into(),
    }
}

fn chat(node: u64, seq: u64, from: &str, message: &str) -> Input {
    Input::Remote {
        node,
        msg: Box::new(BusMsg::RoomChat {
            room: 3,
            from: from.into(),
            message: message.into(),
            place: Some(at(seq)),
            notice: false,
        }),
    }
}

/// amy (conn 1, with history) enters room 3, where bob of node 9 is, and
/// the seat brings the room's log: bob's messages 1 and 2.
fn amy_joins_bob() -> T {
    let mut t = T::new(Config {
        node_tag: 1,
        epoch: 77,
        ..Config::default()
    });
    t.user(1, "amy", false);
    let hello = Request::Hello {
        version: 1,
        features: features::NOTIFICATIONS | features::HISTORY,
    };
    t.req(1, hello);
    t.req(1, Request::RoomEnter { room: 3 });
    assert!(
        matches!(t.rec.effects.last(), Some(Effect::ClaimSeat { fill: true, .. })),
        "a room not followed yet is read with the seat"
    );
    let logged = |seq, message: &str| Logged {
        seq,
        age: Duration::from_secs(1),
        from: "bob".into(),
        message: message.into(),
        notice: false,
    };
    let log = RoomLog {
        epoch: SHARED,
        last: 2,
        messages: vec![logged(1, "one"), logged(2, "two")],
    };
    t.input(Input::RoomLog {
        room: 3,
        log: Box::new(log),
    });
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid: AMY,
        room: 3,
        outcome: SeatOutcome::Seated(vec![(AMY, 1, "amy".into()), (BOB, 9, "bob".into())]),
    });
    t.rec.out.clear();
    t.rec.effects.clear();
    t
}

fn history(t: &mut T, page: Page, limit: u16) -> Vec<Event> {
    t.req(1, Request::History { page, limit })
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

fn position(epoch: u64, first: u64, next: u64, count: u16, gap: bool) -> Event {
    Event::History(Replay {
        result: ResultCode::OK,
        epoch,
        first,
        next,
        count,
        gap,
    })
}

#[test]
fn a_shared_rooms_messages_carry_the_clusters_numbers_and_the_sender_hears_its_copy_first() {
    let mut t = amy_joins_bob();
    // The log read with the seat is the room's history here.
    assert_eq!(
        history(&mut t, Page::Latest, 10),
        vec![
            msg(1, "bob", "one"),
            msg(2, "bob", "two"),
            position(SHARED, 1, 3, 2, false)
        ]
    );

    // amy's message goes to the cluster with what this node knows of the
    // room, and is not delivered here yet.
    assert!(
        t.req(
            1,
            Request::RoomSend {
                id: 7,
                message: "hi".into()
            }
        )
        .is_empty()
    );
    let [
        Effect::Publish {
            msg: sent,
            ack: Some(1),
            ..
        },
    ] = t.rec.effects.as_slice()
    else {
        panic!("expected a publish: {:?}", t.rec.effects)
    };
    assert!(matches!(sent, BusMsg::RoomChat { place: Some(p), .. } if *p == at(2)));
    // Numbered 3; the answer waits for the copy.
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::OK,
        place: Some(at(3)),
    });
    assert_eq!(t.rec.out, vec![]);
    t.input(chat(1, 3, "amy", "hi"));
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        vec![
            (1, msg(3, "amy", "hi")),
            (
                1,
                Event::RoomSendResult {
                    result: ResultCode::OK,
                    seq: 3
                }
            )
        ]
    );
    // A resend of id 7 is answered again, not delivered.
    assert_eq!(
        t.req(
            1,
            Request::RoomSend {
                id: 7,
                message: "hi".into()
            }
        ),
        vec![(
            1,
            Event::RoomSendResult {
                result: ResultCode::OK,
                seq: 3
            }
        )]
    );

    // bob's next, then the same again (already here: skipped).
    t.input(chat(9, 4, "bob", "yo"));
    t.input(chat(9, 4, "bob", "yo"));
    assert_eq!(std::mem::take(&mut t.rec.out), vec![(1, msg(4, "bob", "yo"))]);

    // A copy that comes before the answer: answered at once.
    t.req(
        1,
        Request::RoomChat {
            message: "again".into(),
        },
    );
    t.input(chat(1, 5, "amy", "again"));
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::OK,
        place: Some(at(5)),
    });
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        vec![
            (1, msg(5, "amy", "again")),
            (1, Event::RoomChatResult(ResultCode::OK))
        ]
    );

    // Numbers that jump: some went by unseen, and the history says so.
    t.input(chat(9, 8, "bob", "later"));
    t.rec.out.clear();
    assert_eq!(
        history(&mut t, Page::After(5), 10),
        vec![msg(8, "bob", "later"), position(SHARED, 8, 9, 1, true)]
    );
}

#[test]
fn a_sender_waiting_for_its_copy_is_answered_when_the_rooms_link_is_cut() {
    let mut t = amy_joins_bob();
    t.req(1, Request::RoomChat { message: "hi".into() });
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::OK,
        place: Some(at(3)),
    });
    assert_eq!(t.rec.out, vec![]);
    let members = vec![(AMY, 1, "amy".into()), (BOB, 9, "bob".into())];
    t.input(Input::Snapshot {
        rooms: vec![(3, members)],
        cut: true,
    });
    assert_eq!(t.rec.out, vec![(1, Event::RoomChatResult(ResultCode::OK))]);
    // The next request is served: the session is not stuck.
    t.rec.out.clear();
    assert_eq!(
        history(&mut t, Page::Latest, 0),
        vec![position(SHARED, 4, 4, 0, false)]
    );
}

#[test]
fn a_room_left_to_this_node_is_numbered_here_under_a_new_epoch() {
    let mut t = amy_joins_bob();
    t.input(Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::Leave {
            name: "bob".into(),
            uid: BOB,
            room: 3,
        }),
    });
    t.rec.out.clear();
    let out = t.req(
        1,
        Request::RoomSend {
            id: 1,
            message: "alone".into(),
        },
    );
    assert_eq!(
        out,
        vec![
            (
                1,
                Event::RoomSendResult {
                    result: ResultCode::OK,
                    seq: 1
                }
            ),
            (1, msg(1, "amy", "alone"))
        ]
    );
    let [Event::History(now)] = history(&mut t, Page::Latest, 0)[..] else {
        panic!("expected the room's position")
    };
    assert!(now.epoch != SHARED && now.epoch != 0, "{now:?}");
    // A client that saw the shared numbers is told it is a gap.
    t.req(1, Request::RoomLeave);
    t.req(
        1,
        Request::RoomRejoin {
            room: 3,
            epoch: SHARED,
            after: 2,
        },
    );
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid: AMY,
        room: 3,
        outcome: SeatOutcome::Seated(vec![(AMY, 1, "amy".into())]),
    });
    let out = std::mem::take(&mut t.rec.out);
    let Some((_, Event::Rejoin(r))) = out.last() else {
        panic!("expected the replay's end: {out:?}")
    };
    assert!(r.gap && r.epoch == now.epoch, "{r:?}");
}

#[test]
fn a_message_some_node_missed_is_answered_112_after_its_copy_and_one_redis_refused_is_delivered_here() {
    let mut t = amy_joins_bob();
    // Numbered and published, but a node's link was down.
    t.req(1, Request::RoomChat { message: "hi".into() });
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::SERVICE_UNAVAILABLE,
        place: Some(at(3)),
    });
    assert_eq!(t.rec.out, vec![]);
    t.input(chat(1, 3, "amy", "hi"));
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        vec![
            (1, msg(3, "amy", "hi")),
            (1, Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE))
        ]
    );
    // Redis could not number it: this node's members get it, numbered
    // here under an epoch of this node's.
    t.req(
        1,
        Request::RoomSend {
            id: 5,
            message: "down".into(),
        },
    );
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::SERVICE_UNAVAILABLE,
        place: None,
    });
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        vec![
            (1, msg(1, "amy", "down")),
            (
                1,
                Event::RoomSendResult {
                    result: ResultCode::SERVICE_UNAVAILABLE,
                    seq: 0
                }
            )
        ]
    );
    let [Event::History(here)] = history(&mut t, Page::Latest, 0)[..] else {
        panic!("expected the room's position")
    };
    assert!(here.epoch != SHARED, "{here:?}");
    // Not remembered: a resend is delivered again.
    assert!(
        t.req(
            1,
            Request::RoomSend {
                id: 5,
                message: "down".into()
            }
        )
        .is_empty()
    );
}
