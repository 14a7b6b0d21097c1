//! Users and rooms on other nodes.

use super::*;

fn cluster() -> Config {
    Config {
        node_tag: 1,
        ..Config::default()
    }
}

fn publishes(t: &mut T) -> Vec<(BusMsg, Option<Conn>)> {
    t.rec
        .effects
        .drain(..)
        .filter_map(|e| match e {
            Effect::Publish { msg, ack, .. } => Some((msg, ack)),
            _ => None,
        })
        .collect()
}

/// bob logs in on node 9 and takes a seat in room 2; returns his member id.
fn bob_enters_room_2(t: &mut T) -> u64 {
    let bob = 2 << 48 | 5;
    t.input(Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::Online {
            name: "bob".into(),
            uid: bob,
        }),
    });
    t.input(Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::Enter {
            name: "bob".into(),
            uid: bob,
            room: 2,
        }),
    });
    bob
}

#[test]
fn cluster_users_and_rooms_on_other_nodes_are_listed_and_told() {
    let mut t = T::new(cluster());
    t.user(1, "amy", false);
    let uid = 1 << 48 | 1;
    assert_eq!(
        publishes(&mut t),
        vec![(
            BusMsg::Online {
                name: "amy".into(),
                uid
            },
            None
        )]
    );
    // The seat comes from the shared store.
    assert!(t.req(1, Request::RoomEnter { room: 2 }).is_empty());
    let Some(Effect::ClaimSeat { uid: seat_uid, .. }) = t.rec.effects.pop() else {
        panic!("expected a seat claim")
    };
    assert_eq!(seat_uid, uid);
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid,
        room: 2,
        outcome: SeatOutcome::Seated(vec![(uid, 1, "amy".into())]),
    });
    assert_eq!(t.rec.out.pop(), Some((1, Event::RoomEnterResult(ResultCode::OK))));
    t.rec.out.clear();

    // bob on node 9 logs in and enters the room: amy is told.
    let bob = bob_enters_room_2(&mut t);
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        vec![(
            1,
            Event::RoomNewUser {
                uid: bob,
                name: "bob".into()
            }
        )]
    );
    // The user list comes from the shared store's directory.
    assert!(t.req(1, Request::UserList { after: String::new() }).is_empty());
    let Some(Effect::ListUsers { conn: 1, after }) = t.rec.effects.pop() else {
        panic!("expected a directory read")
    };
    assert_eq!(after, "");
    t.input(Input::UsersListed {
        conn: 1,
        result: ResultCode::OK,
        total: 2,
        names: vec!["amy".into(), "bob".into()],
        more: false,
    });
    assert_eq!(
        t.rec.out.pop(),
        Some((
            1,
            Event::UserList {
                result: ResultCode::OK,
                total: 2,
                names: vec!["amy".into(), "bob".into()],
                more: false
            }
        ))
    );

    // amy's chat goes to the bus and is acknowledged only when published;
    // it is delivered here when it comes back (`tests/numbering.rs`).
    let out = t.req(1, Request::RoomChat { message: "hi".into() });
    assert!(out.is_empty(), "{out:?}");
    let published = publishes(&mut t);
    assert!(matches!(
        published.as_slice(),
        [(BusMsg::RoomChat { room: 2, .. }, Some(1))]
    ));
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::SERVICE_UNAVAILABLE,
        place: None,
    });
    // Not numbered (Redis is down): this node's members get it, numbered
    // here, and amy is told it did not reach everyone.
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        vec![
            (
                1,
                Event::RoomChat {
                    name: "amy".into(),
                    message: "hi".into()
                }
            ),
            (1, Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE))
        ]
    );

    // Node 9 is gone: bob leaves amy's room and list.
    t.input(Input::NodeState {
        node: 9,
        users: Vec::new(),
    });
    assert_eq!(t.rec.out, vec![(1, Event::RoomLeaveUser { uid: bob })]);
    assert_eq!(t.hub.remote_users(), 0);
    assert_eq!(t.hub.users_online(), 1);
}

#[test]
fn cluster_a_seat_whose_session_left_is_given_back() {
    let mut t = T::new(cluster());
    t.user(1, "amy", false);
    t.req(1, Request::RoomEnter { room: 2 });
    t.input(Input::Disconnect { conn: 1 });
    t.rec.effects.clear();
    let uid = 1 << 48 | 1;
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid,
        room: 2,
        outcome: SeatOutcome::Seated(vec![(uid, 1, "amy".into())]),
    });
    assert_eq!(
        publishes(&mut t),
        vec![(
            BusMsg::Leave {
                name: "amy".into(),
                uid,
                room: 2
            },
            None
        )]
    );
}

fn interest(t: &mut T) -> Vec<(u32, bool)> {
    t.rec
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Interest { room, on } => Some((*room, *on)),
            _ => None,
        })
        .collect()
}

/// A node follows a room from its first seat claim to its last member's
/// leaving; the replica keeps remote members of followed rooms only, and a
/// seat's member list (the store's, at the seat) replaces what it had.
#[test]
fn cluster_rooms_are_followed_while_a_member_is_here() {
    let mut t = T::new(cluster());
    t.user(1, "amy", false);
    // bob's seat in a room this node does not follow is not kept, nor bob.
    let bob = bob_enters_room_2(&mut t);
    assert_eq!(t.hub.remote_user("bob"), None);

    // amy's claim: follow first, then claim.
    t.rec.effects.clear();
    t.req(1, Request::RoomEnter { room: 2 });
    assert!(matches!(
        t.rec.effects.as_slice(),
        [
            Effect::Interest { room: 2, on: true },
            Effect::ClaimSeat { room: 2, .. }
        ]
    ));
    let amy = 1 << 48 | 1;
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid: amy,
        room: 2,
        outcome: SeatOutcome::Seated(vec![(amy, 1, "amy".into()), (bob, 9, "bob".into())]),
    });
    assert_eq!(t.hub.remote_user("bob"), Some((9, Some(2))));
    assert!(t.rec.out.contains(&(
        1,
        Event::RoomUserList {
            users: vec![(amy, "amy".into()), (bob, "bob".into())]
        }
    )));
    // Chat must reach two nodes' subscriptions: this one and node 9's.
    t.rec.effects.clear();
    t.req(1, Request::RoomChat { message: "hi".into() });
    assert!(matches!(
        t.rec.effects.as_slice(),
        [Effect::Publish {
            reach: Reach::Nodes(2),
            ..
        }]
    ));
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::OK,
        place: None,
    });
    // A whisper goes to bob's node alone.
    t.rec.effects.clear();
    t.req(
        1,
        Request::Whisper {
            to: "bob".into(),
            message: "psst".into(),
        },
    );
    assert!(matches!(
        t.rec.effects.as_slice(),
        [Effect::Publish {
            msg: BusMsg::Whisper { .. },
            reach: Reach::User,
            ..
        }]
    ));
    t.input(Input::Published {
        conn: 1,
        result: ResultCode::OK,
        place: None,
    });

    // amy leaves: the room is no longer followed, and bob's seat forgotten.
    t.rec.effects.clear();
    t.req(1, Request::RoomLeave);
    assert_eq!(interest(&mut t), vec![(2, false)]);
    assert_eq!(t.hub.remote_user("bob"), None);

    // A full room: followed for the claim, then not.
    t.rec.effects.clear();
    t.req(1, Request::RoomEnter { room: 3 });
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid: amy,
        room: 3,
        outcome: SeatOutcome::Full,
    });
    assert_eq!(interest(&mut t), vec![(3, true), (3, false)]);
}

/// After the bus link was cut, a followed room's history is marked with a
/// gap; where its members changed unseen, its members are told (341 with
/// count 0: how many went by is unknown).
#[test]
fn cluster_a_cut_marks_followed_rooms_and_reports_unseen_changes() {
    let mut t = T::new(cluster());
    t.user(1, "amy", false);
    let (amy, bob, cat) = (1 << 48 | 1, 9 << 48 | 5, 9 << 48 | 6);
    t.req(1, Request::RoomEnter { room: 2 });
    t.input(Input::SeatDone {
        conn: 1,
        name: "amy".into(),
        uid: amy,
        room: 2,
        outcome: SeatOutcome::Seated(vec![(amy, 1, "amy".into()), (bob, 9, "bob".into())]),
    });
    t.rec.out.clear();
    let members = |who: Vec<(u64, &str)>| {
        who.into_iter()
            .map(|(uid, name)| (uid, uid >> 48, name.to_owned()))
            .collect::<Vec<_>>()
    };
    // A cut with nothing changed: no notice.
    t.input(Input::Snapshot {
        rooms: vec![(2, members(vec![(amy, "amy"), (bob, "bob")]))],
        cut: true,
    });
    assert_eq!(t.rec.out, vec![]);
    // bob left and cat came in while the link was down.
    t.input(Input::Snapshot {
        rooms: vec![(2, members(vec![(amy, "amy"), (cat, "cat")]))],
        cut: true,
    });
    let out = std::mem::take(&mut t.rec.out);
    assert!(
        out.contains(&(1, Event::Missed { count: 0, seqs: None })),
        "{out:?}"
    );
    assert!(out.contains(&(1, Event::RoomLeaveUser { uid: bob })), "{out:?}");
    assert_eq!(t.hub.remote_user("cat"), Some((9, Some(2))));
}
