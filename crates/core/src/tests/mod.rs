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
    fn fanout_packet(
        &mut self,
        packet: &bytes::Bytes,
        _: std::time::Instant,
        to: impl IntoIterator<Item = Recipient>,
    ) {
        let event = Event::decode(packet).expect("the hub encodes valid packets");
        self.out.extend(to.into_iter().map(|r| (r.conn, event.clone())));
    }
    fn send_packets<'a>(
        &mut self,
        to: Conn,
        packets: impl IntoIterator<Item = (&'a bytes::Bytes, std::time::Instant)>,
    ) {
        for (packet, _) in packets {
            let event = Event::decode(packet).expect("history holds valid packets");
            self.out.push((to, event));
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

/// What an entrant of `room` is told of its operator `uid` before the
/// member list.
fn op_state(room: u32, uid: u64) -> Event {
    Event::RoomRole {
        room,
        uid,
        roles: plaza_proto::roles::OPERATOR,
        by: String::new(),
    }
}

fn login(name: &str) -> Request {
    Request::Login {
        name: name.into(),
        password: "pw".into(),
    }
}

mod away;
mod cluster;
mod history;
mod login;
mod moderation;
mod modes;
mod notices;
mod numbering;
mod ops;
mod rooms;
mod topics;
