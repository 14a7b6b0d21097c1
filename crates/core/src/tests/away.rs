//! Cluster mode: the resume window (`away.rs`) with seats in the shared
//! store.

use super::*;
use plaza_proto::features;

const AMY: u64 = 1 << 48 | 1;
const BOB: u64 = 1 << 48 | 2;
/// A member id on node 9.
const BOB_THERE: u64 = 9 << 48 | 7;

/// Node 1 with a resume window and rooms of `capacity`; amy (conn 1) and
/// bob (conn 2), both with history, in room 2 (seated by the shared store).
fn amy_and_bob(capacity: usize) -> T {
    let mut t = T::new(Config {
        node_tag: 1,
        room_capacity: capacity,
        admin_secret: Some("s".into()),
        resume_window: Duration::from_secs(60),
        batch_presence: false,
        ..Config::default()
    });
    for (conn, name) in [(1, "amy"), (2, "bob")] {
        t.user(conn, name, false);
        let hello = Request::Hello {
            version: 1,
            features: features::NOTIFICATIONS | features::HISTORY,
        };
        t.req(conn, hello);
        seat(
            &mut t,
            conn,
            name,
            vec![(AMY, 1, "amy".into()), (BOB, 1, "bob".into())],
        );
        t.rec.out.clear();
    }
    t.rec.effects.clear();
    t
}

/// `conn` enters room 2; the shared store seats it with `members`.
fn seat(t: &mut T, conn: Conn, name: &str, members: Vec<SeatHolder>) {
    t.req(conn, Request::RoomEnter { room: 2 });
    let Some(Effect::ClaimSeat { uid, .. }) = t.rec.effects.pop() else {
        panic!("a seat claim")
    };
    t.input(Input::SeatDone {
        conn,
        name: name.into(),
        uid,
        room: 2,
        outcome: SeatOutcome::Seated(members),
    });
}

fn effects(t: &mut T) -> Vec<Effect> {
    std::mem::take(&mut t.rec.effects)
}

/// `name` enters room 2 on node 9 as member `uid`.
fn enter_there(name: &str, uid: u64) -> Input {
    Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::Enter {
            name: name.into(),
            uid,
            room: 2,
        }),
    }
}

fn leave(name: &str, uid: u64) -> Effect {
    Effect::Publish {
        msg: BusMsg::Leave {
            name: name.into(),
            uid,
            room: 2,
        },
        ack: None,
        reach: Reach::Every,
    }
}

#[test]
fn a_dropped_member_holds_its_seat_in_the_shared_store_and_the_room_hears_nothing() {
    let mut t = amy_and_bob(100);
    t.input(Input::Disconnect { conn: 2 });
    assert_eq!(t.rec.out, vec![], "no leave for a held seat");
    let fx = effects(&mut t);
    assert!(
        fx.contains(&Effect::HoldSeat {
            name: "bob".into(),
            uid: BOB,
            room: 2
        }),
        "{fx:?}"
    );
    assert!(!fx.contains(&leave("bob", BOB)), "{fx:?}");
    // Its mark passes to this node's away owner, not released.
    let away = Effect::Away {
        conn: 2,
        name: "bob".into(),
    };
    assert!(fx.contains(&away), "{fx:?}");
    assert_eq!(t.hub.held_seats(), [("bob".to_string(), BOB, 2)]);

    // Back on this node: the rejoin takes the seat (and its id) back with
    // nothing asked of the shared store.
    t.user(3, "bob", false);
    effects(&mut t);
    let rejoin = Request::RoomRejoin {
        room: 2,
        epoch: 0,
        after: 0,
    };
    let out = t.req(3, rejoin);
    assert!(out.iter().all(|(c, _)| *c == 3), "amy hears nothing: {out:?}");
    assert!(effects(&mut t).is_empty());
    assert!(t.hub.held_seats().is_empty());
    let entries = t.hub.local_entries();
    assert!(entries.contains(&("bob".into(), 3, BOB, Some(2))), "{entries:?}");
    // Leaving frees the seat it took back, by its id.
    t.req(3, Request::RoomLeave);
    assert!(effects(&mut t).contains(&leave("bob", BOB)));
}

#[test]
fn back_on_another_node_the_held_seat_moves_there_unseen_and_kept_whispers_follow() {
    let mut t = amy_and_bob(100);
    t.input(Input::Disconnect { conn: 2 });
    // A whisper from amy is kept for bob.
    let whisper = Request::Whisper {
        to: "bob".into(),
        message: "psst".into(),
    };
    assert_eq!(t.req(1, whisper), [(1, Event::WhisperResult(ResultCode::OK))]);
    effects(&mut t);
    // Node 9 took the seat over: its enter has the seat's id.
    t.input(enter_there("bob", BOB));
    assert_eq!(t.rec.out, [], "amy knows bob under that id already");
    let forwarded = Effect::Publish {
        msg: BusMsg::Whisper {
            to: "bob".into(),
            from: "amy".into(),
            message: "psst".into(),
            notice: false,
        },
        ack: None,
        reach: Reach::User,
    };
    let unhold = Effect::Unhold {
        name: "bob".into(),
        uid: BOB,
    };
    assert_eq!(effects(&mut t), [forwarded, unhold]);
    assert_eq!(t.hub.away_users(), 0);
    assert_eq!(t.hub.room_members(2), ["amy"]);
    assert_eq!(t.hub.remote_user("bob"), Some((9, Some(2))));
    // Its leave there is told here under the same id.
    t.input(Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::Leave {
            name: "bob".into(),
            uid: BOB,
            room: 2,
        }),
    });
    assert_eq!(t.rec.out, [(1, Event::RoomLeaveUser { uid: BOB })]);
}

#[test]
fn an_enter_elsewhere_under_another_id_gives_the_held_seat_up_first() {
    let mut t = amy_and_bob(100);
    t.input(Input::Disconnect { conn: 2 });
    effects(&mut t);
    t.input(enter_there("bob", BOB_THERE));
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        [
            (1, Event::RoomLeaveUser { uid: BOB }),
            (
                1,
                Event::RoomNewUser {
                    uid: BOB_THERE,
                    name: "bob".into()
                }
            )
        ]
    );
    assert_eq!(effects(&mut t), [leave("bob", BOB)]);
    assert_eq!(t.hub.away_users(), 0);
}

#[test]
fn a_kick_from_another_node_ends_the_time_away() {
    let mut t = amy_and_bob(100);
    t.input(Input::Disconnect { conn: 2 });
    effects(&mut t);
    t.input(Input::Remote {
        node: 9,
        msg: Box::new(BusMsg::Kick {
            name: "bob".into(),
            by: "root".into(),
        }),
    });
    assert_eq!(t.rec.out, [(1, Event::RoomLeaveUser { uid: BOB })]);
    assert_eq!(effects(&mut t), [leave("bob", BOB)]);
    assert_eq!(t.hub.away_users(), 0);
}

#[test]
fn an_admin_here_kicks_or_mutes_a_user_who_is_away_here() {
    let mut t = amy_and_bob(100);
    t.input(Input::Disconnect { conn: 2 });
    let admin = Request::Admin { secret: "s".into() };
    assert_eq!(t.req(1, admin), [(1, Event::AdminResult(ResultCode::OK))]);
    effects(&mut t);
    // Answered here, not sent to the mark's node (this one: it would not
    // read its own message).
    let mute = Request::Mute {
        name: "bob".into(),
        seconds: 60,
    };
    assert_eq!(t.req(1, mute), [(1, Event::MuteResult(ResultCode::OK))]);
    assert_eq!(effects(&mut t), []);
    let out = t.req(1, Request::Kick { name: "bob".into() });
    assert_eq!(
        out,
        [
            (1, Event::RoomLeaveUser { uid: BOB }),
            (1, Event::KickResult(ResultCode::OK))
        ]
    );
    assert_eq!(effects(&mut t), [leave("bob", BOB)]);
    assert_eq!(t.hub.away_users(), 0);
}

#[test]
fn at_the_window_s_end_the_seat_is_freed_everywhere() {
    let mut t = amy_and_bob(100);
    t.input(Input::Disconnect { conn: 2 });
    effects(&mut t);
    t.now += Duration::from_secs(61);
    t.hub.upkeep(t.now, &mut t.rec);
    assert_eq!(t.rec.out, [(1, Event::RoomLeaveUser { uid: BOB })]);
    assert_eq!(effects(&mut t), [leave("bob", BOB)]);
    assert!(t.hub.held_seats().is_empty());
}

#[test]
fn the_seat_the_user_holds_on_another_node_moves_here_unseen() {
    let mut t = amy_and_bob(3);
    // cat dropped on node 9, which holds its seat in room 2 under id
    // BOB_THERE; cat comes back here and enters room 2 (full, but for its
    // own seat).
    t.input(enter_there("cat", BOB_THERE));
    t.rec.out.clear();
    t.user(3, "cat", false);
    t.req(3, Request::RoomEnter { room: 2 });
    let Some(Effect::ClaimSeat { uid, .. }) = t.rec.effects.pop() else {
        panic!("a seat claim")
    };
    assert_eq!(uid, 1 << 48 | 3);
    effects(&mut t);
    // The store answers with cat's seat there: claimed again, by its id.
    t.input(Input::SeatDone {
        conn: 3,
        name: "cat".into(),
        uid,
        room: 2,
        outcome: SeatOutcome::Held(BOB_THERE),
    });
    assert!(matches!(
        effects(&mut t)[..],
        [Effect::ClaimSeat {
            uid: BOB_THERE,
            room: 2,
            ..
        }]
    ));
    let members = vec![
        (AMY, 1, "amy".into()),
        (BOB, 1, "bob".into()),
        (BOB_THERE, 1, "cat".into()),
    ];
    t.input(Input::SeatDone {
        conn: 3,
        name: "cat".into(),
        uid: BOB_THERE,
        room: 2,
        outcome: SeatOutcome::Seated(members),
    });
    let out = std::mem::take(&mut t.rec.out);
    assert!(
        out.iter().all(|(c, _)| *c == 3),
        "amy and bob hear nothing: {out:?}"
    );
    assert!(
        out.contains(&(3, Event::RoomEnterResult(ResultCode::OK))),
        "{out:?}"
    );
    assert_eq!(t.hub.remote_user("cat"), None);
    let entries = t.hub.local_entries();
    assert!(
        entries.contains(&("cat".into(), 3, BOB_THERE, Some(2))),
        "{entries:?}"
    );
}
