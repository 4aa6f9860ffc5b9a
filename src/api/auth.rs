//! Bearer API keys: `weft_<random>`, stored as SHA-256; lookups cached in memory for
//! `[api] key_cache_seconds` (the delay after which a revoked key is refused).

use super::{problem::ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The tenant a request acts for.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    /// SHA-256 (hex) of the API key the request used.
    pub key_hash: String,
}

impl Tenant {
    /// The Standard Webhooks secret that signs this key's per-message status callbacks:
    /// `whsec_` + base64 of the raw SHA-256 of the API key — an app that holds the key can
    /// compute it, nothing new has to be handed out or stored in clear.
    pub fn callback_secret(&self) -> Option<String> {
        use base64::Engine;
        let raw = hex::decode(&self.key_hash).ok()?;
        Some(format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
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
        // A cached answer is trusted for `key_ttl`, then checked again: that bounds how long
        // a revoked key keeps working on a replica.
        let cached = state
            .keys
            .get(&hash)
            .filter(|e| e.1.elapsed() < state.key_ttl)
            .map(|e| e.0.clone());
        let id = match cached {
            Some(id) => id,
            None => match state.store.tenant_for_key(&hash).await? {
                Some(id) => {
                    state
                        .keys
                        .insert(hash.clone(), (id.clone(), std::time::Instant::now()));
                    id
                }
                None => {
                    state.keys.remove(&hash);
                    return Err(ApiError::Unauthorized);
                }
            },
        };
        if let Some(limiter) = &state.tenant_limiter {
            if let Err(not_until) = limiter.check_key(&id) {
                use governor::clock::{Clock, DefaultClock};
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(ApiError::RateLimited(wait.as_secs().max(1)));
            }
        }
        Ok(Tenant { id, key_hash: hash })
    }
}
