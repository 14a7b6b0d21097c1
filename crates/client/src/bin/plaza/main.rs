//! `plaza`: the terminal client.
//!
//! `plaza chat --server 127.0.0.1:7777 --user alice` prompts for the password
//! (not echoed; never an argument). Type a line to chat in your room, or a
//! slash command (`/help`). When standard input is not a terminal it runs
//! scripted: the first line is the password, every other line a command, and
//! it exits at the end of input.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

mod bench;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use plaza_client::{PlazaClient, Target};
use plaza_proto::{Event, Request, ResultCode};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser, Debug)]
#[command(name = "plaza", version, about = "Plaza's terminal client")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Chat interactively (or scripted, from standard input).
    Chat {
        /// Server address.
        #[arg(long, default_value = "127.0.0.1:7777")]
        server: std::net::SocketAddr,
        /// Your user name.
        #[arg(long)]
        user: String,
        /// Create the account first (if the server allows registration).
        #[arg(long)]
        register: bool,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Load generator: fanout, saturate, connect, mixed.
    Bench(bench::BenchCmd),
}

/// How to speak TLS to the server.
#[derive(clap::Args, Debug, Clone)]
struct TlsArgs {
    /// Connect with TLS (the server's --tls-bind address).
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA certificates to trust (a self-signed server
    /// certificate can be given as its own CA).
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    tls_ca: std::path::PathBuf,
    /// Name the server's certificate must carry [default: the server's IP
    /// address].
    #[arg(long)]
    tls_name: Option<String>,
}

impl TlsArgs {
    fn target(&self, server: std::net::SocketAddr) -> anyhow::Result<Target> {
        let tls = if self.tls {
            let name = self.tls_name.clone().unwrap_or_else(|| server.ip().to_string());
            Some(
                plaza_net::tls::TlsConnector::from_ca_file(&self.tls_ca, &name)
                    .with_context(|| format!("TLS trust from {}", self.tls_ca.display()))?,
            )
        } else {
            None
        };
        Ok(Target { addr: server, tls })
    }
}

const HELP: &str = "commands:
  TEXT                 chat in your room
  /join N              enter room N            /leave          leave the room
  /w NAME TEXT         whisper to NAME         /broadcast TEXT message everyone
  /users               list logged-in users    /echo TEXT      echo test
  /admin [SECRET]      become administrator    /kick NAME      (admin) disconnect NAME
  /mute NAME [SECS]    (admin) mute NAME       /unmute NAME    (admin) lift a mute
  /shutdown            (admin) stop the server /logout         log out, stay connected
  /help                this text               /quit           leave";

/// Room members by uid, to name who left.
type Names = Arc<Mutex<HashMap<u64, String>>>;

fn show(event: &Event, names: &Names) -> Option<String> {
    let mut n = names.lock().unwrap_or_else(|e| e.into_inner());
    Some(match event {
        Event::RoomNewUser { uid, name } => {
            n.insert(*uid, name.clone());
            format!("* {name} joined the room")
        }
        Event::RoomLeaveUser { uid } => {
            format!(
                "* {} left the room",
                n.remove(uid).unwrap_or_else(|| format!("user {uid}"))
            )
        }
        Event::RoomChat { name, message } => format!("[{name}] {message}"),
        Event::Whisper { from, message } => format!("(whisper from {from}) {message}"),
        Event::Broadcast { from, message } => format!("[broadcast] {from}: {message}"),
        Event::Kicked { by } => format!("* you were kicked by {by}"),
        Event::Muted { seconds: 0 } => "* you are no longer muted".into(),
        Event::Muted { seconds: u32::MAX } => "* you are muted".into(),
        Event::Muted { seconds } => format!("* you are muted for {seconds} s"),
        Event::Notice { message } => format!("* notice: {message}"),
        _ => return None,
    })
}

fn outcome(what: &str, code: ResultCode) -> String {
    if code.is_ok() {
        format!("ok: {what}")
    } else {
        format!("error: {what}: {code}")
    }
}

async fn run(client: &PlazaClient, line: &str, names: &Names) -> anyhow::Result<Option<String>> {
    let (cmd, rest) = match line.strip_prefix('/') {
        Some(c) => c.split_once(' ').map_or((c, ""), |(a, b)| (a, b.trim())),
        None => ("say", line),
    };
    let code = |e: &Event| PlazaClient::result_of(e);
    Ok(Some(match cmd {
        "say" => outcome(
            "sent",
            code(&client.request(Request::RoomChat { message: rest.into() }).await?),
        ),
        "join" => {
            let Ok(room) = rest.parse::<i32>() else {
                return Ok(Some("usage: /join N".into()));
            };
            let (c, members) = client.enter(room).await?;
            if c.is_ok() {
                let mut n = names.lock().unwrap_or_else(|e| e.into_inner());
                n.clear();
                n.extend(members.iter().cloned());
                let list: Vec<&str> = members.iter().map(|m| m.1.as_str()).collect();
                format!("ok: in room {room} with {}", list.join(", "))
            } else {
                outcome(&format!("join room {room}"), c)
            }
        }
        "leave" => outcome("left the room", code(&client.request(Request::RoomLeave).await?)),
        "w" => {
            let Some((to, msg)) = rest.split_once(' ') else {
                return Ok(Some("usage: /w NAME TEXT".into()));
            };
            let r = client
                .request(Request::Whisper {
                    to: to.into(),
                    message: msg.into(),
                })
                .await?;
            outcome(&format!("whispered to {to}"), code(&r))
        }
        "broadcast" => outcome(
            "broadcast",
            code(
                &client
                    .request(Request::Broadcast { message: rest.into() })
                    .await?,
            ),
        ),
        "users" => {
            let (c, users) = client.users().await?;
            if c.is_ok() {
                format!("{} users: {}", users.len(), users.join(", "))
            } else {
                outcome("users", c)
            }
        }
        "echo" => match client
            .request(Request::Echo {
                payload: rest.as_bytes().to_vec(),
            })
            .await?
        {
            Event::EchoResult { payload, .. } => format!("echo: {}", String::from_utf8_lossy(&payload)),
            other => outcome("echo", code(&other)),
        },
        "admin" => outcome(
            "you are an administrator",
            code(&client.request(Request::Admin { secret: rest.into() }).await?),
        ),
        "kick" => outcome(
            &format!("kicked {rest}"),
            code(&client.request(Request::Kick { name: rest.into() }).await?),
        ),
        "mute" => {
            let (name, secs) = rest
                .split_once(' ')
                .map_or((rest, None), |(a, b)| (a, b.trim().parse().ok()));
            let r = client
                .request(Request::Mute {
                    name: name.into(),
                    seconds: secs.unwrap_or(u32::MAX),
                })
                .await?;
            outcome(&format!("muted {name}"), code(&r))
        }
        "unmute" => {
            let r = client
                .request(Request::Mute {
                    name: rest.into(),
                    seconds: 0,
                })
                .await?;
            outcome(&format!("unmuted {rest}"), code(&r))
        }
        "shutdown" => outcome(
            "server shutting down",
            code(&client.request(Request::Shutdown).await?),
        ),
        "logout" => outcome("logged out", code(&client.request(Request::Logout).await?)),
        "help" => HELP.into(),
        "quit" => return Ok(None),
        other => format!("unknown command /{other} (try /help)"),
    }))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Chat {
            server,
            user,
            register,
            tls,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(chat(tls.target(server)?, user, register)),
        Cmd::Bench(cmd) => bench::run(cmd),
    }
}

async fn chat(server: Target, user: String, register: bool) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let password = if interactive {
        rpassword::prompt_password(format!("password for {user}: ")).context("reading the password")?
    } else {
        lines
            .next_line()
            .await?
            .context("scripted mode: the first line must be the password")?
    };
    let addr = server.addr;
    let (client, mut notes) = PlazaClient::connect(server)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    if register {
        let r = client
            .request(Request::Register {
                name: user.clone(),
                password: password.clone(),
            })
            .await?;
        println!(
            "{}",
            outcome(&format!("registered {user}"), PlazaClient::result_of(&r))
        );
    }
    let code = client.login(&user, &password).await?;
    if !code.is_ok() {
        bail!("login failed: {code}");
    }
    println!("logged in as {user}; /help lists the commands");
    let names: Names = Arc::default();
    let printer = {
        let names = names.clone();
        tokio::spawn(async move {
            while let Some(e) = notes.recv().await {
                if let Some(text) = show(&e, &names) {
                    println!("{text}");
                }
                if matches!(e, Event::Notice { ref message } if message == "disconnected") {
                    break;
                }
            }
        })
    };
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                match run(&client, line, &names).await {
                    Ok(Some(text)) => println!("{text}"),
                    Ok(None) => break,
                    Err(e) => {
                        println!("error: {e}");
                        break;
                    }
                }
            }
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)), if interactive => {
                // Keep the connection alive while the user is quiet.
                let _ = client.request(Request::Ping { nonce: 0 }).await;
            }
        }
    }
    client.close().await;
    let _ = printer.await;
    Ok(())
}
