//! Output: a human table on stderr, one JSON summary line on stdout, and a markdown table
//! built from saved summary lines (`weft-load report`).

use crate::engine::{RunResult, Tally};
use crate::rss::RssReport;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

pub fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn per_sec(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        round2(n as f64 / s)
    }
}

pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The fields every mode reports about its request phase.
pub fn run_json(r: &RunResult, expect: u16) -> Value {
    let t: &Tally = &r.tally;
    let ok = t.statuses.get(&expect).copied().unwrap_or(0);
    let statuses: serde_json::Map<String, Value> = t
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "requests": t.requests(),
        "ok": ok,
        "elapsed_s": round2(r.elapsed.as_secs_f64()),
        "ok_per_s": per_sec(ok, r.elapsed),
        "requests_per_s": per_sec(t.requests(), r.elapsed),
        "statuses": statuses,
        "non_ok": t.requests() - ok,
        "transport_errors": t.transport_errors,
        "timeouts": t.timeouts,
        "connect_errors": t.connect_errors,
        "warmup_requests": t.warmup_requests,
        "first_error": t.first_error,
        "first_transport_error": t.first_transport_error,
        "latency_ms": latency(&t.hist),
    })
}

/// Aligned `key  value` rows.
#[derive(Debug, Default)]
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, k: impl Into<String>, v: impl Into<String>) -> &mut Self {
        self.rows.push((k.into(), v.into()));
        self
    }

    /// Rows for a request phase.
    pub fn run_rows(&mut self, r: &RunResult, expect: u16, what: &str) -> &mut Self {
        let t = &r.tally;
        let ok = t.statuses.get(&expect).copied().unwrap_or(0);
        let l = latency(&t.hist);
        self.row("measured time", format!("{:.2} s", r.elapsed.as_secs_f64()));
        self.row(
            "requests",
            format!(
                "{} ({:.0}/s)",
                t.requests(),
                per_sec(t.requests(), r.elapsed)
            ),
        );
        self.row(
            format!("{what} ({expect})"),
            format!("{ok} ({:.0}/s)", per_sec(ok, r.elapsed)),
        );
        let others: Vec<String> = t
            .statuses
            .iter()
            .filter(|(k, _)| **k != expect)
            .map(|(k, v)| format!("{k}×{v}"))
            .collect();
        if !others.is_empty() {
            self.row("other statuses", others.join(", "));
        }
        if t.transport_errors + t.timeouts + t.connect_errors > 0 {
            self.row(
                "errors",
                format!(
                    "transport {}, timeouts {}, connect {}",
                    t.transport_errors, t.timeouts, t.connect_errors
                ),
            );
        }
        if let Some(e) = &t.first_error {
            self.row("first error body", e.clone());
        }
        if let Some(e) = &t.first_transport_error {
            self.row("first transport error", e.clone());
        }
        self.row(
            "latency ms",
            format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            ),
        );
        self
    }

    pub fn rss_rows(&mut self, rss: Option<&RssReport>) -> &mut Self {
        if let Some(r) = rss {
            self.row(
                format!("weft RSS (pid {})", r.pid),
                format!(
                    "peak {:.1} MiB sampled, VmHWM {:.1} MiB, last {:.1} MiB",
                    r.peak_rss_kb as f64 / 1024.0,
                    r.hwm_kb as f64 / 1024.0,
                    r.last_rss_kb as f64 / 1024.0
                ),
            );
            if let Some(e) = &r.error {
                self.row("RSS sampling", e.clone());
            }
        }
        self
    }

    pub fn render(&self) -> String {
        let w = self
            .rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = format!("== {} ==\n", self.title);
        for (k, v) in &self.rows {
            let pad = w - k.chars().count();
            let _ = writeln!(out, "  {k}{}  {v}", " ".repeat(pad));
        }
        out
    }

    pub fn eprint(&self) {
        eprint!("{}", self.render());
    }
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64()
}

fn fmt_num(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(x) => format!("{x:.decimals$}"),
        None => "–".into(),
    }
}

/// A markdown table of saved summary lines.
pub fn markdown(lines: &[Value]) -> String {
    let mut out = String::from(
        "| run | mode | conc | accepted/s | delivered/s e2e | p50 ms | p90 ms | p99 ms | max ms | non-202 | errors | peak RSS MiB | lost / dup | weft CPU µs/msg | db CPU µs/msg | db WAL KiB/msg |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n",
    );
    for v in lines {
        let mode = v.get("mode").and_then(Value::as_str).unwrap_or("?");
        let label = v.get("label").and_then(Value::as_str).unwrap_or("");
        let errors = ["transport_errors", "timeouts", "connect_errors"]
            .iter()
            .filter_map(|k| num(v, &[k]))
            .fold(0.0, |a, b| a + b); // (an empty f64 sum is -0.0)
        let rss = num(v, &["rss", "peak_rss_kb"])
            .map(|kb| kb.max(num(v, &["rss", "hwm_kb"]).unwrap_or(0.0)) / 1024.0);
        let lost_dup = match (num(v, &["sim", "lost"]), num(v, &["sim", "duplicated"])) {
            (Some(l), Some(d)) => format!("{l:.0} / {d:.0}"),
            _ => "–".into(),
        };
        let delivered = if mode == "e2e" {
            let s = fmt_num(num(v, &["delivered_per_s"]), 0);
            match v.get("complete").and_then(Value::as_bool) {
                Some(false) => format!(
                    "{s} (incomplete: {} of {})",
                    fmt_num(num(v, &["delivered"]), 0),
                    fmt_num(num(v, &["ok"]), 0)
                ),
                _ => s,
            }
        } else {
            "–".into()
        };
        let wal_kib = match (
            num(v, &["db_wal_bytes"]),
            num(v, &["ok_incl_warmup"]).or(num(v, &["ok"])),
        ) {
            (Some(b), Some(n)) if n > 0.0 => Some(b / n / 1024.0),
            _ => None,
        };
        let _ = writeln!(
            out,
            "| {label} | {mode} | {} | {} | {delivered} | {} | {} | {} | {} | {} | {errors:.0} | {} | {lost_dup} | {} | {} | {} |",
            fmt_num(num(v, &["concurrency"]), 0),
            fmt_num(num(v, &["ok_per_s"]), 0),
            fmt_num(num(v, &["latency_ms", "p50_ms"]), 2),
            fmt_num(num(v, &["latency_ms", "p90_ms"]), 2),
            fmt_num(num(v, &["latency_ms", "p99_ms"]), 2),
            fmt_num(num(v, &["latency_ms", "max_ms"]), 2),
            fmt_num(num(v, &["non_ok"]), 0),
            fmt_num(rss, 1),
            fmt_num(num(v, &["target_cpu_us_per_ok"]), 0),
            fmt_num(num(v, &["db_cpu_us_per_ok"]), 0),
            fmt_num(wal_kib, 1),
        );
    }
    out
}

/// Reads JSON lines (non-JSON lines are skipped).
pub fn read_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(Value::is_object)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::new_histogram;

    #[test]
    fn percentiles() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.saturating_record(us * 10);
        }
        let l = latency(&h);
        assert!((l.p50_ms - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p99_ms - 9.9).abs() < 0.02, "{l:?}");
        assert!((l.max_ms - 10.0).abs() < 0.01, "{l:?}");
        assert_eq!(latency(&new_histogram()), Latency::default());
        assert_eq!(per_sec(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_sec(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new("x");
        t.row("a", "1").row("longer", "2");
        assert_eq!(t.render(), "== x ==\n  a       1\n  longer  2\n");
    }

    #[test]
    fn markdown_from_lines() {
        let text = r#"not json
{"mode":"baseline","label":"generator ceiling","concurrency":64,"ok_per_s":51234.4,"non_ok":0,"transport_errors":0,"timeouts":0,"connect_errors":0,"latency_ms":{"p50_ms":1.2,"p90_ms":1.9,"p99_ms":3.1,"max_ms":12.0}}
{"mode":"e2e","label":"sqlite/twilio","concurrency":64,"ok":50000,"ok_per_s":11000,"delivered_per_s":6500.4,"delivered":50000,"complete":true,"non_ok":0,"latency_ms":{"p50_ms":4,"p90_ms":6,"p99_ms":9,"max_ms":40},"rss":{"peak_rss_kb":81920,"hwm_kb":90000},"sim":{"lost":0,"duplicated":0},"target_cpu_us_per_ok":301.4,"db_cpu_us_per_ok":412.6,"db_wal_bytes":409600000}
"#;
        let lines = read_lines(text);
        assert_eq!(lines.len(), 2);
        let md = markdown(&lines);
        assert!(md.contains("| generator ceiling | baseline | 64 | 51234 | – | 1.20 | 1.90 | 3.10 | 12.00 | 0 | 0 | – | – | – | – | – |"), "{md}");
        assert!(md.contains("| sqlite/twilio | e2e | 64 | 11000 | 6500 | 4.00 | 6.00 | 9.00 | 40.00 | 0 | 0 | 87.9 | 0 / 0 | 301 | 413 | 8.0 |"), "{md}");
    }
}
