//! Mutes, admin, kick, user lists, rate limits and slow mode.

use super::*;

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
