//! The HTTP API (DESIGN.md §2): router, shared state, JSON and error plumbing, OpenAPI.

pub mod auth;
mod contacts;
mod conversations;
mod health;
mod idempotency;
mod messages;
pub mod problem;
mod webhook_endpoints;
mod webhooks;

use crate::dispatch::Dispatcher;
use crate::providers::Registry;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderMap};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusHandle;
use problem::ApiError;
use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use utoipa::{OpenApi, ToSchema};

/// Shared by every handler; one reference count to clone (axum clones it per request).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    pub fn new(state: SharedState) -> AppState {
        AppState(Arc::new(state))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct SharedState {
    pub store: Store,
    pub registry: Registry,
    pub dispatcher: Dispatcher,
    pub metrics: PrometheusHandle,
    pub public_base: String,
    /// API key hash → tenant id, and when that was read from the store.
    pub keys: Arc<DashMap<String, (String, std::time::Instant)>>,
    /// How long a cached key lookup is trusted (`[api] key_cache_seconds`).
    pub key_ttl: std::time::Duration,
    pub draining: Arc<AtomicBool>,
    pub email: Arc<crate::threading::EmailThreading>,
    pub consent: Arc<crate::policy::consent::ConsentPolicy>,
    /// Requests per second per tenant (`[api]`), per replica.
    pub tenant_limiter: Option<Arc<governor::DefaultKeyedRateLimiter<String>>>,
    pub app_webhooks: crate::app_webhooks::AppWebhooks,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListPage<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Provider webhooks may carry attachments: they get a larger body limit.
const WEBHOOK_MAX_BODY: usize = 25 * 1024 * 1024;

pub fn router(state: AppState, max_body: usize) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(messages::send).get(messages::list))
        .route("/v1/messages/{id}", get(messages::get))
        .route(
            "/v1/conversations",
            post(conversations::create).get(conversations::list),
        )
        .route("/v1/conversations/{id}", get(conversations::get))
        .route(
            "/v1/conversations/{id}/timeline",
            get(conversations::timeline),
        )
        .route("/v1/conversations/{id}/close", post(conversations::close))
        .route("/v1/contacts", post(contacts::create).get(contacts::list))
        .route("/v1/contacts/{id}", get(contacts::get))
        .route("/v1/contacts/{id}/identities", post(contacts::add_identity))
        .route(
            "/v1/contacts/{id}/identities/{identity_id}",
            axum::routing::patch(contacts::patch_identity),
        )
        .route("/v1/contacts/{id}/merge", post(contacts::merge))
        .route("/v1/contacts/{id}/consent", get(contacts::consent))
        .route("/v1/contacts/{id}/unmerge", post(contacts::unmerge))
        .route(
            "/v1/webhook-endpoints",
            post(webhook_endpoints::create).get(webhook_endpoints::list),
        )
        .route(
            "/v1/webhook-endpoints/{id}",
            get(webhook_endpoints::get).delete(webhook_endpoints::delete),
        )
        .route(
            "/v1/webhook-endpoints/{id}/deliveries",
            get(webhook_endpoints::deliveries),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            refuse_oversize(req, next, max_body)
        }))
        .layer(middleware::from_fn(refuse_nul_query));
    let hooks = Router::new()
        .route(
            "/webhooks/{provider}/{connection_id}/{kind}",
            post(webhooks::receive).get(webhooks::receive),
        )
        .layer(DefaultBodyLimit::max(WEBHOOK_MAX_BODY));
    Router::new()
        .merge(api)
        .merge(hooks)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            observe(req, next, max_body)
        }))
        .with_state(state)
}

/// Counts and times every request by route template; turns axum's plain-text rejections
/// (413 from the body limit, 415, …) into problem+json.
async fn observe(req: Request, next: Next, max_body: usize) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method: &'static str = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let resp = next.run(req).await;
    let resp = if resp.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        && !is_problem(resp.headers())
    {
        ApiError::TooLarge(max_body).into_response()
    } else if resp.status() == axum::http::StatusCode::BAD_REQUEST
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
    {
        // axum's own rejections (a query string or path that does not parse) are plain text.
        let text = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .unwrap_or_default();
        ApiError::BadRequest(String::from_utf8_lossy(&text).into_owned()).into_response()
    } else {
        resp
    };
    let status = resp.status().as_u16().to_string();
    ::metrics::counter!(crate::metrics::HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status).increment(1);
    ::metrics::histogram!(crate::metrics::HTTP_DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// A body announced larger than the limit answers 413 at once — after reading (and dropping)
/// what the client sends, up to a bound, so the client sees the answer instead of a reset
/// connection.
async fn refuse_oversize(req: Request, next: Next, max_body: usize) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max_body as u64 => {
            const DRAIN: usize = 32 * 1024 * 1024;
            let _ = axum::body::to_bytes(req.into_body(), DRAIN).await;
            ApiError::TooLarge(max_body).into_response()
        }
        _ => next.run(req).await,
    }
}

/// PostgreSQL text cannot hold NUL: a query string carrying one is refused up front instead of
/// failing in the store.
async fn refuse_nul_query(req: Request, next: Next) -> Response {
    if req
        .uri()
        .query()
        .is_some_and(|q| q.to_ascii_lowercase().contains("%00"))
    {
        return ApiError::BadRequest("the query string must not contain NUL (%00)".into())
            .into_response();
    }
    next.run(req).await
}

/// Where a JSON value holds a NUL character (in a string or a key), as a field path.
fn nul_at(v: &serde_json::Value, at: &str) -> Option<String> {
    let here = || {
        if at.is_empty() {
            "body".to_string()
        } else {
            at.to_string()
        }
    };
    match v {
        serde_json::Value::String(s) if s.contains('\0') => Some(here()),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &format!("{at}[{i}]"))),
        serde_json::Value::Object(o) => o.iter().find_map(|(k, x)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(path)
            } else {
                nul_at(x, &path)
            }
        }),
        _ => None,
    }
}

fn is_problem(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}

/// Parses a JSON request body, answering problem+json for a wrong type or broken JSON.
pub(crate) fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") && !ct.contains("+json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if !v.is_object() {
        return Err(ApiError::MalformedJson(
            "the body must be a JSON object".into(),
        ));
    }
    if let Some(field) = nul_at(&v, "") {
        return Err(ApiError::field(
            &field,
            "must not contain NUL (U+0000) characters",
        ));
    }
    Ok(v)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "weft", description = "CPaaS messaging gateway: one API for SMS, voice, WhatsApp, Telegram and e-mail."),
    paths(
        messages::send, messages::get, messages::list,
        conversations::create, conversations::get, conversations::list, conversations::timeline, conversations::close,
        contacts::create, contacts::get, contacts::list, contacts::add_identity, contacts::patch_identity, contacts::merge, contacts::consent, contacts::unmerge,
        webhook_endpoints::create, webhook_endpoints::list, webhook_endpoints::get, webhook_endpoints::delete, webhook_endpoints::deliveries,
        webhooks::receive,
        health::healthz, health::readyz, health::metrics, health::openapi,
    ),
    components(schemas(problem::Problem, problem::FieldError, messages::SendRequest, crate::domain::message::MessageView, webhook_endpoints::CreateEndpoint, crate::app_webhooks::views::EndpointView, crate::app_webhooks::views::DeliveryView, crate::app_webhooks::views::AttemptEntry)),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, rendered once.
pub fn openapi_json() -> String {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()))
        .clone()
}
