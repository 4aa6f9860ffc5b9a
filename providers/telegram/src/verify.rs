//! Pure webhook check: `X-Telegram-Bot-Api-Secret-Token` must equal our `secret_token`,
//! compared in constant time (vectors `telegram_secret_token.json`). There is no HMAC: the body
//! is not covered, so the secret is all that tells Telegram from anyone else.

use weft_provider::verify::constant_time_eq;
use weft_provider::VerifyError;

/// The header Telegram sends on every webhook when `setWebhook` was given a `secret_token`.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Checks the header value (if any) against the configured secret.
pub fn verify_secret(secret_token: &str, header: Option<&str>) -> Result<(), VerifyError> {
    if secret_token.is_empty() {
        return Err(VerifyError::NotConfigured);
    }
    let given = header.ok_or(VerifyError::Missing(SECRET_HEADER))?;
    if constant_time_eq(given.as_bytes(), secret_token.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_equality_only() {
        assert_eq!(verify_secret("weft_tg-abc", Some("weft_tg-abc")), Ok(()));
        assert_eq!(
            verify_secret("weft_tg-abc", Some("weft_tg-ab")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_secret("weft_tg-abc", Some("WEFT_TG-ABC")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_secret("weft_tg-abc", Some("")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_secret("weft_tg-abc", None),
            Err(VerifyError::Missing(SECRET_HEADER))
        );
        assert_eq!(verify_secret("", Some("")), Err(VerifyError::NotConfigured));
    }
}
