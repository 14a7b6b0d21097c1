//! Room modes (`modes.rs`): set by an operator, told to the room and to
//! each entrant before its member list, enforced (topic, moderated, limit,
//! key), gone with the room's last member.

use super::*;
use plaza_proto::room_modes::{MODERATED, TOPIC};

fn modes(flags: u8, limit: u32, key: &str) -> Request {
    Request::RoomMode {
        flags,
        limit,
        key: key.into(),
    }
}

fn told(flags: u8, limit: u32, key: &str, by: &str) -> Event {
    Event::RoomMode {
        room: 3,
        flags,
        limit,
        key: key.into(),
        by: by.into(),
    }
}

fn enter_with(key: &str) -> Request {
    Request::RoomEnterKey {
        room: 3,
        key: key.into(),
    }
}

/// amy (1, the operator) and bob (2) in room 3.
fn room_of_two() -> T {
    let mut t = T::new(Config::default());
    t.user(1, "amy", false);
    t.user(2, "bob", false);
    for c in [1, 2] {
        t.req(c, Request::RoomEnter { room: 3 });
    }
    t.rec.out.clear();
    t
}

#[test]
fn an_operator_sets_the_modes_the_room_hears_them_and_an_entrant_gets_them_first() {
    let mut t = room_of_two();
    assert_eq!(
        t.req(2, modes(TOPIC, 0, "")),
        [(2, Event::RoomModeResult(ResultCode::NOT_ROOM_OPERATOR))]
    );
    let mut out = t.req(1, modes(TOPIC | MODERATED, 5, ""));
    out.sort_by_key(|(c, _)| *c);
    assert_eq!(
        out,
        [
            (1, told(TOPIC | MODERATED, 5, "", "amy")),
            (1, Event::RoomModeResult(ResultCode::OK)),
            (2, told(TOPIC | MODERATED, 5, "", "amy")),
        ]
    );
    // The topic and the room are the operators' now.
    assert_eq!(
        t.req(2, Request::RoomTopic { topic: "mine".into() }),
        [(2, Event::RoomTopicResult(ResultCode::NOT_ROOM_OPERATOR))]
    );
    assert_eq!(
        t.req(2, Request::RoomChat { message: "hi".into() }),
        [(2, Event::RoomChatResult(ResultCode::MODERATED))]
    );
    let heard = Event::RoomChat {
        name: "amy".into(),
        message: "order".into(),
    };
    let out = t.req(
        1,
        Request::RoomChat {
            message: "order".into(),
        },
    );
    assert!(out.contains(&(2, heard)), "{out:?}");
    // A voiced member speaks too, but still may not set the topic.
    let voice = Request::RoomRole {
        name: "bob".into(),
        role: plaza_proto::roles::VOICE,
        on: true,
    };
    let voiced = Event::RoomRole {
        room: 3,
        uid: 2,
        roles: plaza_proto::roles::VOICE,
        by: "amy".into(),
    };
    assert_eq!(t.req(1, voice)[0], (1, voiced));
    let said = t.req(2, Request::RoomChat { message: "hi".into() });
    assert!(
        said.contains(&(2, Event::RoomChatResult(ResultCode::OK))),
        "{said:?}"
    );
    assert_eq!(
        t.req(2, Request::RoomTopic { topic: "mine".into() }),
        [(2, Event::RoomTopicResult(ResultCode::NOT_ROOM_OPERATOR))]
    );
    // An entrant: the modes, then the roles, then the member list.
    t.user(4, "cat", false);
    let out = t.req(4, Request::RoomEnter { room: 3 });
    let to_cat: Vec<&Event> = out.iter().filter(|(c, _)| *c == 4).map(|(_, e)| e).collect();
    assert_eq!(to_cat[0], &told(TOPIC | MODERATED, 5, "", ""));
    assert_eq!(to_cat[1], &op_state(3, 1));
    assert!(matches!(
        to_cat[2],
        Event::RoomRole {
            uid: 2,
            roles: plaza_proto::roles::VOICE,
            ..
        }
    ));
    assert!(matches!(to_cat[3], Event::RoomUserList { .. }), "{to_cat:?}");
}

#[test]
fn a_limit_and_a_key_keep_entrants_out_until_lifted_and_go_with_the_last_member() {
    let mut t = room_of_two();
    t.req(1, modes(0, 2, "beer"));
    t.user(4, "cat", false);
    assert_eq!(
        t.req(4, enter_with("beer")),
        [(4, Event::RoomEnterResult(ResultCode::ROOM_FULL))],
        "two members: the limit"
    );
    t.req(1, modes(0, 3, "beer"));
    for wrong in [Request::RoomEnter { room: 3 }, enter_with("bees")] {
        assert_eq!(
            t.req(4, wrong),
            [(4, Event::RoomEnterResult(ResultCode::BAD_ROOM_KEY))]
        );
    }
    let out = t.req(4, enter_with("beer"));
    assert_eq!(out.last(), Some(&(4, Event::RoomEnterResult(ResultCode::OK))));
    // Everyone leaves: the next first member finds no modes.
    for c in [1, 2, 4] {
        t.req(c, Request::RoomLeave);
    }
    let out = t.req(2, Request::RoomEnter { room: 3 });
    assert!(
        !out.iter().any(|(_, e)| matches!(e, Event::RoomMode { .. })),
        "{out:?}"
    );
    assert_eq!(out.last(), Some(&(2, Event::RoomEnterResult(ResultCode::OK))));
}

#[test]
fn an_invite_only_room_lets_in_whom_an_operator_invited_once() {
    use plaza_proto::room_modes::INVITE_ONLY;
    let mut t = room_of_two();
    t.req(1, modes(INVITE_ONLY, 0, ""));
    t.user(4, "cat", false);
    t.user(5, "dan", false);
    let invite = |name: &str| Request::RoomInvite { name: name.into() };
    assert_eq!(
        t.req(2, invite("cat")),
        [(2, Event::RoomInviteResult(ResultCode::NOT_ROOM_OPERATOR))]
    );
    assert_eq!(
        t.req(1, invite("bob")),
        [(1, Event::RoomInviteResult(ResultCode::ALREADY_IN_ROOM))]
    );
    assert_eq!(
        t.req(1, invite("ghost")),
        [(1, Event::RoomInviteResult(ResultCode::USER_NOT_FOUND))]
    );
    let told = Event::RoomInvite {
        room: 3,
        by: "amy".into(),
    };
    assert_eq!(
        t.req(1, invite("cat")),
        [(4, told), (1, Event::RoomInviteResult(ResultCode::OK))]
    );
    let enter = Request::RoomEnter { room: 3 };
    assert_eq!(
        t.req(5, enter.clone()),
        [(5, Event::RoomEnterResult(ResultCode::INVITE_ONLY_ROOM))]
    );
    assert_eq!(
        t.req(4, enter.clone()).last(),
        Some(&(4, Event::RoomEnterResult(ResultCode::OK)))
    );
    // Once: out again, it needs another invitation.
    t.req(4, Request::RoomLeave);
    assert_eq!(
        t.req(4, enter),
        [(4, Event::RoomEnterResult(ResultCode::INVITE_ONLY_ROOM))]
    );
}
