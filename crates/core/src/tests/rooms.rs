//! Entering and leaving rooms, member lists, batched presence.

use super::*;

#[test]
fn room_enter_notifies_members_then_lists_then_responds() {
    let mut t = T::new(Config::default());
    t.user(1, "amy", false);
    t.user(2, "bob", false);
    assert_eq!(
        t.req(1, Request::RoomEnter { room: 3 }),
        vec![
            // The first member of an empty room is its operator.
            (1, op_state(3, 1)),
            (
                1,
                Event::RoomUserList {
                    users: vec![(1, "amy".into())]
                }
            ),
            (1, Event::RoomEnterResult(ResultCode::OK)),
        ]
    );
    assert_eq!(
        t.req(2, Request::RoomEnter { room: 3 }),
        vec![
            (
                1,
                Event::RoomNewUser {
                    uid: 2,
                    name: "bob".into()
                }
            ),
            (2, op_state(3, 1)),
            (
                2,
                Event::RoomUserList {
                    users: vec![(1, "amy".into()), (2, "bob".into())]
                }
            ),
            (2, Event::RoomEnterResult(ResultCode::OK)),
        ]
    );
    assert_eq!(
        t.req(2, Request::RoomEnter { room: 4 }),
        vec![(2, Event::RoomEnterResult(ResultCode::NOT_IN_LOBBY))]
    );
    assert_eq!(
        t.req(2, Request::RoomChat { message: "hi".into() }),
        vec![
            (2, Event::RoomChatResult(ResultCode::OK)),
            (
                1,
                Event::RoomChat {
                    name: "bob".into(),
                    message: "hi".into()
                }
            ),
            (
                2,
                Event::RoomChat {
                    name: "bob".into(),
                    message: "hi".into()
                }
            ),
        ]
    );
    assert_eq!(
        t.req(2, Request::RoomLeave),
        vec![
            (1, Event::RoomLeaveUser { uid: 2 }),
            (2, Event::RoomLeaveResult(ResultCode::OK)),
        ]
    );
    assert_eq!(
        t.req(2, Request::RoomLeave),
        vec![(2, Event::RoomLeaveResult(ResultCode::USER_NOT_IN_ROOM))]
    );
    assert_eq!(
        t.req(2, Request::RoomChat { message: "x".into() }),
        vec![(2, Event::RoomChatResult(ResultCode::USER_IN_LOBBY))]
    );
    // Disconnecting from a room tells the others.
    t.input(Input::Disconnect { conn: 1 });
    assert!(t.rec.out.is_empty(), "nobody else was in the room");
}

#[test]
fn room_number_and_capacity_are_checked() {
    let mut t = T::new(Config {
        rooms: 2,
        room_capacity: 1,
        ..Config::default()
    });
    t.user(1, "amy", false);
    t.user(2, "bob", false);
    for room in [-1, 2, i32::MAX] {
        assert_eq!(
            t.req(1, Request::RoomEnter { room }),
            vec![(1, Event::RoomEnterResult(ResultCode::INVALID_ROOM))]
        );
    }
    t.req(1, Request::RoomEnter { room: 1 });
    assert_eq!(
        t.req(2, Request::RoomEnter { room: 1 }),
        vec![(2, Event::RoomEnterResult(ResultCode::ROOM_FULL))]
    );
}

#[test]
fn a_big_room_list_comes_in_chunks_of_127() {
    let mut t = T::new(Config {
        room_capacity: 300,
        ..Config::default()
    });
    for c in 1..=200 {
        t.user(c, &format!("u{c}"), false);
        t.req(c, Request::RoomEnter { room: 0 });
    }
    t.user(500, "last", false);
    let out = t.req(500, Request::RoomEnter { room: 0 });
    let lists: Vec<usize> = out
        .iter()
        .filter_map(|(to, e)| match e {
            Event::RoomUserList { users } if *to == 500 => Some(users.len()),
            _ => None,
        })
        .collect();
    assert_eq!(lists, vec![127, 74]);
}

#[test]
fn a_newcomer_is_listed_who_is_left_in_the_order_they_came() {
    let mut t = T::new(Config::default());
    let names = ["amy", "bob", "carol-the-long-named", "dan", "e"];
    for (c, name) in (1..).zip(names) {
        t.user(c, name, false);
        t.req(c, Request::RoomEnter { room: 0 });
    }
    t.req(2, Request::RoomLeave);
    t.input(Input::Disconnect { conn: 4 });
    t.req(2, Request::RoomEnter { room: 0 });
    t.user(9, "zed", false);
    let out = t.req(9, Request::RoomEnter { room: 0 });
    let expected = vec![
        (1, "amy".to_string()),
        (3, "carol-the-long-named".into()),
        (5, "e".into()),
        (2, "bob".into()),
        (9, "zed".into()),
    ];
    assert!(
        out.contains(&(9, Event::RoomUserList { users: expected })),
        "{out:?}"
    );
}

fn batched() -> Config {
    Config {
        batch_presence: true,
        ..Config::default()
    }
}

fn new_user(uid: u64, name: &str) -> Event {
    Event::RoomNewUser {
        uid,
        name: name.into(),
    }
}

#[test]
fn batched_presence_waits_for_the_tick_and_newcomers_hear_only_what_followed() {
    let mut t = T::new(batched());
    for (conn, name) in [(1, "amy"), (2, "bob"), (3, "cat"), (4, "dan")] {
        t.user(conn, name, false);
    }
    t.req(1, Request::RoomEnter { room: 0 });
    let out = t.req(2, Request::RoomEnter { room: 0 });
    assert!(
        out.iter().all(|(to, _)| *to == 2),
        "only bob's own answers: {out:?}"
    );
    t.req(3, Request::RoomEnter { room: 0 });
    t.req(2, Request::RoomLeave);
    t.req(4, Request::RoomEnter { room: 0 });
    assert!(t.rec.out.is_empty());
    t.hub.flush_presence(&mut t.rec);
    let mut heard = std::mem::take(&mut t.rec.out);
    heard.sort_by_key(|(to, _)| *to);
    assert_eq!(
        heard,
        vec![
            // Amy was there first: she hears everything, in order.
            (1, new_user(2, "bob")),
            (1, new_user(3, "cat")),
            (1, Event::RoomLeaveUser { uid: 2 }),
            (1, new_user(4, "dan")),
            // Cat's member list had bob and amy.
            (3, Event::RoomLeaveUser { uid: 2 }),
            (3, new_user(4, "dan")),
            // Bob left, and dan's list is up to date.
        ]
    );
    // Nothing more to tell.
    t.hub.flush_presence(&mut t.rec);
    assert!(t.rec.out.is_empty());
}

#[test]
fn batched_presence_goes_out_before_room_chat() {
    let mut t = T::new(batched());
    t.user(1, "amy", false);
    t.user(2, "bob", false);
    t.req(1, Request::RoomEnter { room: 0 });
    t.req(2, Request::RoomEnter { room: 0 });
    let out = t.req(2, Request::RoomChat { message: "hi".into() });
    let amy: Vec<&Event> = out.iter().filter(|(to, _)| *to == 1).map(|(_, e)| e).collect();
    assert_eq!(amy.len(), 2, "{out:?}");
    assert_eq!(amy[0], &new_user(2, "bob"));
    assert!(matches!(amy[1], Event::RoomChat { message, .. } if message == "hi"));
}

#[test]
fn a_big_room_hears_its_news_less_often() {
    let mut t = T::new(batched());
    let n = 2 * MEMBERS_PER_TICK as u64;
    for conn in 1..=n {
        t.user(conn, &format!("u{conn}"), false);
        t.req(conn, Request::RoomEnter { room: 0 });
    }
    for _ in 0..MAX_TICKS {
        t.hub.flush_presence(&mut t.rec);
    }
    t.rec.out.clear();
    t.user(n + 1, "late", false);
    t.req(n + 1, Request::RoomEnter { room: 0 });
    // A room of 2 x MEMBERS_PER_TICK waits two ticks.
    t.hub.flush_presence(&mut t.rec);
    assert!(t.rec.out.is_empty());
    t.hub.flush_presence(&mut t.rec);
    assert_eq!(t.rec.out.len(), n as usize);
    assert!(t.rec.out.iter().all(|(_, e)| *e == new_user(n + 1, "late")));
}
