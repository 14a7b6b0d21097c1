//! Sequence numbers, history pages, and rejoining after a drop.

use super::*;
use plaza_proto::{Page, Replay, features};

const EPOCH: u64 = 77;

fn config(messages: usize) -> Config {
    Config {
        epoch: EPOCH,
        history: HistoryLimits {
            messages,
            ..HistoryLimits::default()
        },
        ..Config::default()
    }
}

fn msg(seq: u64, name: &str, message: &str) -> Event {
    Event::RoomMessage {
        room: 3,
        seq,
        name: name.into(),
        message: message.into(),
    }
}

fn replay(first: u64, next: u64, count: u16, gap: bool) -> Replay {
    Replay {
        result: ResultCode::OK,
        epoch: EPOCH,
        first,
        next,
        count,
        gap,
    }
}

impl T {
    /// A logged-in user with history on, in room 3.
    fn member(&mut self, conn: Conn, name: &str) {
        self.user(conn, name, false);
        let hello = Request::Hello {
            version: 1,
            features: features::NOTIFICATIONS | features::HISTORY,
        };
        self.req(conn, hello);
        self.req(conn, Request::RoomEnter { room: 3 });
    }

    fn say(&mut self, conn: Conn, text: &str) -> Vec<(Conn, Event)> {
        self.req(conn, Request::RoomChat { message: text.into() })
    }

    fn rejoin(&mut self, conn: Conn, epoch: u64, after: u64) -> Vec<(Conn, Event)> {
        let out = self.req(
            conn,
            Request::RoomRejoin {
                room: 3,
                epoch,
                after,
            },
        );
        out.into_iter()
            .filter(|(_, e)| {
                !matches!(
                    e,
                    Event::RoomUserList { .. } | Event::RoomNewUser { .. } | Event::RoomRole { .. }
                )
            })
            .collect()
    }
}

#[test]
fn members_with_history_get_numbered_messages_and_seed_clients_the_seed_packet() {
    let mut t = T::new(config(100));
    t.member(1, "amy");
    t.seed_user(2, "bob");
    t.req(2, Request::RoomEnter { room: 3 });
    let out = t.say(2, "hi");
    assert_eq!(out[0], (2, Event::RoomChatResult(ResultCode::OK)));
    let seed = Event::RoomChat {
        name: "bob".into(),
        message: "hi".into(),
    };
    assert!(out.contains(&(2, seed)), "{out:?}");
    assert!(out.contains(&(1, msg(1, "bob", "hi"))), "{out:?}");
    assert_eq!(out.len(), 3);
    assert!(t.say(1, "yo").contains(&(1, msg(2, "amy", "yo"))));
}

#[test]
fn a_member_who_drops_and_rejoins_gets_what_it_missed_once_in_order_then_the_marker() {
    let mut t = T::new(config(100));
    t.member(1, "amy");
    t.member(2, "bob");
    t.say(1, "before");
    t.input(Input::Disconnect { conn: 2 });
    for text in ["one", "two", "three"] {
        t.say(1, text);
    }
    t.user(3, "bob", false);
    assert_eq!(
        t.rejoin(3, EPOCH, 1),
        vec![
            (3, msg(2, "amy", "one")),
            (3, msg(3, "amy", "two")),
            (3, msg(4, "amy", "three")),
            (3, Event::Rejoin(replay(1, 5, 3, false))),
        ]
    );
    // Live messages carry on from there, once.
    let out = t.say(1, "four");
    assert_eq!(out.iter().filter(|(c, _)| *c == 3).count(), 1);
    assert!(out.contains(&(3, msg(5, "amy", "four"))));
    // Nothing missed: nothing replayed, no gap.
    t.input(Input::Disconnect { conn: 3 });
    t.rec.out.clear();
    t.user(4, "bob", false);
    assert_eq!(
        t.rejoin(4, EPOCH, 5),
        vec![(4, Event::Rejoin(replay(1, 6, 0, false)))]
    );
}

#[test]
fn past_the_bound_or_from_another_epoch_the_rejoin_says_there_is_a_gap() {
    let mut t = T::new(config(3));
    t.member(1, "amy");
    for i in 1..=8 {
        t.say(1, &format!("m{i}"));
    }
    t.user(2, "bob", false);
    // Saw up to 2; 3 to 5 are gone; 6 to 8 are held.
    assert_eq!(
        t.rejoin(2, EPOCH, 2),
        vec![
            (2, msg(6, "amy", "m6")),
            (2, msg(7, "amy", "m7")),
            (2, msg(8, "amy", "m8")),
            (2, Event::Rejoin(replay(6, 9, 3, true))),
        ]
    );
    // Numbers from before a restart mean nothing: all that is held, and a gap.
    t.user(3, "cat", false);
    let out = t.rejoin(3, EPOCH + 1, 8);
    assert_eq!(out.len(), 4);
    assert_eq!(out[3], (3, Event::Rejoin(replay(6, 9, 3, true))));
    // Epoch 0 knows nothing: everything held, and a gap as 1 to 5 are gone.
    t.user(4, "dan", false);
    let out = t.rejoin(4, 0, 0);
    assert_eq!(out[0], (4, msg(6, "amy", "m6")));
    assert_eq!(out[3], (4, Event::Rejoin(replay(6, 9, 3, true))));
    // A rejoin into a full room says so and replays nothing.
    let mut t = T::new(Config {
        room_capacity: 1,
        ..config(3)
    });
    t.member(1, "amy");
    t.user(2, "bob", false);
    assert_eq!(
        t.rejoin(2, EPOCH, 0),
        vec![(2, Event::Rejoin(Replay::failed(ResultCode::ROOM_FULL)))]
    );
}

#[test]
fn history_pages_back_and_forth_and_is_capped() {
    let mut t = T::new(config(250));
    t.member(1, "amy");
    t.user(2, "bob", false);
    let page = |t: &mut T, conn, page, limit| {
        let out = t.req(conn, Request::History { page, limit });
        let (last, msgs) = out.split_last().expect("an answer");
        let seqs: Vec<u64> = msgs
            .iter()
            .map(|(_, e)| match e {
                Event::RoomMessage { seq, .. } => *seq,
                other => panic!("{other:?}"),
            })
            .collect();
        (seqs, last.1.clone())
    };
    assert_eq!(
        page(&mut t, 2, Page::Latest, 5),
        (
            vec![],
            Event::History(Replay::failed(ResultCode::USER_NOT_IN_ROOM))
        )
    );
    for i in 1..=150 {
        t.say(1, &format!("m{i}"));
    }
    assert_eq!(
        page(&mut t, 1, Page::Latest, 3),
        (vec![148, 149, 150], Event::History(replay(1, 151, 3, false)))
    );
    assert_eq!(page(&mut t, 1, Page::Before(148), 2).0, [146, 147]);
    assert_eq!(page(&mut t, 1, Page::After(10), 2).0, [11, 12]);
    // At most a page, however many are asked for.
    let (seqs, answer) = page(&mut t, 1, Page::After(0), 1000);
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    assert_eq!(answer, Event::History(replay(1, 151, 100, false)));
    // Scrolling back reaches the first message: no gap.
    assert_eq!(
        page(&mut t, 1, Page::Before(3), 10),
        (vec![1, 2], Event::History(replay(1, 151, 2, false)))
    );
}

#[test]
fn history_stays_within_its_bound_when_every_room_is_full_of_it() {
    let limits = HistoryLimits {
        messages: 1000,
        bytes: 4096,
        age: Duration::from_secs(60),
    };
    let mut t = T::new(Config {
        rooms: 20,
        epoch: EPOCH,
        history: limits,
        ..Config::default()
    });
    for room in 0..20u32 {
        let conn = u64::from(room) + 1;
        t.user(conn, &format!("u{room}"), false);
        t.req(conn, Request::RoomEnter { room: room as i32 });
        for i in 0..200 {
            t.say(conn, &format!("{i:0>200}"));
        }
    }
    let held = t.hub.history_bytes();
    assert!(held <= 20 * 4096, "{held}");
    assert!(held >= 20 * (4096 - 300), "{held}");
    // Past the age bound, a room's history is gone when next read.
    t.now += Duration::from_secs(61);
    t.req(
        1,
        Request::History {
            page: Page::Latest,
            limit: 10,
        },
    );
    let left = t.hub.history_bytes();
    assert!(left < held && left >= held - 4096, "{left} of {held}");
}

#[test]
fn a_resent_message_id_is_answered_again_and_not_delivered_twice() {
    let mut t = T::new(config(100));
    t.member(1, "amy");
    t.member(2, "bob");
    let send = |t: &mut T, conn, id, text: &str| {
        t.req(
            conn,
            Request::RoomSend {
                id,
                message: text.into(),
            },
        )
    };
    let ok = |seq| Event::RoomSendResult {
        result: ResultCode::OK,
        seq,
    };
    let out = send(&mut t, 1, 42, "hi");
    assert_eq!(out[0], (1, ok(1)));
    assert!(out.contains(&(2, msg(1, "amy", "hi"))));
    // After a drop, amy resends it from a new connection: answered, not delivered.
    t.input(Input::Disconnect { conn: 1 });
    t.rec.out.clear();
    t.member(3, "amy");
    t.rec.out.clear();
    assert_eq!(send(&mut t, 3, 42, "hi"), vec![(3, ok(1))]);
    // Another id, another user's same id, and id 0 are new messages.
    assert_eq!(send(&mut t, 3, 43, "again")[0], (3, ok(2)));
    assert_eq!(send(&mut t, 2, 42, "bob's")[0], (2, ok(3)));
    assert_eq!(send(&mut t, 2, 0, "x")[0], (2, ok(4)));
    assert_eq!(send(&mut t, 2, 0, "x")[0], (2, ok(5)));
    // Past the window the id is forgotten.
    t.now += SEND_ID_WINDOW + Duration::from_secs(1);
    t.hub.upkeep(t.now, &mut t.rec);
    let out = send(&mut t, 3, 42, "hi");
    assert_eq!(out[0], (3, ok(6)));
    // Refused sends say why, with no number.
    t.req(3, Request::RoomLeave);
    assert_eq!(
        send(&mut t, 3, 44, "lobby"),
        vec![(
            3,
            Event::RoomSendResult {
                result: ResultCode::USER_IN_LOBBY,
                seq: 0
            }
        )]
    );
}

fn window() -> Config {
    Config {
        resume_window: Duration::from_secs(60),
        batch_presence: false,
        ..config(100)
    }
}

#[test]
fn within_the_resume_window_a_dropped_member_keeps_its_seat_and_the_room_sees_nothing() {
    let mut t = T::new(window());
    t.member(1, "amy");
    t.member(2, "bob");
    t.rec.out.clear();
    t.input(Input::Disconnect { conn: 2 });
    assert_eq!(t.rec.out, vec![], "no leave for a held seat");
    let out = t.say(1, "x");
    assert!(out.iter().all(|(c, _)| *c == 1), "{out:?}");
    // Bob comes back on a new connection and rejoins: its old seat and id.
    t.user(3, "bob", false);
    let out = t.req(
        3,
        Request::RoomRejoin {
            room: 3,
            epoch: EPOCH,
            after: 0,
        },
    );
    assert_eq!(
        out,
        vec![
            (3, op_state(3, 1)),
            (
                3,
                Event::RoomUserList {
                    users: vec![(1, "amy".into()), (2, "bob".into())]
                }
            ),
            (3, msg(1, "amy", "x")),
            (3, Event::Rejoin(replay(1, 2, 1, false))),
        ],
        "amy hears nothing"
    );
    assert_eq!(t.hub.room_members(3), ["amy", "bob"]);
    // Live again; and leaving now tells amy the id she knows.
    assert!(t.say(1, "y").contains(&(3, msg(2, "amy", "y"))));
    assert_eq!(
        t.req(3, Request::RoomLeave),
        vec![
            (1, Event::RoomLeaveUser { uid: 2 }),
            (3, Event::RoomLeaveResult(ResultCode::OK))
        ]
    );
}

#[test]
fn the_seat_is_given_up_at_the_end_of_the_window_or_by_going_elsewhere() {
    let mut t = T::new(window());
    t.member(1, "amy");
    t.member(2, "bob");
    t.input(Input::Disconnect { conn: 2 });
    t.rec.out.clear();
    t.now += Duration::from_secs(61);
    t.hub.upkeep(t.now, &mut t.rec);
    assert_eq!(t.rec.out, vec![(1, Event::RoomLeaveUser { uid: 2 })]);
    assert_eq!(t.hub.away_users(), 0);
    t.rec.out.clear();
    // Coming back and entering another room gives the seat up at once.
    t.member(3, "cat");
    t.input(Input::Disconnect { conn: 3 });
    t.user(4, "cat", false);
    t.rec.out.clear();
    let out = t.req(4, Request::RoomEnter { room: 4 });
    assert!(out.contains(&(1, Event::RoomLeaveUser { uid: 3 })), "{out:?}");
    // A client without room history cannot rejoin: it leaves at once.
    t.user(5, "dan", false);
    t.req(5, Request::RoomEnter { room: 3 });
    t.rec.out.clear();
    t.input(Input::Disconnect { conn: 5 });
    assert_eq!(t.rec.out, vec![(1, Event::RoomLeaveUser { uid: 5 })]);
}

#[test]
fn whispers_to_a_member_who_dropped_wait_for_it_up_to_a_bound() {
    let mut t = T::new(window());
    t.member(1, "amy");
    t.member(2, "bob");
    t.input(Input::Disconnect { conn: 2 });
    let whisper = |t: &mut T, text: &str| {
        t.req(
            1,
            Request::Whisper {
                to: "bob".into(),
                message: text.into(),
            },
        )
    };
    for i in 0..INBOX_WHISPERS {
        assert_eq!(
            whisper(&mut t, &format!("w{i}")),
            vec![(1, Event::WhisperResult(ResultCode::OK))]
        );
    }
    assert_eq!(
        whisper(&mut t, "one too many"),
        vec![(1, Event::WhisperResult(ResultCode::USER_NOT_FOUND))]
    );
    // Bob's next login gets them, after its answer, in order.
    t.input(Input::Connect { conn: 3 });
    t.req(3, hello());
    t.req(3, login("bob"));
    let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
        panic!("a check")
    };
    t.input(Input::AuthDone {
        conn: 3,
        ticket,
        outcome: AuthOutcome::valid(false),
    });
    let out = std::mem::take(&mut t.rec.out);
    assert_eq!(out[0], (3, Event::LoginResult(ResultCode::OK)));
    assert_eq!(out.len(), 1 + INBOX_WHISPERS);
    assert_eq!(
        out[1],
        (
            3,
            Event::Whisper {
                from: "amy".into(),
                message: "w0".into()
            }
        )
    );
    // Its seat is still held for a rejoin.
    assert_eq!(t.hub.away_users(), 1);
}
