//! Bearer API keys: `weft_<random>`, stored as SHA-256; lookups cached in memory.

use super::{problem::ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The tenant a request acts for.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
}

/// A new random API key (shown once).
pub fn new_key() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("weft_{}", hex::encode(bytes))
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() < 200)
            .ok_or(ApiError::Unauthorized)?;
        let hash = hash_key(key);
        if let Some(t) = state.keys.get(&hash) {
            return Ok(Tenant { id: t.clone() });
        }
        match state.store.tenant_for_key(&hash).await? {
            Some(id) => {
                state.keys.insert(hash, id.clone());
                Ok(Tenant { id })
            }
            None => Err(ApiError::Unauthorized),
        }
    }
}
