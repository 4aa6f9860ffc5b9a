//! E-mail reply tokens: `reply+<token>@inbound-domain`, where the token names a conversation
//! and carries an HMAC so nobody can thread mail onto a conversation they guessed. Lower
//! case only (some providers lower-case inbound addresses).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const MAC_HEX: usize = 16;

fn mac(secret: &[u8], conv_ulid: &str) -> String {
    let Ok(mut m) = HmacSha256::new_from_slice(secret) else {
        return String::new();
    };
    m.update(b"weft-reply-token:");
    m.update(conv_ulid.as_bytes());
    let full = hex::encode(m.finalize().into_bytes());
    full[..MAC_HEX].to_string()
}

/// The token for a conversation id (`conv_…`).
pub fn issue(secret: &[u8], conversation_id: &str) -> String {
    let ulid = conversation_id
        .strip_prefix("conv_")
        .unwrap_or(conversation_id)
        .to_ascii_lowercase();
    let tag = mac(secret, &ulid);
    format!("{ulid}-{tag}")
}

/// The conversation id a token names, if its HMAC checks.
pub fn verify(secret: &[u8], token: &str) -> Option<String> {
    let token = token.to_ascii_lowercase();
    let (ulid, tag) = token.split_once('-')?;
    let expect = mac(secret, ulid);
    let ok: bool = subtle::ConstantTimeEq::ct_eq(expect.as_bytes(), tag.as_bytes()).into();
    if !ok || tag.len() != MAC_HEX {
        return None;
    }
    let parsed = ulid::Ulid::from_string(&ulid.to_ascii_uppercase()).ok()?;
    Some(format!("conv_{parsed}"))
}

/// The token in an address like `reply+<token>@domain` (any case), if it is one.
pub fn from_address(address: &str) -> Option<&str> {
    let addr = address.strip_prefix("mailto:").unwrap_or(address);
    let (local, _) = addr.split_once('@')?;
    let lower_prefix = local.get(..6)?;
    if lower_prefix.eq_ignore_ascii_case("reply+") {
        local.get(6..)
    } else {
        None
    }
}

/// The `Reply-To` address for a conversation.
pub fn reply_to(secret: &[u8], conversation_id: &str, inbound_domain: &str) -> String {
    format!(
        "reply+{}@{}",
        issue(secret, conversation_id),
        inbound_domain
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_survive_lower_casing() {
        let conv = "conv_01M8TD47GBJEJAM8XX64ENMAPZ";
        let addr = reply_to(b"secret", conv, "in.example.com");
        assert!(addr.starts_with("reply+01m8td47gbjejam8xx64enmapz-"));
        let tok = from_address(&addr).unwrap_or_default();
        assert_eq!(verify(b"secret", tok).as_deref(), Some(conv));
        assert_eq!(
            verify(b"secret", &tok.to_uppercase()).as_deref(),
            Some(conv)
        );
        assert_eq!(verify(b"other", tok), None);
        let forged = format!("{}-0000000000000000", &tok[..26]);
        assert_eq!(verify(b"secret", &forged), None);
        assert_eq!(from_address("mailto:Reply+abc@x.io"), Some("abc"));
        assert_eq!(from_address("jo@x.io"), None);
    }
}
