//! Per-statement timings of the SQLite writer (feature `sql-stats`): how many times each SQL
//! text ran and for how long; the costliest are logged (one `info` event each) every
//! [`EVERY`] statements.
//! For finding where the writer's time goes; it adds a mutex per statement.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Statements between two logged tables.
const EVERY: u64 = 100_000;
/// Rows per table.
const TOP: usize = 30;

#[derive(Default)]
struct Stats {
    calls: u64,
    by_sql: HashMap<String, (u64, Duration)>,
}

static STATS: Mutex<Option<Stats>> = Mutex::new(None);

/// Records one run of `sql` that took `took`.
pub fn record(sql: &str, took: Duration) {
    let Ok(mut guard) = STATS.lock() else { return };
    let stats = guard.get_or_insert_with(Stats::default);
    let entry = stats
        .by_sql
        .entry(sql.split_whitespace().collect::<Vec<_>>().join(" "))
        .or_default();
    entry.0 += 1;
    entry.1 += took;
    stats.calls += 1;
    if stats.calls % EVERY == 0 {
        for row in top(&stats.by_sql) {
            tracing::info!(
                statements = stats.calls,
                calls = row.calls,
                total_ms = row.total_ms,
                mean_us = row.mean_us,
                sql = row.sql,
                "SQLite writer statement cost."
            );
        }
    }
}

struct Row<'a> {
    calls: u64,
    total_ms: f64,
    mean_us: f64,
    sql: &'a str,
}

/// The [`TOP`] statements with the largest total time, costliest first.
fn top(by_sql: &HashMap<String, (u64, Duration)>) -> Vec<Row<'_>> {
    let mut rows: Vec<_> = by_sql.iter().collect();
    rows.sort_by_key(|(_, (_, total))| std::cmp::Reverse(*total));
    rows.into_iter()
        .take(TOP)
        .map(|(sql, (n, total))| Row {
            calls: *n,
            total_ms: total.as_secs_f64() * 1e3,
            mean_us: total.as_secs_f64() * 1e6 / (*n).max(1) as f64,
            sql,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_costliest_statement_comes_first() {
        let mut m = HashMap::new();
        m.insert("SELECT 1".to_string(), (10, Duration::from_micros(50)));
        m.insert("INSERT x".to_string(), (2, Duration::from_micros(400)));
        let rows = top(&m);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].sql, "INSERT x");
        assert!((rows[0].mean_us - 200.0).abs() < 1e-6);
        assert_eq!(rows[1].calls, 10);
    }
}
