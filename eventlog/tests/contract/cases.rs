use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::{Actor, Metadata};
use eventlog::{
    Direction, Error, EventLog, ExpectedRevision, Filter, NewEvent, Position, RecordedEvent,
    Subscription,
};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// A unique tag so that cases can share a server (KurrentDB) without seeing
/// each other: every stream category a case uses ends with it.
fn tag() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn meta() -> Metadata {
    Metadata {
        actor: Actor::client("test-client"),
        correlation_id: Uuid::now_v7(),
        request_id: None,
        causation_id: None,
        source_ip: Some("127.0.0.1".into()),
        user_agent: Some("contract".into()),
        organization: None,
        occurred_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    }
}

fn ev(ty: &str, n: u64) -> NewEvent {
    NewEvent::new(ty, json!({ "n": n }), meta())
}

async fn start(log: &Arc<dyn EventLog>) -> Position {
    log.head().await.unwrap().unwrap_or(Position::START)
}

/// Waits until a reader can see `position`. On PostgreSQL an acknowledged
/// append becomes readable only once every older transaction in the cluster
/// has finished (a `DROP DATABASE` next door can take a second).
async fn readable(log: &Arc<dyn EventLog>, position: Position) {
    for _ in 0..1000 {
        if log.head().await.unwrap() >= Some(position) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{position} never became readable");
}

/// Everything after `from` that passes `filter`, read page by page.
async fn read_everything(
    log: &Arc<dyn EventLog>,
    from: Position,
    filter: &Filter,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = from;
    loop {
        let page = log.read_all(after, filter, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        out.extend(page);
    }
    out
}

pub async fn append_and_read_a_stream(log: Arc<dyn EventLog>) {
    let s = format!("order{}-1", tag());
    let r = log
        .append(
            &s,
            ExpectedRevision::NoStream,
            vec![
                ev("order.placed.v1", 0),
                ev("order.paid.v1", 1),
                ev("order.shipped.v1", 2),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.next_expected_revision, 2);

    let all = log
        .read_stream(&s, Direction::Forwards, None, 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        all[2].position, r.position,
        "the append returns the last event's position"
    );
    assert!(all[0].position < all[1].position && all[1].position < all[2].position);
    assert_eq!(all[1].event_type, "order.paid.v1");

    let from1 = log
        .read_stream(&s, Direction::Forwards, Some(1), 100)
        .await
        .unwrap();
    assert_eq!(
        from1.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![1, 2]
    );

    let back = log
        .read_stream(&s, Direction::Backwards, None, 100)
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![2, 1, 0]
    );
    let back1 = log
        .read_stream(&s, Direction::Backwards, Some(1), 1)
        .await
        .unwrap();
    assert_eq!(
        back1.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![1]
    );
    let limited = log
        .read_stream(&s, Direction::Forwards, None, 2)
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);

    let missing = log
        .read_stream(
            &format!("order{}-none", tag()),
            Direction::Forwards,
            None,
            10,
        )
        .await
        .unwrap();
    assert!(missing.is_empty());
}

pub async fn expected_revision_matrix(log: Arc<dyn EventLog>) {
    use ExpectedRevision::*;
    let t = tag();
    // (expectation, against a missing stream, against a stream at revision 1)
    let cases = [
        (Any, Ok(()), Ok(())),
        (NoStream, Ok(()), Err(Some(1))),
        (StreamExists, Err(None), Ok(())),
        (Exact(0), Err(None), Err(Some(1))),
        (Exact(1), Err(None), Ok(())),
        (Exact(5), Err(None), Err(Some(1))),
    ];
    for (i, (expected, on_missing, on_existing)) in cases.into_iter().enumerate() {
        for (state, want) in [("missing", on_missing), ("existing", on_existing)] {
            let s = format!("matrix{t}-{i}{state}");
            if state == "existing" {
                log.append(&s, NoStream, vec![ev("m.v1", 0), ev("m.v1", 1)])
                    .await
                    .unwrap();
            }
            let got = log.append(&s, expected, vec![ev("m.v1", 9)]).await;
            match (want, got) {
                (Ok(()), Ok(r)) => {
                    let expect_rev = if state == "existing" { 2 } else { 0 };
                    assert_eq!(
                        r.next_expected_revision, expect_rev,
                        "{expected} on {state}"
                    );
                }
                (Err(actual), Err(Error::WrongExpectedRevision { actual: got, .. })) => {
                    assert_eq!(got, actual, "{expected} on {state}");
                }
                (want, got) => panic!("{expected} on {state}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}

pub async fn idempotent_retry_of_an_append(log: Arc<dyn EventLog>) {
    let t = tag();
    let s = format!("idem{t}-1");
    let batch = vec![ev("i.v1", 0), ev("i.v1", 1)];
    let first = log
        .append(&s, ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    // A client that lost the answer retries the very same append.
    let retry = log
        .append(&s, ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(retry, first);
    let retry_any = log
        .append(&s, ExpectedRevision::Any, batch.clone())
        .await
        .unwrap();
    assert_eq!(retry_any, first);
    let stored = log
        .read_stream(&s, Direction::Forwards, None, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "a retry stores nothing twice");

    // KurrentDB keeps no global index of event ids, so only the SQL
    // adapters can refuse a stored id appended to another stream.
    if log.backend() == "kurrentdb" {
        return;
    }
    // The same ids elsewhere are refused.
    let other = format!("idem{t}-2");
    match log
        .append(&other, ExpectedRevision::Any, batch.clone())
        .await
    {
        Err(Error::DuplicateEventId(id)) => assert_eq!(id, batch[0].id),
        r => panic!("expected a duplicate id refusal, got {r:?}"),
    }
    assert!(
        log.read_stream(&other, Direction::Forwards, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_refused_append_writes_nothing(log: Arc<dyn EventLog>) {
    let t = tag();
    let a = format!("atom{t}-a");
    let b = format!("atom{t}-b");

    // Refused appends are refused before any write: empty batches, bad names,
    // one id twice in a batch.
    assert!(matches!(
        log.append(&b, ExpectedRevision::Any, vec![]).await,
        Err(Error::InvalidAppend(_))
    ));
    assert!(matches!(
        log.append("", ExpectedRevision::Any, vec![ev("x.v1", 0)])
            .await,
        Err(Error::InvalidAppend(_))
    ));
    let twice = ev("x.v1", 3);
    assert!(matches!(
        log.append(&b, ExpectedRevision::Any, vec![twice.clone(), twice])
            .await,
        Err(Error::InvalidAppend(_))
    ));
    assert!(
        log.read_stream(&b, Direction::Forwards, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    if log.backend() == "kurrentdb" {
        // No global id index there (see idempotent_retry_of_an_append).
        return;
    }
    let taken = ev("x.v1", 0);
    log.append(&a, ExpectedRevision::NoStream, vec![taken.clone()])
        .await
        .unwrap();
    // The second event of this batch reuses a stored id: all or nothing.
    let batch = vec![ev("x.v1", 1), taken.clone(), ev("x.v1", 2)];
    let r = log.append(&b, ExpectedRevision::Any, batch).await;
    assert!(matches!(r, Err(Error::DuplicateEventId(_))), "{r:?}");
    assert!(
        log.read_stream(&b, Direction::Forwards, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn envelope_round_trips(log: Arc<dyn EventLog>) {
    let s = format!("env{}-1", tag());
    let mut m = meta();
    m.causation_id = Some(Uuid::now_v7());
    m.organization = Some(Uuid::now_v7());
    let e = NewEvent::new(
        "user.registered.v2",
        json!({"name": {"$pii": "Ada"}, "nested": {"list": [1, 2, 3]}, "unicode": "ü ✓"}),
        m.clone(),
    )
    .with_subject("subject-1");
    let before = OffsetDateTime::now_utc() - Duration::from_secs(5);
    log.append(&s, ExpectedRevision::NoStream, vec![e.clone()])
        .await
        .unwrap();
    let got = log
        .read_stream(&s, Direction::Forwards, None, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(got.id, e.id);
    assert_eq!(got.id.get_version_num(), 7, "event ids are UUID v7");
    assert_eq!(got.stream, s);
    assert_eq!(got.event_type, "user.registered.v2");
    assert_eq!(got.schema_version(), 2);
    assert_eq!(got.data, e.data);
    assert_eq!(got.metadata, m);
    assert_eq!(got.subject.as_deref(), Some("subject-1"));
    assert!(
        got.recorded_at > before
            && got.recorded_at < OffsetDateTime::now_utc() + Duration::from_secs(5)
    );
}

pub async fn read_all_with_filters_and_pages(log: Arc<dyn EventLog>) {
    let t = tag();
    let from = start(&log).await;
    let (ca, cb) = (format!("alpha{t}"), format!("beta{t}"));
    let mut last = Position::START;
    for i in 0..30u64 {
        let (s, ty) = if i % 3 == 0 {
            (format!("{cb}-{}", i % 2), "beta.made.v1")
        } else if i % 3 == 1 {
            (format!("{ca}-{}", i % 2), "alpha.made.v1")
        } else {
            (format!("{ca}-{}", i % 2), "alpha.changed.v1")
        };
        last = log
            .append(&s, ExpectedRevision::Any, vec![ev(ty, i)])
            .await
            .unwrap()
            .position;
    }
    readable(&log, last).await;
    let both = Filter::categories([ca.clone(), cb.clone()]);
    let all = read_everything(&log, from, &both).await;
    assert_eq!(all.len(), 30);
    let ns: Vec<u64> = all
        .iter()
        .map(|e| e.data.value().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ns,
        (0..30).collect::<Vec<_>>(),
        "read_all follows append order"
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));

    // Pages of 7 give the same sequence.
    let mut paged = Vec::new();
    let mut after = from;
    loop {
        let page = log.read_all(after, &both, 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = last.position;
        paged.extend(page);
    }
    assert_eq!(paged, all);

    let only_b = read_everything(&log, from, &Filter::categories([cb.clone()])).await;
    assert_eq!(only_b.len(), 10);
    assert!(only_b.iter().all(|e| e.category() == cb));

    let changed = read_everything(
        &log,
        from,
        &Filter {
            categories: vec![ca.clone()],
            type_prefixes: vec!["alpha.changed".into()],
        },
    )
    .await;
    assert_eq!(changed.len(), 10);
    assert!(changed.iter().all(|e| e.event_type == "alpha.changed.v1"));

    // A prefix is a prefix, not a pattern.
    let none = read_everything(
        &log,
        from,
        &Filter {
            categories: vec![ca.clone()],
            type_prefixes: vec!["alpha_".into(), "%".into()],
        },
    )
    .await;
    assert!(none.is_empty());

    // Reading after the middle gives the tail.
    let tail = log.read_all(all[19].position, &both, 100).await.unwrap();
    assert_eq!(tail, all[20..].to_vec());
}

pub async fn subscription_from_the_middle_then_live(log: Arc<dyn EventLog>) {
    let t = tag();
    let cat = format!("sub{t}");
    let filter = Filter::categories([cat.clone()]);
    let from = start(&log).await;
    let mut last = Position::START;
    for i in 0..10u64 {
        last = log
            .append(
                &format!("{cat}-{}", i % 3),
                ExpectedRevision::Any,
                vec![ev("s.v1", i)],
            )
            .await
            .unwrap()
            .position;
    }
    readable(&log, last).await;
    let history = read_everything(&log, from, &filter).await;
    let mut sub = Subscription::new(Arc::clone(&log), history[4].position, filter.clone(), 3);

    let writer = {
        let log = Arc::clone(&log);
        let cat = cat.clone();
        tokio::spawn(async move {
            for i in 10..25u64 {
                tokio::time::sleep(Duration::from_millis(3)).await;
                log.append(
                    &format!("{cat}-{}", i % 3),
                    ExpectedRevision::Any,
                    vec![ev("s.v1", i)],
                )
                .await
                .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("live events arrive")
            .unwrap();
        seen.push(e.data.value().unwrap()["n"].as_u64().unwrap());
    }
    writer.await.unwrap();
    assert_eq!(
        seen,
        (5..25).collect::<Vec<_>>(),
        "history then live, no gap, no duplicate"
    );
    // Nothing more is delivered.
    let extra = sub
        .next_batch_timeout(Duration::from_millis(300))
        .await
        .unwrap();
    assert!(extra.is_empty(), "{extra:?}");
}

pub async fn reads_by_subject(log: Arc<dyn EventLog>) {
    let t = tag();
    let (alice, bob) = (format!("alice-{t}"), format!("bob-{t}"));
    for i in 0..12u64 {
        let who = if i % 3 == 0 { &bob } else { &alice };
        let e = ev("p.v1", i).with_subject(who.clone());
        log.append(
            &format!("person{t}-{}", i % 4),
            ExpectedRevision::Any,
            vec![e, ev("noise.v1", i)],
        )
        .await
        .unwrap();
    }
    let a = log.read_subject(&alice).await.unwrap();
    assert_eq!(a.len(), 8);
    assert!(
        a.iter()
            .all(|e| e.subject.as_deref() == Some(alice.as_str()))
    );
    assert!(a.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(log.read_subject(&bob).await.unwrap().len(), 4);
    assert!(
        log.read_subject(&format!("nobody-{t}"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn head_and_count(log: Arc<dyn EventLog>) {
    let from = start(&log).await;
    let s = format!("head{}-1", tag());
    let r = log
        .append(
            &s,
            ExpectedRevision::Any,
            (0..5).map(|i| ev("h.v1", i)).collect(),
        )
        .await
        .unwrap();
    readable(&log, r.position).await;
    let head = log.head().await.unwrap().unwrap();
    assert!(head >= r.position);
    assert!(log.count_after(from).await.unwrap() >= 5);
    if log.backend() != "kurrentdb" {
        // A KurrentDB server is shared by the cases running beside this one.
        assert_eq!(log.count_after(head).await.unwrap(), 0);
    }
}

pub async fn concurrent_exact_appends_have_one_winner_per_revision(log: Arc<dyn EventLog>) {
    let s = format!("race{}-1", tag());
    for round in 0..40u64 {
        let expected = if round == 0 {
            ExpectedRevision::NoStream
        } else {
            ExpectedRevision::Exact(round - 1)
        };
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let log = Arc::clone(&log);
                let s = s.clone();
                tokio::spawn(async move { log.append(&s, expected, vec![ev("r.v1", w)]).await })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    wins += 1;
                    assert_eq!(r.next_expected_revision, round);
                }
                Err(Error::WrongExpectedRevision { actual, .. }) => {
                    assert_eq!(actual, Some(round), "a loser learns the actual revision");
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one append wins");
    }
    let all = log
        .read_stream(&s, Direction::Forwards, None, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 40);
}

/// A filtered subscription moves past the events it does not want while
/// writers keep interleaving wanted and unwanted ones: it must still see
/// every wanted event once, in order.
pub async fn a_filtered_subscription_misses_nothing_among_unmatched_events(log: Arc<dyn EventLog>) {
    const WRITERS: u64 = 8;
    const PER_WRITER: u64 = 1_500;
    let t = tag();
    let wanted = format!("want{t}");
    let other = format!("noise{t}");
    let filter = Filter::categories([wanted.clone()]);
    let from = start(&log).await;
    let expected = WRITERS * PER_WRITER.div_ceil(10);

    let subscriber = {
        let mut sub = Subscription::new(Arc::clone(&log), from, filter.clone(), 7);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while (seen.len() as u64) < expected {
                let batch = tokio::time::timeout(Duration::from_secs(60), sub.next_batch())
                    .await
                    .expect("the subscriber keeps receiving")
                    .unwrap();
                seen.extend(batch);
            }
            seen
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = Arc::clone(&log);
            let (wanted, other) = (wanted.clone(), other.clone());
            tokio::spawn(async move {
                for n in 0..PER_WRITER {
                    let cat = if n % 10 == 0 { &wanted } else { &other };
                    log.append(
                        &format!("{cat}-{w}"),
                        ExpectedRevision::Any,
                        vec![ev("mix.v1", w * 1_000_000 + n)],
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let seen = subscriber.await.unwrap();
    let later = read_everything(&log, from, &filter).await;
    assert_eq!(later.len() as u64, expected);
    let ids = |v: &[RecordedEvent]| v.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&seen),
        ids(&later),
        "exactly the wanted events, in order"
    );
}

pub async fn concurrent_writers_and_a_subscriber_agree_on_one_order(log: Arc<dyn EventLog>) {
    const WRITERS: u64 = 16;
    const EVENTS: u64 = 20_000;
    let t = tag();
    let cat = format!("load{t}");
    let filter = Filter::categories([cat.clone()]);
    let from = start(&log).await;

    let subscriber = {
        let mut sub = Subscription::new(Arc::clone(&log), from, filter.clone(), 500);
        tokio::spawn(async move {
            let mut seen = Vec::with_capacity(EVENTS as usize);
            while (seen.len() as u64) < EVENTS {
                let batch = tokio::time::timeout(Duration::from_secs(60), sub.next_batch())
                    .await
                    .expect("the subscriber keeps receiving")
                    .unwrap();
                seen.extend(batch);
            }
            // Wait a little: nothing may arrive beyond the 20,000.
            let extra = sub
                .next_batch_timeout(Duration::from_millis(300))
                .await
                .unwrap();
            (seen, extra.len())
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = Arc::clone(&log);
            let cat = cat.clone();
            tokio::spawn(async move {
                let per_writer = EVENTS / WRITERS;
                let mut n = 0u64;
                let mut k = 0u64;
                while n < per_writer {
                    // Mostly single events, sometimes a batch of 5.
                    let size = if k.is_multiple_of(7) {
                        5.min(per_writer - n)
                    } else {
                        1
                    };
                    let stream = format!("{cat}-{w}x{}", k % 25);
                    let batch = (0..size)
                        .map(|i| ev("load.v1", w * 1_000_000 + n + i))
                        .collect();
                    log.append(&stream, ExpectedRevision::Any, batch)
                        .await
                        .unwrap();
                    n += size;
                    k += 1;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let (seen, extra) = subscriber.await.unwrap();
    assert_eq!(extra, 0, "no event beyond those written");

    let ids: Vec<Uuid> = seen.iter().map(|e| e.id).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "every event exactly once");
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "delivered in position order"
    );

    let later = read_everything(&log, from, &filter).await;
    assert_eq!(later.len() as u64, EVENTS);
    let later_ids: Vec<Uuid> = later.iter().map(|e| e.id).collect();
    assert_eq!(
        ids, later_ids,
        "the subscriber saw exactly the order of a later full read"
    );

    // Within each stream, revisions appear in order.
    let mut last: HashMap<&str, u64> = HashMap::new();
    for e in &later {
        if let Some(prev) = last.insert(e.stream.as_str(), e.revision) {
            assert_eq!(e.revision, prev + 1, "stream {} out of order", e.stream);
        } else {
            assert_eq!(e.revision, 0);
        }
    }
}
