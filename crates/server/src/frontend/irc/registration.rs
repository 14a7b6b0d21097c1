//! Registration's answers: the welcome (001-005 with ISUPPORT), the MOTD,
//! and the answer to a login (SASL's numerics, or why not).

use std::sync::Arc;

use bytes::BytesMut;
use plaza_proto::ResultCode;

use super::line;
use super::outbound::num;
use super::{Login, Session};

/// RPL_ISUPPORT's tokens (docs/IRC.md).
const ISUPPORT: &[&str] = &[
    "CASEMAPPING=ascii",
    "CHANLIMIT=#:1",
    "CHANMODES=,k,l,imnst",
    "CHATHISTORY=100",
    "CLIENTTAGDENY=*",
    "CHANNELLEN=50",
    "CHANTYPES=#",
    "KICKLEN=256",
    "MSGREFTYPES=msgid",
    "NAMELEN=128",
    "NETWORK=Plaza",
    "NICKLEN=32",
    // Channel operators and voices are the room's roles.
    "PREFIX=(ov)@+",
    "TARGMAX=PRIVMSG:1,NOTICE:1,JOIN:1,KICK:1",
    "TOPICLEN=256",
];

/// Registration is over: 001 to 005. LUSERS and the MOTD follow when
/// the user count the hub was asked for comes back.
pub(super) fn welcome(b: &mut BytesMut, server: &str, s: &mut Session) {
    s.registered = true;
    s.motd_due = true;
    let me = s.me().to_owned();
    let version = concat!("plaza-", env!("CARGO_PKG_VERSION"));
    num(b, server, &me, "001", &[&format!("Welcome to Plaza, {me}")]);
    num(
        b,
        server,
        &me,
        "002",
        &[&format!("Your host is {}, running {version}", server)],
    );
    num(
        b,
        server,
        &me,
        "003",
        &["This server speaks IRC as a front end to Plaza"],
    );
    num(
        b,
        server,
        &me,
        "004",
        &[server, version, "i", "iklmnoqstv", "klov"],
    );
    // At most 13 tokens a line, as clients expect.
    for tokens in ISUPPORT.chunks(13) {
        let mut tokens = tokens.to_vec();
        tokens.push("are supported by this server");
        num(b, server, &me, "005", &tokens);
    }
}

pub(super) fn put_motd(b: &mut BytesMut, server: &str, me: &str) {
    num(
        b,
        server,
        me,
        "375",
        &[&format!("- {} Message of the day -", server)],
    );
    num(
        b,
        server,
        me,
        "372",
        &["- Channels #0, #1, ... are Plaza's rooms; one at a time."],
    );
    num(b, server, me, "376", &["End of /MOTD command"]);
}

/// The answer to a login: SASL's numerics, the welcome, or why not.
pub(super) fn login(s: &mut Session, server: &str, code: ResultCode, b: &mut BytesMut) -> bool {
    let me = s.me().to_owned();
    let how = std::mem::replace(&mut s.login, Login::None);
    match (how, code) {
        (Login::Sasl(account), ResultCode::OK) => {
            s.login = Login::Done;
            let nick = s.nick.as_deref().unwrap_or(account.as_str());
            let mask = format!("{nick}!{nick}@{}", line::USER_HOST);
            num(
                b,
                server,
                &me,
                "900",
                &[&mask, &account, &format!("You are now logged in as {account}")],
            );
            num(b, server, &me, "903", &["SASL authentication successful"]);
            // The account's name is the nick.
            s.nick = Some(Arc::from(account.as_str()));
            if !s.username.is_empty() && !s.caps.negotiating && !s.registered {
                welcome(b, server, s);
                s.motd_due = false;
                put_motd(b, server, s.me());
            }
        }
        (Login::Sasl(_), _) => num(
            b,
            server,
            &me,
            "904",
            &[&format!("SASL authentication failed: {}", code.describe())],
        ),
        (Login::Pass | Login::Guest, ResultCode::OK) => {
            s.login = Login::Done;
            welcome(b, server, s);
        }
        (Login::Guest, ResultCode::INVALID_CREDENTIALS) => {
            s.nick = None;
            let text = "That nick is an account's: log in with SASL or PASS, or choose another";
            num(b, server, "*", "433", &[&me, text]);
        }
        (Login::Guest | Login::Pass, ResultCode::LOGIN_ALREADY) => {
            s.nick = None;
            num(b, server, "*", "433", &[&me, "Nickname is already in use"]);
        }
        (Login::Pass, ResultCode::INVALID_CREDENTIALS) => {
            num(b, server, &me, "464", &["Password incorrect"]);
            line::error(b, "Closing link: wrong name or password");
            return true;
        }
        (Login::Pass | Login::Guest, code) => {
            let text = format!("Closing link: {}", code.describe());
            line::error(b, &text);
            return true;
        }
        (other, _) => s.login = other,
    }
    false
}
