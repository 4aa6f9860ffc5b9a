//! Send cases: an outgoing message against a mock provider that must be called exactly once.

use crate::{json_contains, LogCapture};
use std::sync::Arc;
use std::time::Duration;
use weft_provider::{DeliveryStatus, FailureReason, OutboundMessage, Provider};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// What the mock provider answers.
#[derive(Debug, Clone)]
pub struct MockAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Option<Duration>,
}

impl MockAnswer {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        MockAnswer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: None,
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        MockAnswer {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The mock server's answer.
    fn template(&self) -> ResponseTemplate {
        let mut resp = ResponseTemplate::new(self.status).set_body_string(self.body.clone());
        for (k, v) in &self.headers {
            resp = resp.insert_header(k.as_str(), v.as_str());
        }
        if let Some(d) = self.delay {
            resp = resp.set_delay(d);
        }
        resp
    }

    /// Answers only after `d` (longer than the adapter's timeout makes a timeout case).
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
}

/// What the request the adapter makes must contain.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    /// `POST`, `GET`, …
    pub method: &'static str,
    /// Exact path.
    pub path: String,
    /// Form fields that must be present with these values (others allowed).
    pub form: Vec<(String, String)>,
    /// A JSON body that must contain this value (subset match).
    pub json: Option<serde_json::Value>,
    /// Headers that must be present with these values (name case-insensitive).
    pub headers: Vec<(String, String)>,
}

impl RequestMatch {
    pub fn post(path: impl Into<String>) -> Self {
        RequestMatch {
            method: "POST",
            path: path.into(),
            ..Default::default()
        }
    }

    pub fn form(mut self, name: &str, value: &str) -> Self {
        self.form.push((name.into(), value.into()));
        self
    }

    pub fn json(mut self, v: serde_json::Value) -> Self {
        self.json = Some(v);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn problems(&self, req: &Request) -> Vec<String> {
        let mut out = Vec::new();
        if req.method.as_str() != self.method {
            out.push(format!("method {} != {}", req.method, self.method));
        }
        if req.url.path() != self.path {
            out.push(format!("path {} != {}", req.url.path(), self.path));
        }
        if !self.form.is_empty() {
            let pairs: Vec<(String, String)> =
                form_urlencoded::parse(&req.body).into_owned().collect();
            for (k, v) in &self.form {
                if !pairs.iter().any(|(pk, pv)| pk == k && pv == v) {
                    out.push(format!("form field {k}={v:?} missing (got {pairs:?})"));
                }
            }
        }
        if let Some(want) = &self.json {
            match serde_json::from_slice::<serde_json::Value>(&req.body) {
                Ok(got) if json_contains(&got, want) => {}
                Ok(got) => out.push(format!("json body {got} does not contain {want}")),
                Err(e) => out.push(format!("body is not JSON: {e}")),
            }
        }
        for (k, v) in &self.headers {
            let got = req.headers.get(k.as_str()).and_then(|h| h.to_str().ok());
            if got != Some(v.as_str()) {
                out.push(format!("header {k}: {got:?} != {v:?}"));
            }
        }
        out
    }
}

/// The expected outcome of a send.
#[derive(Debug, Clone)]
pub enum SendExpect {
    Ok {
        provider_ids: Vec<String>,
        status: DeliveryStatus,
    },
    Err {
        retryable: bool,
        /// [`weft_provider::SendError::code`].
        code: &'static str,
        provider_code: Option<String>,
        /// Checked for permanent errors only.
        reason: Option<FailureReason>,
        /// `Retry-After` the adapter must report, if any.
        retry_after: Option<Duration>,
    },
}

impl SendExpect {
    pub fn ok(ids: &[&str]) -> Self {
        SendExpect::Ok {
            provider_ids: ids.iter().map(|s| s.to_string()).collect(),
            status: DeliveryStatus::Queued,
        }
    }

    pub fn retry(code: &'static str, provider_code: Option<&str>) -> Self {
        SendExpect::Err {
            retryable: true,
            code,
            provider_code: provider_code.map(String::from),
            reason: None,
            retry_after: None,
        }
    }

    pub fn permanent(
        code: &'static str,
        reason: FailureReason,
        provider_code: Option<&str>,
    ) -> Self {
        SendExpect::Err {
            retryable: false,
            code,
            provider_code: provider_code.map(String::from),
            reason: Some(reason),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, d: Duration) -> Self {
        if let SendExpect::Err { retry_after, .. } = &mut self {
            *retry_after = Some(d);
        }
        self
    }
}

/// One table row.
#[derive(Debug, Clone)]
pub struct SendCase {
    pub name: &'static str,
    pub message: OutboundMessage,
    pub answer: MockAnswer,
    pub request: RequestMatch,
    pub expect: SendExpect,
}

struct Matches(RequestMatch);

impl wiremock::Match for Matches {
    fn matches(&self, request: &Request) -> bool {
        self.0.problems(request).is_empty()
    }
}

/// Runs every case against a fresh mock server. `build` makes the adapter pointed at the mock's
/// base URL and returns the secrets it was configured with (checked against its logs).
pub async fn run_send_cases<F>(cases: Vec<SendCase>, build: F)
where
    F: Fn(url::Url) -> (Arc<dyn Provider>, Vec<String>),
{
    assert!(!cases.is_empty(), "no send cases");
    if let Some(ok) = cases
        .iter()
        .find(|c| matches!(c.expect, SendExpect::Ok { .. }))
    {
        redirect_is_not_followed(ok, &build).await;
    }
    for case in cases {
        let server = MockServer::start().await;
        let base = url::Url::parse(&server.uri()).unwrap();
        assert!(
            matches!(base.host_str(), Some("127.0.0.1") | Some("localhost")),
            "mock must be on localhost"
        );
        Mock::given(Matches(case.request.clone()))
            .respond_with(case.answer.template())
            .expect(1)
            .mount(&server)
            .await;

        let (provider, secrets) = build(base);
        let logs = LogCapture::default();
        let result = {
            let _guard = logs.install();
            provider.send(&case.message).await
        };
        let received = server.received_requests().await.unwrap_or_default();
        let why: Vec<String> = received
            .iter()
            .flat_map(|r| case.request.problems(r))
            .collect();
        let name = case.name;
        assert_eq!(
            received.len(),
            1,
            "{name}: expected exactly one provider request, got {}; {why:?}",
            received.len()
        );
        assert!(why.is_empty(), "{name}: request did not match: {why:?}");
        logs.assert_no_secrets(name, &secrets, &format!("{result:?}"));

        match (&case.expect, &result) {
            (
                SendExpect::Ok {
                    provider_ids,
                    status,
                },
                Ok(r),
            ) => {
                assert_eq!(&r.provider_ids, provider_ids, "{name}: provider ids");
                assert_eq!(&r.status, status, "{name}: status");
            }
            (
                SendExpect::Err {
                    retryable,
                    code,
                    provider_code,
                    reason,
                    retry_after,
                },
                Err(e),
            ) => {
                assert_eq!(e.is_retryable(), *retryable, "{name}: retryable ({e})");
                assert_eq!(e.code(), *code, "{name}: code ({e})");
                assert_eq!(
                    e.provider_code(),
                    provider_code.as_deref(),
                    "{name}: provider code ({e})"
                );
                if let Some(r) = reason {
                    assert_eq!(e.reason(), *r, "{name}: reason ({e})");
                }
                if retry_after.is_some() {
                    assert_eq!(e.retry_after(), *retry_after, "{name}: retry-after");
                }
            }
            (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
        server.verify().await;
    }
}

/// The request of a case the provider accepts, answered with a redirect to a path that
/// would accept it too: the adapter must not follow it (one request, a permanent error).
async fn redirect_is_not_followed<F>(case: &SendCase, build: &F)
where
    F: Fn(url::Url) -> (Arc<dyn Provider>, Vec<String>),
{
    let server = MockServer::start().await;
    let base = url::Url::parse(&server.uri()).unwrap();
    Mock::given(Matches(case.request.clone()))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/moved"))
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::path("/moved"))
        .respond_with(case.answer.template())
        .mount(&server)
        .await;
    let (provider, _) = build(base);
    let result = provider.send(&case.message).await;
    let received = server.received_requests().await.unwrap_or_default();
    let name = case.name;
    assert_eq!(
        received.len(),
        1,
        "{name}, answered 302: the adapter followed the redirect"
    );
    match result {
        Err(e) => assert!(
            !e.is_retryable(),
            "{name}, answered 302: expected a permanent error, got {e}"
        ),
        Ok(r) => panic!("{name}, answered 302: expected an error, got {r:?}"),
    }
}
