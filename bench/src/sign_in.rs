//! `idp bench sign-in`: signing people in, against a running server.
//!
//! First the raw argon2id verification rate at the server's default
//! parameters on this machine (in process, on as many threads as cores,
//! through the same bounded pool the server uses); then `--users` users
//! with passwords are created over the admin API and signed in over HTTP,
//! each sign-in a start, a password step and a completion, with
//! `--concurrency` in flight for `--duration` seconds; then a step that
//! hashes nothing (`GET /authentication/status`) at 64 in flight; then TOTP
//! code checks and sign-in code digests per second in process. Prints
//! requests/s, p50 and p99 of each HTTP phase and the rates of the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commands::password::{HashParams, Passwords};
use domain::password::PasswordPolicy;
use serde_json::{Value, json};

use super::BenchError;
use super::exchange::drive;

const PASSWORD: &str = "a long enough bench passphrase";

#[derive(Debug, Clone, clap::Args)]
pub struct SignInArgs {
    #[command(flatten)]
    pub server: super::AdminServer,
    /// Users to create (each with a password).
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Sign-ins in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long each timed phase runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// What to print in front of each result line.
    #[arg(long, default_value = "")]
    pub label: String,
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// The cookie a response sets, as `name=value`.
fn cookie_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("idp_signin="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// Raw argon2id verifications per second at the default parameters.
async fn raw_rate(seconds: u64) -> Result<f64, BenchError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let passwords = Arc::new(
        Passwords::new(
            PasswordPolicy::default(),
            Vec::new(),
            HashParams::default(),
            threads,
        )
        .map_err(setup)?,
    );
    let hash = Arc::new(passwords.hash(PASSWORD).await.map_err(setup)?);
    let done = Arc::new(AtomicU64::new(0));
    let started = eventlog::clock::monotonic();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads * 2)
        .map(|_| {
            let (passwords, hash, done) =
                (Arc::clone(&passwords), Arc::clone(&hash), Arc::clone(&done));
            tokio::spawn(async move {
                while eventlog::clock::monotonic() < deadline {
                    if passwords.verify(&hash, PASSWORD).await.unwrap_or(false) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.map_err(setup)?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Runs `f` on one thread for about a second; answers calls per second.
pub(crate) fn per_second(mut f: impl FnMut(u64)) -> f64 {
    let started = eventlog::clock::monotonic();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            f(n);
            n += 1;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

pub async fn run(args: SignInArgs) -> Result<(), BenchError> {
    let raw = raw_rate(args.duration).await?;
    println!(
        "{:<10} {:<10} {raw:>10.1} verifications/s (argon2id m=19456 t=2 p=1, in process)",
        args.label, "argon2id"
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(setup)?;
    let base = args.server.base();
    let token = args.server.token(&http, "idp:admin").await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let names: Vec<String> = (0..args.users)
        .map(|i| format!("signin{}-{i}", &run[20..]))
        .collect();
    let names = Arc::new(names);
    let create = {
        let (http, names, token) = (http.clone(), Arc::clone(&names), token.clone());
        let url = format!("{base}/admin/users");
        let org = args.server.organization_id.clone();
        drive(args.concurrency.min(8), args.users, None, move |i| {
            let req = http.post(&url).bearer_auth(&token).json(&json!({
                "organization_id": org, "username": names[i], "password": PASSWORD,
            }));
            async move {
                match req.send().await {
                    Ok(r) => (Some(r.status().as_u16()), r.status().as_u16() == 201),
                    Err(_) => (None, false),
                }
            }
        })
        .await?
    };
    println!("{}", create.line(&args.label, "users*"));

    // Whole sign-ins: start, password, complete.
    let signins = {
        let (http, names) = (http.clone(), Arc::clone(&names));
        let base = base.clone();
        let org = args.server.organization_id.clone();
        drive(
            args.concurrency,
            usize::MAX,
            Some(Duration::from_secs(args.duration)),
            move |i| {
                let (http, names, base, org) =
                    (http.clone(), Arc::clone(&names), base.clone(), org.clone());
                async move { sign_in(&http, &base, &org, &names[i % names.len()]).await }
            },
        )
        .await?
    };
    println!("{}", signins.line(&args.label, "sign-in"));
    let n = signins.ok as f64;
    let rate = n / (args.duration as f64);
    println!(
        "{:<10} {:<10} {rate:>10.1} sign-ins/s = {:.0} % of the raw argon2id rate",
        args.label,
        "ratio",
        100.0 * rate / raw
    );

    // A step that hashes nothing, at 64 in flight.
    let start = http
        .post(format!("{base}/authentication/start"))
        .json(&json!({"organization_id": args.server.organization_id}))
        .send()
        .await
        .map_err(setup)?;
    let cookie = cookie_of(&start).ok_or_else(|| setup("no sign-in cookie"))?;
    let body: Value = start.json().await.map_err(setup)?;
    let id = body["session_id"].as_str().unwrap_or_default().to_owned();
    let status = {
        let url = format!("{base}/authentication/status?session_id={id}");
        drive(
            64,
            usize::MAX,
            Some(Duration::from_secs(args.duration)),
            move |_| {
                let req = http.get(&url).header("cookie", &cookie);
                async move {
                    match req.send().await {
                        Ok(r) => (Some(r.status().as_u16()), r.status().as_u16() == 200),
                        Err(_) => (None, false),
                    }
                }
            },
        )
        .await?
    };
    println!("{}", status.line(&args.label, "status@64"));

    // Code checks in process.
    let secret = commands::totp::new_secret();
    let now = 1_800_000_000i64;
    let totp = per_second(|n| {
        let _ = commands::totp::matching_step(&secret, &format!("{:06}", n % 1_000_000), now);
    });
    let master = commands::crypto::MasterKey::from_bytes([7; 32]);
    let digest = per_second(|n| {
        let _ = commands::crypto::keyed_digest(&master, "sign-in code", &format!("{n:06}"));
    });
    println!(
        "{:<10} {:<10} {totp:>10.0} TOTP checks/s, {digest:.0} code digests/s (one thread, in process)",
        args.label, "codes"
    );
    Ok(())
}

/// One whole sign-in; `(last status, all three succeeded)`.
async fn sign_in(http: &reqwest::Client, base: &str, org: &str, name: &str) -> (Option<u16>, bool) {
    let Ok(start) = http
        .post(format!("{base}/authentication/start"))
        .json(&json!({"organization_id": org}))
        .send()
        .await
    else {
        return (None, false);
    };
    if start.status().as_u16() != 201 {
        return (Some(start.status().as_u16()), false);
    }
    let Some(cookie) = cookie_of(&start) else {
        return (Some(201), false);
    };
    let body: Value = start.json().await.unwrap_or(Value::Null);
    let id = body["session_id"].as_str().unwrap_or_default().to_owned();
    let step = http
        .post(format!("{base}/authentication/authenticate"))
        .header("cookie", &cookie)
        .json(&json!({"session_id": id, "method": "password", "identifier": name, "password": PASSWORD}))
        .send()
        .await;
    match step {
        Ok(r) if r.status().as_u16() == 200 => {}
        Ok(r) => return (Some(r.status().as_u16()), false),
        Err(_) => return (None, false),
    }
    match http
        .post(format!("{base}/authentication/complete"))
        .header("cookie", &cookie)
        .json(&json!({"session_id": id}))
        .send()
        .await
    {
        Ok(r) => (Some(r.status().as_u16()), r.status().as_u16() == 200),
        Err(_) => (None, false),
    }
}
