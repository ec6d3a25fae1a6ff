//! `idp`: the identity platform's one binary.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use api::{Config, Server};
use clap::{Parser, Subcommand};

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
    /// Measure the event log on a fresh store.
    Bench(api::bench::BenchArgs),
    /// Read the event log: print events as JSON lines.
    Replay {
        #[command(subcommand)]
        what: ReplayCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ReplayCommand {
    /// Every event of one stream, e.g. `organization-0192…`.
    Stream { name: String },
    /// Every event about one subject (through the subject index).
    Subject { id: String },
    /// The whole log after a position.
    All {
        /// Start strictly after this position (as printed in `position`).
        #[arg(long, default_value = "0")]
        after: String,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// Only these stream categories (repeatable).
        #[arg(long = "category")]
        categories: Vec<String>,
        /// Only event types starting with these prefixes (repeatable).
        #[arg(long = "type-prefix")]
        type_prefixes: Vec<String>,
    },
}

async fn replay(config: &Config, what: ReplayCommand) -> Result<u64, String> {
    let selection = match what {
        ReplayCommand::Stream { name } => replay::Selection::Stream(name),
        ReplayCommand::Subject { id } => replay::Selection::Subject(id),
        ReplayCommand::All {
            after,
            limit,
            categories,
            type_prefixes,
        } => replay::Selection::All {
            after: after.parse().map_err(|e: eventlog::Error| e.to_string())?,
            filter: eventlog::Filter {
                categories,
                type_prefixes,
            },
            limit,
        },
    };
    let log = eventlog::open(&config.eventstore_url(), &eventlog::LogOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    replay::dump(&log, selection, &mut out)
        .await
        .map_err(|e| e.to_string())
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
                match Server::start(config).await {
                    Ok(server) => {
                        server.run_until_signal().await;
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
            Command::Replay { what } => match replay(&config, what).await {
                Ok(n) => {
                    eprintln!("{n} events");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("idp replay: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Bench(args) => match api::bench::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("idp bench: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}
