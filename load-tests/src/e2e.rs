//! End to end: send N messages as fast as possible, then watch `GET /metrics` until every
//! accepted message is delivered (or failed for good), the run stalls, or the timeout passes.
//!
//! Delivery is read from `weft_message_status_total{status="delivered"}` summed over all
//! labels, as a delta from the value before the run. Messages that end `rejected`, `failed`,
//! `undeliverable` or `expired` also end the wait (they will never be delivered) and are
//! reported.

use crate::client::{Getter, Target};
use crate::prom;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::Progress;

/// What one `/metrics` read says, relative to the start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub delivered: f64,
    /// Sum of the terminal failure statuses.
    pub failed: f64,
    /// Every status of `weft_message_status_total`, absolute.
    pub by_status: BTreeMap<String, f64>,
    pub outbox_depth: Option<f64>,
}

impl Reading {
    pub fn from_text(text: &str) -> Reading {
        let samples = prom::parse(text);
        let by_status = prom::sum_by(&samples, prom::STATUS_METRIC, "status");
        let get = |s: &str| by_status.get(s).copied().unwrap_or(0.0);
        Reading {
            delivered: get("delivered"),
            failed: prom::FAILED_STATUSES.iter().map(|s| get(s)).sum(),
            outbox_depth: prom::has(&samples, prom::OUTBOX_DEPTH)
                .then(|| prom::sum(&samples, prom::OUTBOX_DEPTH, &[])),
            by_status,
        }
    }
}

pub struct Metrics {
    getter: Getter,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Metrics {
    pub fn new(target: Target) -> Metrics {
        Metrics {
            getter: Getter::new(target, Duration::from_secs(5)),
            errors: 0,
            first_error: None,
        }
    }

    pub async fn read(&mut self) -> Option<Reading> {
        let res = match self.getter.get("/metrics").await {
            Ok((s, body)) if s.is_success() => {
                Ok(Reading::from_text(&String::from_utf8_lossy(&body)))
            }
            Ok((s, body)) => Err(format!(
                "GET /metrics answered {s}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )),
            Err(e) => Err(format!("GET /metrics: {e:#}")),
        };
        match res {
            Ok(r) => Some(r),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
                None
            }
        }
    }
}

/// Waits until weft looks idle: the delivered counter unchanged for a second and the outbox
/// (if reported) empty. Returns whether it settled, and the last reading.
pub async fn settle(
    m: &mut Metrics,
    timeout: Duration,
    every: Duration,
) -> (bool, Option<Reading>) {
    let deadline = Instant::now() + timeout;
    let mut last: Option<Reading> = m.read().await;
    if timeout.is_zero() {
        return (true, last);
    }
    let mut still_since = Instant::now();
    loop {
        if Instant::now() >= deadline {
            return (false, last);
        }
        tokio::time::sleep(every).await;
        let Some(now) = m.read().await else { continue };
        let moved = last
            .as_ref()
            .map(|l| l.delivered != now.delivered || l.failed != now.failed);
        if moved != Some(false) {
            still_since = Instant::now();
        }
        let empty = !matches!(now.outbox_depth, Some(d) if d > 0.0);
        last = Some(now);
        if empty && still_since.elapsed() >= Duration::from_secs(1) {
            return (true, last);
        }
    }
}

/// One point of the delivery time series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the first send.
    pub t: f64,
    /// Accepted (202) so far.
    pub accepted: u64,
    /// Delivered so far (delta).
    pub delivered: u64,
    /// Terminal failures so far (delta).
    pub failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_depth: Option<f64>,
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitEnd {
    /// Every accepted message reached delivered (or a terminal failure).
    Complete,
    /// Nothing moved for `stall_timeout` after sending ended.
    Stalled,
    /// The overall timeout passed.
    TimedOut,
}

#[derive(Debug, Clone)]
pub struct WatchResult {
    pub series: Vec<Point>,
    pub end: WaitEnd,
    pub delivered: u64,
    pub failed: u64,
    /// Seconds from the first send to the poll that first saw the final delivered count.
    pub last_delivered_at: Option<f64>,
    /// Final status deltas by status.
    pub status_deltas: BTreeMap<String, f64>,
    pub metric_errors: u64,
    pub first_metric_error: Option<String>,
}

pub struct WatchSpec {
    pub base: Reading,
    pub t0: Instant,
    pub deadline: Instant,
    pub every: Duration,
    pub stall_timeout: Duration,
    pub progress: Arc<Progress>,
    pub sending_done: Arc<AtomicBool>,
    /// Print a progress line to stderr every this many polls (0 = never).
    pub print_every: u32,
}

fn delta(now: f64, base: f64) -> u64 {
    (now - base).max(0.0).round() as u64
}

/// Polls `/metrics` until all accepted messages are done, the run stalls, or the deadline.
pub async fn watch(mut m: Metrics, spec: WatchSpec) -> WatchResult {
    let mut series = Vec::new();
    let mut last_change = Instant::now();
    let mut last_terminal = 0u64;
    let mut last_delivered = 0u64;
    let mut last_delivered_at = None;
    let mut last_reading: Option<Reading> = None;
    let mut polls = 0u32;
    let mut tick = tokio::time::interval(spec.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tick.tick().await;
        let now = Instant::now();
        let done_sending = spec.sending_done.load(Ordering::Acquire);
        let accepted = spec.progress.ok.load(Ordering::Relaxed);
        if let Some(r) = m.read().await {
            let t = spec.t0.elapsed().as_secs_f64();
            let delivered = delta(r.delivered, spec.base.delivered);
            let failed = delta(r.failed, spec.base.failed);
            if delivered != last_delivered {
                last_delivered = delivered;
                last_delivered_at = Some(t);
            }
            if delivered + failed != last_terminal {
                last_terminal = delivered + failed;
                last_change = now;
            }
            series.push(Point {
                t: (t * 1000.0).round() / 1000.0,
                accepted,
                delivered,
                failed,
                outbox_depth: r.outbox_depth,
            });
            polls += 1;
            if spec.print_every > 0 && polls.is_multiple_of(spec.print_every) {
                eprintln!(
                    "  t={t:>7.2}s accepted={accepted:>8} delivered={delivered:>8} failed={failed:>6}{}",
                    r.outbox_depth.map(|d| format!(" outbox={d:.0}")).unwrap_or_default()
                );
            }
            last_reading = Some(r);
            if done_sending && last_terminal >= accepted {
                break WaitEnd::Complete;
            }
        }
        if !done_sending {
            // The stall clock starts when sending ends.
            last_change = now;
        } else if now.duration_since(last_change) >= spec.stall_timeout {
            break WaitEnd::Stalled;
        }
        if now >= spec.deadline {
            break WaitEnd::TimedOut;
        }
    };
    let status_deltas = last_reading
        .map(|r| {
            r.by_status
                .iter()
                .map(|(k, v)| {
                    let base = spec.base.by_status.get(k).copied().unwrap_or(0.0);
                    (k.clone(), (v - base).max(0.0))
                })
                .filter(|(_, v)| *v > 0.0)
                .collect()
        })
        .unwrap_or_default();
    WatchResult {
        series,
        end,
        delivered: last_delivered,
        failed: last_terminal.saturating_sub(last_delivered),
        last_delivered_at,
        status_deltas,
        metric_errors: m.errors,
        first_metric_error: m.first_error,
    }
}

/// What the provider simulator received for our accepted messages.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SimCheck {
    /// Sends the simulator received in all (including other runs').
    pub received_total: u64,
    /// Accepted messages the simulator never received.
    pub lost: u64,
    /// Accepted messages the simulator received more than once.
    pub duplicated: u64,
    /// Extra sends beyond one per message.
    pub extra_sends: u64,
    /// Accepted messages whose 202 carried no id (cannot be checked).
    pub unchecked: u64,
    /// A few lost ids, for digging.
    pub lost_sample: Vec<String>,
    pub duplicated_sample: Vec<String>,
}

/// Compares accepted ids with the simulator's per-message counts.
pub fn check_sim(
    accepted_ok: u64,
    ids: &[String],
    counts: &BTreeMap<String, u64>,
    received_total: u64,
) -> SimCheck {
    let mut c = SimCheck {
        received_total,
        unchecked: accepted_ok.saturating_sub(ids.len() as u64),
        ..SimCheck::default()
    };
    for id in ids {
        match counts.get(id).copied().unwrap_or(0) {
            0 => {
                c.lost += 1;
                if c.lost_sample.len() < 10 {
                    c.lost_sample.push(id.clone());
                }
            }
            1 => {}
            n => {
                c.duplicated += 1;
                c.extra_sends += n - 1;
                if c.duplicated_sample.len() < 10 {
                    c.duplicated_sample.push(id.clone());
                }
            }
        }
    }
    c
}

/// Asks twilio-sim's control server for its per-message counts.
pub async fn fetch_sim_counts(control_url: &str) -> anyhow::Result<(BTreeMap<String, u64>, u64)> {
    let target = Target::parse(control_url)?;
    let (status, body) = crate::client::get(&target, "/messages", Duration::from_secs(30)).await?;
    anyhow::ensure!(
        status.is_success(),
        "GET {control_url}/messages answered {status}"
    );
    #[derive(serde::Deserialize)]
    struct Counts {
        received: u64,
        counts: BTreeMap<String, u64>,
    }
    let c: Counts = serde_json::from_slice(&body)?;
    Ok((c.counts, c.received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings() {
        let text = "weft_message_status_total{channel=\"sms\",status=\"delivered\"} 10\n\
                    weft_message_status_total{channel=\"whatsapp\",status=\"delivered\"} 5\n\
                    weft_message_status_total{channel=\"sms\",status=\"failed\"} 2\n\
                    weft_message_status_total{channel=\"sms\",status=\"rejected\"} 1\n\
                    weft_message_status_total{channel=\"sms\",status=\"sent\"} 99\n";
        let r = Reading::from_text(text);
        assert_eq!(r.delivered, 15.0);
        assert_eq!(r.failed, 3.0);
        assert_eq!(r.outbox_depth, None);
        let r = Reading::from_text("weft_outbox_depth 4\n");
        assert_eq!(r.delivered, 0.0);
        assert_eq!(r.outbox_depth, Some(4.0));
    }

    #[test]
    fn sim_check_counts_lost_and_dups() {
        let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let mut counts = BTreeMap::new();
        counts.insert("a".to_string(), 1);
        counts.insert("b".to_string(), 3);
        counts.insert("d".to_string(), 1);
        counts.insert("other-run".to_string(), 1);
        let c = check_sim(5, &ids, &counts, 7);
        assert_eq!(c.lost, 1);
        assert_eq!(c.lost_sample, vec!["c".to_string()]);
        assert_eq!(c.duplicated, 1);
        assert_eq!(c.extra_sends, 2);
        assert_eq!(c.unchecked, 1);
        assert_eq!(c.received_total, 7);
    }
}
