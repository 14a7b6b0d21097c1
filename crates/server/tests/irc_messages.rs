//! Messages over the IRC front end, end to end on 127.0.0.1: NOTICE stays
//! a notice (for IRC users and for binary clients that asked for notices),
//! what an IRC client can send reaches other IRC clients as it was sent,
//! and longer Plaza messages arrive whole, in several lines.

mod irc_client;

use irc_client::{Irc, irc_server};
use plaza_proto::{Event, Request, ResultCode, features};
use plaza_test_support::TestClient;

/// The text of a PRIVMSG line.
fn text(line: &str) -> &str {
    line.split_once(" :").map_or("", |(_, t)| t)
}

#[tokio::test]
async fn a_whisper_that_fills_a_clients_line_arrives_as_one_line() {
    let (_server, irc) = irc_server(true).await;
    let mut nick1 = Irc::register(irc, "nick1", None).await;
    let mut nick2 = Irc::register(irc, "nick2", None).await;

    // 512 bytes with its CRLF: the longest line a client may send (text
    // without a space needs no colon).
    for (head, tail) in [
        ("PRIVMSG nick2 :", ""),
        ("PRIVMSG nick2 :", "\u{1F603}"),
        ("PRIVMSG nick2 ", ""),
    ] {
        let full = "a".repeat(510 - head.len() - tail.len()) + tail;
        nick1.send(&format!("{head}{full}")).await;
        let got = nick2.until("PRIVMSG nick2").await;
        assert_eq!(got, format!(":nick1!nick1@plaza.users PRIVMSG nick2 :{full}"));
        assert!(got.len() + 2 > 512, "the source prefix takes it past 512");
    }
    // The next line is the next message: nothing was left over.
    nick1.send("PRIVMSG nick2 :next").await;
    assert_eq!(text(&nick2.until("PRIVMSG nick2").await), "next");
}

#[tokio::test]
async fn a_longer_plaza_message_arrives_whole_in_lines_a_client_could_send() {
    let (server, irc) = irc_server(true).await;
    let mut bob = Irc::register(irc, "bob", None).await;
    let mut amy = server.user("amy").await;
    // 1,024 bytes, the most a whisper holds, with multi-byte characters
    // to cut between.
    let message: String = "ab\u{e9}\u{1F603}".repeat(128);
    assert_eq!(message.len(), 1024);
    amy.send(Request::Whisper {
        to: "bob".into(),
        message: message.clone(),
    })
    .await;
    assert!(matches!(amy.recv().await, Event::WhisperResult(ResultCode::OK)));

    let mut got = String::new();
    let mut lines = 0;
    while got.len() < message.len() {
        let line = bob.until("PRIVMSG bob").await;
        let piece = text(&line);
        assert!(
            "PRIVMSG bob ".len() + piece.len() + 2 <= 512,
            "each piece fits a client's line: {} bytes",
            piece.len()
        );
        got.push_str(piece);
        lines += 1;
    }
    assert_eq!(got, message);
    assert_eq!(lines, 3);
}

/// The next event that is not presence news.
async fn next(c: &mut TestClient) -> Event {
    loop {
        match c.recv().await {
            Event::RoomNewUser { .. } | Event::RoomLeaveUser { .. } => {}
            e => return e,
        }
    }
}

#[tokio::test]
async fn a_notice_stays_a_notice_between_irc_and_binary_clients() {
    let (server, irc) = irc_server(true).await;
    // amy knows notices; ben takes numbered messages but not notices.
    let mut amy = server.user("amy").await;
    amy.hello_with(features::ALL).await;
    let mut ben = server.user("ben").await;
    ben.hello_with(features::NOTIFICATIONS | features::HISTORY).await;
    for c in [&mut amy, &mut ben] {
        assert_eq!(c.enter(1).await.1, ResultCode::OK);
    }
    let mut bob = Irc::connect(irc).await;
    bob.send("CAP REQ :echo-message").await;
    bob.send("NICK bob\r\nUSER bob 0 * :bob\r\nCAP END").await;
    bob.until(" 376 ").await;
    bob.join("#1").await;

    // An IRC NOTICE to the channel: a notice for amy, a message for ben,
    // and bob's own copy (echo-message) a NOTICE.
    bob.send("NOTICE #1 :hello there").await;
    assert_eq!(
        bob.until("#1 :hello").await,
        ":bob!bob@plaza.users NOTICE #1 :hello there"
    );
    assert!(
        matches!(next(&mut amy).await, Event::RoomNotice { name, message, .. } if name == "bob" && message == "hello there")
    );
    assert!(
        matches!(next(&mut ben).await, Event::RoomMessage { name, message, .. } if name == "bob" && message == "hello there")
    );

    // A binary client's ROOM_NOTICE reaches bob as a NOTICE.
    amy.send(Request::RoomNotice {
        id: 1,
        message: "deploy done".into(),
    })
    .await;
    assert!(matches!(
        next(&mut amy).await,
        Event::RoomSendResult {
            result: ResultCode::OK,
            ..
        }
    ));
    assert_eq!(
        bob.until("deploy").await,
        ":amy!amy@plaza.users NOTICE #1 :deploy done"
    );

    // Whispered notices, both ways.
    bob.send("NOTICE amy :psst").await;
    assert!(
        matches!(next(&mut amy).await, Event::RoomNotice { .. }),
        "amy's own notice first"
    );
    let heard = next(&mut amy).await;
    assert!(
        matches!(&heard, Event::WhisperNotice { from, message } if from == "bob" && message == "psst"),
        "{heard:?}"
    );
    amy.send(Request::WhisperNotice {
        to: "bob".into(),
        message: "back".into(),
    })
    .await;
    assert_eq!(
        bob.until("NOTICE bob").await,
        ":amy!amy@plaza.users NOTICE bob :back"
    );
}
