//! `plaza-ctl`: the operators' control tool for a running plaza-server, over
//! its control link (127.0.0.1:7778 by default).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use plaza_net::ClientConfig;
use plaza_net::link::{LinkClient, LinkError};
use plaza_server::control::{Command, Reply, Status};
use serde_json::Value;

/// Control a running plaza-server.
///
/// The secret comes from --secret-file, else PLAZA_CONTROL_SECRET, else
/// ./plaza-data/control.secret (what the server generates on first start).
#[derive(Parser, Debug)]
#[command(name = "plaza-ctl", version)]
struct Cli {
    /// The server's control address.
    #[arg(long, env = "PLAZA_CONTROL_ADDR", default_value = "127.0.0.1:7778")]
    addr: std::net::SocketAddr,
    /// File holding the control secret.
    #[arg(long, env = "PLAZA_CONTROL_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// Data directory whose control.secret to use when no secret is given.
    #[arg(long, env = "PLAZA_DATA_DIR", default_value = "plaza-data")]
    data_dir: PathBuf,
    /// Print the raw JSON reply instead of text.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Uptime, sessions, users, rooms, rates, queue depths, store health.
    Status,
    /// Logged-in users.
    Users,
    /// Rooms in use and their members.
    Rooms,
    /// One user: room, address, send-queue bytes, mute.
    User { name: String },
    /// Disconnect a user; its room is told.
    Kick { name: String },
    /// Mute a user for SECONDS (omit for indefinitely).
    Mute { name: String, seconds: Option<u32> },
    /// Lift a user's mute.
    Unmute { name: String },
    /// Slow mode: one message per SECONDS per member in ROOM (0: off).
    Slow { room: u32, seconds: u64 },
    /// Send a notice to everyone, or to one room with --room; in cluster
    /// mode to the users of every node, unless --local.
    Notice {
        #[arg(long)]
        room: Option<u32>,
        /// Only this node's users.
        #[arg(long)]
        local: bool,
        message: String,
    },
    /// Refuse new logins, count down with notices, then shut down.
    Drain {
        /// Seconds before the shutdown.
        #[arg(default_value_t = 30)]
        seconds: u64,
        /// Drain every node of the cluster (cluster mode).
        #[arg(long)]
        cluster: bool,
    },
    /// Shut down gracefully now.
    Shutdown,
    /// Read the TLS certificate and key files again (as SIGHUP does);
    /// sessions stay up.
    ReloadTls,
}

fn secret(cli: &Cli) -> anyhow::Result<String> {
    if let Some(f) = &cli.secret_file {
        return Ok(std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_owned());
    }
    if let Ok(s) = std::env::var("PLAZA_CONTROL_SECRET") {
        return Ok(s);
    }
    let f = cli.data_dir.join("control.secret");
    Ok(std::fs::read_to_string(&f)
        .with_context(|| {
            format!(
                "no control secret: give --secret-file, set PLAZA_CONTROL_SECRET, or run from the server's directory ({} not readable)",
                f.display()
            )
        })?
        .trim()
        .to_owned())
}

async fn call(link: &LinkClient, command: &Command) -> anyhow::Result<Reply> {
    let body = serde_json::to_vec(command)?;
    let raw = link
        .request(&body, Duration::from_secs(15))
        .await
        .map_err(|e| match e {
            LinkError::Disconnected => anyhow::anyhow!("the server closed the control link"),
            other => anyhow::anyhow!("control request failed: {other}"),
        })?;
    Ok(serde_json::from_slice(&raw)?)
}

fn show(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// "1 room", "2 rooms".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// A mute as people read it: "-", "indefinitely", or "for 90 s".
fn mute(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => format!("for {n} s"),
        other => show(other),
    }
}

/// An object as `key value` lines, nested objects and lists as dotted
/// keys (`logins.OK 3`), so that no raw JSON reaches a person.
fn print_fields(prefix: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if k == "muted" {
                    println!("{key:<32} {}", mute(v));
                } else {
                    print_fields(&key, v);
                }
            }
        }
        Value::Array(items) if items.is_empty() => println!("{prefix:<32} -"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                print_fields(&format!("{prefix}.{i}"), item);
            }
        }
        Value::Null => println!("{prefix:<32} -"),
        other => println!("{prefix:<32} {}", show(other)),
    }
}

fn print_text(command: &Cmd, data: &Value) {
    match (command, data) {
        (Cmd::Users, Value::Array(users)) => {
            println!(
                "{:<32} {:>6} {:<22} {:>12} MUTED",
                "NAME", "ROOM", "ADDRESS", "QUEUED BYTES"
            );
            for u in users {
                println!(
                    "{:<32} {:>6} {:<22} {:>12} {}",
                    show(&u["name"]),
                    u["room"].as_u64().map_or("-".into(), |r| r.to_string()),
                    u["address"].as_str().unwrap_or("-"),
                    u["send_queue_bytes"].as_u64().unwrap_or(0),
                    mute(&u["muted"]),
                );
            }
            println!("{}", count(users.len(), "user"));
        }
        (Cmd::Rooms, Value::Array(rooms)) => {
            for r in rooms {
                let members: Vec<&str> = r["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "room {:>5}: {}: {}",
                    r["room"],
                    count(members.len(), "member"),
                    members.join(", ")
                );
            }
            println!("{} in use", count(rooms.len(), "room"));
        }
        (_, v @ Value::Object(_)) => print_fields("", v),
        (_, other) => println!("{}", show(other)),
    }
}

fn main() -> std::process::ExitCode {
    let run = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run()));
    plaza_server::exit_code(run)
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let secret = secret(&cli)?;
    let mut config = ClientConfig::new(cli.addr, plaza_net::Lan);
    config.connect_timeout = Duration::from_secs(3);
    let link = LinkClient::connect(config).await.with_context(|| {
        format!(
            "cannot reach the control link at {} (is plaza-server running?)",
            cli.addr
        )
    })?;
    let auth = call(&link, &Command::Auth { secret }).await?;
    if !auth.ok {
        bail!("control secret rejected: {}", auth.error.unwrap_or_default());
    }
    let command = match &cli.command {
        Cmd::Status => Command::Status,
        Cmd::Users => Command::Users,
        Cmd::Rooms => Command::Rooms,
        Cmd::User { name } => Command::User { name: name.clone() },
        Cmd::Kick { name } => Command::Kick { name: name.clone() },
        Cmd::Mute { name, seconds } => Command::Mute {
            name: name.clone(),
            seconds: seconds.unwrap_or(u32::MAX),
        },
        Cmd::Unmute { name } => Command::Unmute { name: name.clone() },
        Cmd::Slow { room, seconds } => Command::Slow {
            room: *room,
            seconds: *seconds,
        },
        Cmd::Notice { room, local, message } => Command::Notice {
            room: *room,
            message: message.clone(),
            local: *local,
        },
        Cmd::Drain { seconds, cluster } => Command::Drain {
            seconds: *seconds,
            cluster: *cluster,
        },
        Cmd::Shutdown => Command::Shutdown,
        Cmd::ReloadTls => Command::ReloadTls,
    };
    let mut reply = call(&link, &command).await?;
    link.close().await;
    if reply.ok && matches!(cli.command, Cmd::Status) {
        // Read as the one Status type the server writes: a field this
        // plaza-ctl does not know (or misses) is an error, not a blank.
        let status: Status = serde_json::from_value(reply.data)
            .context("the server's status does not match this plaza-ctl's (another version?)")?;
        reply.data = serde_json::to_value(status)?;
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else if reply.ok {
        print_text(&cli.command, &reply.data);
    }
    if !reply.ok {
        bail!("{}", reply.error.unwrap_or_else(|| "failed".into()));
    }
    Ok(())
}
