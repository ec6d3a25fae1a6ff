//! Liveness, readiness, metrics, restarts.

use std::time::Duration;

use domain::Metadata;
use eventlog::LogOptions;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::harness::{Store, TestServer, http};

async fn health_endpoints(store: Store) {
    let Some(s) = TestServer::start(store, "health").await else {
        return;
    };
    let c = http();

    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");

    // The first start bootstraps an organization and an admin client, so
    // the projections have events to catch up with: ready comes soon after.
    let body = s.wait_ready().await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["projections"][0]["name"], "organizations");
    assert_eq!(body["projections"][1]["name"], "clients");

    let r = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("idp_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"),
        "{text}"
    );

    let r = c.get(s.url("/no-such-page")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_on_sqlite() {
    health_endpoints(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_on_postgres() {
    health_endpoints(Store::Postgres).await;
}

/// Events already in the log when the server starts: it becomes ready only
/// once the read models hold them, and a restart keeps everything.
async fn ready_means_caught_up(store: Store) {
    let Some((config, dir)) = TestServer::config(store, "ready").await else {
        return;
    };
    let log = eventlog::open(&config.eventstore_url(), &LogOptions::default())
        .await
        .unwrap();
    let bus = commands::CommandBus::new(log.clone(), std::sync::Arc::new(commands::SystemClock));
    let meta = Metadata::system(Uuid::now_v7(), OffsetDateTime::now_utc());
    let mut ids = Vec::new();
    for i in 0..300 {
        let id = Uuid::now_v7();
        commands::organization::create(&bus, id, &format!("Org {i}"), &meta)
            .await
            .unwrap();
        ids.push(id);
    }
    // On PostgreSQL a commit becomes readable once every older transaction
    // in the cluster has finished: wait until the last one is.
    let last = commands::organization::rename(&bus, ids[299], "Org 299 renamed", &meta)
        .await
        .unwrap()
        .position
        .unwrap();
    let mut head = log.head().await.unwrap().unwrap();
    for _ in 0..200 {
        if head >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        head = log.head().await.unwrap().unwrap();
    }
    assert!(head >= last);
    drop(bus);
    drop(log);

    let mut s = TestServer::start_with(config, Some(dir)).await;
    let c = http();
    let mut ready = false;
    for _ in 0..200 {
        let r = c.get(s.url("/readyz")).send().await.unwrap();
        if r.status() == 200 {
            ready = true;
            break;
        }
        assert_eq!(r.status(), 503);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "catching_up");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "the server becomes ready");
    assert!(
        s.server().state.projections.position() >= head,
        "ready means caught up"
    );
    let db = s.server().state.read_db.clone();
    for id in &ids {
        assert!(
            projections::organizations::get(&db, &id.to_string())
                .await
                .unwrap()
                .is_some()
        );
    }
    let key = std::fs::read_to_string(s.data_dir.join("master.key")).unwrap();

    // Restart on the same storage: same key, same data, ready again.
    let (config, dir) = s.stop().await;
    assert!(
        c.get(format!("{}/healthz", s.base)).send().await.is_err(),
        "stopped means closed"
    );
    let s2 = TestServer::start_with(config, dir).await;
    assert_eq!(
        std::fs::read_to_string(s2.data_dir.join("master.key")).unwrap(),
        key
    );
    let r = c.get(s2.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "checkpoints survive a restart");
    let db = s2.server().state.read_db.clone();
    assert_eq!(
        projections::organizations::list(&db, None, 1000)
            .await
            .unwrap()
            .len(),
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_means_caught_up_on_sqlite() {
    ready_means_caught_up(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_means_caught_up_on_postgres() {
    ready_means_caught_up(Store::Postgres).await;
}
