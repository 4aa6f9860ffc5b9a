//! The worker loop every mode shares.
//!
//! `concurrency` tasks each own one keep-alive connection and send `POST /v1/messages`
//! back to back (closed loop: a worker sends its next request when the previous answered).
//! Each worker keeps its own HDR histogram and counters; they are merged once at the end,
//! so measuring costs no shared state but two relaxed atomics.

use crate::client::{Conn, Target};
use crate::inbound::{InboundSpec, SIGNATURE};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latencies are recorded in microseconds, up to an hour, 3 significant digits.
pub const HIST_MAX_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants known to be valid; fall back to an auto-resizing one.
    match Histogram::new_with_bounds(1, HIST_MAX_US, 3) {
        Ok(h) => h,
        Err(_) => Histogram::new(3).expect("3 significant figures are valid"),
    }
}

/// When the workers stop.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Send until `warmup + duration` has passed; only requests started after the warm-up
    /// are measured.
    Time {
        warmup: Duration,
        duration: Duration,
    },
    /// Send exactly `count` requests (or until `deadline` passes).
    Count { count: u64, deadline: Duration },
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub api_key: Option<String>,
    pub concurrency: u32,
    pub stop: Stop,
    pub request_timeout: Duration,
    pub to_prefix: String,
    /// Distinct destinations, used in turn (`None`: a new one per request).
    pub recipients: Option<u64>,
    /// `send_at` of every message (`None`: due at once).
    pub send_at: Option<String>,
    pub channel: String,
    /// Status that counts as success.
    pub expect: StatusCode,
    /// Keep the `id` of every successful answer (e2e: to ask the simulator about them).
    pub collect_ids: bool,
    /// What each request is.
    pub payload: Payload,
}

/// What the workers send.
#[derive(Debug, Clone)]
pub enum Payload {
    /// `POST /v1/messages` (JSON, bearer key).
    Send,
    /// A signed Twilio inbound-SMS webhook (form body, `X-Twilio-Signature`).
    TwilioInbound(Arc<InboundSpec>),
}

/// Live counters others may read while the run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests answered (any status) or failed.
    pub done: AtomicU64,
    /// Answers with the expected status.
    pub ok: AtomicU64,
}

/// The message body of request number `n` (to number `to`), scheduled for `send_at`.
pub fn message_body(
    to_prefix: &str,
    channel: &str,
    n: u64,
    to: u64,
    send_at: Option<&str>,
) -> String {
    let scheduled = send_at.map_or(String::new(), |t| format!(r#","send_at":"{t}""#));
    format!(
        r#"{{"to":"{}","channel":"{channel}","body":"load test message {n}"{scheduled}}}"#,
        destination(to_prefix, to)
    )
}

/// `prefix` followed by `n` (modulo what fits), 11 digits after the `+` in all.
pub fn destination(to_prefix: &str, n: u64) -> String {
    let digits = to_prefix.len().saturating_sub(1);
    let width = 11usize.saturating_sub(digits).max(1);
    let modulus = 10u64.saturating_pow(width as u32);
    format!("{to_prefix}{:0width$}", n % modulus)
}

/// One worker's tally (and, merged, the whole run's).
#[derive(Debug)]
pub struct Tally {
    pub hist: Histogram<u64>,
    /// Measured answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Measured requests that got no answer (connection reset, protocol error).
    pub transport_errors: u64,
    /// Measured requests that got no answer within the request timeout.
    pub timeouts: u64,
    /// Failed connection attempts (not requests).
    pub connect_errors: u64,
    /// Requests sent during the warm-up (not measured).
    pub warmup_requests: u64,
    /// The first unexpected answer: status and (truncated) body.
    pub first_error: Option<String>,
    /// The first transport error or timeout.
    pub first_transport_error: Option<String>,
    pub ids: Vec<String>,
    /// When this worker's last measured request finished.
    pub last_done: Option<Instant>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            hist: new_histogram(),
            statuses: BTreeMap::new(),
            transport_errors: 0,
            timeouts: 0,
            connect_errors: 0,
            warmup_requests: 0,
            first_error: None,
            first_transport_error: None,
            ids: Vec::new(),
            last_done: None,
        }
    }
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        // Same bounds on both sides; a failure would only mean a lost sample set.
        let _ = self.hist.add(&other.hist);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
        self.timeouts += other.timeouts;
        self.connect_errors += other.connect_errors;
        self.warmup_requests += other.warmup_requests;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if self.first_transport_error.is_none() {
            self.first_transport_error = other.first_transport_error;
        }
        self.ids.extend(other.ids);
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Measured requests (answered or not).
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.transport_errors + self.timeouts
    }

    pub fn count_of(&self, status: StatusCode) -> u64 {
        self.statuses.get(&status.as_u16()).copied().unwrap_or(0)
    }
}

/// The run's outcome.
#[derive(Debug)]
pub struct RunResult {
    pub tally: Tally,
    /// When measuring began (after the warm-up).
    pub measure_start: Instant,
    /// Measured wall time: from `measure_start` until the last measured request finished.
    pub elapsed: Duration,
    /// Whether a `Count` run hit its deadline before sending everything.
    pub hit_deadline: bool,
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn extract_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("id")?.as_str().map(String::from)
}

struct Shared {
    plan: Plan,
    path: String,
    host: HeaderValue,
    auth: Option<HeaderValue>,
    seq: AtomicU64,
    measure_start: Instant,
    end: Instant,
    progress: Arc<Progress>,
}

/// Runs the plan to its end; `progress` is updated live.
pub async fn run(plan: Plan, progress: Arc<Progress>) -> anyhow::Result<RunResult> {
    let host = plan.target.host_header()?;
    let auth = match &plan.api_key {
        Some(k) => Some(
            HeaderValue::from_str(&format!("Bearer {k}"))
                .map_err(|_| anyhow::anyhow!("the API key is not a valid header value"))?,
        ),
        None => None,
    };
    let start = Instant::now();
    let (measure_start, end) = match plan.stop {
        Stop::Time { warmup, duration } => (start + warmup, start + warmup + duration),
        Stop::Count { deadline, .. } => (start, start + deadline),
    };
    let shared = Arc::new(Shared {
        path: match &plan.payload {
            Payload::Send => plan.target.path("/v1/messages"),
            Payload::TwilioInbound(spec) => plan.target.path(&spec.path),
        },
        plan,
        host,
        auth,
        seq: AtomicU64::new(0),
        measure_start,
        end,
        progress,
    });
    let mut handles = Vec::with_capacity(shared.plan.concurrency as usize);
    for _ in 0..shared.plan.concurrency {
        let s = shared.clone();
        handles.push(tokio::spawn(worker(s)));
    }
    let mut tally = Tally::default();
    for h in handles {
        match h.await {
            Ok(t) => tally.merge(t),
            Err(e) => anyhow::bail!("a worker died: {e}"),
        }
    }
    let finished = tally
        .last_done
        .unwrap_or_else(Instant::now)
        .max(measure_start);
    let hit_deadline = match shared.plan.stop {
        Stop::Count { count, .. } => shared.seq.load(Ordering::Relaxed) < count,
        Stop::Time { .. } => false,
    };
    Ok(RunResult {
        tally,
        measure_start,
        elapsed: finished.duration_since(measure_start),
        hit_deadline,
    })
}

async fn worker(s: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(10);
    loop {
        if Instant::now() >= s.end {
            break;
        }
        // Connect first, so that a refused connection does not use up message numbers.
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::connect(&s.plan.target).await {
                Ok(c) => {
                    backoff = Duration::from_millis(10);
                    conn.insert(c)
                }
                Err(e) => {
                    t.connect_errors += 1;
                    if t.first_transport_error.is_none() {
                        t.first_transport_error = Some(format!("{e:#}"));
                    }
                    let left = s.end.saturating_duration_since(Instant::now());
                    tokio::time::sleep(backoff.min(left)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    continue;
                }
            },
        };
        let n = s.seq.fetch_add(1, Ordering::Relaxed);
        if let Stop::Count { count, .. } = s.plan.stop {
            if n >= count {
                break;
            }
        }
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(s.path.as_str())
            .header(header::HOST, s.host.clone());
        let body = match &s.plan.payload {
            Payload::Send => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                let to = s.plan.recipients.map_or(n, |k| n % k);
                message_body(
                    &s.plan.to_prefix,
                    &s.plan.channel,
                    n,
                    to,
                    s.plan.send_at.as_deref(),
                )
            }
            Payload::TwilioInbound(spec) => {
                let signed = spec.request(n);
                builder = builder
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(SIGNATURE, signed.signature);
                signed.body
            }
        };
        if let Some(a) = &s.auth {
            builder = builder.header(header::AUTHORIZATION, a.clone());
        }
        let req = match builder.body(Full::new(Bytes::from(body))) {
            Ok(r) => r,
            Err(e) => {
                t.first_transport_error
                    .get_or_insert_with(|| format!("bad request: {e}"));
                break;
            }
        };
        let sent = Instant::now();
        let measured = sent >= s.measure_start;
        let res = tokio::time::timeout(s.plan.request_timeout, c.send(req)).await;
        let done = Instant::now();
        s.progress.done.fetch_add(1, Ordering::Relaxed);
        if !measured {
            t.warmup_requests += 1;
        }
        match res {
            Ok(Ok((status, body))) => {
                if status == s.plan.expect {
                    s.progress.ok.fetch_add(1, Ordering::Relaxed);
                }
                if !measured {
                    continue;
                }
                let us = done.duration_since(sent).as_micros() as u64;
                t.hist.saturating_record(us.max(1));
                *t.statuses.entry(status.as_u16()).or_default() += 1;
                t.last_done = Some(done);
                if status == s.plan.expect {
                    if s.plan.collect_ids {
                        if let Some(id) = extract_id(&body) {
                            t.ids.push(id);
                        }
                    }
                } else if t.first_error.is_none() {
                    t.first_error = Some(format!(
                        "{status}: {}",
                        truncate(&String::from_utf8_lossy(&body), 500)
                    ));
                }
            }
            Ok(Err(e)) => {
                conn = None;
                if measured {
                    t.transport_errors += 1;
                    t.last_done = Some(done);
                }
                t.first_transport_error
                    .get_or_insert_with(|| format!("{e:#}"));
            }
            Err(_) => {
                conn = None;
                if measured {
                    t.timeouts += 1;
                    t.last_done = Some(done);
                }
                t.first_transport_error.get_or_insert_with(|| {
                    format!("no answer within {:?}", s.plan.request_timeout)
                });
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_destinations() {
        assert_eq!(destination("+12025", 0), "+12025000000");
        assert_eq!(destination("+12025", 123), "+12025000123");
        assert_eq!(destination("+12025", 1_000_123), "+12025000123");
        assert_eq!(destination("+1555", 42), "+15550000042");
        assert_eq!(
            message_body("+12025", "sms", 7, 7, None),
            r#"{"to":"+12025000007","channel":"sms","body":"load test message 7"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&message_body(
            "+12025",
            "sms",
            1099,
            99,
            Some("2099-01-01T00:00:00Z"),
        ))
        .expect("valid JSON");
        assert_eq!(v["to"], "+12025000099");
        assert_eq!(v["body"], "load test message 1099");
        assert_eq!(v["send_at"], "2099-01-01T00:00:00Z");
    }

    #[test]
    fn default_destinations_are_valid_numbers() {
        for n in (0..1_000_000u64).step_by(7919) {
            let to = destination("+12025", n);
            let parsed = phonenumber::parse(None, &to).expect("parses");
            assert!(phonenumber::is_valid(&parsed), "{to} should be valid");
        }
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::default();
        a.hist.saturating_record(100);
        a.statuses.insert(202, 3);
        let mut b = Tally::default();
        b.hist.saturating_record(300);
        b.statuses.insert(202, 1);
        b.statuses.insert(500, 2);
        b.timeouts = 1;
        b.first_error = Some("500: boom".into());
        a.merge(b);
        assert_eq!(a.count_of(StatusCode::ACCEPTED), 4);
        assert_eq!(a.requests(), 7);
        assert_eq!(a.hist.len(), 2);
        assert_eq!(a.first_error.as_deref(), Some("500: boom"));
    }

    #[test]
    fn ids_and_truncation() {
        assert_eq!(
            extract_id(br#"{"id":"msg_01","status":"accepted"}"#).as_deref(),
            Some("msg_01")
        );
        assert_eq!(extract_id(b"nope"), None);
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
