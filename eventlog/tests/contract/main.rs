//! The contract every event log adapter must honour, run against each one:
//! SQLite always, PostgreSQL when `TEST_DATABASE_URL` is set, KurrentDB when
//! built with the `kurrentdb` feature and `EVENTSTORE_URL` is set. A skipped
//! suite says so in one line on the terminal. `tamper` checks the hash
//! chain and anchors of the SQL adapters against edits made around them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests read the wall clock freely; the server takes it from a Clock.
#![allow(clippy::disallowed_methods)]

mod cases;
mod durability;
mod harness;
mod tamper;

macro_rules! contract_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = crate::harness::Harness::sqlite().await;
                    crate::cases::$case(h.log.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(h) = crate::harness::Harness::postgres(stringify!($case)).await else {
                        return;
                    };
                    crate::cases::$case(h.log.clone()).await;
                }
            )*
        }
        #[cfg(feature = "kurrentdb")]
        mod kurrent {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(h) = crate::harness::Harness::kurrent().await else {
                        return;
                    };
                    crate::cases::$case(h.log.clone()).await;
                }
            )*
        }
    };
}

contract_suite!(
    append_and_read_a_stream,
    expected_revision_matrix,
    idempotent_retry_of_an_append,
    a_refused_append_writes_nothing,
    envelope_round_trips,
    read_all_with_filters_and_pages,
    subscription_from_the_middle_then_live,
    reads_by_subject,
    head_and_count,
    concurrent_exact_appends_have_one_winner_per_revision,
    concurrent_writers_and_a_subscriber_agree_on_one_order,
    a_filtered_subscription_misses_nothing_among_unmatched_events,
);

#[cfg(not(feature = "kurrentdb"))]
#[test]
fn kurrentdb_suite_needs_the_feature() {
    harness::say_skipped(
        "KurrentDB",
        "built without the `kurrentdb` feature (cargo test --features eventlog/kurrentdb)",
    );
}
