//! Destination addresses: which channel a `to` means, its provider-neutral form, and the
//! normalized identity (`tel:+E164`, `mailto:`, `telegram:`) threading keys on.

use hashlink::LruCache;
use std::sync::{LazyLock, Mutex, PoisonError};
use weft_provider::Channel;

/// A validated destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub channel: Channel,
    /// What the adapter gets: `+E164`, a lower-case e-mail address, a Telegram chat id.
    pub address: String,
    /// The identity threading uses: `tel:+E164` (shared by sms, voice, WhatsApp by phone),
    /// `mailto:…`, `telegram:…`.
    pub identity: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not a valid E.164 phone number (expected e.g. +14155550100)")]
    Phone(String),
    #[error("{0:?} is not a valid e-mail address")]
    Email(String),
    #[error("{0:?} is not a valid Telegram chat id")]
    Telegram(String),
    #[error("cannot infer a channel from {0:?}; set `channel`")]
    Unknown(String),
    #[error("channel {channel} cannot send to {to:?}")]
    Mismatch { channel: Channel, to: String },
}

/// Infers the channel of a `to` when the request names none.
pub fn infer_channel(to: &str) -> Result<Channel, AddressError> {
    let to = to.trim();
    if to.starts_with("whatsapp:") {
        Ok(Channel::Whatsapp)
    } else if to.starts_with("telegram:") {
        Ok(Channel::Telegram)
    } else if to.contains('@') {
        Ok(Channel::Email)
    } else if to.starts_with('+') {
        Ok(Channel::Sms)
    } else {
        Err(AddressError::Unknown(to.to_string()))
    }
}

/// Validates `to` for `channel`.
pub fn parse(channel: Channel, to: &str) -> Result<Destination, AddressError> {
    let raw = to.trim();
    match channel {
        Channel::Sms | Channel::Voice | Channel::Whatsapp => {
            let number = raw.strip_prefix("whatsapp:").unwrap_or(raw);
            let number = number.strip_prefix("tel:").unwrap_or(number);
            if raw.starts_with("whatsapp:") && channel != Channel::Whatsapp {
                return Err(AddressError::Mismatch {
                    channel,
                    to: raw.to_string(),
                });
            }
            let e164 = e164(number)?;
            Ok(Destination {
                channel,
                identity: format!("tel:{e164}"),
                address: e164,
            })
        }
        Channel::Email => {
            let addr = raw.strip_prefix("mailto:").unwrap_or(raw);
            let addr = email(addr)?;
            Ok(Destination {
                channel,
                identity: format!("mailto:{addr}"),
                address: addr,
            })
        }
        Channel::Telegram => {
            let id = raw.strip_prefix("telegram:").unwrap_or(raw);
            let valid = match id.strip_prefix('-') {
                Some(rest) => !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()),
                None => !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
            };
            if !valid || id.len() > 20 {
                return Err(AddressError::Telegram(raw.to_string()));
            }
            Ok(Destination {
                channel,
                identity: format!("telegram:{id}"),
                address: id.to_string(),
            })
        }
    }
}

/// Whether `s` has the shape of a normalized E.164 number (`+`, 8 to 15 digits, no leading
/// zero). Not a validity check: for numbers weft normalized itself.
pub fn is_e164_shape(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Normalizes a phone number to E.164, refusing anything `phonenumber` deems invalid.
pub fn e164(number: &str) -> Result<String, AddressError> {
    let err = || AddressError::Phone(number.to_string());
    if !number.starts_with('+') || number.len() > 20 {
        return Err(err());
    }
    if let Some(known) = VERDICTS.get(number) {
        return known.ok_or_else(err);
    }
    let verdict = phonenumber::parse(None, number)
        .ok()
        .filter(phonenumber::is_valid)
        .map(|p| p.format().mode(phonenumber::Mode::E164).to_string());
    VERDICTS.put(number, verdict.as_deref());
    verdict.ok_or_else(err)
}

/// The verdicts on the last [`VERDICTS_KEPT`] numbers checked. `phonenumber` spends ~100 k
/// instructions on one number (~10 % of weft's work for a message, most of it finding the
/// same compiled patterns again); the metadata it checks against is fixed for the life of
/// the process, so a verdict never goes stale. A2P traffic goes back to the same customers:
/// a number's next message then costs one lookup. Bounded, so a flood of distinct numbers
/// only turns the cache over.
static VERDICTS: Verdicts = Verdicts(LazyLock::new(|| Mutex::new(LruCache::new(VERDICTS_KEPT))));

const VERDICTS_KEPT: usize = 16_384;

/// Number as given → its E.164 form, or `None` for an invalid number.
type VerdictCache = LruCache<Box<str>, Option<Box<str>>>;

struct Verdicts(LazyLock<Mutex<VerdictCache>>);

impl Verdicts {
    /// `Some(Some(e164))` for a valid number seen before, `Some(None)` for an invalid one.
    fn get(&self, number: &str) -> Option<Option<String>> {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(number).map(|v| v.as_deref().map(String::from))
    }

    fn put(&self, number: &str, e164: Option<&str>) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache.insert(number.into(), e164.map(Into::into));
    }
}

/// Loads the phone number metadata (~0.6 G instructions), which the library otherwise does
/// inside the first validation, i.e. in the first request that sends to a number. The
/// library loads it once per process; later calls cost one parse.
pub fn warm_up() {
    let _ = phonenumber::parse(None, "+14155550100");
}

/// A pragmatic e-mail check (one `@`, a dotted domain, no spaces), lower-cased.
pub fn email(addr: &str) -> Result<String, AddressError> {
    let err = || AddressError::Email(addr.to_string());
    let (local, domain) = addr.rsplit_once('@').ok_or_else(err)?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !addr
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && !local.contains('@');
    if ok {
        Ok(addr.to_lowercase())
    } else {
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_shape_is_plus_and_digits_only() {
        assert!(is_e164_shape("+4915112345678"));
        assert!(is_e164_shape("+12025550123"));
        for bad in [
            "4915112345678",
            "+0151123456",
            "+1202",
            "+1 202 555 0123",
            "+12025550123x",
            "whatsapp:+12025550123",
            "+1234567890123456",
        ] {
            assert!(!is_e164_shape(bad), "{bad}");
        }
    }

    #[test]
    fn phones_normalize_to_e164() {
        let d = parse(Channel::Sms, "+1 415 555 0100").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.address, "+14155550100");
        assert_eq!(d.identity, "tel:+14155550100");
        assert!(parse(Channel::Sms, "+1").is_err());
        assert!(parse(Channel::Sms, "not a number").is_err());
        assert!(parse(Channel::Sms, "04155550100").is_err());
        assert!(parse(Channel::Sms, "whatsapp:+14155550100").is_err());
        let w =
            parse(Channel::Whatsapp, "whatsapp:+4915112345678").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.identity, "tel:+4915112345678");
    }

    /// A second look at a number answers from the cache, the same as the first.
    #[test]
    fn verdicts_are_remembered_as_given() {
        for (number, want) in [
            ("+44 20 7946 0958", Some("+442079460958")),
            ("+1202", None),
            ("+999123456789", None),
        ] {
            let first = e164(number).ok();
            assert_eq!(first.as_deref(), want, "{number}");
            assert_eq!(VERDICTS.get(number), Some(want.map(String::from)));
            assert_eq!(e164(number).ok(), first, "{number}");
        }
        assert_eq!(
            e164("+1202"),
            Err(AddressError::Phone("+1202".into())),
            "a remembered refusal names the number"
        );
    }

    #[test]
    fn channels_infer_from_to() {
        assert_eq!(infer_channel("+14155550100"), Ok(Channel::Sms));
        assert_eq!(
            infer_channel("whatsapp:+14155550100"),
            Ok(Channel::Whatsapp)
        );
        assert_eq!(infer_channel("telegram:12345"), Ok(Channel::Telegram));
        assert_eq!(infer_channel("A@B.example"), Ok(Channel::Email));
        assert!(infer_channel("hello").is_err());
    }

    #[test]
    fn emails_and_telegram() {
        assert_eq!(
            parse(Channel::Email, "Jo@Example.COM").map(|d| d.identity),
            Ok("mailto:jo@example.com".into())
        );
        assert!(parse(Channel::Email, "jo@localhost").is_err());
        assert!(parse(Channel::Email, "a b@x.io").is_err());
        assert_eq!(
            parse(Channel::Telegram, "telegram:-100123").map(|d| d.address),
            Ok("-100123".into())
        );
        assert!(parse(Channel::Telegram, "telegram:abc").is_err());
    }
}
