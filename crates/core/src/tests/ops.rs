//! Room roles (`ops.rs`): operators: the first member of an empty room, what
//! they may do, and how long it lasts; in cluster mode, over the bus.

use super::*;
use plaza_proto::roles;

fn op(name: &str, on: bool) -> Request {
    Request::RoomRole {
        name: name.into(),
        role: roles::OPERATOR,
        on,
    }
}

fn kick(name: &str, reason: &str) -> Request {
    Request::RoomKick {
        name: name.into(),
        reason: reason.into(),
    }
}

fn told(room: u32, uid: u64, op: bool, by: &str) -> Event {
    Event::RoomRole {
        room,
        uid,
        roles: u8::from(op) * roles::OPERATOR,
        by: by.into(),
    }
}

/// amy (1), bob (2) and the seed client sam (3) in room 3, in that order.
fn room_of_three() -> T {
    let mut t = T::new(Config {
        admin_secret: Some("s".into()),
        ..Config::default()
    });
    t.user(1, "amy", false);
    t.user(2, "bob", false);
    t.seed_user(3, "sam");
    for c in [1, 2, 3] {
        t.req(c, Request::RoomEnter { room: 3 });
    }
    t.rec.out.clear();
    t
}

#[test]
fn the_first_member_is_the_operator_and_makes_others_operators_whom_the_room_hears_of() {
    let mut t = room_of_three();
    // bob is not an operator: he may not.
    assert_eq!(
        t.req(2, op("bob", true)),
        [(2, Event::RoomRoleResult(ResultCode::NOT_ROOM_OPERATOR))]
    );
    // amy is: the Plaza members hear it, the seed client does not.
    let mut out = t.req(1, op("bob", true));
    out.sort_by_key(|(c, _)| *c);
    assert_eq!(
        out,
        [
            (1, told(3, 2, true, "amy")),
            (1, Event::RoomRoleResult(ResultCode::OK)),
            (2, told(3, 2, true, "amy")),
        ]
    );
    // Once is enough: asking again changes nothing and tells nobody.
    assert_eq!(
        t.req(1, op("BOB", true)),
        [(1, Event::RoomRoleResult(ResultCode::OK))]
    );
    // Now bob may, and an entrant hears of both before the member list.
    assert_eq!(t.req(2, op("amy", false))[0], (1, told(3, 1, false, "bob")));
    t.user(4, "cat", false);
    let out = t.req(4, Request::RoomEnter { room: 3 });
    let to_cat: Vec<&Event> = out.iter().filter(|(c, _)| *c == 4).map(|(_, e)| e).collect();
    assert_eq!(to_cat[0], &op_state(3, 2));
    assert!(matches!(to_cat[1], Event::RoomUserList { .. }), "{to_cat:?}");
}

#[test]
fn an_operator_is_refused_for_members_elsewhere_unknown_users_and_from_the_lobby() {
    let mut t = room_of_three();
    t.user(4, "cat", false);
    assert_eq!(
        t.req(1, op("cat", true)),
        [(1, Event::RoomRoleResult(ResultCode::NOT_IN_YOUR_ROOM))]
    );
    assert_eq!(
        t.req(1, kick("nobody", "")),
        [(1, Event::RoomKickResult(ResultCode::USER_NOT_FOUND))]
    );
    assert_eq!(
        t.req(4, kick("amy", "")),
        [(4, Event::RoomKickResult(ResultCode::USER_IN_LOBBY))]
    );
    // An admin may, in any room it is in, without being its operator.
    t.req(4, Request::Admin { secret: "s".into() });
    t.req(4, Request::RoomEnter { room: 3 });
    t.rec.out.clear();
    let out = t.req(4, op("bob", true));
    assert!(
        out.contains(&(4, Event::RoomRoleResult(ResultCode::OK))),
        "{out:?}"
    );
}

#[test]
fn a_kicked_member_is_in_the_lobby_and_an_operator_that_leaves_is_one_no_longer() {
    let mut t = room_of_three();
    let mut out = t.req(1, kick("bob", "spam"));
    out.sort_by_key(|(c, _)| *c);
    let kicked = Event::RoomKicked {
        room: 3,
        uid: 2,
        name: "bob".into(),
        by: "amy".into(),
        reason: "spam".into(),
    };
    assert_eq!(
        out,
        [
            (1, kicked.clone()),
            (1, Event::RoomLeaveUser { uid: 2 }),
            (1, Event::RoomKickResult(ResultCode::OK)),
            (2, kicked),
            (3, Event::RoomLeaveUser { uid: 2 }),
        ],
        "the room hears why, then the departure"
    );
    assert_eq!(t.hub.room_members(3), ["amy", "sam"]);
    assert_eq!(
        t.req(2, Request::RoomChat { message: "hi".into() }),
        [(2, Event::RoomChatResult(ResultCode::USER_IN_LOBBY))]
    );
    // A seed client has no notification: it is told it left the room.
    let out = t.req(1, kick("sam", ""));
    assert!(
        out.contains(&(3, Event::RoomLeaveResult(ResultCode::OK))),
        "{out:?}"
    );
    // amy leaves and comes back to a room that is not empty: not an
    // operator any more.
    t.req(2, Request::RoomEnter { room: 3 });
    t.req(1, Request::RoomLeave);
    t.req(1, Request::RoomEnter { room: 3 });
    assert_eq!(
        t.req(1, kick("bob", "")),
        [(1, Event::RoomKickResult(ResultCode::NOT_ROOM_OPERATOR))]
    );
    // Empty again: the next first member is its operator.
    t.req(1, Request::RoomLeave);
    t.req(2, Request::RoomLeave);
    let out = t.req(2, Request::RoomEnter { room: 3 });
    assert_eq!(out[0], (2, op_state(3, 2)), "{out:?}");
}

fn cluster() -> Config {
    Config {
        node_tag: 1,
        ..Config::default()
    }
}

#[test]
fn cluster_operators_come_with_the_seat_and_changes_and_kicks_cross_the_bus() {
    let mut t = T::new(cluster());
    t.user(1, "amy", false);
    let amy = 1 << 48 | 1;
    let bob = 2 << 48 | 5;
    t.req(1, Request::RoomEnter { room: 2 });
    // The shared store says bob, on node 9, is the room's operator.
    t.input(Input::RoomRoles {
        room: 2,
        roles: vec![(bob, roles::OPERATOR)],
    });
    let members = vec![(bob, 2, "bob".into()), (amy, 1, "amy".into())];
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid: amy,
        room: 2,
        outcome: SeatOutcome::Seated(members),
    });
    let out = std::mem::take(&mut t.rec.out);
    assert_eq!(out[0], (1, op_state(2, bob)), "{out:?}");
    // bob makes amy an operator there: she hears it, and may kick him.
    t.input(Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::Role {
            room: 2,
            uid: amy,
            roles: roles::OPERATOR,
            by: "bob".into(),
        }),
    });
    assert_eq!(t.rec.out, [(1, told(2, amy, true, "bob"))]);
    t.rec.out.clear();
    t.rec.effects.clear();
    let out = t.req(1, kick("bob", "bye"));
    let kick = BusMsg::RoomKick {
        room: 2,
        uid: bob,
        name: "bob".into(),
        by: "amy".into(),
        reason: "bye".into(),
    };
    assert!(matches!(&out[..], [(1, Event::RoomKicked { .. })]), "{out:?}");
    assert!(
        t.rec
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Publish { msg, ack: Some(1), .. } if *msg == kick)),
        "{:?}",
        t.rec.effects
    );
    // Another node's operator kicks amy: her node puts her out.
    t.rec.effects.clear();
    t.input(Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::RoomKick {
            room: 2,
            uid: amy,
            name: "amy".into(),
            by: "bob".into(),
            reason: String::new(),
        }),
    });
    assert!(t.hub.room_members(2).is_empty());
    assert!(
        t.rec.effects.iter().any(|e| matches!(
            e,
            Effect::Publish { msg: BusMsg::Leave { uid, .. }, .. } if *uid == amy
        )),
        "her seat is given up: {:?}",
        t.rec.effects
    );
}
