//! Logging in, HELLO, REGISTER, queued requests, logout, shutdown.

use super::*;

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
    let all = Event::Hello {
        result: ResultCode::OK,
        version: plaza_proto::VERSION,
        features: plaza_proto::features::ALL,
        rooms: Config::default().rooms,
    };
    assert_eq!(out, vec![(1, all)], "only the features the server has");
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
