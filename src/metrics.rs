//! Every metric weft exports, in one place (DESIGN.md §7). Label values come from closed
//! sets (channels, providers, statuses, outcomes, rules, route templates): never a phone
//! number, address or id.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "weft_http_requests_total";
pub const HTTP_DURATION: &str = "weft_http_request_duration_seconds";
pub const MESSAGES_ACCEPTED: &str = "weft_messages_accepted_total";
pub const DISPATCH_ATTEMPTS: &str = "weft_dispatch_attempts_total";
pub const DISPATCH_DURATION: &str = "weft_dispatch_duration_seconds";
pub const MESSAGE_STATUS: &str = "weft_message_status_total";
pub const OUTBOX_DEPTH: &str = "weft_outbox_depth";
pub const OUTBOX_OLDEST_AGE: &str = "weft_outbox_oldest_age_seconds";
pub const INBOUND: &str = "weft_inbound_total";
pub const WEBHOOK_SIGNATURE_FAILURES: &str = "weft_webhook_signature_failures_total";
pub const THREADING_DECISIONS: &str = "weft_threading_decisions_total";
pub const APP_WEBHOOK_DELIVERIES: &str = "weft_app_webhook_deliveries_total";
pub const CONNECTION_CIRCUIT_OPEN: &str = "weft_connection_circuit_open";
pub const ACCEPT_TO_DELIVERED: &str = "weft_accept_to_delivered_seconds";
pub const BUILD_INFO: &str = "weft_build_info";
pub const STORE_BATCH_SIZE: &str = "weft_store_batch_size";
pub const WEBHOOK_EVENTS_PARKED: &str = "weft_webhook_events_parked";
pub const DISPATCH_THROTTLED: &str = "weft_dispatch_throttled_total";

/// Outcome label of `weft_dispatch_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Retryable,
    Permanent,
    Throttled,
    Timeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retryable => "retryable",
            Outcome::Permanent => "permanent",
            Outcome::Throttled => "throttled",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_DURATION.into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(DISPATCH_DURATION.into()),
                        &[
                            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                            30.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(ACCEPT_TO_DELIVERED.into()),
                        &[
                            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                            3600.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(STORE_BATCH_SIZE.into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            // A second install in the same process (tests) keeps the first recorder.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn describe() {
    describe_gauge!(
        WEBHOOK_EVENTS_PARKED,
        "Provider receipts stored but not matched to a message (not sent by weft, or waiting for the send to be recorded)."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by method and route template."
    );
    describe_counter!(
        MESSAGES_ACCEPTED,
        "Messages durably accepted by the API, by channel."
    );
    describe_counter!(
        DISPATCH_ATTEMPTS,
        "Provider send attempts by provider, channel and outcome."
    );
    describe_histogram!(
        DISPATCH_DURATION,
        Unit::Seconds,
        "Provider send latency by provider."
    );
    describe_counter!(
        MESSAGE_STATUS,
        "Status changes applied to messages, by channel and status."
    );
    describe_gauge!(OUTBOX_DEPTH, "Outbox rows not yet handed to a provider.");
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "How long the longest-waiting due outbox row has been due (rows scheduled or backing off for later do not count)."
    );
    describe_counter!(
        INBOUND,
        "Inbound messages and calls by provider and channel."
    );
    describe_counter!(
        WEBHOOK_SIGNATURE_FAILURES,
        "Provider webhooks rejected for a bad or missing signature."
    );
    describe_counter!(
        THREADING_DECISIONS,
        "Inbound messages threaded, by ladder rule."
    );
    describe_counter!(
        APP_WEBHOOK_DELIVERIES,
        "App webhook delivery attempts by outcome."
    );
    describe_gauge!(
        CONNECTION_CIRCUIT_OPEN,
        "1 while a connection's circuit breaker is open."
    );
    describe_histogram!(
        ACCEPT_TO_DELIVERED,
        Unit::Seconds,
        "Time from accept to delivered, by channel."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the running build."
    );
    describe_counter!(
        DISPATCH_THROTTLED,
        "Messages put back in the outbox for a later slot by a rate limit, by connection and limit (connection or sender)."
    );
    describe_histogram!(
        STORE_BATCH_SIZE,
        "Writes committed together by one group commit."
    );
}
