//! `plaza`: the terminal client.
//!
//! `plaza chat --server 127.0.0.1:7777 --user alice` prompts for the password
//! (not echoed; never an argument). Type a line to chat in your room, or a
//! slash command (`/help`). When standard input is not a terminal it runs
//! scripted: the first line is the password, every other line a command, and
//! it exits at the end of input.

mod bench;
mod chat;

use anyhow::Context;
use clap::{Parser, Subcommand};
use plaza_client::Target;

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

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Cmd::Chat {
            server,
            user,
            register,
            tls,
        } => tls.target(server).and_then(|target| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(chat::chat(target, user, register))
        }),
        Cmd::Bench(cmd) => bench::run(cmd),
    };
    // An error and each of its causes on a line of its own, never a
    // backtrace (whatever RUST_BACKTRACE says).
    let Err(e) = result else {
        return std::process::ExitCode::SUCCESS;
    };
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    std::process::ExitCode::FAILURE
}
