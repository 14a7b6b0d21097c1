//! The chat rules without a runtime: a recording sink and a fake clock.

use super::*;
use bytes::BytesMut;
use plaza_proto::Roster;
use std::time::Duration;

#[derive(Default)]
struct Rec {
    out: Vec<(Conn, Event)>,
    effects: Vec<Effect>,
    closed: Vec<Conn>,
}

impl Sink for Rec {
    fn send(&mut self, to: Conn, event: &Event) {
        self.out.push((to, event.clone()));
    }
    fn send_members(&mut self, to: Conn, members: &Roster) {
        for list in members.lists() {
            let mut b = BytesMut::new();
            list.encode(&mut b);
            self.out
                .push((to, Event::decode(&b).expect("a roster encodes valid lists")));
        }
    }
    fn fanout(&mut self, events: &[Event], to: impl IntoIterator<Item = Recipient>) {
        for r in to {
            self.out
                .extend(events[r.from..].iter().map(|e| (r.conn, e.clone())));
        }
    }
    fn disconnect(&mut self, conn: Conn) {
        self.closed.push(conn);
    }
    fn effect(&mut self, effect: Effect) {
        // Store bookkeeping is not what these tests look at.
        if !matches!(effect, Effect::Release { .. } | Effect::Mute { .. }) {
            self.effects.push(effect);
        }
    }
}

struct T {
    hub: Hub,
    rec: Rec,
    now: Instant,
}

impl T {
    fn new(config: Config) -> Self {
        Self {
            hub: Hub::new(config),
            rec: Rec::default(),
            now: Instant::now(),
        }
    }
    fn input(&mut self, i: Input) {
        self.hub.handle(i, self.now, &mut self.rec);
    }
    fn req(&mut self, conn: Conn, request: Request) -> Vec<(Conn, Event)> {
        self.input(Input::Request { conn, request });
        std::mem::take(&mut self.rec.out)
    }
    /// Connects a client that says HELLO (Plaza's notifications on).
    fn connect(&mut self, conn: Conn) {
        self.input(Input::Connect { conn });
        let rooms = self.hub.config.rooms;
        assert_eq!(
            self.req(conn, hello()),
            vec![(
                conn,
                Event::Hello {
                    result: ResultCode::OK,
                    version: plaza_proto::VERSION,
                    features: plaza_proto::features::NOTIFICATIONS,
                    rooms,
                }
            )]
        );
    }
    /// Connects and logs `name` in, approving the credential check.
    fn user(&mut self, conn: Conn, name: &str, admin: bool) {
        self.connect(conn);
        self.log_in(conn, name, admin);
    }
    /// Connects a seed client (no HELLO) and logs `name` in.
    fn seed_user(&mut self, conn: Conn, name: &str) {
        self.input(Input::Connect { conn });
        self.log_in(conn, name, false);
    }
    fn log_in(&mut self, conn: Conn, name: &str, admin: bool) {
        self.req(
            conn,
            Request::Login {
                name: name.into(),
                password: "pw".into(),
            },
        );
        let Some(Effect::Authenticate { ticket, .. }) = self.rec.effects.pop() else {
            panic!("expected a credential check")
        };
        self.input(Input::AuthDone {
            conn,
            ticket,
            outcome: AuthOutcome::valid(admin),
        });
        assert_eq!(
            self.rec.out.pop(),
            Some((conn, Event::LoginResult(ResultCode::OK)))
        );
    }
}

fn hello() -> Request {
    Request::Hello {
        version: 1,
        features: plaza_proto::features::NOTIFICATIONS,
    }
}

fn hello_ok() -> Event {
    Event::Hello {
        result: ResultCode::OK,
        version: plaza_proto::VERSION,
        features: plaza_proto::features::NOTIFICATIONS,
        rooms: Config::default().rooms,
    }
}

fn login(name: &str) -> Request {
    Request::Login {
        name: name.into(),
        password: "pw".into(),
    }
}

#[test]
fn two_racing_logins_of_one_name_exactly_one_wins() {
    let mut t = T::new(Config::default());
    t.input(Input::Connect { conn: 1 });
    t.input(Input::Connect { conn: 2 });
    assert!(t.req(1, login("amy")).is_empty(), "pending: no reply yet");
    assert_eq!(
        t.req(2, login("amy")),
        vec![(2, Event::LoginResult(ResultCode::LOGIN_ALREADY))]
    );
    let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
        panic!()
    };
    t.input(Input::AuthDone {
        conn: 1,
        ticket,
        outcome: AuthOutcome::valid(false),
    });
    assert_eq!(t.rec.out, vec![(1, Event::LoginResult(ResultCode::OK))]);
    assert_eq!(t.hub.users_online(), 1);
}

#[test]
fn a_session_that_leaves_during_its_check_is_never_logged_in() {
    let mut t = T::new(Config::default());
    t.input(Input::Connect { conn: 1 });
    t.req(1, login("amy"));
    let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
        panic!()
    };
    t.input(Input::Disconnect { conn: 1 });
    t.input(Input::AuthDone {
        conn: 1,
        ticket,
        outcome: AuthOutcome::valid(false),
    });
    assert!(t.rec.out.is_empty());
    assert_eq!(t.hub.users_online(), 0);
    // The name is free again.
    t.user(2, "amy", false);
}

#[test]
fn second_login_on_a_session_and_server_full_are_refused() {
    let mut t = T::new(Config {
        max_users: 1,
        ..Config::default()
    });
    t.user(1, "amy", false);
    assert_eq!(
        t.req(1, login("bob")),
        vec![(1, Event::LoginResult(ResultCode::SESSION_ALREADY_LOGGED_IN))]
    );
    t.input(Input::Connect { conn: 2 });
    assert_eq!(
        t.req(2, login("bob")),
        vec![(2, Event::LoginResult(ResultCode::SERVER_FULL))]
    );
}

#[test]
fn bad_credentials_and_store_outage_free_the_name() {
    let mut t = T::new(Config::default());
    t.input(Input::Connect { conn: 1 });
    for (outcome, code) in [
        (AuthOutcome::Invalid, ResultCode::INVALID_CREDENTIALS),
        (AuthOutcome::Unavailable, ResultCode::SERVICE_UNAVAILABLE),
    ] {
        t.req(1, login("amy"));
        let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
            panic!()
        };
        t.input(Input::AuthDone {
            conn: 1,
            ticket,
            outcome,
        });
        assert_eq!(
            std::mem::take(&mut t.rec.out),
            vec![(1, Event::LoginResult(code))]
        );
    }
    t.user(2, "amy", false);
}

#[test]
fn room_enter_notifies_members_then_lists_then_responds() {
    let mut t = T::new(Config::default());
    t.user(1, "amy", false);
    t.user(2, "bob", false);
    assert_eq!(
        t.req(1, Request::RoomEnter { room: 3 }),
        vec![
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

#[test]
fn requests_before_login_get_the_seeds_codes_or_not_logged_in() {
    let mut t = T::new(Config::default());
    t.input(Input::Connect { conn: 1 });
    // The seed server answers its own requests by the user's state.
    assert_eq!(
        t.req(1, Request::RoomEnter { room: 0 }),
        vec![(1, Event::RoomEnterResult(ResultCode::NOT_IN_LOBBY))]
    );
    assert_eq!(
        t.req(1, Request::RoomLeave),
        vec![(1, Event::RoomLeaveResult(ResultCode::USER_NOT_IN_ROOM))]
    );
    assert_eq!(
        t.req(1, Request::RoomChat { message: "x".into() }),
        vec![(1, Event::RoomChatResult(ResultCode::USER_IN_LOBBY))]
    );
    assert_eq!(
        t.req(1, Request::Broadcast { message: "x".into() }),
        vec![(1, Event::BroadcastResult(ResultCode::NOT_LOGGED_IN))]
    );
    assert_eq!(
        t.req(1, Request::UserList { after: String::new() }),
        vec![(
            1,
            Request::failure(plaza_proto::id::USER_LIST_REQUEST, ResultCode::NOT_LOGGED_IN)
        )]
    );
    assert_eq!(
        t.req(1, Request::Ping { nonce: 4 }),
        vec![(1, Event::Pong { nonce: 4 })]
    );
}

#[test]
fn a_seed_client_gets_no_plaza_notifications() {
    let mut t = T::new(Config {
        admin_secret: Some("s".into()),
        ..Config::default()
    });
    t.seed_user(1, "seed");
    assert!(t.rec.out.is_empty(), "no resume token after the login");
    t.user(2, "amy", false);
    t.rec.out.retain(|(_, e)| !matches!(e, Event::ResumeToken { .. }));
    t.req(1, Request::RoomEnter { room: 0 });
    t.req(2, Request::RoomEnter { room: 0 });
    t.hub.flush_presence(&mut t.rec);
    t.rec.out.clear();
    // Room chat reaches both (223 is the seed's own packet).
    let out = t.req(2, Request::RoomChat { message: "hi".into() });
    assert_eq!(
        out.iter()
            .filter(|(_, e)| matches!(e, Event::RoomChat { .. }))
            .count(),
        2
    );
    // A broadcast skips it; a whisper to it is refused with 116.
    let out = t.req(
        2,
        Request::Broadcast {
            message: "all".into(),
        },
    );
    assert!(out.iter().all(|(c, _)| *c == 2), "{out:?}");
    assert_eq!(
        t.req(
            2,
            Request::Whisper {
                to: "seed".into(),
                message: "psst".into()
            }
        ),
        vec![(2, Event::WhisperResult(ResultCode::UNREACHABLE))]
    );
    // Notices and the shutdown notice skip it too.
    assert_eq!(t.hub.notice(None, "hello", &mut t.rec), Some(1));
    t.input(Input::Shutdown);
    assert!(t.rec.out.iter().all(|(c, _)| *c == 2), "{:?}", t.rec.out);
}

#[test]
fn hello_turns_notifications_on_and_register_and_resume_imply_it() {
    let mut t = T::new(Config::default());
    t.input(Input::Connect { conn: 1 });
    let out = t.req(
        1,
        Request::Hello {
            version: 7,
            features: u32::MAX,
        },
    );
    assert_eq!(out, vec![(1, hello_ok())], "only the features the server has");
    t.input(Input::Connect { conn: 2 });
    t.req(
        2,
        Request::Register {
            name: "amy".into(),
            password: "pw".into(),
        },
    );
    t.input(Input::RegisterDone {
        conn: 2,
        outcome: RegisterOutcome::Created,
    });
    t.rec.out.clear();
    assert_eq!(t.hub.notice(None, "hi", &mut t.rec), Some(2));
}

#[test]
fn register_holds_the_requests_after_it() {
    let mut t = T::new(Config::default());
    t.input(Input::Connect { conn: 1 });
    t.req(
        1,
        Request::Register {
            name: "amy".into(),
            password: "pw".into(),
        },
    );
    assert!(
        t.req(1, Request::Ping { nonce: 1 }).is_empty(),
        "waits behind REGISTER"
    );
    assert!(t.req(1, login("amy")).is_empty());
    assert!(matches!(t.rec.effects.as_slice(), [Effect::Register { .. }]));
    t.rec.effects.clear();
    t.input(Input::RegisterDone {
        conn: 1,
        outcome: RegisterOutcome::Created,
    });
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        vec![
            (1, Event::RegisterResult(ResultCode::OK)),
            (1, Event::Pong { nonce: 1 })
        ]
    );
    assert!(
        matches!(t.rec.effects.as_slice(), [Effect::Authenticate { .. }]),
        "the login runs after the account exists"
    );
}

#[test]
fn a_peer_that_stops_sending_is_answered_then_closed() {
    let mut t = T::new(Config::default());
    t.connect(1);
    t.req(1, login("amy"));
    t.req(1, Request::Ping { nonce: 1 });
    t.input(Input::PeerClosed { conn: 1 });
    assert!(
        t.rec.closed.is_empty(),
        "the login and the ping are not answered yet"
    );
    let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
        panic!("expected a credential check")
    };
    t.input(Input::AuthDone {
        conn: 1,
        ticket,
        outcome: AuthOutcome::valid(false),
    });
    assert_eq!(t.rec.out.last(), Some(&(1, Event::Pong { nonce: 1 })));
    assert_eq!(t.rec.closed, vec![1]);
    // With nothing waiting, it closes at once.
    t.rec.out.clear();
    t.connect(2);
    t.input(Input::PeerClosed { conn: 2 });
    assert_eq!(t.rec.closed, vec![1, 2]);
}

#[test]
fn a_user_who_logs_in_muted_is_told() {
    let mut t = T::new(Config::default());
    t.connect(1);
    t.req(1, login("amy"));
    let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
        panic!("expected a credential check")
    };
    t.input(Input::AuthDone {
        conn: 1,
        ticket,
        outcome: AuthOutcome::Valid {
            admin: false,
            mute: Some(Some(Duration::from_millis(90_500))),
            token: None,
        },
    });
    assert_eq!(
        t.rec.out,
        vec![
            (1, Event::LoginResult(ResultCode::OK)),
            (1, Event::Muted { seconds: 91 })
        ]
    );
}

#[test]
fn entering_and_leaving_rooms_are_rate_limited_like_chat() {
    let mut t = T::new(Config {
        chat_rate: 1,
        ..Config::default()
    });
    t.user(1, "amy", false);
    let mut codes = Vec::new();
    for _ in 0..3 {
        for r in [Request::RoomEnter { room: 0 }, Request::RoomLeave] {
            for (_, e) in t.req(1, r) {
                match e {
                    Event::RoomEnterResult(c) | Event::RoomLeaveResult(c) => codes.push(c),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(
        codes,
        [ResultCode::OK, ResultCode::OK]
            .into_iter()
            .chain([ResultCode::RATE_LIMITED; 4])
            .collect::<Vec<_>>(),
        "a burst of twice the rate, then 115"
    );
}

#[test]
fn mute_is_enforced_for_chat_whisper_and_broadcast_and_expires() {
    let mut t = T::new(Config {
        admin_secret: Some("s3cret".into()),
        ..Config::default()
    });
    t.user(1, "root", false);
    t.user(2, "amy", false);
    t.req(2, Request::RoomEnter { room: 0 });
    assert_eq!(
        t.req(
            1,
            Request::Mute {
                name: "amy".into(),
                seconds: 60
            }
        ),
        vec![(1, Event::MuteResult(ResultCode::NOT_ADMIN))]
    );
    assert_eq!(
        t.req(
            1,
            Request::Admin {
                secret: "wrong".into()
            }
        ),
        vec![(1, Event::AdminResult(ResultCode::NOT_ADMIN))]
    );
    assert_eq!(
        t.req(
            1,
            Request::Admin {
                secret: "s3cret".into()
            }
        ),
        vec![(1, Event::AdminResult(ResultCode::OK))]
    );
    assert_eq!(
        t.req(
            1,
            Request::Mute {
                name: "amy".into(),
                seconds: 60
            }
        ),
        vec![
            (2, Event::Muted { seconds: 60 }),
            (1, Event::MuteResult(ResultCode::OK)),
        ]
    );
    assert_eq!(
        t.req(2, Request::RoomChat { message: "x".into() }),
        vec![(2, Event::RoomChatResult(ResultCode::MUTED))]
    );
    assert_eq!(
        t.req(
            2,
            Request::Whisper {
                to: "root".into(),
                message: "x".into()
            }
        ),
        vec![(2, Event::WhisperResult(ResultCode::MUTED))]
    );
    assert_eq!(
        t.req(2, Request::Broadcast { message: "x".into() }),
        vec![(2, Event::BroadcastResult(ResultCode::MUTED))]
    );
    // The mute follows the name across a reconnect: the store reports it at
    // login (it is the source of truth), and the hub enforces it.
    t.input(Input::Disconnect { conn: 2 });
    t.connect(3);
    t.req(3, login("amy"));
    let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
        panic!()
    };
    t.input(Input::AuthDone {
        conn: 3,
        ticket,
        outcome: AuthOutcome::Valid {
            admin: false,
            mute: Some(Some(Duration::from_secs(60))),
            token: Some(("tok".into(), 600)),
        },
    });
    assert_eq!(
        std::mem::take(&mut t.rec.out),
        vec![
            (3, Event::LoginResult(ResultCode::OK)),
            (
                3,
                Event::ResumeToken {
                    token: "tok".into(),
                    ttl_secs: 600
                }
            ),
            (3, Event::Muted { seconds: 60 }),
        ]
    );
    assert_eq!(
        t.req(3, Request::Broadcast { message: "x".into() }),
        vec![(3, Event::BroadcastResult(ResultCode::MUTED))]
    );
    t.now += Duration::from_secs(61);
    assert_eq!(
        t.req(
            3,
            Request::Whisper {
                to: "root".into(),
                message: "free".into()
            }
        ),
        vec![
            (
                1,
                Event::Whisper {
                    from: "amy".into(),
                    message: "free".into()
                }
            ),
            (3, Event::WhisperResult(ResultCode::OK)),
        ]
    );
}

#[test]
fn admin_needs_the_role_or_a_configured_secret() {
    let mut t = T::new(Config::default()); // no secret configured
    t.user(1, "amy", false);
    assert_eq!(
        t.req(
            1,
            Request::Admin {
                secret: String::new()
            }
        ),
        vec![(1, Event::AdminResult(ResultCode::NOT_ADMIN))]
    );
    t.user(2, "op", true);
    assert_eq!(
        t.req(
            2,
            Request::Admin {
                secret: String::new()
            }
        ),
        vec![(2, Event::AdminResult(ResultCode::OK))]
    );
    assert_eq!(
        t.req(1, Request::Shutdown),
        vec![(1, Event::ShutdownResult(ResultCode::NOT_ADMIN))]
    );
    assert_eq!(
        t.req(1, Request::Kick { name: "op".into() }),
        vec![(1, Event::KickResult(ResultCode::NOT_ADMIN))]
    );
}

#[test]
fn kick_tells_the_target_then_its_room_then_disconnects_it() {
    let mut t = T::new(Config::default());
    t.user(1, "op", true);
    t.req(
        1,
        Request::Admin {
            secret: String::new(),
        },
    );
    t.user(2, "amy", false);
    t.user(3, "bob", false);
    t.req(2, Request::RoomEnter { room: 0 });
    t.req(3, Request::RoomEnter { room: 0 });
    assert_eq!(
        t.req(
            1,
            Request::Kick {
                name: "nobody".into()
            }
        ),
        vec![(1, Event::KickResult(ResultCode::USER_NOT_FOUND))]
    );
    assert_eq!(
        t.req(1, Request::Kick { name: "amy".into() }),
        vec![
            (2, Event::Kicked { by: "op".into() }),
            (3, Event::RoomLeaveUser { uid: 2 }),
            (1, Event::KickResult(ResultCode::OK)),
        ]
    );
    assert_eq!(t.rec.closed, vec![2]);
    assert_eq!(t.hub.room_members(0), vec!["bob"]);
    // A request the kicked session had in flight changes nothing.
    t.req(2, Request::RoomEnter { room: 0 });
    assert_eq!(t.hub.room_members(0), vec!["bob"]);
    t.input(Input::Disconnect { conn: 2 });
    assert!(t.rec.out.is_empty());
}

#[test]
fn user_list_pages_by_name() {
    let mut t = T::new(Config::default());
    for c in 0..250u64 {
        t.user(c, &format!("user{c:03}"), false);
    }
    let mut after = String::new();
    let mut seen = Vec::new();
    loop {
        let out = t.req(0, Request::UserList { after: after.clone() });
        let [
            (
                _,
                Event::UserList {
                    result,
                    total,
                    names,
                    more,
                },
            ),
        ] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!((*result, *total), (ResultCode::OK, 250));
        seen.extend(names.iter().cloned());
        if !more {
            break;
        }
        after = names.last().unwrap().clone();
    }
    let expected: Vec<String> = (0..250).map(|c| format!("user{c:03}")).collect();
    assert_eq!(seen, expected);
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

#[test]
fn logout_leaves_the_room_and_frees_the_name() {
    let mut t = T::new(Config::default());
    t.user(1, "amy", false);
    t.user(2, "bob", false);
    t.req(1, Request::RoomEnter { room: 0 });
    t.req(2, Request::RoomEnter { room: 0 });
    assert_eq!(
        t.req(1, Request::Logout),
        vec![
            (2, Event::RoomLeaveUser { uid: 1 }),
            (1, Event::LogoutResult(ResultCode::OK)),
        ]
    );
    assert_eq!(
        t.req(1, Request::RoomChat { message: "x".into() }),
        vec![(1, Event::RoomChatResult(ResultCode::USER_IN_LOBBY))],
        "a guest is in no room: the seed's answer"
    );
    t.user(3, "amy", false);
}

#[test]
fn shutdown_notifies_everyone_and_refuses_new_logins() {
    let mut t = T::new(Config::default());
    t.user(1, "op", true);
    t.req(
        1,
        Request::Admin {
            secret: String::new(),
        },
    );
    t.connect(2);
    t.input(Input::Connect { conn: 3 });
    let out = t.req(1, Request::Shutdown);
    assert_eq!(out[0], (1, Event::ShutdownResult(ResultCode::OK)));
    assert_eq!(
        out.len(),
        3,
        "response, then a notice to each of two sessions (not the seed client)"
    );
    assert_eq!(t.rec.effects, vec![Effect::Shutdown]);
    assert_eq!(
        t.req(2, login("late")),
        vec![(2, Event::LoginResult(ResultCode::SHUTTING_DOWN))]
    );
}

#[test]
fn requests_sent_behind_a_login_are_answered_after_it_in_order() {
    let mut t = T::new(Config::default());
    t.input(Input::Connect { conn: 1 });
    t.req(1, login("amy"));
    // Pipelined behind the login: they wait for it instead of failing.
    assert!(t.req(1, Request::RoomEnter { room: 0 }).is_empty());
    assert!(t.req(1, Request::Ping { nonce: 7 }).is_empty());
    let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
        panic!()
    };
    t.input(Input::AuthDone {
        conn: 1,
        ticket,
        outcome: AuthOutcome::valid(false),
    });
    let out: Vec<Event> = t.rec.out.drain(..).map(|(_, e)| e).collect();
    assert_eq!(
        out,
        vec![
            Event::LoginResult(ResultCode::OK),
            Event::RoomUserList {
                users: vec![(1, "amy".into())]
            },
            Event::RoomEnterResult(ResultCode::OK),
            Event::Pong { nonce: 7 },
        ]
    );
}

#[test]
fn a_session_that_queues_too_much_behind_one_request_is_closed() {
    let mut t = T::new(Config::default());
    t.input(Input::Connect { conn: 1 });
    t.req(1, login("amy"));
    for n in 0..MAX_QUEUED as u64 {
        t.req(1, Request::Ping { nonce: n });
    }
    assert!(t.rec.closed.is_empty());
    t.req(1, Request::Ping { nonce: 0 });
    assert_eq!(t.rec.closed, vec![1]);
}

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
            Effect::Publish { msg, ack } => Some((msg, ack)),
            _ => None,
        })
        .collect()
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
        outcome: SeatOutcome::Seated(vec![(uid, "amy".into())]),
    });
    assert_eq!(t.rec.out.pop(), Some((1, Event::RoomEnterResult(ResultCode::OK))));
    t.rec.out.clear();

    // bob on node 9 logs in and enters the room: amy is told.
    let bob = 2 << 48 | 5;
    t.input(Input::Remote {
        node: 9,
        msg: BusMsg::Online {
            name: "bob".into(),
            uid: bob,
        },
    });
    t.input(Input::Remote {
        node: 9,
        msg: BusMsg::Enter {
            name: "bob".into(),
            uid: bob,
            room: 2,
        },
    });
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
    let Event::UserList { total, names, .. } =
        t.req(1, Request::UserList { after: String::new() }).remove(0).1
    else {
        panic!()
    };
    assert_eq!((total, names), (2, vec!["amy".to_owned(), "bob".to_owned()]));

    // amy's chat goes to the bus and is acknowledged only when published.
    let out = t.req(1, Request::RoomChat { message: "hi".into() });
    assert_eq!(out.len(), 1, "her own copy only: {out:?}");
    let published = publishes(&mut t);
    assert!(matches!(
        published.as_slice(),
        [(BusMsg::RoomChat { room: 2, .. }, Some(1))]
    ));
    t.input(Input::Published { conn: 1, ok: false });
    assert_eq!(
        t.rec.out.pop(),
        Some((1, Event::RoomChatResult(ResultCode::SERVICE_UNAVAILABLE)))
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
        outcome: SeatOutcome::Seated(vec![(uid, "amy".into())]),
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

#[test]
fn chat_beyond_the_rate_and_in_slow_mode_is_refused_and_counted() {
    let mut t = T::new(Config {
        chat_rate: 2,
        ..Config::default()
    });
    t.user(1, "amy", false);
    t.req(1, Request::RoomEnter { room: 0 });
    // Entering took a token; let it come back.
    t.now += Duration::from_secs(1);
    let chat = |t: &mut T| {
        t.req(1, Request::RoomChat { message: "hi".into() })
            .into_iter()
            .find_map(|(_, e)| match e {
                Event::RoomChatResult(c) => Some(c),
                _ => None,
            })
            .unwrap()
    };
    // A burst of twice the rate, then refusals until time passes.
    for _ in 0..4 {
        assert_eq!(chat(&mut t), ResultCode::OK);
    }
    assert_eq!(chat(&mut t), ResultCode::RATE_LIMITED);
    t.now += Duration::from_secs(1);
    assert_eq!(chat(&mut t), ResultCode::OK);
    assert_eq!(t.hub.drops().chat_rate_limited, 1);

    // Slow mode: one message per 30 s in room 0.
    assert!(t.hub.set_slow_mode(0, Some(Duration::from_secs(30))));
    t.now += Duration::from_secs(10);
    assert_eq!(chat(&mut t), ResultCode::OK);
    assert_eq!(chat(&mut t), ResultCode::RATE_LIMITED);
    t.now += Duration::from_secs(31);
    assert_eq!(chat(&mut t), ResultCode::OK);
    assert!(t.hub.set_slow_mode(0, None));
    assert!(!t.hub.set_slow_mode(5000, None), "no such room");
}

#[test]
fn a_connection_that_does_not_log_in_in_time_is_closed() {
    let mut t = T::new(Config {
        login_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    });
    t.input(Input::Connect { conn: 1 });
    t.user(2, "amy", false);
    t.now += Duration::from_secs(9);
    t.hub.expire_guests(t.now, &mut t.rec);
    assert!(t.rec.closed.is_empty());
    t.now += Duration::from_secs(2);
    t.hub.expire_guests(t.now, &mut t.rec);
    assert_eq!(t.rec.closed, vec![1], "the guest goes; the user stays");
    assert_eq!(t.hub.drops().login_timeouts, 1);
}
