//! The `plaza-server` binary: runs the chat server, or manages accounts.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use plaza_server::{Resolved, Settings, Store};

/// Plaza chat server. With no options it listens on 127.0.0.1:7777 with an
/// embedded account store in ./plaza-data and open registration.
///
/// Settings come from flags, then PLAZA_* environment variables, then the
/// TOML file given with --config (keys are the flag names), then defaults.
#[derive(Parser, Debug)]
#[command(name = "plaza-server", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(short, long, env = "PLAZA_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create an account; the password is read from the first line of
    /// standard input. With the embedded store, run while the server is
    /// stopped.
    AddUser {
        /// Account name.
        name: String,
    },
    /// Give an account the admin role (embedded store: server stopped).
    GrantAdmin {
        /// Account name.
        name: String,
    },
    /// Take the admin role away (embedded store: server stopped).
    RevokeAdmin {
        /// Account name.
        name: String,
    },
}

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    plaza_server::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let config = cli.settings.or(file).resolve()?;
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log).context("bad --log filter")?)
        .init();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::AddUser { name } => {
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            anyhow::ensure!(
                plaza_proto::valid_name(&name),
                "invalid name (1-32 bytes of UTF-8, no spaces)"
            );
            anyhow::ensure!(
                plaza_proto::valid_password(&password),
                "invalid password (1-32 bytes)"
            );
            let created = offline(&config, async |store| Ok(store.create(&name, &password).await?))?;
            anyhow::ensure!(created, "account {name} already exists");
            println!("created {name}");
            Ok(())
        }
        Command::GrantAdmin { name } => set_admin(&config, &name, true),
        Command::RevokeAdmin { name } => set_admin(&config, &name, false),
    }
}

/// Runs an operator command against the configured store.
fn offline<T>(config: &Resolved, f: impl AsyncFnOnce(Store) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let store = Store::open(
        &config.store,
        &config.data_dir,
        config.hash_cost,
        config.resume_ttl_secs,
    )
    .context("opening the account store (for the embedded store, stop the server first)")?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f(store))
}

fn set_admin(config: &Resolved, name: &str, admin: bool) -> anyhow::Result<()> {
    let found = offline(config, async |store| Ok(store.set_admin(name, admin).await?))?;
    anyhow::ensure!(found, "no account named {name}");
    println!("{name}: admin role {}", if admin { "granted" } else { "revoked" });
    Ok(())
}

fn serve(config: Resolved) -> anyhow::Result<()> {
    let grace = config.shutdown_grace;
    plaza_net::runtime(config.workers)?.block_on(async move {
        let mut running = plaza_server::start(config).await?;
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sighup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = sighup.recv() => {
                    // A reload logs its own success.
                    if let Err(e) = running.reload_tls() {
                        tracing::warn!("SIGHUP: TLS not reloaded: {e:#}");
                    }
                    continue;
                }
                () = running.wait() => return Ok(()), // an administrator's SHUTDOWN
            }
            break;
        }
        running.shutdown().await;
        // Bounded: the flush deadline plus a margin for closing.
        tokio::time::timeout(grace + Duration::from_secs(5), running.wait())
            .await
            .context("shutdown did not finish in time")?;
        Ok(())
    })
}
