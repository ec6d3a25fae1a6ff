//! `idp`: the identity platform's one binary.

#![forbid(unsafe_code)]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use api::{Config, Server};
use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: decoding events allocates many
/// small JSON values, which glibc's allocator spends much of a replay on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "idp",
    version,
    about = "An event-sourced OAuth 2.1 / OpenID Connect identity provider"
)]
struct Cli {
    /// A TOML configuration file (settings in `IDP_*` variables override it).
    #[arg(long, global = true, env = "IDP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the effective configuration, secrets masked, as TOML-like JSON.
    Config,
    /// Measure the event log on a fresh store; `bench seed` writes a
    /// realistic log into the configured one, `bench queries` times reads
    /// on it, `bench exchange` drives a running server's token exchange.
    Bench(bench::BenchArgs),
    /// Create the first organization and its admin client on a log that
    /// has none; prints their ids and the client's secret (shown once).
    Bootstrap {
        /// Print one JSON object instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
    /// Signing keys: rotate, list.
    Keys {
        #[command(subcommand)]
        what: cli::KeysCommand,
    },
    /// Read the event log (events as JSON lines), verify it, rebuild
    /// projections from it.
    Replay {
        #[command(subcommand)]
        what: cli::ReplayCommand,
    },
}

/// Exit 0 on success; on failure, the message on stderr and exit 1.
fn finish(command: &str, result: Result<(), cli::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idp {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("idp: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idp: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                api::telemetry::init_logging(&config);
                let signals = api::server::ShutdownSignals::install();
                match Server::start(config).await {
                    Ok(server) => {
                        server.run_until(signals).await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "idp cannot start");
                        eprintln!("idp: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Config => match serde_json::to_string_pretty(&config.redacted()) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("idp: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Bootstrap { json } => finish("bootstrap", cli::bootstrap(&config, json).await),
            Command::Keys { what } => finish("keys", cli::keys(&config, what).await),
            Command::Replay { what } => match cli::replay(&config, what).await {
                Ok(n) => {
                    eprintln!("{n} events");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("idp replay: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Bench(args) => match bench::run(args, || async {
                api::server::open_stores(&config)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("idp bench: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}
