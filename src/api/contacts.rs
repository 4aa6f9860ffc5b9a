//! `/v1/contacts`: contacts, their identities, merge and unmerge.

use super::auth::Tenant;
use super::conversations::{cursor, limit, Page};
use super::problem::{ApiError, Problem};
use super::{json_body, AppState, ListPage};
use crate::domain::ids::IdKind;
use crate::domain::{address, now_ms, parse_rfc3339};
use crate::store::{ContactOutcome, ContactView, IdentityView};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use weft_provider::Channel;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIdentity {
    /// `tel:+4915…`, `mailto:jo@example.com`, `whatsapp:<id>`, `telegram:<chat id>`, or a bare
    /// E.164 number / e-mail address.
    pub address: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContact {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub identities: Vec<NewIdentity>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchIdentity {
    /// RFC 3339 time (or `"now"`) from which the identity no longer belongs to the contact.
    pub valid_to: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtherContact {
    pub contact_id: String,
}

/// Validates and normalizes an identity address.
fn normalize(field: &str, raw: &str) -> Result<String, ApiError> {
    let raw = raw.trim();
    let bad = |d: String| ApiError::field(field, d);
    if let Some(rest) = raw.strip_prefix("tel:") {
        return address::e164(rest)
            .map(|n| format!("tel:{n}"))
            .map_err(|e| bad(e.to_string()));
    }
    if let Some(rest) = raw.strip_prefix("mailto:") {
        return address::email(rest)
            .map(|e| format!("mailto:{e}"))
            .map_err(|e| bad(e.to_string()));
    }
    if let Some(rest) = raw.strip_prefix("whatsapp:") {
        if rest.starts_with('+') {
            return address::e164(rest)
                .map(|n| format!("tel:{n}"))
                .map_err(|e| bad(e.to_string()));
        }
        if rest.is_empty() || rest.len() > 128 {
            return Err(bad("empty or overlong WhatsApp id".into()));
        }
        return Ok(crate::threading::contacts::normalize(raw));
    }
    if raw.starts_with("telegram:") {
        return address::parse(Channel::Telegram, raw)
            .map(|d| d.identity)
            .map_err(|e| bad(e.to_string()));
    }
    let channel = address::infer_channel(raw).map_err(|_| {
        bad(format!(
            "{raw:?} is not a tel:, mailto:, whatsapp: or telegram: address"
        ))
    })?;
    address::parse(channel, raw)
        .map(|d| d.identity)
        .map_err(|e| bad(e.to_string()))
}

fn outcome<T>(o: ContactOutcome<T>) -> Result<T, ApiError> {
    match o {
        ContactOutcome::Done(v) => Ok(v),
        ContactOutcome::NotFound => Err(ApiError::NotFound),
        ContactOutcome::AddressTaken {
            address,
            contact_id,
        } => Err(ApiError::field(
            "address",
            format!("{address} already belongs to contact {contact_id}"),
        )),
        ContactOutcome::Invalid(d) => Err(ApiError::field("contact_id", d)),
    }
}

fn parse<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let v = json_body(headers, body)?;
    serde_json::from_value(v).map_err(|e| ApiError::field("body", e.to_string()))
}

/// Create a contact.
#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", request_body = CreateContact,
    responses((status = 201, body = ContactView), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ContactView>), ApiError> {
    let req: CreateContact = parse(&headers, &body)?;
    if req.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::field("metadata", "must be a JSON object"));
    }
    let mut addrs = Vec::new();
    for (i, idn) in req.identities.iter().enumerate() {
        let a = normalize(&format!("identities[{i}].address"), &idn.address)?;
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    let c = outcome(
        state
            .store
            .create_contact(
                &tenant.id,
                req.name.as_deref(),
                req.metadata.as_ref(),
                &addrs,
            )
            .await?,
    )?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// Read a contact with its identities.
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = ContactView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<ContactView>, ApiError> {
    if !crate::domain::ids::is_id(IdKind::Contact, &id) {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .contact(&tenant.id, &id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// List contacts, newest first.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", params(Page),
    responses((status = 200, body = ListPage<ContactView>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(p): Query<Page>,
) -> Result<Json<ListPage<ContactView>>, ApiError> {
    let (data, next_cursor) = state
        .store
        .contacts(
            &tenant.id,
            cursor(&p.cursor, IdKind::Contact)?,
            limit(p.limit)?,
        )
        .await?;
    Ok(Json(ListPage { data, next_cursor }))
}

/// Add an identity to a contact.
#[utoipa::path(post, path = "/v1/contacts/{id}/identities", tag = "contacts", params(("id" = String, Path)), request_body = NewIdentity,
    responses((status = 201, body = IdentityView), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn add_identity(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<IdentityView>), ApiError> {
    if !crate::domain::ids::is_id(IdKind::Contact, &id) {
        return Err(ApiError::NotFound);
    }
    let req: NewIdentity = parse(&headers, &body)?;
    let addr = normalize("address", &req.address)?;
    let v = outcome(state.store.add_identity(&tenant.id, &id, &addr).await?)?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Retire an identity (`valid_to`), e.g. a recycled phone number.
#[utoipa::path(patch, path = "/v1/contacts/{id}/identities/{identity_id}", tag = "contacts",
    params(("id" = String, Path), ("identity_id" = String, Path)), request_body = PatchIdentity,
    responses((status = 200, body = IdentityView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn patch_identity(
    State(state): State<AppState>,
    tenant: Tenant,
    Path((id, identity_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<IdentityView>, ApiError> {
    if !crate::domain::ids::is_id(IdKind::Contact, &id)
        || !crate::domain::ids::is_id(IdKind::Identity, &identity_id)
    {
        return Err(ApiError::NotFound);
    }
    let req: PatchIdentity = parse(&headers, &body)?;
    let at = if req.valid_to == "now" {
        now_ms()
    } else {
        parse_rfc3339(&req.valid_to)
            .ok_or_else(|| ApiError::field("valid_to", "must be an RFC 3339 time or \"now\""))?
    };
    outcome(
        state
            .store
            .retire_identity(&tenant.id, &id, &identity_id, at)
            .await?,
    )
    .map(Json)
}

/// Merge another contact into this one (reversible).
#[utoipa::path(post, path = "/v1/contacts/{id}/merge", tag = "contacts", params(("id" = String, Path)), request_body = OtherContact,
    responses((status = 200, body = ContactView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn merge(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ContactView>, ApiError> {
    if !crate::domain::ids::is_id(IdKind::Contact, &id) {
        return Err(ApiError::NotFound);
    }
    let req: OtherContact = parse(&headers, &body)?;
    outcome(
        state
            .store
            .merge_contacts(&tenant.id, &id, &req.contact_id)
            .await?,
    )
    .map(Json)
}

/// Undo a merge: the other contact gets its identities back.
#[utoipa::path(post, path = "/v1/contacts/{id}/unmerge", tag = "contacts", params(("id" = String, Path)), request_body = OtherContact,
    responses((status = 200, body = ContactView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn unmerge(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ContactView>, ApiError> {
    if !crate::domain::ids::is_id(IdKind::Contact, &id) {
        return Err(ApiError::NotFound);
    }
    let req: OtherContact = parse(&headers, &body)?;
    outcome(
        state
            .store
            .unmerge_contacts(&tenant.id, &id, &req.contact_id)
            .await?,
    )
    .map(Json)
}

/// The consent ledger entries of a contact and its identities.
#[utoipa::path(get, path = "/v1/contacts/{id}/consent", tag = "contacts", params(("id" = String, Path)),
    responses((status = 200, body = ListPage<crate::policy::consent::ConsentEntry>), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn consent(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<ListPage<crate::policy::consent::ConsentEntry>>, ApiError> {
    if !crate::domain::ids::is_id(IdKind::Contact, &id) {
        return Err(ApiError::NotFound);
    }
    if state.store.contact(&tenant.id, &id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let data = state.store.consent_of(&tenant.id, &id).await?;
    Ok(Json(ListPage {
        data,
        next_cursor: None,
    }))
}
