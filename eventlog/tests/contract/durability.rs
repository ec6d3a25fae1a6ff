//! An acknowledged SQLite append survives `kill -9` of the process: a child
//! process appends and prints each acknowledged event id; the parent kills
//! it mid-stream and finds every acknowledged id in the reopened log.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use eventlog::{ExpectedRevision, Filter, LogOptions, NewEvent, Position};
use uuid::Uuid;

const CHILD_ENV: &str = "IDP_DURABILITY_CHILD_LOG";

#[test]
fn acknowledged_sqlite_appends_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability::child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = HashSet::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 3_000 {
        let line = lines.next().expect("the child keeps writing").unwrap();
        if let Some(id) = line.strip_prefix("acked ") {
            acked.insert(Uuid::parse_str(id).unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no checkpoint
    child.wait().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stored: HashSet<Uuid> = rt.block_on(async {
        let log = eventlog::open(
            &format!("sqlite:{}", path.display()),
            &LogOptions::default(),
        )
        .await
        .unwrap();
        let mut ids = HashSet::new();
        let mut after = Position::START;
        loop {
            let page = log.read_all(after, &Filter::all(), 5000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            ids.extend(page.iter().map(|e| e.id));
        }
        ids
    });
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

/// Runs only as the child of the test above.
#[test]
#[ignore = "the child process of acknowledged_sqlite_appends_survive_kill_9"]
fn child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let log = eventlog::open(&format!("sqlite:{path}"), &LogOptions::default())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    for k in 0u64.. {
                        let meta = domain::Metadata::system(
                            Uuid::now_v7(),
                            time::OffsetDateTime::now_utc(),
                        );
                        let e = NewEvent::new("durable.v1", serde_json::json!({"k": k}), meta);
                        let id = e.id;
                        log.append(&format!("durable-{w}"), ExpectedRevision::Any, vec![e])
                            .await
                            .unwrap();
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "acked {id}");
                        let _ = out.flush();
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}
