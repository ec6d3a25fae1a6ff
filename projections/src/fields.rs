//! Small conversions every read model uses.

use eventlog::RecordedEvent;

use crate::db::Dialect;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A time as stored in the read models: RFC 3339 UTC text, which sorts as
/// the times do.
pub(crate) fn text(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The aggregate id of an event's stream (`client-{id}` -> `{id}`).
pub(crate) fn id_of(e: &RecordedEvent) -> &str {
    e.stream.split_once('-').map_or("", |(_, id)| id)
}

/// Appends `(…), (…)`: `rows` tuples of `per_row` parameters.
pub(crate) fn values_sql(sql: &mut String, dialect: Dialect, rows: usize, per_row: usize) {
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..per_row {
            if c > 0 {
                sql.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => sql.push('?'),
                Dialect::Postgres => sql.push_str(&format!("${}", r * per_row + c + 1)),
            }
        }
        sql.push(')');
    }
}
