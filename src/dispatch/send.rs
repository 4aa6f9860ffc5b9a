//! One dispatch: policy checks (validity, consent, route, circuit), the attempt record, the
//! provider call, and what its answer means for the message.

use super::{backoff, Inner};
use crate::config::DispatchConfig;
use crate::domain::message::{DispatchItem, Purpose};
use crate::domain::{address, ids, now_ms};
use crate::metrics::{self, Outcome};
use crate::policy::pace::Pacer;
use crate::policy::routing::Target;
use crate::providers::Live;
use crate::store::{AttemptBegin, AttemptEnd, AttemptResult};
use std::time::{Duration, Instant};
use weft_provider::{
    Channel, DeliveryStatus, EmailHeaders, FailureReason, OutboundMessage, SendError,
};

async fn tenant_name(inner: &Inner, tenant_id: &str) -> String {
    if let Some(n) = inner.tenant_names.get(tenant_id) {
        return n.clone();
    }
    match inner.store.tenant_name(tenant_id).await {
        Ok(Some(n)) => {
            inner.tenant_names.insert(tenant_id.to_string(), n.clone());
            n
        }
        _ => tenant_id.to_string(),
    }
}

fn has_next(item: &DispatchItem) -> bool {
    usize::try_from(item.step).is_ok_and(|s| s < item.policy.fallback.len())
}

/// Ends the message, or moves it to the next fallback channel if it has one.
fn give_up(
    item: &DispatchItem,
    status: DeliveryStatus,
    reason: FailureReason,
    code: Option<String>,
    detail: String,
) -> AttemptResult {
    if has_next(item) {
        AttemptResult::NextChannel {
            reason: reason.as_str(),
            code,
            detail,
        }
    } else {
        AttemptResult::Final {
            status,
            reason: reason.as_str(),
            code,
            detail,
        }
    }
}

async fn end_without_attempt(inner: &Inner, item: &DispatchItem, result: AttemptResult) {
    let end = AttemptEnd {
        message_id: item.message_id.clone(),
        attempt_id: None,
        sender: None,
        connection_id: None,
        result,
        now: now_ms(),
    };
    record_end(inner, end).await;
}

/// The address to use on this channel: `to` itself, or for a fallback channel of another
/// kind (SMS → e-mail) the contact's identity of that kind.
async fn destination(inner: &Inner, item: &DispatchItem) -> Option<String> {
    // `to` was validated and normalized at accept: a phone channel's E.164 number needs no
    // second libphonenumber pass (~10 µs of CPU) on every send.
    if matches!(
        item.channel,
        Channel::Sms | Channel::Voice | Channel::Whatsapp
    ) && address::is_e164_shape(&item.to)
    {
        return Some(item.to.clone());
    }
    if let Ok(d) = address::parse(item.channel, &item.to) {
        return Some(d.address);
    }
    let first = address::infer_channel(&item.to).ok()?;
    let identity = address::parse(first, &item.to).ok()?.identity;
    let scheme = match item.channel {
        Channel::Email => "mailto:",
        Channel::Telegram => "telegram:",
        _ => "tel:",
    };
    let found = inner
        .store
        .identity_of_kind(&item.tenant_id, &identity, scheme)
        .await
        .ok()
        .flatten()?;
    Some(found.strip_prefix(scheme).unwrap_or(&found).to_string())
}

#[tracing::instrument(skip_all, fields(message_id = %item.message_id, conversation_id = %item.conversation_id))]
pub(super) async fn process(inner: &Inner, mut item: DispatchItem, tries: i64) {
    let now = now_ms();
    if item.policy.valid_until.is_some_and(|v| v <= now) {
        let r = AttemptResult::Final {
            status: DeliveryStatus::Expired,
            reason: FailureReason::Expired.as_str(),
            code: None,
            detail: "valid_until passed before the message could be sent".into(),
        };
        return end_without_attempt(inner, &item, r).await;
    }
    if item.purpose == Purpose::FallbackCheck {
        // The claim only hands these over while the step has not reached its bar
        // (`delivered`, or what `fallback_success` says).
        if has_next(&item) {
            let r = AttemptResult::NextChannel {
                reason: "no_delivery",
                code: None,
                detail: format!("no delivery on {} within fallback_after", item.channel),
            };
            end_without_attempt(inner, &item, r).await;
        }
        return;
    }
    let Some(to) = destination(inner, &item).await else {
        let r = give_up(
            &item,
            DeliveryStatus::Rejected,
            FailureReason::InvalidAddress,
            None,
            format!("no {} address for this recipient", item.channel),
        );
        return end_without_attempt(inner, &item, r).await;
    };
    item.to = to;
    let requested_from = if item.step == 0 {
        item.from.clone()
    } else {
        None
    };
    let name = tenant_name(inner, &item.tenant_id).await;
    let tenant = [item.tenant_id.as_str(), name.as_str()];
    let target = Target {
        tenant: &tenant,
        channel: item.channel,
        to: &item.to,
        sender: requested_from.as_deref(),
    };
    let routes = inner
        .registry
        .select(&target, item.policy.pinned_connection.as_deref());
    if routes.is_empty() {
        let r = give_up(
            &item,
            DeliveryStatus::Rejected,
            FailureReason::NoRoute,
            None,
            format!("no connection serves {} for this tenant", item.channel),
        );
        return end_without_attempt(inner, &item, r).await;
    }
    // Each connection of the route gets `max_attempts` tries in turn: once they are used up
    // on one, the message fails over to the next (an open circuit is skipped).
    let first = usize::try_from(tries / i64::from(inner.cfg.max_attempts.max(1))).unwrap_or(0);
    let route_len = routes.len();
    let Some(live) = routes
        .iter()
        .cycle()
        .skip(first % route_len)
        .take(route_len)
        .find(|l| l.breaker.allow())
        .cloned()
    else {
        // Every connection of the route has an open circuit: wait for a probe window.
        let r = AttemptResult::Retry {
            retry_at: now + i64::try_from(inner.breaker_open_ms).unwrap_or(30_000),
            outcome: "circuit_open",
            code: None,
            detail: "every connection of the route has an open circuit".into(),
        };
        return end_without_attempt(inner, &item, r).await;
    };
    let sender = live.sender_for(
        item.channel,
        requested_from.as_deref(),
        &item.conversation_id,
    );
    let sender_identity = sender.as_deref().map(crate::threading::contacts::normalize);
    // WhatsApp: free-form messages only inside the 24-hour customer-service window.
    if inner.cfg.whatsapp_window
        && item.channel == Channel::Whatsapp
        && item.template.is_none()
        && live.spec.provider != weft_provider::ProviderKind::Sandbox
    {
        let customer = crate::threading::contacts::normalize(&item.to);
        match inner
            .store
            .whatsapp_window_open(&item.tenant_id, &customer, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                live.breaker.release();
                let detail =
                    "no WhatsApp message from this customer in the last 24 hours: send a template"
                        .to_string();
                let r = give_up(
                    &item,
                    DeliveryStatus::Rejected,
                    FailureReason::WindowClosed,
                    None,
                    detail,
                );
                return end_without_attempt(inner, &item, r).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Window lookup failed; the outbox will retry.");
                live.breaker.release();
                return;
            }
        }
    }
    if item.policy.kind.as_deref() != Some("auto_reply") && inner.consent.may_have_opt_outs() {
        let identity = crate::threading::contacts::normalize(&match item.channel {
            Channel::Telegram => format!("telegram:{}", item.to),
            _ => item.to.clone(),
        });
        match inner
            .store
            .opted_out(
                &item.tenant_id,
                &identity,
                item.channel,
                sender_identity.as_deref(),
            )
            .await
        {
            Ok(true) => {
                live.breaker.release();
                let r = give_up(
                    &item,
                    DeliveryStatus::Rejected,
                    FailureReason::OptedOut,
                    None,
                    "the recipient opted out".into(),
                );
                return end_without_attempt(inner, &item, r).await;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Consent lookup failed; the outbox will retry.");
                live.breaker.release();
                return;
            }
        }
    }
    // A throttled connection must not hold a send slot while it waits, or a backlog on it
    // would take every slot and stall every other connection: a short wait is slept, a
    // longer one puts the message back in the outbox for a reserved future slot (so a large
    // backlog is re-queued once, not churned through the store every few milliseconds).
    let mut naps = 0;
    while let Some(blocked) = throttled(&live, sender.as_deref(), item.policy.bulk) {
        naps += 1;
        if blocked.wait > MAX_THROTTLE_SLEEP || naps > 5 {
            live.breaker.release();
            let now = now_ms();
            let earliest = now + i64::try_from(blocked.wait.as_millis()).unwrap_or(1000);
            let retry_at = blocked.pacer.map_or(earliest, |p| {
                p.reserve(blocked.key, now, earliest, item.policy.bulk)
            });
            ::metrics::counter!(metrics::DISPATCH_THROTTLED, "connection" => live.id().to_string(), "limit" => blocked.limit)
                .increment(1);
            let r = AttemptResult::Retry {
                retry_at,
                outcome: "throttled",
                code: None,
                detail: format!("{} rate limit", blocked.limit),
            };
            return end_without_attempt(inner, &item, r).await;
        }
        tokio::time::sleep(blocked.wait).await;
    }
    send(inner, item, live, sender, sender_identity, route_len).await;
}

/// Longest rate-limit wait a worker sleeps through while holding a send slot.
const MAX_THROTTLE_SLEEP: Duration = Duration::from_millis(20);

/// Which limit turned a send away, for how long at least, and the pacer (and its key) that
/// hands out that limit's later slots.
struct Blocked<'a> {
    wait: Duration,
    /// `connection` or `sender` (the metric's `limit` label).
    limit: &'static str,
    pacer: Option<&'a Pacer>,
    key: &'a str,
}

/// `None` when the connection's (and the sender's) rate limit admits one more send now
/// (and that cell is taken). Bulk holds back while transactional messages wait for slots.
fn throttled<'a>(live: &'a Live, sender: Option<&'a str>, bulk: bool) -> Option<Blocked<'a>> {
    let blocked = |limit, wait, pacer: &'a Option<Pacer>, key| Blocked {
        wait,
        limit,
        pacer: pacer.as_ref(),
        key,
    };
    // The connection's pacer has one key; a sender's pacer is keyed by the sender.
    let by_sender = sender.filter(|_| live.sender_limiter.is_some());
    if bulk {
        let now = now_ms();
        let yields =
            |pacer: &Option<Pacer>, key| pacer.as_ref().and_then(|p| p.bulk_yield(key, now));
        let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(1));
        if let Some(w) = yields(&live.pacer, "") {
            return Some(blocked("connection", ms(w), &live.pacer, ""));
        }
        if let Some(s) = by_sender {
            if let Some(w) = yields(&live.sender_pacer, s) {
                return Some(blocked("sender", ms(w), &live.sender_pacer, s));
            }
        }
    }
    // The clock is made only when a limiter says no: making one probes the CPU (cpuid).
    let wait = |not_until: governor::NotUntil<governor::clock::QuantaInstant>| {
        use governor::clock::{Clock, DefaultClock};
        not_until
            .wait_time_from(DefaultClock::default().now())
            .max(Duration::from_millis(1))
    };
    // The sender first: a cell the connection gives can't be given back if the sender's
    // limit then says no, and per-sender limits are usually the tighter ones.
    if let (Some(l), Some(s)) = (&live.sender_limiter, by_sender) {
        if let Err(not_until) = l.check_key(&s.to_string()) {
            return Some(blocked("sender", wait(not_until), &live.sender_pacer, s));
        }
    }
    if let Some(l) = &live.limiter {
        if let Err(not_until) = l.check() {
            return Some(blocked("connection", wait(not_until), &live.pacer, ""));
        }
    }
    None
}

async fn send(
    inner: &Inner,
    item: DispatchItem,
    live: std::sync::Arc<Live>,
    sender: Option<String>,
    sender_identity: Option<String>,
    route_len: usize,
) {
    let attempt_id = ids::new_id(ids::IdKind::Attempt);
    let now = now_ms();
    let begin = AttemptBegin {
        message_id: item.message_id.clone(),
        lease_token: item.lease_token.clone(),
        lease_until: now + i64::try_from(inner.cfg.lease_seconds * 1000).unwrap_or(60_000),
        attempt_id: attempt_id.clone(),
        channel: item.channel,
        provider: live.spec.provider.as_str(),
        connection_id: live.spec.id.clone(),
        sender: sender.clone(),
        now,
    };
    let tries = match inner.store.begin_attempt(begin).await {
        Ok(Some(seq)) => seq,
        Ok(None) => {
            tracing::debug!("Lease lost before sending; another worker owns the message.");
            live.breaker.release();
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "Could not record the attempt; the outbox will retry.");
            live.breaker.release();
            return;
        }
    };
    let msg = outbound(inner, &live, &item, &attempt_id, sender);
    let started = Instant::now();
    let limit = live.spec.request_timeout + Duration::from_secs(5);
    let result = match tokio::time::timeout(limit, live.provider.send(&msg)).await {
        Ok(r) => r,
        Err(_) => Err(SendError::timeout(
            "provider call exceeded the request timeout",
        )),
    };
    let provider = live.spec.provider.as_str();
    ::metrics::histogram!(metrics::DISPATCH_DURATION, "provider" => provider)
        .record(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(e) if e.is_ambiguous() => Outcome::Timeout,
        Err(e) if e.code() == "throttled" => Outcome::Throttled,
        Err(e) if e.is_retryable() => Outcome::Retryable,
        Err(_) => Outcome::Permanent,
    };
    ::metrics::counter!(metrics::DISPATCH_ATTEMPTS, "provider" => provider, "channel" => item.channel.as_str(), "outcome" => outcome.as_str())
        .increment(1);
    match &result {
        Ok(_) => live.breaker.success(),
        Err(e) if e.is_retryable() => live.breaker.failure(),
        // A permanent refusal is an answer: the provider is up (this also ends a probe).
        Err(_) => live.breaker.success(),
    }
    let now = now_ms();
    let result = match result {
        Ok(r) => AttemptResult::Sent {
            provider_ids: r.provider_ids,
            status: r.status,
            segments: r.segments,
            fallback_check_at: item
                .policy
                .fallback_after_ms
                .filter(|_| has_next(&item))
                .map(|ms| now + ms),
        },
        Err(e) => classify(&inner.cfg, &item, &e, tries, route_len, now),
    };
    if let AttemptResult::Retry { detail, .. } = &result {
        tracing::info!(attempt = tries, provider, to = %crate::telemetry::redact(&item.to), %detail, "Send failed; will retry.");
    }
    if let AttemptResult::Final {
        reason: "opted_out",
        ..
    } = &result
    {
        // The ledger is about to learn this opt-out (record_end): the next send must look.
        inner.consent.opted_out_now();
    }
    let end = AttemptEnd {
        message_id: item.message_id.clone(),
        attempt_id: Some(attempt_id),
        sender: sender_identity,
        connection_id: Some(live.spec.id.clone()),
        result,
        now,
    };
    record_end(inner, end).await;
}

/// What a failed send means for the message; `tries` counts this one, `route_len` is the
/// number of connections the route offers (each gets `max_attempts`).
fn classify(
    cfg: &DispatchConfig,
    item: &DispatchItem,
    e: &SendError,
    tries: i64,
    route_len: usize,
    now: i64,
) -> AttemptResult {
    let code = e.provider_code().map(str::to_string);
    if !e.is_retryable() {
        return give_up(
            item,
            DeliveryStatus::Rejected,
            e.reason(),
            code,
            e.detail().to_string(),
        );
    }
    let per_connection = i64::from(cfg.max_attempts.max(1));
    let budget = per_connection * i64::try_from(route_len.max(1)).unwrap_or(1);
    if tries >= budget {
        let detail = format!("{} attempts failed; last: {}", tries, e.detail());
        return give_up(
            item,
            DeliveryStatus::Failed,
            FailureReason::RetriesExhausted,
            code,
            detail,
        );
    }
    if tries % per_connection == 0 && !e.is_ambiguous() {
        // This connection's tries are used up: the next one in the route, right away.
        return AttemptResult::Retry {
            retry_at: now,
            outcome: "retry",
            code,
            detail: format!(
                "{per_connection} attempts failed on this connection, failing over; last: {}",
                e.detail()
            ),
        };
    }
    let mut wait = backoff::delay(
        u32::try_from(tries % per_connection).unwrap_or(1).max(1),
        Duration::from_millis(cfg.retry_base_ms),
        Duration::from_millis(cfg.retry_max_ms),
        e.retry_after(),
    );
    if e.is_ambiguous() {
        // The provider may have it: give its callback time to prove so before resending.
        wait = wait.max(Duration::from_secs(cfg.reconcile_seconds));
    }
    let outcome = if e.is_ambiguous() { "timeout" } else { "retry" };
    AttemptResult::Retry {
        retry_at: now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
        outcome,
        code,
        detail: e.detail().to_string(),
    }
}

fn outbound(
    inner: &Inner,
    live: &Live,
    item: &DispatchItem,
    attempt_id: &str,
    sender: Option<String>,
) -> OutboundMessage {
    let callback = format!(
        "{}/webhooks/{}/{}/status?m={}&a={}",
        inner.public_base,
        live.spec.provider.as_str(),
        live.spec.id,
        item.message_id,
        attempt_id
    );
    let email = (item.channel == Channel::Email).then(|| EmailHeaders {
        message_id: Some(format!("{}@{}", item.message_id, inner.email.domain)),
        reply_to: Some(inner.email.reply_to(&item.conversation_id)),
        ..EmailHeaders::default()
    });
    OutboundMessage {
        message_id: item.message_id.clone(),
        attempt_id: attempt_id.to_string(),
        channel: item.channel,
        to: item.to.clone(),
        from: sender,
        body: item.body.clone(),
        subject: item.subject.clone(),
        template: item.template.clone(),
        email,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: callback,
    }
}

async fn record_end(inner: &Inner, end: AttemptEnd) {
    match inner.store.end_attempt(end).await {
        Ok(changes) => crate::events::status_changed(&changes, now_ms()),
        // The outbox row stays leased; after the lease the poller finds the in-flight
        // attempt and reconciles instead of blindly resending.
        Err(e) => tracing::error!(error = %e, "Could not record the send's result."),
    }
}
