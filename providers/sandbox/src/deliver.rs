//! Posting callbacks: signed, retried with a bounded back-off, one message's callbacks in order.

use crate::magic::Outcome;
use crate::verify::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::wire::{self, Callback, MessageCallback, StatusCallback};
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// How one callback is retried on a connection error or a non-2xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait after the first failure; doubled after each further one.
    pub first_backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 30 tries, 100 ms doubling to 2 s: about 53 s in all, enough for a gateway restart.
    fn default() -> Self {
        RetryPolicy {
            attempts: 30,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The waits between tries: `attempts - 1` of them.
    pub fn backoffs(&self) -> impl Iterator<Item = Duration> + '_ {
        let mut next = self.first_backoff.min(self.max_backoff);
        (1..self.attempts).map(move |_| {
            let this = next;
            next = (next * 2).min(self.max_backoff);
            this
        })
    }
}

/// The one place the sandbox reads the wall clock.
pub(crate) fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Signs and posts callbacks.
#[derive(Debug, Clone)]
pub(crate) struct Poster {
    pub client: reqwest::Client,
    pub secret: SecretString,
    pub retry: RetryPolicy,
}

impl Poster {
    /// Posts one callback until it is answered 2xx or the retries run out; true if delivered.
    pub async fn post(&self, url: &url::Url, callback: &Callback) -> bool {
        let body = match serde_json::to_vec(callback) {
            Ok(b) => b,
            Err(error) => {
                tracing::error!(%error, "Cannot encode a sandbox callback.");
                return false;
            }
        };
        let mut backoffs = self.retry.backoffs();
        for attempt in 1..=self.retry.attempts.max(1) {
            let ts = now().as_secs() as i64;
            let sent = self
                .client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(
                    SIGNATURE_HEADER,
                    sign(self.secret.expose_secret(), ts, &body),
                )
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => return true,
                Ok(resp) => {
                    tracing::debug!(
                        attempt,
                        status = resp.status().as_u16(),
                        "Sandbox callback refused."
                    )
                }
                Err(error) => {
                    tracing::debug!(attempt, error = %error.without_url(), "Sandbox callback not delivered.")
                }
            }
            match backoffs.next() {
                Some(wait) => tokio::time::sleep(wait).await,
                None => break,
            }
        }
        tracing::warn!(
            attempts = self.retry.attempts,
            path = url.path(),
            "Giving up on a sandbox callback."
        );
        false
    }
}

/// Everything the background task of one queued message needs.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub status_url: url::Url,
    pub provider_id: String,
    pub message_id: String,
    pub attempt_id: String,
    pub outcome: Outcome,
    pub callback_delay: Duration,
    /// The echo to post after `delivered`, where to, and how long after.
    pub echo: Option<(url::Url, MessageCallback, Duration)>,
}

impl Job {
    fn status(&self, status: &str, code: Option<&str>, detail: Option<&str>) -> Callback {
        Callback::Status(StatusCallback {
            event_id: wire::event_id(),
            provider_message_id: self.provider_id.clone(),
            message_id: Some(self.message_id.clone()),
            attempt_id: Some(self.attempt_id.clone()),
            status: status.to_string(),
            error_code: code.map(str::to_string),
            error_detail: detail.map(str::to_string),
            timestamp_ms: Some(now().as_millis() as i64),
        })
    }

    /// Runs the script in order: each status after `callback_delay`, then the echo.
    pub async fn run(self, poster: Poster) {
        let span = tracing::debug_span!(
            "sandbox_callbacks",
            message_id = %self.message_id,
            provider_message_id = %self.provider_id
        );
        async move {
            let steps: Vec<(&str, Option<&str>, Option<&str>)> = match self.outcome {
                Outcome::Delivered => vec![("sent", None, None), ("delivered", None, None)],
                Outcome::Fails {
                    status,
                    code,
                    detail,
                } => vec![(status, Some(code), Some(detail))],
            };
            for (status, code, detail) in steps {
                tokio::time::sleep(self.callback_delay).await;
                poster
                    .post(&self.status_url, &self.status(status, code, detail))
                    .await;
            }
            if let (Outcome::Delivered, Some((url, mut echo, delay))) =
                (self.outcome, self.echo.clone())
            {
                tokio::time::sleep(delay).await;
                echo.timestamp_ms = Some(now().as_millis() as i64);
                poster.post(&url, &Callback::Message(echo)).await;
            }
            tracing::debug!("Sandbox callbacks done.");
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_is_bounded() {
        let p = RetryPolicy::default();
        let waits: Vec<Duration> = p.backoffs().collect();
        assert_eq!(waits.len(), 29);
        let ms: Vec<u128> = waits.iter().take(7).map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(2)));
        let total: Duration = waits.iter().sum();
        assert!(total < Duration::from_secs(60), "{total:?}");
    }

    #[test]
    fn a_single_attempt_never_waits() {
        let p = RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoffs().count(), 0);
    }
}
