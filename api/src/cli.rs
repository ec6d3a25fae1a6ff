//! The operator subcommands other than `serve`: `bootstrap`, `keys` and
//! `replay`. Each opens the stores exactly as the server does
//! ([`api::server::open_stores`]), so it acts on the log the server would.
//! Results go to stdout, failures to stderr; neither ever carries the master
//! key, and only `bootstrap` prints a secret (the one it just created).

use std::path::PathBuf;

use api::Config;
use api::bootstrap::BootstrapError;
use api::server::{StartError, Stores, open_stores};
use clap::{Subcommand, ValueEnum};
use domain::Metadata;
use domain::signing_key::KeyAlgorithm;
use serde::Serialize;
use uuid::Uuid;

/// Why an operator subcommand failed (each exits 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(
        "bootstrap already ran: the event log already holds an organization{}",
        .credentials.as_ref().map(|p| format!(
            "; the credentials written by the server's first start are in {}",
            p.display()
        )).unwrap_or_default()
    )]
    AlreadyBootstrapped { credentials: Option<PathBuf> },
    #[error("{0}")]
    Failed(String),
    #[error("the event log was tampered with: {0}")]
    Tampered(eventlog::Problem),
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// What `idp bootstrap` prints: the one time the secret is shown.
#[derive(Serialize)]
struct Credentials {
    organization_id: Uuid,
    client_id: Uuid,
    client_secret: String,
}

/// Creates the first organization and its admin client on a log that has
/// none, and prints their ids and the client's secret on stdout.
pub async fn bootstrap(config: &Config, json: bool) -> Result<(), CliError> {
    let stores = open_stores(config).await?;
    let created = api::bootstrap::bootstrap(&stores.log, &stores.bus, config).await;
    stores.close().await;
    let creds = match created {
        Ok(c) => c,
        Err(BootstrapError::AlreadyBootstrapped) => {
            let file = config.data_dir.join("bootstrap.json");
            return Err(CliError::AlreadyBootstrapped {
                credentials: file.exists().then_some(file),
            });
        }
        Err(e) => return Err(failed(e)),
    };
    let out = Credentials {
        organization_id: creds.organization_id,
        client_id: creds.client_id,
        client_secret: creds.client_secret,
    };
    if json {
        println!("{}", serde_json::to_string(&out).map_err(failed)?);
    } else {
        println!("organization_id: {}", out.organization_id);
        println!("client_id: {}", out.client_id);
        println!("client_secret: {}", out.client_secret);
    }
    Ok(())
}

/// `idp keys …`
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a new signing key of an algorithm active and retire the others
    /// of that algorithm; prints the new kid.
    Rotate {
        #[arg(long, value_enum, ignore_case = true, default_value = "ES256")]
        alg: Alg,
    },
    /// Print every signing key: kid, algorithm, status (one per line).
    List,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Alg {
    #[value(name = "ES256")]
    Es256,
    #[value(name = "RS256")]
    Rs256,
}

impl From<Alg> for KeyAlgorithm {
    fn from(a: Alg) -> Self {
        match a {
            Alg::Es256 => KeyAlgorithm::ES256,
            Alg::Rs256 => KeyAlgorithm::RS256,
        }
    }
}

pub async fn keys(config: &Config, what: KeysCommand) -> Result<(), CliError> {
    let stores = open_stores(config).await?;
    let done = keys_on(&stores, what).await;
    stores.close().await;
    done
}

async fn keys_on(stores: &Stores, what: KeysCommand) -> Result<(), CliError> {
    let Stores {
        log,
        bus,
        master_key: master,
        ..
    } = stores;
    match what {
        KeysCommand::Rotate { alg } => {
            let meta = operator(stores);
            let kid = commands::keys::rotate(bus, master, alg.into(), &meta)
                .await
                .map_err(failed)?;
            println!("{kid}");
        }
        KeysCommand::List => {
            let ring = commands::keys::load_ring(log, master)
                .await
                .map_err(failed)?;
            for e in ring.entries() {
                println!("{} {} {}", e.kid, e.alg, e.status);
            }
        }
    }
    Ok(())
}

/// `idp replay …`
#[derive(Subcommand, Debug)]
pub enum ReplayCommand {
    /// Check the log's tamper evidence: every event against its hash-chain
    /// link, every anchor against the events it covers. Prints a report;
    /// exits 1 when an event was changed, removed or inserted.
    Verify {
        /// Anchor everything readable first, so the newest events are covered
        /// too (the server does so itself every 1000 events or 10 seconds).
        #[arg(long)]
        seal: bool,
    },
    /// Rebuild projections from the log beside their live tables, then switch
    /// them in (a running server keeps serving the old rows until then and
    /// continues from the rebuilt checkpoint). Resumes where an interrupted
    /// rebuild stopped. Prints one summary line: events, seconds, events/s.
    Rebuild {
        /// The projections to rebuild (see `--all`).
        names: Vec<String>,
        /// Every projection.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Events per transaction.
        #[arg(long, default_value_t = projections::REBUILD_BATCH)]
        batch: usize,
    },
    /// Every event of one stream, e.g. `organization-0192…`.
    Stream { name: String },
    /// A data subject's export (docs/SUBJECT_EXPORT.md): their current data
    /// and every event about them, personal values opened. Recorded as an
    /// export in the log.
    Export {
        subject: String,
        /// Write it to this file (created with mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Record corrected values for every instance of a data subject.
    Correct {
        subject: String,
        #[arg(long)]
        user_name: Option<String>,
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Erase a data subject: delete their key, so their personal values
    /// read as erased everywhere; the erasure is recorded. Irreversible.
    Erase {
        subject: String,
        /// Confirms the erasure.
        #[arg(long)]
        yes: bool,
    },
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

/// Prints the selected events as JSON lines; returns how many.
pub async fn replay(config: &Config, what: ReplayCommand) -> Result<u64, CliError> {
    let selection = match what {
        ReplayCommand::Verify { seal } => return verify(config, seal).await,
        ReplayCommand::Export { subject, out } => return export(config, &subject, out).await,
        ReplayCommand::Correct {
            subject,
            user_name,
            device_name,
        } => return correct(config, &subject, user_name, device_name).await,
        ReplayCommand::Erase { subject, yes } => return erase(config, &subject, yes).await,
        ReplayCommand::Rebuild { names, all, batch } => {
            return rebuild(config, &names, all, batch).await;
        }
        ReplayCommand::Stream { name } => replay::Selection::Stream(name),
        ReplayCommand::Subject { id } => replay::Selection::Subject(id),
        ReplayCommand::All {
            after,
            limit,
            categories,
            type_prefixes,
        } => replay::Selection::All {
            after: after.parse().map_err(failed)?,
            filter: eventlog::Filter {
                categories,
                type_prefixes,
            },
            limit,
        },
    };
    let log = eventlog::open(&config.eventstore_url(), &eventlog::LogOptions::default())
        .await
        .map_err(failed)?;
    let mut out = std::io::stdout().lock();
    replay::dump(&log, selection, &mut out)
        .await
        .map_err(failed)
}

/// Metadata for what an operator does from the command line, at the
/// stores' clock.
fn operator(stores: &Stores) -> Metadata {
    Metadata::system(Uuid::now_v7(), stores.clock.now())
}

/// `idp replay export SUBJECT`: the document on stdout or in a private
/// file; returns how many events it holds.
async fn export(
    config: &Config,
    subject: &str,
    out: Option<std::path::PathBuf>,
) -> Result<u64, CliError> {
    let stores = open_stores(config).await?;
    let doc = privacy::hand_out(&stores.bus, subject, &operator(&stores)).await;
    stores.close().await;
    let doc = doc.map_err(failed)?;
    let text = serde_json::to_string_pretty(&doc).map_err(failed)?;
    match &out {
        Some(path) => api::master_key::write_private(path, &text).map_err(failed)?,
        None => println!("{text}"),
    }
    Ok(doc.events.len() as u64)
}

/// `idp replay correct SUBJECT`: returns how many instances changed.
async fn correct(
    config: &Config,
    subject: &str,
    user_name: Option<String>,
    device_name: Option<String>,
) -> Result<u64, CliError> {
    let stores = open_stores(config).await?;
    let corrected = privacy::correct(
        &stores.bus,
        subject,
        user_name,
        device_name,
        &operator(&stores),
    )
    .await;
    stores.close().await;
    let (changed, _) = corrected.map_err(failed)?;
    for id in &changed {
        println!("{id}");
    }
    Ok(changed.len() as u64)
}

/// `idp replay erase SUBJECT --yes`: prints what was done; returns 1.
async fn erase(config: &Config, subject: &str, yes: bool) -> Result<u64, CliError> {
    if !yes {
        return Err(failed(
            "erasure cannot be undone: repeat with --yes to erase this subject",
        ));
    }
    let stores = open_stores(config).await?;
    let done = privacy::erase(
        &stores.bus,
        &stores.subject_keys,
        subject,
        &operator(&stores),
    )
    .await;
    // The server's projections drop the person's values when they apply the
    // erasure (at once if one is running, else at its next start).
    let checkpointed = stores.read_db.checkpoint().await;
    stores.close().await;
    let done = done.map_err(failed)?;
    checkpointed.map_err(failed)?;
    println!("{}", serde_json::to_string(&done).map_err(failed)?);
    Ok(1)
}

/// `idp replay rebuild`: a progress bar on stderr (when it is a terminal),
/// the summary on stdout; returns how many events were read.
async fn rebuild(
    config: &Config,
    names: &[String],
    all: bool,
    batch: usize,
) -> Result<u64, CliError> {
    let known = projections::all();
    let selected = if all {
        known
    } else if names.is_empty() {
        return Err(CliError::Failed(
            "name the projections to rebuild, or pass --all".into(),
        ));
    } else {
        names
            .iter()
            .map(|n| {
                known
                    .iter()
                    .find(|p| p.name() == n)
                    .cloned()
                    .ok_or_else(|| {
                        let list: Vec<&str> = known.iter().map(|p| p.name()).collect();
                        CliError::Failed(format!(
                            "no projection named {n:?}; there are: {}",
                            list.join(", ")
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let stores = open_stores(config).await?;
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} events, {per_sec}, ETA {eta} {msg}",
        )
        .map_err(failed)?,
    );
    let progress = |p: &projections::Progress| {
        bar.set_length(p.total);
        bar.set_position(p.read);
        match &p.step {
            projections::Step::Applying => bar.set_message(""),
            projections::Step::Indexing {
                projection,
                index,
                built,
                of,
            } => bar.set_message(format!(
                "{projection}: building index {index} ({} of {of})",
                built + 1
            )),
        }
    };
    let summary =
        projections::rebuild(&stores.log, &stores.read_db, &selected, batch, &progress).await;
    stores.close().await;
    let summary = summary.map_err(failed)?;
    bar.finish_and_clear();
    let names: Vec<&str> = selected.iter().map(|p| p.name()).collect();
    println!(
        "rebuilt {}: {} events in {:.2} s, {:.0} events/s",
        names.join(", "),
        summary.events,
        summary.seconds,
        summary.events as f64 / summary.seconds.max(1e-9)
    );
    Ok(summary.events)
}

/// `idp replay verify`: the report on stdout; returns how many events were
/// checked, or the first problem as the error (exit 1).
async fn verify(config: &Config, seal: bool) -> Result<u64, CliError> {
    let log = eventlog::open(&config.eventstore_url(), &eventlog::LogOptions::default())
        .await
        .map_err(failed)?;
    if seal {
        log.seal().await.map_err(failed)?;
    }
    let mut out = std::io::stdout().lock();
    let report = replay::verify(&log, &mut out).await.map_err(failed)?;
    match report.first_problem {
        None => Ok(report.events_checked),
        Some(problem) => Err(CliError::Tampered(problem)),
    }
}
