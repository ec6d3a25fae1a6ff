//! The `idp` binary as an operator runs it: first start, JSON logs, SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests read the wall clock freely; the server takes it from a Clock.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn first_start_json_logs_and_graceful_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idp"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IDP_LISTEN", format!("127.0.0.1:{port}"))
        .env("IDP_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let started = Instant::now();
    let health = loop {
        if let Some(r) = get(port, "/healthz") {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server comes up"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""));

    // The default data directory is ./data, with a private master key.
    let key = dir.path().join("data").join("master.key");
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(dir.path().join("data").join("idp.db").exists());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server stops after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "a graceful stop exits 0: {exit:?}");

    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(|l| l.unwrap())
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
        assert!(v.get("level").is_some(), "{l}");
        assert!(
            !l.contains(text.trim()),
            "the master key never appears in a log line"
        );
    }
    assert!(lines.iter().any(|l| l.contains("idp serving")));
    assert!(lines.iter().any(|l| l.contains("idp stopped")), "{lines:?}");
}

#[test]
fn a_bad_setting_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idp"))
        .current_dir(dir.path())
        .env("IDP_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("listen"), "{err}");
}

#[test]
fn config_subcommand_masks_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_idp"))
        .arg("config")
        .env("IDP_MASTER_KEY", "ab".repeat(32))
        .env("IDP_EVENTSTORE_URL", "postgres://idp:hunter2@db:5432/idp")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("hunter2") && !text.contains(&"ab".repeat(32)),
        "{text}"
    );
    assert!(text.contains("<redacted>"));
}

/// `idp` with a clean environment and its data in `data_dir`.
fn idp(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idp"));
    c.current_dir(data_dir.parent().unwrap())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IDP_DATA_DIR", data_dir);
    c
}

/// A data directory (`data` in a temporary one) holding a log that `idp
/// bench seed` wrote, `events` long.
fn seeded_data_dir(events: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let n = events.to_string();
    let seeded = stdout_of(
        &idp(&data)
            .args(["bench", "seed", "--events", &n, "--clients", "5"])
            .output()
            .unwrap(),
    );
    assert!(
        seeded.starts_with(&format!("seeded {n} events")),
        "{seeded}"
    );
    (dir, data)
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn bootstrap_prints_the_credentials_once_and_refuses_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = idp(&data).args(["bootstrap", "--json"]).output().unwrap();
    let text = stdout_of(&out);
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for field in ["organization_id", "client_id"] {
        let id = v[field].as_str().unwrap_or_else(|| panic!("{field}: {v}"));
        assert_eq!(id.len(), 36, "{field} is a UUID: {id}");
    }
    let secret = v["client_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 43, "32 random bytes, base64url");

    let again = idp(&data).arg("bootstrap").output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("bootstrap already ran"), "{err}");
    assert!(again.stdout.is_empty());
    assert!(!err.contains(secret));
}

/// `idp keys list` as (kid, alg, status) triples.
fn key_list(data: &std::path::Path) -> Vec<(String, String, String)> {
    let out = idp(data).args(["keys", "list"]).output().unwrap();
    stdout_of(&out)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "kid alg status: {l}");
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

#[test]
fn keys_rotate_adds_an_active_key_and_retires_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = stdout_of(&idp(&data).args(["keys", "rotate"]).output().unwrap());
    let before = key_list(&data);
    let es256 = |keys: &[(String, String, String)]| {
        keys.iter()
            .filter(|(_, alg, _)| alg == "ES256")
            .cloned()
            .collect::<Vec<_>>()
    };

    let out = idp(&data).args(["keys", "rotate"]).output().unwrap();
    let kid = stdout_of(&out).trim().to_owned();
    assert_eq!(kid.len(), 36, "a kid: {kid}");
    let after = key_list(&data);

    assert_eq!(es256(&after).len(), es256(&before).len() + 1);
    let active: Vec<_> = es256(&after)
        .into_iter()
        .filter(|(_, _, status)| status == "active")
        .collect();
    assert_eq!(active.len(), 1, "{after:?}");
    assert_eq!(active[0].0, kid, "the new key signs");
    assert!(
        after
            .iter()
            .any(|(k, _, status)| *k == first.trim() && status == "retired"),
        "the previous key retires: {after:?}"
    );
    assert!(
        data.join("master.key").exists(),
        "keys are sealed under the master key of the data directory"
    );
}

#[test]
fn first_serve_writes_private_bootstrap_credentials_and_never_logs_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut child = idp(&data)
        .env("IDP_LISTEN", format!("127.0.0.1:{port}"))
        .env("IDP_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while get(port, "/healthz").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server comes up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let file = data.join("bootstrap.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let secret = creds["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server stops after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(|l| l.unwrap())
        .collect();
    let path = file.display().to_string();
    assert!(
        lines.iter().any(|l| l.contains(&path)),
        "a log line says where the credentials are: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains(&secret)),
        "the secret never appears in a log line"
    );

    // The log now holds an organization: the subcommand refuses and points
    // at the file.
    let again = idp(&data).arg("bootstrap").output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("bootstrap already ran") && err.contains(&path),
        "{err}"
    );
}

/// A start that rebuilds the read models of a seeded log answers /readyz
/// with 503 until it has caught up, logs none of those answers as an
/// error, and says what it is doing.
#[test]
fn not_ready_yet_is_said_and_not_logged_as_an_error() {
    let (dir, data) = seeded_data_dir(30000);
    let log_file = dir.path().join("serve.log");
    let port = free_port();
    let mut child = idp(&data)
        .env("IDP_LISTEN", format!("127.0.0.1:{port}"))
        .env("IDP_LOG_FORMAT", "json")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut not_ready = 0;
    loop {
        match get(port, "/readyz") {
            Some(r) if r.starts_with("HTTP/1.1 200") => break,
            Some(r) => {
                assert!(r.starts_with("HTTP/1.1 503"), "{r}");
                not_ready += 1;
            }
            None => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server becomes ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    assert!(not_ready > 0, "the start was over before /readyz was asked");
    let logged = std::fs::read_to_string(&log_file).unwrap();
    // What the start was doing is in the log.
    for said in [
        "idp serving",
        "read models are catching up with the log",
        "rebuilding read models from the log",
        "read models rebuilt and switched in",
        "read models caught up with the log; ready",
    ] {
        assert!(logged.contains(said), "{said}: {logged}");
    }
    let errors: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(errors.is_empty(), "{not_ready} answers of 503: {errors:?}");
}

/// A server process on its own data directory, killed (SIGTERM) on drop.
struct Node {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn node(database_url: &str, master_key: &str) -> Node {
    node_of(database_url, master_key, None)
}

/// A node; with `issuer`, of a deployment whose nodes share that issuer.
fn node_of(database_url: &str, master_key: &str, issuer: Option<&str>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_idp"));
    command.env_clear();
    if let Some(issuer) = issuer {
        command.env("IDP_ISSUER", issuer);
    }
    let child = command
        .current_dir(dir.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("IDP_LISTEN", format!("127.0.0.1:{port}"))
        .env("IDP_DATA_DIR", dir.path().join("data"))
        .env("IDP_DATABASE_URL", database_url)
        .env("IDP_MASTER_KEY", master_key)
        .env("IDP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node on {port} becomes ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Node {
        child,
        port,
        _dir: dir,
    }
}

/// Two `idp serve` processes sharing one PostgreSQL database: 200 instances
/// (100 at each node) consume a registration token of count 50; exactly 50
/// get an auth token.
#[test]
fn two_serve_processes_sharing_postgres_honour_a_registration_count() {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: two idp serve processes on PostgreSQL: TEST_DATABASE_URL is not set"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let db = eventlog::postgres::create_scratch_database(&admin_url, "binary_two_nodes")
            .await
            .unwrap();
        let key = "5a".repeat(32);
        let first = node(&db, &key);
        let second = node(&db, &key);
        let boot: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(first._dir.path().join("data/bootstrap.json")).unwrap(),
        )
        .unwrap();
        let base1 = format!("http://127.0.0.1:{}", first.port);
        let base2 = format!("http://127.0.0.1:{}", second.port);
        let http = reqwest::Client::new();
        let token: serde_json::Value = http
            .post(format!("{base1}/oauth/token"))
            .basic_auth(
                boot["client_id"].as_str().unwrap(),
                Some(boot["client_secret"].as_str().unwrap()),
            )
            .form(&[("grant_type", "client_credentials"), ("scope", "idp:admin")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bearer = token["access_token"].as_str().unwrap().to_owned();
        let app: serde_json::Value = http
            .post(format!("{base1}/admin/clients"))
            .bearer_auth(&bearer)
            .json(&serde_json::json!({
                "organization_id": boot["organization_id"], "client_type": "public", "name": "app",
                "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"],
                "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rt_body: serde_json::Value = http
            .post(format!("{base1}/admin/registration-tokens"))
            .bearer_auth(&bearer)
            .json(&serde_json::json!({
                "client_id": app["client_id"], "count": 50, "expires_at": "2099-01-01T00:00:00Z"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let regtoken = rt_body["token"].as_str().unwrap().to_owned();
        let calls = (0..200).map(|i| {
            let http = http.clone();
            let url = format!(
                "{}/registration/consume",
                if i % 2 == 0 { &base1 } else { &base2 }
            );
            let regtoken = regtoken.clone();
            async move {
                http.post(url)
                    .bearer_auth(regtoken)
                    .json(&serde_json::json!({"instance_id": format!("i{i}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        });
        let statuses = futures_util::future::join_all(calls).await;
        let ok = statuses.iter().filter(|s| **s == 201).count();
        let refused = statuses.iter().filter(|s| **s == 403).count();
        assert_eq!((ok, refused), (50, 150), "{statuses:?}");
        drop(second);
        drop(first);
    });
}

/// Two `idp serve` processes sharing one PostgreSQL database: 50
/// creations of one username (in spellings that normalize alike), half at
/// each node, give exactly one user.
#[test]
fn two_serve_processes_sharing_postgres_create_one_user_per_username() {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: two idp serve processes on PostgreSQL: TEST_DATABASE_URL is not set"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let db = eventlog::postgres::create_scratch_database(&admin_url, "binary_two_nodes_users")
            .await
            .unwrap();
        let key = "6b".repeat(32);
        let issuer = "http://idp.nodes.test";
        let first = node_of(&db, &key, Some(issuer));
        let second = node_of(&db, &key, Some(issuer));
        let boot: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(first._dir.path().join("data/bootstrap.json")).unwrap(),
        )
        .unwrap();
        let base1 = format!("http://127.0.0.1:{}", first.port);
        let base2 = format!("http://127.0.0.1:{}", second.port);
        let http = reqwest::Client::new();
        let token: serde_json::Value = http
            .post(format!("{base2}/oauth/token"))
            .basic_auth(
                boot["client_id"].as_str().unwrap(),
                Some(boot["client_secret"].as_str().unwrap()),
            )
            .form(&[("grant_type", "client_credentials"), ("scope", "idp:admin")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bearer = token["access_token"].as_str().unwrap().to_owned();
        let spellings = ["linus", "Linus", "LINUS", "\u{ff4c}inus"];
        let calls = (0..50).map(|i| {
            let http = http.clone();
            let url = format!("{}/admin/users", if i % 2 == 0 { &base1 } else { &base2 });
            let body = serde_json::json!({
                "organization_id": boot["organization_id"],
                "username": spellings[i % spellings.len()],
            });
            let bearer = bearer.clone();
            async move {
                http.post(url)
                    .bearer_auth(bearer)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        });
        let statuses = futures_util::future::join_all(calls).await;
        let created = statuses.iter().filter(|s| **s == 201).count();
        let taken = statuses.iter().filter(|s| **s == 409).count();
        assert_eq!((created, taken), (1, 49), "{statuses:?}");
        drop(second);
        drop(first);
    });
}

/// `idp bench seed` writes a log, `idp replay rebuild --all` rebuilds every
/// projection from it beside the live tables, says how fast and leaves no
/// write-ahead log behind; a second run of one projection works on the
/// switched-in tables.
#[test]
fn replay_rebuild_rebuilds_a_seeded_log_and_prints_a_summary() {
    let (_dir, data) = seeded_data_dir(3000);

    let out = idp(&data)
        .args(["replay", "rebuild", "--all", "--batch", "200"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(
        text.starts_with(
            "rebuilt organizations, clients, registration, audit, users, sessions, notifications, roles: 3000 events in "
        ),
        "{text}"
    );
    assert!(text.trim_end().ends_with(" events/s"), "{text}");
    // Closed on the way out: the write-ahead log is folded into the file.
    let wal = data.join("read.db-wal");
    assert!(!wal.exists(), "a rebuild left {}", wal.display());

    let again = stdout_of(
        &idp(&data)
            .args(["replay", "rebuild", "audit"])
            .output()
            .unwrap(),
    );
    assert!(again.starts_with("rebuilt audit: 3000 events"), "{again}");
    assert!(!wal.exists(), "a rebuild left {}", wal.display());

    let unknown = idp(&data)
        .args(["replay", "rebuild", "nothing"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no projection named \"nothing\""),
        "{unknown:?}"
    );
}
