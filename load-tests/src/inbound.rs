//! Signed Twilio inbound-SMS webhooks (`weft-load inbound`).
//!
//! Each request is the form body Twilio posts for an incoming SMS, signed the way Twilio signs
//! it (`X-Twilio-Signature`, HMAC-SHA1 keyed with the auth token over the full URL followed by
//! the sorted `name + value` pairs), using `weft_twilio::verify::sign` so the generator and
//! weft's verifier share one formula. weft threads each inbound message before answering, so
//! the latency of a 200 is ingest + threading.

use crate::engine::destination;
use weft_twilio::verify::{sign, Algorithm, SIGNATURE_HEADER};

/// The header the signature travels in.
pub const SIGNATURE: &str = SIGNATURE_HEADER;

/// Everything needed to build request number `n`.
#[derive(Debug, Clone)]
pub struct InboundSpec {
    /// The request path (`{base}/webhooks/twilio/{connection}/inbound`).
    pub path: String,
    /// The URL the signature covers: weft's `public_url` followed by the webhook path.
    pub signed_url: String,
    pub account_sid: String,
    pub auth_token: String,
    /// The business number (`To`).
    pub to: String,
    /// Customer numbers are this prefix followed by `n % senders`.
    pub from_prefix: String,
    /// Distinct customer numbers, used in turn.
    pub senders: u64,
    /// 16 hex digits unique to this run; `MessageSid` is `SM` + this + 16 hex of `n`.
    pub run_id: u64,
}

/// One request: the form body and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub body: String,
    pub signature: String,
}

/// `/webhooks/twilio/{connection}/inbound`.
pub fn webhook_path(connection: &str) -> String {
    format!("/webhooks/twilio/{connection}/inbound")
}

/// A run id that differs between runs (time and pid), so `MessageSid`s never repeat.
pub fn new_run_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // splitmix64 of time ^ pid: spreads the bits so ids from close runs look unrelated.
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl InboundSpec {
    /// `MessageSid` of request `n`: `SM` + 32 lower-case hex digits.
    pub fn message_sid(&self, n: u64) -> String {
        format!("SM{:016x}{n:016x}", self.run_id)
    }

    /// The customer number of request `n` (cycling through `senders` numbers).
    pub fn from(&self, n: u64) -> String {
        destination(&self.from_prefix, n % self.senders.max(1))
    }

    /// The form parameters of request `n`, in the order they are sent.
    pub fn params(&self, n: u64) -> Vec<(String, String)> {
        vec![
            ("MessageSid".into(), self.message_sid(n)),
            ("SmsMessageSid".into(), self.message_sid(n)),
            ("AccountSid".into(), self.account_sid.clone()),
            ("From".into(), self.from(n)),
            ("To".into(), self.to.clone()),
            ("Body".into(), format!("inbound load message {n}")),
            ("NumMedia".into(), "0".into()),
            ("NumSegments".into(), "1".into()),
            ("SmsStatus".into(), "received".into()),
            ("ApiVersion".into(), "2010-04-01".into()),
        ]
    }

    /// The signed form body of request `n`.
    pub fn request(&self, n: u64) -> Signed {
        let params = self.params(n);
        let signature = sign(
            Algorithm::HmacSha1,
            &self.auth_token,
            &self.signed_url,
            &params,
        );
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        Signed { body, signature }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_twilio::verify::{verify, Keys, Signed as Req};

    fn spec() -> InboundSpec {
        InboundSpec {
            path: webhook_path("twilio-load"),
            signed_url: format!("http://127.0.0.1:18080{}", webhook_path("twilio-load")),
            account_sid: "AC0000000000000000000000000000load".into(),
            auth_token: "load-test-auth-token-0123456789ab".into(),
            to: "+15005550006".into(),
            from_prefix: "+12025".into(),
            senders: 3,
            run_id: 0xabcd,
        }
    }

    #[test]
    fn sids_and_senders() {
        let s = spec();
        assert_eq!(s.message_sid(1), "SM000000000000abcd0000000000000001");
        assert_eq!(s.message_sid(1).len(), 34);
        assert_eq!(s.from(0), "+12025000000");
        assert_eq!(s.from(4), "+12025000001");
        assert_ne!(new_run_id(), 0);
    }

    #[test]
    fn weft_verifier_accepts_the_signature() {
        let s = spec();
        let r = s.request(7);
        assert!(r.body.contains("From=%2B12025000001"), "{}", r.body);
        assert!(r.body.contains("To=%2B15005550006"));
        let keys = Keys {
            auth_token: &s.auth_token,
            shared_key: None,
            shared_key_id: None,
        };
        let req = Req {
            method: "POST",
            url: &s.signed_url,
            body: r.body.as_bytes(),
            signature: Some(&r.signature),
            settings: None,
        };
        assert!(verify(&req, &keys).is_ok());
        let wrong = Req {
            url: "http://127.0.0.1:18081/webhooks/twilio/twilio-load/inbound",
            ..req
        };
        assert!(verify(&wrong, &keys).is_err());
    }
}
