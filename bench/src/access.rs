//! `idp bench access`: access control against a running server.
//!
//! Creates `--users` users (each with a department) over the admin API,
//! puts them all in one group and gives that group a role (the time that
//! takes, and then the effective roles of members one by one); uploads and
//! activates a realistic Rego policy; then decides over HTTP
//! (`POST /authz/decide`, `--concurrency` in flight for `--duration`
//! seconds) and in process (one thread); then SCIM filtered lists and
//! `as_of` access reads one at a time. Prints requests/s, p50 and p99 of
//! each HTTP phase.

use std::sync::Arc;
use std::time::Duration;

use eventlog::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use super::BenchError;
use super::exchange::drive;

/// The policy decided with: roles, attributes, the address and the time.
pub const POLICY: &str = r#"package idp.authz
import rego.v1

default allow := false

allow if "reader" in input.subject.roles

allow if {
    input.action.name == "read"
    input.subject.attributes.department == input.resource.properties.department
}

allow if {
    input.action.name == "write"
    "editors" in input.subject.groups
    input.context.time.hour >= 6
    input.context.time.hour < 22
}

allow if {
    input.action.name == "connect"
    net.cidr_contains("10.0.0.0/8", input.context.ip)
}
"#;

const DEPARTMENTS: &[&str] = &["sales", "engineering", "support", "finance", "legal"];

#[derive(Debug, Clone, clap::Args)]
pub struct AccessArgs {
    #[command(flatten)]
    pub server: super::AdminServer,
    /// Users to create, all members of the group given the role.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Decisions in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long the decision phase runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// What to print in front of each result line.
    #[arg(long, default_value = "")]
    pub label: String,
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("setting up: {e}"))
}

/// An admin call that must succeed; its JSON.
async fn admin(
    http: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<Value, BenchError> {
    let mut req = http.request(method, &url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.map_err(setup)?;
    let status = r.status();
    let text = r.text().await.map_err(setup)?;
    if !status.is_success() {
        return Err(setup(format!("{url}: {status} {text}")));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A client with `scopes` and a secret: (id, secret).
async fn client(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    org: &str,
    scopes: &[&str],
) -> Result<(String, String), BenchError> {
    let c = admin(
        http,
        token,
        reqwest::Method::POST,
        format!("{base}/admin/clients"),
        Some(json!({
            "organization_id": org, "client_type": "confidential", "name": "bench",
            "grant_types": ["client_credentials"], "scopes": scopes,
            "token_endpoint_auth_method": "client_secret_basic", "access_token_lifetime": 3600,
        })),
    )
    .await?;
    let id = c["client_id"]
        .as_str()
        .ok_or_else(|| setup("no client id"))?
        .to_owned();
    let s = admin(
        http,
        token,
        reqwest::Method::POST,
        format!("{base}/admin/clients/{id}/secrets"),
        Some(json!({"description": "bench"})),
    )
    .await?;
    let secret = s["secret"]
        .as_str()
        .ok_or_else(|| setup("no secret"))?
        .to_owned();
    Ok((id, secret))
}

/// Sequential GETs of `urls` (cycled), `n` of them, with a bearer token.
async fn one_by_one(
    http: &reqwest::Client,
    token: &str,
    urls: Vec<String>,
    n: usize,
) -> Result<super::exchange::Phase, BenchError> {
    let (http, token, urls) = (http.clone(), token.to_owned(), Arc::new(urls));
    drive(1, n, None, move |i| {
        let req = http.get(&urls[i % urls.len()]).bearer_auth(&token);
        async move {
            match req.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    (Some(s), s == 200)
                }
                Err(_) => (None, false),
            }
        }
    })
    .await
}

pub async fn run(args: AccessArgs) -> Result<(), BenchError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .map_err(setup)?;
    let base = args.server.base();
    let org = args.server.organization_id.clone();
    let admin_token = args.server.token(&http, "idp:admin").await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let tag = &run[20..];

    // Users, each with a department.
    let names: Arc<Vec<String>> = Arc::new(
        (0..args.users)
            .map(|i| format!("access{tag}-{i}"))
            .collect(),
    );
    let ids = Arc::new(std::sync::Mutex::new(vec![String::new(); args.users]));
    let created = {
        let (http, names, ids, token, org) = (
            http.clone(),
            Arc::clone(&names),
            Arc::clone(&ids),
            admin_token.clone(),
            org.clone(),
        );
        let url = format!("{base}/admin/users");
        drive(8, args.users, None, move |i| {
            let req = http.post(&url).bearer_auth(&token).json(&json!({
                "organization_id": org, "username": names[i],
                "attributes": {"department": DEPARTMENTS[i % DEPARTMENTS.len()]},
            }));
            let ids = Arc::clone(&ids);
            async move {
                match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        if let (Some(id), Ok(mut all)) = (v["user_id"].as_str(), ids.lock()) {
                            all[i] = id.to_owned();
                        }
                        (Some(s), s == 201)
                    }
                    Err(_) => (None, false),
                }
            }
        })
        .await?
    };
    println!("{}", created.line(&args.label, "users*"));
    let ids: Vec<String> = ids.lock().map(|v| v.clone()).unwrap_or_default();

    // One group of them all; a role given to it.
    let group = admin(
        &http,
        &admin_token,
        reqwest::Method::POST,
        format!("{base}/admin/groups"),
        Some(json!({"organization_id": org, "name": format!("everyone {tag}")})),
    )
    .await?;
    let group = group["group_id"]
        .as_str()
        .ok_or_else(|| setup("no group"))?
        .to_owned();
    for chunk in ids.chunks(1000) {
        admin(
            &http,
            &admin_token,
            reqwest::Method::POST,
            format!("{base}/admin/users/bulk"),
            Some(json!({"action": "add_to_group", "group_id": group, "user_ids": chunk})),
        )
        .await?;
    }
    let role = admin(
        &http,
        &admin_token,
        reqwest::Method::POST,
        format!("{base}/admin/roles"),
        Some(json!({"organization_id": org, "name": "reader", "permissions": ["documents:read"]})),
    )
    .await?;
    let role = role["role_id"]
        .as_str()
        .ok_or_else(|| setup("no role"))?
        .to_owned();
    let started = eventlog::clock::monotonic();
    admin(
        &http,
        &admin_token,
        reqwest::Method::PUT,
        format!("{base}/admin/roles/{role}/holders/groups/{group}"),
        None,
    )
    .await?;
    let assigned = started.elapsed();
    let first = admin(
        &http,
        &admin_token,
        reqwest::Method::GET,
        format!("{base}/admin/users/{}/roles", ids[ids.len() / 2]),
        None,
    )
    .await?;
    let effective = started.elapsed();
    if first["roles"][0]["name"] != "reader" {
        return Err(setup(format!("the member does not hold the role: {first}")));
    }
    println!(
        "{:<10} {:<10} role to a group of {} members: assigned and readable in {:.1} ms, a member's effective roles read after {:.1} ms",
        args.label,
        "recompute",
        ids.len(),
        assigned.as_secs_f64() * 1000.0,
        effective.as_secs_f64() * 1000.0
    );
    let urls: Vec<String> = ids
        .iter()
        .step_by((ids.len() / 200).max(1))
        .map(|id| format!("{base}/admin/users/{id}/roles"))
        .collect();
    println!(
        "{}",
        one_by_one(&http, &admin_token, urls, 200)
            .await?
            .line(&args.label, "roles")
    );

    // The policy, and decisions over HTTP.
    admin(
        &http,
        &admin_token,
        reqwest::Method::POST,
        format!("{base}/admin/organizations/{org}/policies"),
        Some(json!({"source": POLICY, "description": "bench", "activate": true})),
    )
    .await?;
    let (pep, pep_secret) = client(&http, &base, &admin_token, &org, &["idp:authz"]).await?;
    let pep_token = super::client_token(&http, &base, &pep, &pep_secret, "idp:authz").await?;
    let decisions = {
        let (http, ids, token) = (http.clone(), Arc::new(ids.clone()), pep_token.clone());
        let url = format!("{base}/authz/decide");
        drive(args.concurrency, usize::MAX, Some(Duration::from_secs(args.duration)), move |i| {
            let action = ["read", "write", "connect"][i % 3];
            let req = http.post(&url).bearer_auth(&token).json(&json!({
                "subject": {"type": "user", "id": ids[i % ids.len()]},
                "resource": {"type": "document", "id": format!("doc-{i}"), "properties": {"department": DEPARTMENTS[i % 4]}},
                "action": {"name": action},
                "context": {"ip": if i % 2 == 0 { "10.1.2.3" } else { "192.0.2.7" }},
            }));
            async move {
                match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        (Some(s), s == 200)
                    }
                    Err(_) => (None, false),
                }
            }
        })
        .await?
    };
    println!("{}", decisions.line(&args.label, "decide"));

    // Decisions in process: the compiled policy, one thread.
    let policy = commands::rego::compile(POLICY).map_err(setup)?;
    let input = json!({
        "subject": {"type": "user", "id": "u", "roles": ["viewer"], "groups": ["staff"], "attributes": {"department": "sales"}},
        "resource": {"type": "document", "properties": {"department": "sales"}},
        "action": {"name": "read"},
        "context": {"ip": "10.1.2.3", "time": {"hour": 12}},
    });
    let rate = super::sign_in::per_second(|_| {
        let _ = policy.allows(input.clone());
    });
    println!(
        "{:<10} {:<10} {:>10.0} decisions/s (one thread, in process)",
        args.label, "rego", rate
    );

    // SCIM filtered lists, one at a time.
    let (scim, scim_secret) = client(&http, &base, &admin_token, &org, &["idp:scim"]).await?;
    let scim_token = super::client_token(&http, &base, &scim, &scim_secret, "idp:scim").await?;
    let enc = |f: &str| {
        f.replace(' ', "%20")
            .replace('"', "%22")
            .replace(':', "%3A")
    };
    let by_name: Vec<String> = names
        .iter()
        .step_by((names.len() / 100).max(1))
        .map(|n| {
            format!(
                "{base}/scim/v2/Users?filter={}",
                enc(&format!("userName eq \"{n}\""))
            )
        })
        .collect();
    println!(
        "{}",
        one_by_one(&http, &scim_token, by_name, 100)
            .await?
            .line(&args.label, "scim eq")
    );
    let by_dept = vec![format!(
        "{base}/scim/v2/Users?count=50&filter={}",
        enc("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"sales\"")
    )];
    println!(
        "{}",
        one_by_one(&http, &scim_token, by_dept, 20)
            .await?
            .line(&args.label, "scim dept")
    );

    // Access at a moment, replayed from the log.
    let at = SystemClock
        .now()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(setup)?;
    let urls: Vec<String> = ids
        .iter()
        .step_by((ids.len() / 200).max(1))
        .map(|id| {
            format!(
                "{base}/admin/access?user={id}&as_of={}",
                at.replace(':', "%3A").replace('+', "%2B")
            )
        })
        .collect();
    println!(
        "{}",
        one_by_one(&http, &admin_token, urls, 200)
            .await?
            .line(&args.label, "as_of")
    );
    Ok(())
}
