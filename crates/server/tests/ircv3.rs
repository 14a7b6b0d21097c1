//! IRCv3 over the IRC front end, end to end on 127.0.0.1: labeled
//! responses in batches, message ids, and draft/chathistory over a room's
//! history, beside a binary-protocol user in the same room.

mod irc_client;

use irc_client::{Irc, irc_server};
use plaza_proto::{Event, Request, ResultCode};

/// A guest that asked for `caps` before registering as `nick`.
async fn with_caps(addr: std::net::SocketAddr, nick: &str, caps: &str) -> Irc {
    let mut c = Irc::connect(addr).await;
    c.send("CAP LS 302").await;
    c.until(" LS ").await;
    c.send(&format!("CAP REQ :{caps}")).await;
    c.until(" ACK ").await;
    c.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nCAP END"))
        .await;
    c.until(" 376 ").await;
    c
}

/// The value of tag `key` in `line`.
fn tag<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let tags = line.strip_prefix('@')?.split(' ').next()?;
    tags.split(';')
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// A line without its tags.
fn bare(line: &str) -> &str {
    match line.strip_prefix('@') {
        Some(rest) => rest.split_once(' ').map_or("", |(_, l)| l),
        None => line,
    }
}

/// The lines of the next batch: from `BATCH +ref` to `BATCH -ref`, both
/// included, and its reference; every line between must carry it.
async fn batch(c: &mut Irc) -> (String, Vec<String>) {
    let open = c.until(" BATCH +").await;
    let id = bare(&open).split(' ').nth(2).expect("a reference")[1..]
        .trim_start_matches(':')
        .to_owned();
    let mut lines = vec![open];
    loop {
        let l = c.line().await.expect("the batch ends");
        let done = bare(&l).contains(&format!("BATCH :-{id}"));
        if !done {
            assert_eq!(tag(&l, "batch"), Some(id.as_str()), "{l}");
        }
        lines.push(l);
        if done {
            return (id, lines);
        }
    }
}

#[tokio::test]
async fn labeled_lines_come_back_under_their_label_acked_tagged_or_batched() {
    let (server, addr) = irc_server(true).await;
    let caps = "batch labeled-response echo-message message-tags";
    let mut lee = with_caps(addr, "lee", caps).await;

    // One line answers: it carries the label.
    lee.send("@label=a1 PING :x").await;
    let pong = lee.until("PONG").await;
    assert_eq!(tag(&pong, "label"), Some("a1"), "{pong}");
    // No line answers: an ACK says the line was handled.
    lee.send("@label=a2 PONG :x").await;
    let ack = lee.line().await.expect("open");
    assert_eq!((tag(&ack, "label"), bare(&ack)), (Some("a2"), ":plaza ACK"));

    // A JOIN's answer is several lines, from the hub: one batch.
    lee.send("@label=a3 JOIN #3").await;
    let (_, lines) = batch(&mut lee).await;
    assert_eq!(tag(&lines[0], "label"), Some("a3"), "{lines:?}");
    assert!(bare(&lines[0]).ends_with(":labeled-response"), "{lines:?}");
    let commands: Vec<&str> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| bare(l).split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(commands, ["JOIN", "353", "366"], "{lines:?}");

    // A room message: the sender's own copy carries the label, the other
    // members' copies do not; all carry the same message id.
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(3).await.1, ResultCode::OK);
    let mut kim = with_caps(addr, "kim", "message-tags").await;
    kim.join("#3").await;
    lee.send("@label=a4 PRIVMSG #3 :hello").await;
    let own = lee.until("PRIVMSG").await;
    assert_eq!(tag(&own, "label"), Some("a4"), "{own}");
    assert_eq!(bare(&own), ":lee!lee@plaza.users PRIVMSG #3 :hello");
    let theirs = kim.until("PRIVMSG").await;
    assert_eq!(tag(&theirs, "label"), None, "{theirs}");
    assert_eq!(tag(&theirs, "msgid"), tag(&own, "msgid"));
    assert!(tag(&own, "msgid").is_some(), "{own}");
    let heard = amy
        .until("lee's message", |e| matches!(e, Event::RoomChat { .. }))
        .await;
    assert_eq!(
        heard,
        Event::RoomChat {
            name: "lee".into(),
            message: "hello".into()
        }
    );

    // Without labeled-response, a label is not used.
    kim.send("@label=b1 PING :y").await;
    assert_eq!(tag(&kim.until("PONG").await, "label"), None);
}

#[tokio::test]
async fn chathistory_pages_through_the_rooms_history_with_the_live_ids_and_times() {
    let (server, addr) = irc_server(true).await;
    let caps = "batch draft/chathistory message-tags server-time";
    let mut ivy = with_caps(addr, "ivy", caps).await;
    ivy.join("#5").await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(5).await.1, ResultCode::OK);

    // Five messages from a binary user, as ivy saw them live.
    let mut live = Vec::new();
    for i in 1..=5 {
        amy.say(&format!("m{i}")).await;
        let l = ivy.until("PRIVMSG #5").await;
        assert!(tag(&l, "time").is_some() && tag(&l, "msgid").is_some(), "{l}");
        live.push(l);
    }
    let id = |i: usize| tag(&live[i - 1], "msgid").unwrap().to_owned();
    // The lines of a history batch, without their batch tag, as the
    // live ones were.
    let page = async |ivy: &mut Irc, line: String| {
        ivy.send(&line).await;
        let (id, lines) = batch(ivy).await;
        assert!(bare(&lines[0]).ends_with("chathistory :#5"), "{lines:?}");
        lines[1..lines.len() - 1]
            .iter()
            .map(|l| l.replacen(&format!("batch={id};"), "", 1))
            .collect::<Vec<_>>()
    };
    assert_eq!(page(&mut ivy, "CHATHISTORY LATEST #5 * 10".into()).await, live);
    assert_eq!(
        page(&mut ivy, "CHATHISTORY LATEST #5 * 2".into()).await,
        live[3..]
    );
    let before = format!("CHATHISTORY BEFORE #5 msgid={} 2", id(4));
    assert_eq!(page(&mut ivy, before).await, live[1..3]);
    let after = format!("CHATHISTORY AFTER #5 msgid={} 2", id(2));
    assert_eq!(page(&mut ivy, after).await, live[2..4]);
    let between = format!("CHATHISTORY BETWEEN #5 msgid={} msgid={} 10", id(1), id(5));
    assert_eq!(page(&mut ivy, between).await, live[1..4]);
    let back = format!("CHATHISTORY BETWEEN #5 msgid={} msgid={} 2", id(5), id(1));
    assert_eq!(page(&mut ivy, back).await, live[2..4]);
    let around = format!("CHATHISTORY AROUND #5 msgid={} 3", id(3));
    assert_eq!(page(&mut ivy, around).await, live[1..4]);
    let latest_after = format!("CHATHISTORY LATEST #5 msgid={} 10", id(3));
    assert_eq!(page(&mut ivy, latest_after).await, live[3..]);

    // What it cannot answer, it says.
    ivy.send("CHATHISTORY LATEST #6 * 10").await;
    assert!(
        ivy.until("FAIL")
            .await
            .contains("FAIL CHATHISTORY INVALID_TARGET LATEST #6")
    );
    ivy.send("CHATHISTORY LATEST #5 timestamp=2026-01-01T00:00:00.000Z 10")
        .await;
    assert!(
        ivy.until("FAIL")
            .await
            .contains("FAIL CHATHISTORY INVALID_PARAMS")
    );
    ivy.send("CHATHISTORY LATEST #5 * x").await;
    assert!(
        ivy.until("FAIL")
            .await
            .contains("FAIL CHATHISTORY INVALID_PARAMS")
    );
}

#[tokio::test]
async fn an_irc_client_that_drops_leaves_its_channel_at_once() {
    // IRC sessions take room messages with sequence numbers, as history
    // clients do; they must not keep a seat in the resume window, since
    // an IRC client does not rejoin.
    let (server, addr) = irc_server(true).await;
    let mut amy = server.user("amy").await;
    assert_eq!(amy.enter(2).await.1, ResultCode::OK);
    let mut pat = Irc::register(addr, "pat", None).await;
    pat.join("#2").await;
    amy.until("pat's arrival", |e| matches!(e, Event::RoomNewUser { .. }))
        .await;
    drop(pat);
    amy.until("pat's leave", |e| matches!(e, Event::RoomLeaveUser { .. }))
        .await;
    // And its name is free again.
    let _pat = Irc::register(addr, "pat", None).await;
    let list = amy.ask(Request::UserList { after: String::new() }).await;
    let Event::UserList { names, .. } = list else {
        panic!("{list:?}")
    };
    assert_eq!(names.iter().filter(|n| n.as_str() == "pat").count(), 1);
}

#[tokio::test]
async fn away_notify_tells_the_channel_when_its_users_go_away_and_come_back() {
    let (_server, addr) = irc_server(true).await;
    let mut kim = with_caps(addr, "kim", "away-notify").await;
    kim.join("#4").await;
    let mut pat = Irc::register(addr, "pat", None).await;
    pat.join("#4").await;

    pat.send("AWAY :lunch").await;
    pat.until(" 306 ").await;
    assert_eq!(kim.until("AWAY").await, ":pat!pat@plaza.users AWAY :lunch");
    pat.send("AWAY").await;
    pat.until(" 305 ").await;
    assert_eq!(kim.until("AWAY").await, ":pat!pat@plaza.users AWAY");

    // Joining while away: the channel hears it after the JOIN, the
    // joiner does not hear of itself.
    pat.send("PART #4\r\nAWAY :again\r\nJOIN #4").await;
    let joined = pat.lines_until(" 366 ").await;
    assert!(!joined.iter().any(|l| l.contains(" AWAY ")), "{joined:?}");
    assert!(
        kim.until(" JOIN ")
            .await
            .starts_with(":pat!pat@plaza.users JOIN ")
    );
    assert_eq!(
        kim.line().await.as_deref(),
        Some(":pat!pat@plaza.users AWAY :again")
    );
}

#[tokio::test]
async fn with_echo_message_a_ping_after_a_message_is_answered_after_its_copy() {
    // Clients synchronise with PING: the copy of a room message they sent
    // is part of the answer to it, so it comes before the PONG.
    let (_server, addr) = irc_server(true).await;
    let mut eve = with_caps(addr, "eve", "echo-message").await;
    eve.join("#7").await;
    eve.send("PRIVMSG #7 :one\r\nPRIVMSG #7 :two\r\nPING :sync").await;
    let seen = eve.lines_until("PONG").await;
    assert_eq!(
        seen,
        [
            ":eve!eve@plaza.users PRIVMSG #7 :one",
            ":eve!eve@plaza.users PRIVMSG #7 :two",
            ":plaza PONG plaza :sync"
        ]
    );
}

#[tokio::test]
async fn setname_changes_the_real_name_and_tells_those_who_asked() {
    let (_server, addr) = irc_server(true).await;
    let mut sam = with_caps(addr, "sam", "setname").await;
    let mut kim = with_caps(addr, "kim", "setname").await;
    let mut pat = Irc::register(addr, "pat", None).await;
    for c in [&mut sam, &mut kim, &mut pat] {
        c.join("#9").await;
    }
    sam.send("SETNAME :Samuel Q").await;
    assert_eq!(
        sam.until("SETNAME").await,
        ":sam!sam@plaza.users SETNAME :Samuel Q"
    );
    assert_eq!(
        kim.until("SETNAME").await,
        ":sam!sam@plaza.users SETNAME :Samuel Q"
    );
    sam.send("WHOIS sam").await;
    assert!(sam.until(" 311 ").await.ends_with(":Samuel Q"));
    // pat did not ask for setname: it hears nothing of it (its next line
    // is the answer to its own PING).
    pat.send("PING :x").await;
    assert!(pat.line().await.expect("open").contains("PONG"));
    sam.send(&format!("SETNAME :{}", "n".repeat(129))).await;
    assert!(sam.until("FAIL").await.contains("FAIL SETNAME INVALID_REALNAME"));
}

/// In cluster mode a room with members on two nodes has one numbering: IRC
/// users on either node see a message under the same `msgid`, and page
/// through the same history with it.
#[tokio::test]
async fn a_message_has_the_same_msgid_on_every_node_of_a_cluster() {
    let redis = plaza_test_support::RedisServer::start().await;
    let node = async || {
        let url = redis.url();
        let server = plaza_test_support::TestServer::with(move |s| {
            s.store = Some(url);
            s.cluster = Some(true);
            s.irc_bind = Some("127.0.0.1:0".parse().unwrap());
            s.allow_guests = Some(true);
            s.enter_leave_delay_ms = Some(0);
        })
        .await;
        let addr = server.running.irc_addr().expect("IRC listener");
        (server, addr)
    };
    let ((a, irc_a), (_b, irc_b)) = (node().await, node().await);
    let caps = "batch draft/chathistory message-tags";
    let mut ivy = with_caps(irc_a, "ivy", caps).await;
    ivy.join("#5").await;
    let mut joe = with_caps(irc_b, "joe", caps).await;
    joe.join("#5").await;
    let mut amy = a.user("amy").await;
    assert_eq!(amy.enter(5).await.1, ResultCode::OK);
    amy.say("hello").await;
    let (on_a, on_b) = (ivy.until("PRIVMSG #5").await, joe.until("PRIVMSG #5").await);
    let id = tag(&on_a, "msgid").expect("a msgid");
    assert_eq!(tag(&on_b, "msgid"), Some(id));
    // joe's node finds it by that id.
    joe.send(&format!("CHATHISTORY AROUND #5 msgid={id} 5")).await;
    let (_, lines) = batch(&mut joe).await;
    assert!(
        lines
            .iter()
            .any(|l| tag(l, "msgid") == Some(id) && l.ends_with(":hello")),
        "{lines:?}"
    );
}
