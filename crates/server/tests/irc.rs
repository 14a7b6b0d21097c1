//! The IRC front end end to end: real TCP on 127.0.0.1, an IRC client
//! written here from RFC 1459 and IRCv3, beside binary-protocol users in
//! the same rooms.

mod irc_client;

use base64::Engine as _;
use irc_client::{Irc, irc_server};
use plaza_proto::{Event, Request, ResultCode};
use plaza_test_support::{RedisServer, TestCert, TestClient, TestServer, within};
use tokio::io::AsyncWriteExt;

/// The next event that is not presence news or an acknowledgement.
async fn next_chat(c: &mut TestClient) -> Event {
    loop {
        match c.recv().await {
            Event::RoomNewUser { .. }
            | Event::RoomLeaveUser { .. }
            | Event::RoomChatResult(ResultCode::OK)
            | Event::WhisperResult(ResultCode::OK) => {}
            e => return e,
        }
    }
}

#[tokio::test]
async fn an_irc_guest_and_a_plaza_user_share_a_room_both_ways() {
    let (server, irc) = irc_server(true).await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(1).await.1, ResultCode::OK);

    let mut bob = Irc::register(irc, "bob", None).await;
    bob.send("JOIN #1").await;
    assert_eq!(bob.until("JOIN").await, ":bob!bob@plaza.users JOIN :#1");
    let names = bob.until(" 353 ").await;
    assert!(names.contains("amy") && names.contains("bob"), "{names}");
    bob.until(" 366 bob #1 ").await;
    assert!(
        matches!(amy.recv().await, Event::RoomNewUser { name, .. } if name == "bob"),
        "amy sees bob come in"
    );

    amy.send(Request::RoomChat {
        message: "hi bob".into(),
    })
    .await;
    assert_eq!(
        bob.until("PRIVMSG").await,
        ":amy!amy@plaza.users PRIVMSG #1 :hi bob"
    );
    assert!(matches!(next_chat(&mut amy).await, Event::RoomChat { name, .. } if name == "amy"));
    bob.send("PRIVMSG #1 :hi amy").await;
    let heard = next_chat(&mut amy).await;
    assert!(
        matches!(&heard, Event::RoomChat { name, message } if name == "bob" && message == "hi amy"),
        "{heard:?}"
    );

    // Whispers, both ways.
    bob.send("PRIVMSG amy :psst").await;
    let heard = next_chat(&mut amy).await;
    assert!(
        matches!(&heard, Event::Whisper { from, message } if from == "bob" && message == "psst"),
        "{heard:?}"
    );
    amy.send(Request::Whisper {
        to: "bob".into(),
        message: "back".into(),
    })
    .await;
    assert_eq!(
        bob.until("PRIVMSG bob").await,
        ":amy!amy@plaza.users PRIVMSG bob :back"
    );

    // Presence: amy leaves, bob sees her part; NAMES then lists bob only.
    amy.send(Request::RoomLeave).await;
    assert_eq!(bob.until("PART").await, ":amy!amy@plaza.users PART :#1");
    bob.send("NAMES #1").await;
    assert_eq!(bob.until(" 353 ").await, ":plaza 353 bob = #1 :bob");

    // A whisper to nobody is a numeric, not silence.
    bob.send("PRIVMSG nobody :hello?").await;
    assert!(bob.until(" 401 ").await.contains("nobody"));
}

#[tokio::test]
async fn joining_a_second_channel_parts_the_first() {
    let (server, irc) = irc_server(true).await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(2).await.1, ResultCode::OK);
    let mut bob = Irc::register(irc, "bob", None).await;
    bob.send("JOIN #2").await;
    bob.until(" 366 ").await;
    bob.send("JOIN #3").await;
    assert_eq!(bob.until("bob!").await, ":bob!bob@plaza.users PART :#2");
    assert_eq!(bob.until("bob!").await, ":bob!bob@plaza.users JOIN :#3");
    // amy saw bob come and go.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match amy.recv().await {
            Event::RoomNewUser { name, .. } => seen.push(format!("+{name}")),
            Event::RoomLeaveUser { .. } => seen.push("-".into()),
            e => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(seen, ["+bob", "-"]);
    // A channel past the rooms does not exist.
    bob.send("JOIN #9999").await;
    assert!(bob.until(" 403 ").await.contains("#9999"));
    // A second JOIN before the first is answered is refused, after it.
    bob.send("JOIN #5\r\nJOIN #6").await;
    assert_eq!(bob.until("bob!").await, ":bob!bob@plaza.users PART :#3");
    assert_eq!(bob.until("bob!").await, ":bob!bob@plaza.users JOIN :#5");
    assert!(bob.until(" 405 ").await.contains("#6"));
}

#[tokio::test]
async fn without_guests_a_client_without_credentials_is_told_and_closed() {
    let (_server, irc) = irc_server(false).await;
    let mut c = Irc::connect(irc).await;
    c.send("NICK eve").await;
    c.send("USER eve 0 * :Eve").await;
    let lines = c.until_closed().await;
    assert!(
        lines.iter().any(|l| l.starts_with(":plaza 464 eve ")),
        "{lines:?}"
    );
    assert!(lines.last().is_some_and(|l| l.starts_with("ERROR ")), "{lines:?}");
}

#[tokio::test]
async fn sasl_plain_and_pass_log_in_as_plaza_accounts() {
    let (server, irc) = irc_server(false).await;
    let mut reg = server.client().await;
    reg.register("carol", "pw").await;
    reg.register("dave", "pw").await;

    // SASL PLAIN during CAP negotiation.
    let mut carol = Irc::connect(irc).await;
    carol.send("CAP LS 302").await;
    assert!(carol.until("CAP * LS").await.contains("sasl"));
    carol.send("NICK carol").await;
    carol.send("USER carol 0 * :Carol").await;
    carol.send("CAP REQ :sasl").await;
    carol.until(" ACK :sasl").await;
    carol.send("AUTHENTICATE PLAIN").await;
    assert_eq!(carol.until("AUTHENTICATE").await, "AUTHENTICATE +");
    let plain = base64::engine::general_purpose::STANDARD.encode(b"\0carol\0pw");
    carol.send(&format!("AUTHENTICATE {plain}")).await;
    assert!(carol.until(" 900 ").await.contains("carol"));
    carol.until(" 903 ").await;
    carol.send("CAP END").await;
    carol.until(" 001 carol ").await;

    // The same account over the binary protocol is the same user: it is
    // already logged in.
    let mut again = server.client().await;
    assert_eq!(again.try_login("carol", "pw").await, ResultCode::LOGIN_ALREADY);

    // PASS logs in as the nick.
    let _dave = Irc::register(irc, "dave", Some("pw")).await;

    // A wrong password is refused and closed.
    let mut eve = Irc::connect(irc).await;
    eve.send("PASS nope").await;
    eve.send("NICK dave2").await;
    eve.send("USER d 0 * :D").await;
    let lines = eve.until_closed().await;
    assert!(lines.iter().any(|l| l.contains(" 464 ")), "{lines:?}");

    // A failed SASL exchange says 904 and lets the client go on.
    let mut mallory = Irc::connect(irc).await;
    mallory.send("AUTHENTICATE PLAIN").await;
    mallory.until("AUTHENTICATE +").await;
    let wrong = base64::engine::general_purpose::STANDARD.encode(b"\0carol\0wrong");
    mallory.send(&format!("AUTHENTICATE {wrong}")).await;
    mallory.until(" 904 ").await;
}

#[tokio::test]
async fn a_guest_cannot_take_an_accounts_name() {
    let (server, irc) = irc_server(true).await;
    let _amy = server.user("amy").await;
    let mut c = Irc::connect(irc).await;
    c.send("NICK amy").await;
    c.send("USER amy 0 * :Amy").await;
    assert!(c.until(" 433 ").await.contains("amy"));
    c.send("NICK amy2").await;
    c.until(" 001 amy2 ").await;
}

#[tokio::test]
async fn an_admin_kicks_and_quiets_over_irc() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("admin.secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let server = TestServer::with(|s| {
        s.irc_bind = Some("127.0.0.1:0".parse().unwrap());
        s.allow_guests = Some(true);
        s.admin_secret_file = Some(secret);
    })
    .await;
    let irc = server.running.irc_addr().unwrap();
    let mut op = Irc::register(irc, "op", None).await;
    op.send("OPER op s3cret").await;
    op.until(" 381 ").await;
    op.send("JOIN #1").await;
    op.until(" 366 ").await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(1).await.1, ResultCode::OK);
    op.until("amy!amy@plaza.users JOIN").await;

    op.send("MODE #1 +q amy").await;
    assert_eq!(op.until("MODE").await, ":op!op@plaza.users MODE #1 +q :amy");
    assert!(matches!(next_chat(&mut amy).await, Event::Muted { .. }));
    amy.send(Request::RoomChat { message: "x".into() }).await;
    assert_eq!(
        next_chat(&mut amy).await,
        Event::RoomChatResult(ResultCode::MUTED)
    );

    // KICK puts her out of the room (a room kick); KILL disconnects her.
    op.send("KICK #1 amy").await;
    assert_eq!(op.until("KICK").await, ":op!op@plaza.users KICK #1 amy :op");
    let kicked = amy
        .until("the room kick", |e| matches!(e, Event::RoomKicked { .. }))
        .await;
    assert!(matches!(kicked, Event::RoomKicked { by, .. } if by == "op"));
    op.send("KILL amy").await;
    let events = amy.until_closed().await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Kicked { .. })),
        "{events:?}"
    );

    // A user who is not an admin is refused.
    let mut bob = Irc::register(irc, "bob", None).await;
    bob.send("JOIN #1").await;
    bob.until(" 366 ").await;
    bob.send("KICK #1 op").await;
    bob.until(" 482 ").await;
}

#[tokio::test]
async fn bad_lines_get_numerics_and_registration_is_required() {
    let (_server, irc) = irc_server(true).await;
    let mut c = Irc::connect(irc).await;
    c.send("JOIN #1").await;
    c.until(" 451 ").await;
    c.send("PING :abc").await;
    assert_eq!(c.until("PONG").await, ":plaza PONG plaza :abc");
    c.send("NICK 1bad").await;
    c.until(" 432 ").await;
    let long = format!("PRIVMSG #1 :{}", "a".repeat(600));
    c.send(&long).await;
    c.until(" 417 ").await;
    c.send("NICK ok").await;
    c.send("USER ok 0 * :Ok").await;
    c.until(" 001 ok ").await;
    c.send("FROB").await;
    c.until(" 421 ok FROB ").await;
    c.send("PRIVMSG #1 :not in it").await;
    c.until(" 404 ").await;
    c.send("QUIT :bye").await;
    let rest = c.until_closed().await;
    assert!(rest.last().is_some_and(|l| l.starts_with("ERROR")), "{rest:?}");
}

#[tokio::test]
async fn replies_keep_the_order_of_the_lines_that_asked() {
    // Clients synchronise with PING: its PONG must not overtake the
    // answers to the lines before it, though those come from the hub.
    let (_server, irc) = irc_server(true).await;
    let mut c = Irc::register(irc, "pat", None).await;
    c.send("LUSERS\r\nPRIVMSG nobody :x\r\nJOIN #5\r\nPING :sync")
        .await;
    let mut seen = Vec::new();
    loop {
        let l = c.line().await.expect("open");
        let code = l.split(' ').nth(1).unwrap_or("").to_owned();
        seen.push(code.clone());
        if code == "PONG" {
            break;
        }
    }
    let at = |code: &str| {
        seen.iter()
            .position(|c| c == code)
            .unwrap_or_else(|| panic!("no {code} in {seen:?}"))
    };
    assert!(
        at("251") < at("401") && at("401") < at("JOIN") && at("JOIN") < at("PONG"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn server_time_tags_the_lines_of_those_who_asked_for_it() {
    let (server, irc) = irc_server(true).await;
    let mut tim = Irc::connect(irc).await;
    tim.send("CAP LS 302").await;
    assert!(tim.until(" LS ").await.contains("server-time"));
    tim.send("CAP REQ :server-time echo-message").await;
    tim.until(" ACK ").await;
    tim.send("NICK tim\r\nUSER tim 0 * :Tim\r\nCAP END").await;
    assert!(tim.until(" 001 tim ").await.starts_with("@time=20"));
    tim.send("JOIN #4").await;
    tim.until(" 366 ").await;
    let mut pat = Irc::register(irc, "pat", None).await;
    pat.send("JOIN #4").await;
    pat.until(" 366 ").await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(4).await.1, ResultCode::OK);

    amy.send(Request::RoomChat {
        message: "tick".into(),
    })
    .await;
    let stamped = tim.until("PRIVMSG").await;
    let (tag, line) = stamped.split_once(' ').expect("a tag");
    assert!(tag.starts_with("@time=20") && tag.ends_with('Z'), "{stamped}");
    assert_eq!(line, ":amy!amy@plaza.users PRIVMSG #4 :tick");
    assert_eq!(
        pat.until("PRIVMSG").await,
        ":amy!amy@plaza.users PRIVMSG #4 :tick"
    );
}

#[tokio::test]
async fn the_tls_listener_speaks_the_same_irc() {
    let cert = TestCert::new();
    let server = TestServer::with_tls(&cert, |s| {
        s.irc_bind = Some("127.0.0.1:0".parse().unwrap());
        s.irc_tls_bind = Some("127.0.0.1:0".parse().unwrap());
        s.allow_guests = Some(true);
    })
    .await;
    let tls = server.running.irc_tls_addr().expect("the IRC TLS listener");
    let mut c = Irc::connect_tls(tls, &cert.cert).await;
    c.send("NICK sec\r\nUSER sec 0 * :Sec").await;
    c.until(" 001 sec ").await;
    c.send("JOIN #2").await;
    c.until(" 366 ").await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(2).await.1, ResultCode::OK);
    amy.send(Request::RoomChat {
        message: "secure".into(),
    })
    .await;
    assert_eq!(
        c.until("PRIVMSG").await,
        ":amy!amy@plaza.users PRIVMSG #2 :secure"
    );
}

#[tokio::test]
async fn a_line_that_never_ends_closes_the_connection() {
    let (_server, irc) = irc_server(true).await;
    let mut c = Irc::register(irc, "eve", None).await;
    // Past the 4,096 bytes of tags and 512 of line, with no end in sight.
    let endless = "A".repeat(5_000);
    within("send", c.tx.write_all(endless.as_bytes()))
        .await
        .expect("write");
    let rest = c.until_closed().await;
    assert!(rest.iter().all(|l| !l.contains("PRIVMSG")), "{rest:?}");
    // A line that is not UTF-8 is refused with a FAIL, and the session goes on.
    let mut d = Irc::register(irc, "dan", None).await;
    within("send", d.tx.write_all(b"PRIVMSG #1 :\xff\xfe\r\n"))
        .await
        .expect("write");
    assert!(d.until("FAIL").await.contains("INVALID_UTF8"));
    d.send("PING :still").await;
    d.until("PONG").await;
}

#[tokio::test]
async fn guests_keep_the_rules_on_a_redis_store_shared_by_two_servers() {
    let redis = RedisServer::start().await;
    let node = || {
        let url = redis.url();
        TestServer::with(move |s| {
            s.store = Some(url);
            s.irc_bind = Some("127.0.0.1:0".parse().unwrap());
            s.allow_guests = Some(true);
        })
    };
    let (a, b) = (node().await, node().await);
    let (irc_a, irc_b) = (a.running.irc_addr().unwrap(), b.running.irc_addr().unwrap());
    let _amy = a.user("amy").await;

    // An account's name is not a guest's, on either server.
    let mut c = Irc::connect(irc_b).await;
    c.send("NICK amy\r\nUSER amy 0 * :Amy").await;
    assert!(c.until(" 433 ").await.contains("amy"));

    // A guest's nick is taken on the other server too: the store holds it.
    let _gus = Irc::register(irc_a, "gus", None).await;
    let mut again = Irc::connect(irc_b).await;
    again.send("NICK gus\r\nUSER gus 0 * :Gus").await;
    assert!(again.until(" 433 ").await.contains("gus"));
    again.send("NICK gus2").await;
    again.until(" 001 gus2 ").await;
}

#[tokio::test]
async fn a_nick_is_free_again_once_its_quit_closes_the_link() {
    let (_server, irc) = irc_server(true).await;
    for round in 0..3 {
        let mut c = Irc::register(irc, if round % 2 == 0 { "ali" } else { "ALI" }, None).await;
        c.send("QUIT :brb").await;
        let rest = c.until_closed().await;
        assert!(rest.last().is_some_and(|l| l.starts_with("ERROR")), "{rest:?}");
        // The link closed after the logout: the name is free at once.
    }
    let _back = Irc::register(irc, "ali", None).await;
}

/// userhost-in-names: NAMES (on JOIN and asked) lists `nick!user@host`,
/// with the user an IRC client gave; multi-prefix is acknowledged (Plaza's
/// members have at most one prefix, so lists do not change).
#[tokio::test]
async fn userhost_in_names_lists_every_member_with_its_user_and_host() {
    let (server, irc) = irc_server(true).await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(2).await.1, ResultCode::OK);
    let mut pat = Irc::connect(irc).await;
    pat.send("CAP LS 302").await;
    let ls = pat.until(" LS ").await;
    assert!(
        ls.contains("userhost-in-names") && ls.contains("multi-prefix"),
        "{ls}"
    );
    pat.send("CAP REQ :multi-prefix userhost-in-names").await;
    assert!(
        pat.until(" ACK ")
            .await
            .ends_with(":multi-prefix userhost-in-names")
    );
    pat.send("CAP LIST").await;
    let list = pat.until(" LIST ").await;
    assert!(
        list.contains("multi-prefix") && list.contains("userhost-in-names"),
        "{list}"
    );
    pat.send("NICK pat\r\nUSER patty 0 * :Pat\r\nCAP END").await;
    pat.until(" 376 ").await;
    pat.send("JOIN #2").await;
    let names = pat.until(" 353 ").await;
    assert!(
        names.ends_with(":@amy!amy@plaza.users pat!patty@plaza.users"),
        "{names}"
    );
    pat.until(" 366 ").await;
    pat.send("NAMES #2").await;
    let names = pat.until(" 353 ").await;
    assert!(
        names.ends_with(":@amy!amy@plaza.users pat!patty@plaza.users"),
        "{names}"
    );
    // Without the capability, nicks alone.
    let mut tom = Irc::register(irc, "tom", None).await;
    tom.send("JOIN #2").await;
    let names = tom.until(" 353 ").await;
    // amy opened the room: its operator.
    assert!(names.ends_with(":@amy pat tom"), "{names}");
}

#[tokio::test]
async fn part_and_quit_reasons_reach_the_channels_irc_users() {
    let (_server, irc) = irc_server(true).await;
    let mut kim = Irc::register(irc, "kim", None).await;
    kim.join("#6").await;
    let join = async |nick: &str| {
        let mut c = Irc::register(irc, nick, None).await;
        c.join("#6").await;
        c
    };

    let mut pat = join("pat").await;
    pat.send("PART #6 :see you").await;
    assert_eq!(pat.until(" PART ").await, ":pat!pat@plaza.users PART #6 :see you");
    assert_eq!(kim.until(" PART ").await, ":pat!pat@plaza.users PART #6 :see you");

    pat.send("JOIN #6").await;
    kim.until(" JOIN ").await;
    pat.send("QUIT :gone fishing").await;
    assert_eq!(
        kim.until("pat!").await,
        ":pat!pat@plaza.users QUIT :Quit: gone fishing"
    );

    // A client that drops without QUIT is gone as a QUIT too.
    let lee = join("lee").await;
    kim.until(" JOIN ").await;
    drop(lee);
    assert_eq!(
        kim.until("lee!").await,
        ":lee!lee@plaza.users QUIT :Connection closed"
    );
}

#[tokio::test]
async fn lusers_counts_the_users_now_and_the_most_seen() {
    let (_server, irc) = irc_server(true).await;
    let mut amy = Irc::register(irc, "amy", None).await;
    let mut bob = Irc::register(irc, "bob", None).await;
    bob.send("LUSERS").await;
    assert!(bob.until(" 265 ").await.contains(" 265 bob 2 2 :"));
    bob.send("QUIT").await;
    bob.until_closed().await;
    // QUIT logged bob out before his link closed.
    amy.send("LUSERS").await;
    assert!(amy.until(" 265 ").await.contains(" 265 amy 1 2 :"));
}

#[tokio::test]
async fn invite_tells_an_irc_user_and_only_from_a_member() {
    let (_server, irc) = irc_server(true).await;
    let mut kim = Irc::register(irc, "kim", None).await;
    let mut pat = Irc::register(irc, "pat", None).await;
    kim.send("INVITE pat #8").await;
    assert!(kim.until(" 442 ").await.contains(" 442 kim #8 :"));
    kim.join("#8").await;
    kim.send("INVITE pat #8").await;
    assert_eq!(kim.until(" 341 ").await, ":plaza 341 kim pat :#8");
    assert_eq!(pat.until("INVITE").await, ":kim!kim@plaza.users INVITE pat :#8");
    kim.send("INVITE nobody #8").await;
    assert!(kim.until(" 401 ").await.contains(" 401 kim nobody :"));
    pat.join("#8").await;
    kim.send("INVITE pat #8").await;
    assert!(kim.until(" 443 ").await.contains(" 443 kim pat #8 :"));
}

#[tokio::test]
async fn whowas_tells_of_irc_users_who_left_newest_first() {
    let (_server, irc) = irc_server(true).await;
    let mut amy = Irc::register(irc, "amy", None).await;
    amy.send("WHOWAS zed").await;
    assert!(amy.until(" 406 ").await.contains(" 406 amy zed :"));
    assert!(amy.until(" 369 ").await.contains(" 369 amy zed :"));
    // zed comes and goes twice, as two different users.
    for (user, real) in [("first", "Zed One"), ("second", "Zed Two")] {
        let mut zed = Irc::connect(irc).await;
        zed.send(&format!("NICK zed\r\nUSER {user} 0 * :{real}")).await;
        zed.until(" 376 ").await;
        zed.send("QUIT :bye").await;
        zed.until_closed().await;
        // Remembered before its link was closed.
        amy.send("WHOWAS zed 1").await;
        let lines = amy.lines_until(" 369 ").await;
        let newest = format!(":plaza 314 amy zed {user} plaza.users * :{real}");
        assert_eq!(
            lines.iter().filter(|l| l.contains(" 314 ")).collect::<Vec<_>>(),
            [&newest]
        );
    }
    amy.send("WHOWAS ZED").await;
    let lines = amy.lines_until(" 369 ").await;
    let users: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(" 314 "))
        .map(String::as_str)
        .collect();
    assert_eq!(
        users,
        [
            ":plaza 314 amy zed second plaza.users * :Zed Two",
            ":plaza 314 amy zed first plaza.users * :Zed One"
        ]
    );
    assert!(
        lines.iter().any(|l| l.starts_with(":plaza 312 amy zed plaza ")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn who_lists_a_channel_a_nick_or_a_mask() {
    let (server, irc) = irc_server(true).await;
    let mut amy = Irc::register(irc, "amy", None).await;
    let _bob = Irc::register(irc, "bob", None).await;
    amy.join("#3").await;
    let mut carl = server.user("carl").await;
    assert_eq!(carl.enter(3).await.1, ResultCode::OK);
    amy.until("JOIN").await;
    let who = async |amy: &mut Irc, what: &str| {
        amy.send(&format!("WHO {what}")).await;
        let lines = amy.lines_until(" 315 ").await;
        let replies: Vec<String> = lines
            .iter()
            .filter(|l| l.contains(" 352 "))
            .map(|l| {
                let p: Vec<&str> = l.split(' ').collect();
                format!("{} {}", p[3], p[7])
            })
            .collect();
        assert!(
            lines.last().unwrap().contains(&format!(" 315 amy {what} :")),
            "{lines:?}"
        );
        replies
    };
    // A channel: its members, under its name.
    assert_eq!(who(&mut amy, "#3").await, ["#3 amy", "#3 carl"]);
    // A nick: the user found, under `*`.
    assert_eq!(who(&mut amy, "BOB").await, ["* bob"]);
    // A mask finds only you and those in your channel (everyone is
    // invisible to the others).
    assert_eq!(who(&mut amy, "*").await, ["* amy", "* carl"]);
    assert_eq!(who(&mut amy, "c?rl").await, ["* carl"]);
    assert_eq!(who(&mut amy, "b*").await, Vec::<String>::new());
}
