//! `plaza chat`: a terminal chat session that survives a dropped connection.
//!
//! It connects before asking for the password (no server, no prompt), logs
//! in, and then reads commands. When the connection drops (a network
//! change, a server restart) it reconnects on its own with its resume
//! token, falling back to the password, and puts the user back in the room
//! they were in. Only a kick, `/quit` or the end of input end the session.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use plaza_client::{Notifications, PlazaClient, Target};
use plaza_proto::{Event, Request, ResultCode};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};

mod show;

/// Waits before each reconnection attempt: about 8 s in all.
const BACKOFF_MS: [u64; 7] = [0, 100, 300, 600, 1000, 2000, 4000];

fn help(rooms: u32) -> String {
    format!(
        "commands:
  TEXT                 chat in your room
  /join N [KEY]        enter room N (0 to {}; leaves the room you are in)
  /leave               leave the room      /users          list logged-in users
  /topic [TEXT]        set your room's topic (no TEXT: clear it)
  /op NAME, /deop NAME (room operator) make NAME an operator of your room, or not
  /voice NAME, /devoice NAME  (room operator) let NAME speak when the room is
                       moderated, or not
  /roomkick NAME [WHY] (room operator) put NAME out of your room
  /invite NAME         invite NAME into your room (past its invite-only mode)
  /mode [t][m][s][i] [LIMIT] [KEY]  (room operator) set your room's modes:
                       t only operators set the topic, m only operators and
                       voiced members speak, s not listed to others, i
                       invited users only
  /w NAME TEXT         whisper to NAME     /broadcast TEXT message everyone
  /echo TEXT           echo test           /logout         log out, stay connected
  /login [NAME]        log in again (as NAME: asks for its password)
  /admin [SECRET]      become administrator
  /kick NAME           (admin) disconnect NAME
  /mute NAME [SECS]    (admin) mute NAME   /unmute NAME    (admin) lift a mute
  /shutdown            (admin) stop the server
  /help                this text           /quit           leave",
        rooms.saturating_sub(1)
    )
}

/// What the user types: a terminal, or a script on standard input.
struct Input {
    lines: Lines<BufReader<Stdin>>,
    interactive: bool,
}

impl Input {
    async fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        Ok(self.lines.next_line().await?)
    }

    /// A password: prompted for (not echoed) on a terminal, else the next
    /// line of the script.
    async fn password(&mut self, user: &str) -> anyhow::Result<String> {
        if self.interactive {
            let prompt = format!("password for {user}: ");
            return tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt))
                .await?
                .context("reading the password");
        }
        self.next_line()
            .await?
            .with_context(|| format!("scripted mode: the password for {user} must be the next line"))
    }
}

/// Connects, with one line of explanation when it cannot.
async fn connect(server: &Target) -> anyhow::Result<(PlazaClient, Notifications)> {
    PlazaClient::connect(server.clone()).await.map_err(|e| {
        let mut root: &dyn std::error::Error = &e;
        while let Some(source) = root.source() {
            root = source;
        }
        anyhow::anyhow!(
            "cannot connect to {} ({root}): is plaza-server running there? (start one with: cargo run --release -p plaza-server)",
            server.addr
        )
    })
}

/// "ok: TEXT", or "error: ACTION failed: why (code)".
fn outcome(action: &str, ok: &str, code: ResultCode) -> String {
    if code.is_ok() {
        format!("ok: {ok}")
    } else {
        format!("error: {action} failed: {code}")
    }
}

pub(crate) async fn chat(server: Target, user: String, register: bool) -> anyhow::Result<()> {
    let mut input = Input {
        lines: BufReader::new(tokio::io::stdin()).lines(),
        interactive: std::io::stdin().is_terminal(),
    };
    let (client, notes) = connect(&server).await?;
    let password = input.password(&user).await?;
    if register {
        let r = client
            .request(Request::Register {
                name: user.clone(),
                password: password.clone(),
            })
            .await?;
        let code = PlazaClient::result_of(&r);
        if !code.is_ok() {
            let hint = if code == ResultCode::NAME_TAKEN {
                " (to log in, leave out --register)"
            } else {
                ""
            };
            bail!("register {user} failed: {code}{hint}");
        }
        println!("ok: registered {user}");
    }
    let code = client.login(&user, &password).await?;
    if !code.is_ok() {
        bail!("login as {user} failed: {code}");
    }
    println!(
        "logged in as {user}; rooms are numbered 0 to {}; /help lists the commands",
        client.rooms().saturating_sub(1)
    );
    let mut session = Session {
        client,
        notes,
        server,
        user,
        password,
        logged_in: true,
        room: None,
        key: None,
        names: HashMap::new(),
        kicked: false,
        next_id: message_ids(),
        unsent: None,
    };
    session.run(&mut input).await
}

struct Session {
    client: PlazaClient,
    notes: Notifications,
    server: Target,
    user: String,
    password: String,
    logged_in: bool,
    room: Option<i32>,
    /// The key it was entered with, to enter it again after a drop.
    key: Option<String>,
    /// Room members by uid, to name who left.
    names: HashMap<u64, String>,
    kicked: bool,
    /// The id the next room message gets (ROOM_SEND), and the message
    /// whose answer has not come yet: resent with its id after a drop, so
    /// it is delivered once however the drop fell.
    next_id: u64,
    unsent: Option<(u64, String)>,
}

/// A starting point for this run's message ids that no earlier run of the
/// same user reached (the clock in nanoseconds).
fn message_ids() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX) | 1)
}

/// The client library's word for a dropped connection.
fn is_drop(e: &Event) -> bool {
    matches!(e, Event::Notice { message } if message == "disconnected")
}

impl Session {
    async fn run(&mut self, input: &mut Input) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                line = input.next_line() => {
                    let Some(line) = line? else { break };
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    let done = self.command(line, input).await;
                    // What the server told before its answer, first; a
                    // drop among it is acted on after the answer.
                    let dropped = done.is_ok() && self.drain_notes();
                    match done {
                        Ok(Some(text)) if dropped => {
                            println!("{text}");
                            self.reconnect().await?;
                        }
                        Ok(Some(text)) => println!("{text}"),
                        Ok(None) => break,
                        // The connection dropped mid-request: the request
                        // is lost; come back, then take the next line.
                        Err(e) => {
                            println!("error: {e}");
                            self.reconnect().await?;
                            if self.unsent.is_some() {
                                // Kept for the next try if this one drops too.
                                match self.send_unsent().await {
                                    Ok(text) => println!("{text}"),
                                    Err(e) => println!("error: {e}"),
                                }
                            }
                        }
                    }
                }
                note = self.notes.recv() => match note {
                    Some(e) if is_drop(&e) => self.reconnect().await?,
                    Some(e) => self.show(&e),
                    None => self.reconnect().await?,
                },
                _ = tokio::time::sleep(Duration::from_secs(30)), if input.interactive => {
                    // Keep the connection alive while the user is quiet.
                    let _ = self.client.request(Request::Ping { nonce: 0 }).await;
                }
            }
        }
        self.client.close().await;
        Ok(())
    }

    /// Prints what is waiting (a kick, a notice) before acting on a drop.
    /// Returns whether the connection dropped among them.
    fn drain_notes(&mut self) -> bool {
        let mut dropped = false;
        while let Ok(e) = self.notes.try_recv() {
            dropped |= is_drop(&e);
            self.show(&e);
        }
        dropped
    }

    /// Comes back after a dropped connection: resume with the token (or
    /// the password), then enter the room again.
    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.drain_notes();
        if self.kicked {
            bail!("disconnected: you were kicked");
        }
        println!("* disconnected; reconnecting");
        let mut token = self.client.token();
        let position = self.client.position();
        for wait in BACKOFF_MS {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let Ok((client, notes)) = connect(&self.server).await else {
                continue;
            };
            if self.logged_in {
                let code = match token.as_deref() {
                    Some(t) => client.resume(&self.user, t).await?,
                    None => client.login(&self.user, &self.password).await?,
                };
                match code {
                    ResultCode::OK => {}
                    // The server has not seen the old connection go yet.
                    ResultCode::LOGIN_ALREADY | ResultCode::SERVICE_UNAVAILABLE | ResultCode::BUSY => {
                        continue;
                    }
                    // A used or expired token: the password, next try.
                    ResultCode::INVALID_CREDENTIALS if token.is_some() => {
                        token = None;
                        continue;
                    }
                    other => bail!("reconnected, but logging in again failed: {other}"),
                }
            }
            (self.client, self.notes) = (client, notes);
            println!("* reconnected");
            match (self.room.take(), position) {
                (Some(_), Some(at)) => self.rejoin(at).await?,
                (Some(room), None) => {
                    let key = self.key.clone();
                    println!("{}", self.join(room, key.as_deref()).await?);
                }
                (None, _) => {}
            }
            return Ok(());
        }
        bail!("disconnected from the server, and it did not come back")
    }

    /// Back in the room after a drop, with what was said meanwhile.
    async fn rejoin(&mut self, at: plaza_client::Position) -> anyhow::Result<()> {
        let back = self.client.rejoin(at).await?;
        if !back.result.is_ok() {
            println!(
                "{}",
                outcome(&format!("rejoin room {}", at.room), "", back.result)
            );
            return Ok(());
        }
        self.room = Some(at.room as i32);
        self.names = back.members.iter().cloned().collect();
        println!("* back in room {}; while you were away:", at.room);
        // The replay is on the notification stream already, before the answer.
        self.drain_notes();
        println!(
            "* {}",
            match (back.replayed, back.gap) {
                (0, false) => "nothing was said".to_owned(),
                (n, false) => format!("caught up ({n} messages)"),
                (0, true) => "messages from while you were away are no longer held".to_owned(),
                (n, true) =>
                    format!("{n} messages shown; older ones from while you were away are no longer held"),
            }
        );
        Ok(())
    }

    async fn join(&mut self, room: i32, key: Option<&str>) -> anyhow::Result<String> {
        if let Some(current) = self.room {
            if current == room {
                return Ok(format!("ok: already in room {room}"));
            }
            let code = PlazaClient::result_of(&self.client.request(Request::RoomLeave).await?);
            if !code.is_ok() {
                return Ok(outcome(&format!("leave room {current}"), "", code));
            }
            self.room = None;
        }
        let (code, members) = self.client.enter_with_key(room, key).await?;
        if !code.is_ok() {
            return Ok(outcome(&format!("join room {room}"), "", code));
        }
        self.room = Some(room);
        self.key = key.map(str::to_owned);
        self.names = members.iter().cloned().collect();
        let list: Vec<&str> = members.iter().map(|m| m.1.as_str()).collect();
        Ok(format!("ok: in room {room} with {}", list.join(", ")))
    }

    /// Sends the message waiting for its answer (again, after a drop: the
    /// server answers a resent id without delivering it twice).
    async fn send_unsent(&mut self) -> anyhow::Result<String> {
        let Some((id, message)) = self.unsent.clone() else {
            return Ok(String::new());
        };
        let code = self.ask(Request::RoomSend { id, message }).await?;
        self.unsent = None;
        Ok(outcome("send", "sent", code))
    }

    async fn ask(&self, request: Request) -> anyhow::Result<ResultCode> {
        Ok(PlazaClient::result_of(&self.client.request(request).await?))
    }

    /// Runs one line; `None` to quit.
    async fn command(&mut self, line: &str, input: &mut Input) -> anyhow::Result<Option<String>> {
        let (cmd, rest) = match line.strip_prefix('/') {
            Some(c) => c.split_once(' ').map_or((c, ""), |(a, b)| (a, b.trim())),
            None => ("say", line),
        };
        Ok(Some(match cmd {
            "say" => {
                self.next_id += 1;
                self.unsent = Some((self.next_id, rest.into()));
                self.send_unsent().await?
            }
            "join" => {
                let (room, key) = rest
                    .split_once(' ')
                    .map_or((rest, None), |(r, k)| (r, Some(k.trim())));
                match room.parse::<i32>() {
                    Ok(room) => self.join(room, key).await?,
                    Err(_) => "usage: /join N [KEY]".into(),
                }
            }
            "mode" => {
                // `/mode [t][m] [LIMIT] [KEY]`: every mode at once.
                let mut words = rest.split_whitespace();
                let flags = words.next().unwrap_or("");
                let limit = words.next().map_or(Ok(0), str::parse::<u32>);
                let (Ok(limit), true) = (limit, flags.chars().all(|c| "tmsi-".contains(c))) else {
                    return Ok(Some(
                        "usage: /mode [t][m][s][i] [LIMIT] [KEY] (- for no flags)".into(),
                    ));
                };
                let topic = u8::from(flags.contains('t')) * plaza_proto::room_modes::TOPIC;
                let flags = topic
                    | (u8::from(flags.contains('m')) * plaza_proto::room_modes::MODERATED)
                    | (u8::from(flags.contains('s')) * plaza_proto::room_modes::SECRET)
                    | (u8::from(flags.contains('i')) * plaza_proto::room_modes::INVITE_ONLY);
                let key = words.next().unwrap_or("").to_owned();
                let code = self.ask(Request::RoomMode { flags, limit, key }).await?;
                outcome("mode", "modes set", code)
            }
            "leave" => {
                let code = self.ask(Request::RoomLeave).await?;
                if code.is_ok() {
                    self.room = None;
                }
                outcome("leave", "left the room", code)
            }
            "w" => {
                let Some((to, msg)) = rest.split_once(' ') else {
                    return Ok(Some("usage: /w NAME TEXT".into()));
                };
                let code = self
                    .ask(Request::Whisper {
                        to: to.into(),
                        message: msg.into(),
                    })
                    .await?;
                outcome(&format!("whisper to {to}"), &format!("whispered to {to}"), code)
            }
            "topic" => {
                let code = self.ask(Request::RoomTopic { topic: rest.into() }).await?;
                outcome("topic", "topic set", code)
            }
            "op" | "deop" | "voice" | "devoice" => {
                let on = !cmd.starts_with("de");
                let role = match cmd.ends_with("op") {
                    true => plaza_proto::roles::OPERATOR,
                    false => plaza_proto::roles::VOICE,
                };
                let request = Request::RoomRole {
                    name: rest.into(),
                    role,
                    on,
                };
                let code = self.ask(request).await?;
                outcome(&format!("{cmd} {rest}"), &format!("{cmd}: done"), code)
            }
            "invite" => {
                let code = self.ask(Request::RoomInvite { name: rest.into() }).await?;
                outcome(&format!("invite {rest}"), &format!("invited {rest}"), code)
            }
            "roomkick" => {
                let (name, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let request = Request::RoomKick {
                    name: name.into(),
                    reason: reason.trim().into(),
                };
                let code = self.ask(request).await?;
                outcome(
                    &format!("roomkick {name}"),
                    &format!("{name} is out of the room"),
                    code,
                )
            }
            "broadcast" => {
                let code = self.ask(Request::Broadcast { message: rest.into() }).await?;
                outcome("broadcast", "broadcast", code)
            }
            "users" => {
                let (code, users) = self.client.users().await?;
                if code.is_ok() {
                    format!("{} users: {}", users.len(), users.join(", "))
                } else {
                    outcome("users", "", code)
                }
            }
            "echo" => match self
                .client
                .request(Request::Echo {
                    payload: rest.as_bytes().to_vec(),
                })
                .await?
            {
                Event::EchoResult { payload, .. } => format!("echo: {}", String::from_utf8_lossy(&payload)),
                other => outcome("echo", "", PlazaClient::result_of(&other)),
            },
            "admin" => {
                let code = self.ask(Request::Admin { secret: rest.into() }).await?;
                outcome("admin", "you are an administrator", code)
            }
            "kick" => {
                let code = self.ask(Request::Kick { name: rest.into() }).await?;
                outcome(&format!("kick {rest}"), &format!("kicked {rest}"), code)
            }
            "mute" => {
                let (name, secs) = rest
                    .split_once(' ')
                    .map_or((rest, None), |(a, b)| (a, b.trim().parse().ok()));
                let code = self
                    .ask(Request::Mute {
                        name: name.into(),
                        seconds: secs.unwrap_or(u32::MAX),
                    })
                    .await?;
                outcome(&format!("mute {name}"), &format!("muted {name}"), code)
            }
            "unmute" => {
                let code = self
                    .ask(Request::Mute {
                        name: rest.into(),
                        seconds: 0,
                    })
                    .await?;
                outcome(&format!("unmute {rest}"), &format!("unmuted {rest}"), code)
            }
            "shutdown" => {
                let code = self.ask(Request::Shutdown).await?;
                outcome("shutdown", "server shutting down", code)
            }
            "logout" => {
                let code = self.ask(Request::Logout).await?;
                if code.is_ok() {
                    (self.logged_in, self.room) = (false, None);
                }
                outcome("logout", "logged out (/login to log in again)", code)
            }
            "login" => {
                if !rest.is_empty() && rest != self.user {
                    let password = input.password(rest).await?;
                    (self.user, self.password) = (rest.to_owned(), password);
                }
                let code = self.client.login(&self.user, &self.password).await?;
                if code.is_ok() {
                    self.logged_in = true;
                }
                outcome(
                    &format!("login as {}", self.user),
                    &format!("logged in as {}", self.user),
                    code,
                )
            }
            "help" => help(self.client.rooms()),
            "quit" => return Ok(None),
            other => format!("unknown command /{other} (try /help)"),
        }))
    }
}
