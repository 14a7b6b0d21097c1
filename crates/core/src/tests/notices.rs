//! Notices (ROOM_NOTICE, WHISPER_NOTICE): each member gets one in the form
//! it asked for, and a notice stays one in history and in an inbox.

use super::*;
use plaza_proto::features;

fn config() -> Config {
    Config {
        resume_window: Duration::from_secs(60),
        ..Config::default()
    }
}

impl T {
    /// A logged-in user with `features`, in room 3.
    fn member_with(&mut self, conn: Conn, name: &str, features: u32) {
        self.user(conn, name, false);
        self.req(conn, Request::Hello { version: 1, features });
        self.req(conn, Request::RoomEnter { room: 3 });
        self.rec.out.clear();
    }
}

fn notice(seq: u64) -> Event {
    Event::RoomNotice {
        room: 3,
        seq,
        name: "amy".into(),
        message: "build finished".into(),
    }
}

fn message(seq: u64) -> Event {
    Event::RoomMessage {
        room: 3,
        seq,
        name: "amy".into(),
        message: "build finished".into(),
    }
}

const ALL: u32 = features::NOTIFICATIONS | features::HISTORY | features::NOTICES;
const HISTORY: u32 = features::NOTIFICATIONS | features::HISTORY;

#[test]
fn a_room_notice_reaches_each_member_in_the_form_it_asked_for() {
    let mut t = T::new(config());
    t.member_with(1, "amy", ALL);
    t.member_with(2, "bob", HISTORY);
    t.member_with(3, "cat", features::NOTIFICATIONS);
    t.seed_user(4, "dan");
    t.req(4, Request::RoomEnter { room: 3 });
    t.rec.out.clear();

    let said = Request::RoomNotice {
        id: 7,
        message: "build finished".into(),
    };
    let mut out = t.req(1, said.clone());
    out.retain(|(_, e)| !matches!(e, Event::RoomNewUser { .. }));
    out.sort_by_key(|(c, _)| *c);
    let seed = Event::RoomChat {
        name: "amy".into(),
        message: "build finished".into(),
    };
    assert_eq!(
        out,
        [
            (
                1,
                Event::RoomSendResult {
                    result: ResultCode::OK,
                    seq: 1
                }
            ),
            (1, notice(1)),
            (2, message(1)),
            (3, seed.clone()),
            (4, seed),
        ]
    );
    // A resend of the same id is answered again, not delivered twice.
    assert_eq!(
        t.req(1, said),
        [(
            1,
            Event::RoomSendResult {
                result: ResultCode::OK,
                seq: 1
            }
        )]
    );

    // Kept as a notice: a page of history gives each its form.
    for (conn, form) in [(1, notice(1)), (2, message(1))] {
        let page = Request::History {
            page: plaza_proto::Page::Latest,
            limit: 10,
        };
        let out = t.req(conn, page);
        assert_eq!(out[0], (conn, form));
    }
}

#[test]
fn a_room_notice_is_refused_as_room_chat_is() {
    let mut t = T::new(config());
    t.user(1, "amy", false);
    let said = Request::RoomNotice {
        id: 0,
        message: "hi".into(),
    };
    assert_eq!(
        t.req(1, said),
        [(
            1,
            Event::RoomSendResult {
                result: ResultCode::USER_IN_LOBBY,
                seq: 0
            }
        )]
    );
}

#[test]
fn a_whispered_notice_is_one_to_those_that_know_notices_and_kept_as_one() {
    let mut t = T::new(config());
    t.member_with(1, "amy", ALL);
    t.member_with(2, "bob", ALL);
    t.member_with(3, "cat", HISTORY);
    let to = |to: &str| Request::WhisperNotice {
        to: to.into(),
        message: "ping".into(),
    };
    let as_notice = Event::WhisperNotice {
        from: "amy".into(),
        message: "ping".into(),
    };
    let as_whisper = Event::Whisper {
        from: "amy".into(),
        message: "ping".into(),
    };
    let ok = (1, Event::WhisperResult(ResultCode::OK));
    assert_eq!(t.req(1, to("bob")), [(2, as_notice.clone()), ok.clone()]);
    assert_eq!(t.req(1, to("cat")), [(3, as_whisper), ok.clone()]);

    // bob drops (history on: it may come back) and is whispered while
    // away: it gets the notice as a notice when it logs in again.
    t.input(Input::Disconnect { conn: 2 });
    t.rec.out.clear();
    assert_eq!(t.req(1, to("bob")), [ok]);
    t.connect(5);
    t.req(
        5,
        Request::Hello {
            version: 1,
            features: ALL,
        },
    );
    let login = Request::Login {
        name: "bob".into(),
        password: "pw".into(),
    };
    t.req(5, login);
    let Some(Effect::Authenticate { ticket, .. }) = t.rec.effects.pop() else {
        panic!("expected a credential check")
    };
    t.input(Input::AuthDone {
        conn: 5,
        ticket,
        outcome: AuthOutcome::valid(false),
    });
    let got: Vec<_> = (t.rec.out.drain(..))
        .filter(|(c, e)| *c == 5 && !matches!(e, Event::LoginResult(_)))
        .collect();
    assert_eq!(got, [(5, as_notice)]);
}
