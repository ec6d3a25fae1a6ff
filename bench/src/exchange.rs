//! `idp bench exchange`: the token exchange of installed instances over
//! HTTP, against a running server.
//!
//! Every exchange spends a fresh auth token, so a load generator that sends
//! one body for all requests cannot drive it. This one first consumes
//! `--tokens` auth tokens from a registration token (each with its own
//! instance id, which also measures consumption with distinct bodies), then
//! trades them at the token endpoint (RFC 8693, `subject_token_type` the
//! auth token type) with `--concurrency` requests in flight until they run
//! out or `--duration` has passed, and prints requests/s, success rate, p50
//! and p99 of each phase. The auth tokens live only in memory.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::{BenchError, percentiles};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The token type of auth tokens (`subject_token_type`), as the server
/// announces it: this is a client of the HTTP API.
const AUTH_TOKEN_TYPE: &str = "urn:idp:params:oauth:token-type:auth_token";

#[derive(Debug, Clone, clap::Args)]
pub struct ExchangeArgs {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub url: String,
    /// A registration token (`rt_…`) with at least `--tokens` uses left.
    #[arg(long, env = "BENCH_REGISTRATION_TOKEN", hide_env_values = true)]
    pub registration_token: String,
    /// The id of the application the registration token belongs to (a
    /// public client allowed the token exchange grant).
    #[arg(long)]
    pub client_id: String,
    /// How many auth tokens to consume first (at most this many exchanges).
    #[arg(long, default_value_t = 20_000)]
    pub tokens: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The longest the exchange phase runs, in seconds.
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
    /// What to print in front of each result line (e.g. the store).
    #[arg(long, default_value = "")]
    pub label: String,
}

/// What one phase measured.
pub(crate) struct Phase {
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Vec<Duration>,
    /// Responses per HTTP status; `error` for requests that got none.
    pub(crate) statuses: BTreeMap<String, u64>,
    pub(crate) ok: u64,
}

impl Phase {
    pub(crate) fn line(&self, label: &str, name: &str) -> String {
        let n = self.latencies.len() as f64;
        let (p50, p99, _) = percentiles(self.latencies.clone());
        format!(
            "{label:<10} {name:<10} {:>10.0} req/s  success {:6.2}%  p50 {:7.2} ms  p99 {:7.2} ms  status {}",
            n / self.elapsed.as_secs_f64().max(1e-9),
            if n > 0.0 {
                100.0 * self.ok as f64 / n
            } else {
                0.0
            },
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            serde_json::to_string(&self.statuses).unwrap_or_default(),
        )
    }
}

/// Runs `request(i)` for i = 0, 1, … up to `total` (or until `deadline`)
/// with `concurrency` requests in flight. `request` answers the HTTP status
/// (`None`: no response) and whether it counts as a success.
pub(crate) async fn drive<F, Fut>(
    concurrency: usize,
    total: usize,
    duration: Option<Duration>,
    request: F,
) -> Result<Phase, BenchError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (Option<u16>, bool)> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let started = eventlog::clock::monotonic();
    let deadline = duration.map(|d| started + d);
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (request, next) = (Arc::clone(&request), Arc::clone(&next));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || deadline.is_some_and(|d| eventlog::clock::monotonic() >= d) {
                        return seen;
                    }
                    let sent = eventlog::clock::monotonic();
                    let (status, ok) = request(i).await;
                    seen.push((sent.elapsed(), status, ok));
                }
            })
        })
        .collect();
    let mut phase = Phase {
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        statuses: BTreeMap::new(),
        ok: 0,
    };
    for w in workers {
        for (latency, status, ok) in w.await.map_err(|e| BenchError::Setup(e.to_string()))? {
            phase.latencies.push(latency);
            let key = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
            *phase.statuses.entry(key).or_default() += 1;
            phase.ok += u64::from(ok);
        }
    }
    phase.elapsed = started.elapsed();
    Ok(phase)
}

pub async fn run(args: ExchangeArgs) -> Result<(), BenchError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| BenchError::Setup(format!("HTTP client: {e}")))?;
    let base = args.url.trim_end_matches('/').to_owned();

    // Phase 1: consume the auth tokens, each for its own instance.
    let run = Uuid::now_v7().simple().to_string();
    let tokens = Arc::new(Mutex::new(Vec::with_capacity(args.tokens)));
    let consume = {
        let (http, tokens) = (http.clone(), Arc::clone(&tokens));
        let url = format!("{base}/registration/consume");
        let bearer = args.registration_token.clone();
        drive(args.concurrency, args.tokens, None, move |i| {
            let request = http.post(&url).bearer_auth(&bearer).json(&json!({
                "instance_id": format!("bench-{run}-{i}"),
                "device_name": "bench",
                "app_version": "1.0",
            }));
            let tokens = Arc::clone(&tokens);
            async move {
                let Ok(resp) = request.send().await else {
                    return (None, false);
                };
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let ok = match body["auth_token"].as_str() {
                    Some(token) if status == 201 => {
                        tokens
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(token.to_owned());
                        true
                    }
                    _ => false,
                };
                (Some(status), ok)
            }
        })
        .await?
    };
    println!("{}", consume.line(&args.label, "consume*"));
    let tokens: Vec<String> =
        std::mem::take(&mut *tokens.lock().unwrap_or_else(PoisonError::into_inner));
    if tokens.is_empty() {
        return Err(BenchError::Setup(
            "no auth token was issued: check the registration token and the URL".into(),
        ));
    }

    // Phase 2: exchange each auth token once.
    let total = tokens.len();
    let tokens = Arc::new(tokens);
    let url = format!("{base}/oauth/token");
    let client_id = args.client_id.clone();
    let exchange = drive(
        args.concurrency,
        total,
        Some(Duration::from_secs(args.duration)),
        move |i| {
            let request = http.post(&url).form(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("client_id", client_id.as_str()),
                ("subject_token", tokens[i].as_str()),
                ("subject_token_type", AUTH_TOKEN_TYPE),
            ]);
            async move {
                let Ok(resp) = request.send().await else {
                    return (None, false);
                };
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let ok = status == 200
                    && body["access_token"].is_string()
                    && body["refresh_token"].is_string();
                (Some(status), ok)
            }
        },
    )
    .await?;
    println!("{}", exchange.line(&args.label, "exchange"));
    if exchange.latencies.len() == total {
        eprintln!(
            "idp bench exchange: all {total} auth tokens were exchanged before {} s; \
             pass more --tokens for a full-length run",
            args.duration
        );
    }
    Ok(())
}
