//! Room topics (`topic.rs`): set by a member, told to the room and to
//! each entrant before its member list, gone with the room's last member;
//! in cluster mode the newest wins.

use super::*;

/// 2026-12-07 12:00:00 UTC, in Unix microseconds.
const NOON: u64 = 1_796_644_800_000_000;

fn config() -> Config {
    Config {
        admin_secret: Some("s".into()),
        wall_clock: || NOON,
        ..Config::default()
    }
}

fn topic(by: &str, text: &str, at: u64) -> Event {
    Event::RoomTopic {
        room: 3,
        at: at / 1_000_000,
        by: by.into(),
        topic: text.into(),
    }
}

fn set(text: &str) -> Request {
    Request::RoomTopic { topic: text.into() }
}

#[test]
fn a_member_sets_the_topic_the_room_hears_it_and_an_entrant_gets_it_first() {
    let mut t = T::new(config());
    t.user(1, "amy", false);
    t.user(2, "bob", false);
    t.seed_user(3, "sam");
    for c in [1, 2, 3] {
        t.req(c, Request::RoomEnter { room: 3 });
    }
    t.rec.out.clear();
    let mut out = t.req(1, set("release at noon"));
    out.sort_by_key(|(c, _)| *c);
    assert_eq!(
        out,
        [
            (1, topic("amy", "release at noon", NOON)),
            (1, Event::RoomTopicResult(ResultCode::OK)),
            (2, topic("amy", "release at noon", NOON)),
        ],
        "the seed client is not told"
    );

    // An entrant: the topic, the operator, then the member list, then the
    // answer.
    t.user(4, "cat", false);
    let out = t.req(4, Request::RoomEnter { room: 3 });
    let to_cat: Vec<&Event> = out.iter().filter(|(c, _)| *c == 4).map(|(_, e)| e).collect();
    assert_eq!(to_cat[0], &topic("amy", "release at noon", NOON));
    assert_eq!(to_cat[1], &op_state(3, 1));
    assert!(matches!(to_cat[2], Event::RoomUserList { .. }), "{to_cat:?}");
    assert_eq!(to_cat.last(), Some(&&Event::RoomEnterResult(ResultCode::OK)));

    // Cleared: told as an empty topic; an entrant then gets none.
    t.req(2, set(""));
    t.user(5, "dan", false);
    let out = t.req(5, Request::RoomEnter { room: 3 });
    assert!(
        !out.iter().any(|(_, e)| matches!(e, Event::RoomTopic { .. })),
        "{out:?}"
    );
}

#[test]
fn a_topic_needs_a_room_and_a_voice() {
    let mut t = T::new(config());
    t.user(1, "amy", false);
    assert_eq!(
        t.req(1, set("hi")),
        [(1, Event::RoomTopicResult(ResultCode::USER_IN_LOBBY))]
    );
    t.req(1, Request::RoomEnter { room: 3 });
    t.user(9, "root", true);
    t.req(9, Request::Admin { secret: "s".into() });
    t.req(
        9,
        Request::Mute {
            name: "amy".into(),
            seconds: 60,
        },
    );
    t.rec.out.clear();
    assert_eq!(
        t.req(1, set("hi")),
        [(1, Event::RoomTopicResult(ResultCode::MUTED))]
    );
}

#[test]
fn a_topic_lasts_while_the_room_has_members() {
    let mut t = T::new(config());
    t.user(1, "amy", false);
    t.req(1, Request::RoomEnter { room: 3 });
    t.req(1, set("old news"));
    t.req(1, Request::RoomLeave);
    t.user(2, "bob", false);
    let out = t.req(2, Request::RoomEnter { room: 3 });
    assert!(
        !out.iter().any(|(_, e)| matches!(e, Event::RoomTopic { .. })),
        "an empty room forgot its topic: {out:?}"
    );
}

#[test]
fn in_a_cluster_the_newest_topic_wins_and_is_kept_in_the_shared_store() {
    let mut t = T::new(Config {
        node_tag: 1,
        ..config()
    });
    t.user(1, "amy", false);
    t.req(1, Request::RoomEnter { room: 3 });
    let Some(Effect::ClaimSeat { uid, .. }) = t.rec.effects.pop() else {
        panic!("a seat claim")
    };
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid,
        room: 3,
        outcome: SeatOutcome::Seated(vec![(uid, 1, "amy".into())]),
    });
    t.rec.out.clear();
    t.rec.effects.clear();

    // Set here: told here at once, published for the store and the other
    // nodes, answered once the cluster took it.
    let out = t.req(1, set("here"));
    assert_eq!(out, [(1, topic("amy", "here", NOON))]);
    let here = BusMsg::Topic {
        room: 3,
        at: NOON,
        by: "amy".into(),
        topic: "here".into(),
    };
    assert!(
        matches!(t.rec.effects.as_slice(), [Effect::Publish { msg, ack: Some(1), .. }] if *msg == here),
        "{:?}",
        t.rec.effects
    );
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::OK,
        place: None,
    });
    assert_eq!(
        t.rec.out.drain(..).collect::<Vec<_>>(),
        [(1, Event::RoomTopicResult(ResultCode::OK))]
    );

    // Its own copy, and an older one from another node, change nothing; a
    // newer one does.
    let remote = |at: u64, text: &str| Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::Topic {
            room: 3,
            at,
            by: "zed".into(),
            topic: text.into(),
        }),
    };
    t.input(Input::Remote {
        node: 1,
        msg: Box::new(here),
    });
    t.input(remote(NOON - 1, "older"));
    assert_eq!(t.rec.out, []);
    t.input(remote(NOON + 1, "newer"));
    assert_eq!(t.rec.out, [(1, topic("zed", "newer", NOON + 1))]);
}
