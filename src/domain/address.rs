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
    checkable(number)
        .and_then(|n| VERDICTS.of(n).e164)
        .map(String::from)
        .ok_or_else(|| AddressError::Phone(number.to_string()))
}

/// The ISO 3166 country (`DE`) `phonenumber` places a `+` number in, valid or not.
pub fn country(number: &str) -> Option<String> {
    checkable(number)
        .and_then(|n| VERDICTS.country(n))
        .map(String::from)
}

/// `number` if it is worth asking `phonenumber` (and the cache) about: a `+`, and short.
fn checkable(number: &str) -> Option<&str> {
    (number.starts_with('+') && number.len() <= 20).then_some(number)
}

/// What `phonenumber` says of one number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    /// The E.164 form of a valid number.
    e164: Option<Box<str>>,
    /// Its country (also for a number that parses but is not valid), once asked for:
    /// working it out means matching the number against each region of its calling code
    /// (~20 k instructions for a `+1` number), which only routes with a `country` rule need.
    country: Option<Option<Box<str>>>,
}

impl Verdict {
    /// The E.164 form of a parsed number, if it is valid.
    fn e164_of(parsed: Option<&phonenumber::PhoneNumber>) -> Option<Box<str>> {
        parsed
            .filter(|p| phonenumber::is_valid(p))
            .map(|p| p.format().mode(phonenumber::Mode::E164).to_string().into())
    }

    fn country_of(parsed: Option<&phonenumber::PhoneNumber>) -> Option<Box<str>> {
        parsed?.country().id().map(|id| format!("{id:?}").into())
    }
}

/// The verdicts on the last [`VERDICTS_KEPT`] numbers checked. `phonenumber` spends ~100 k
/// instructions on one number (~10 % of weft's work for a message, most of it finding the
/// same compiled patterns again), and a route with a `country` rule asked it again on
/// every send; the metadata it checks against is fixed for the life of the process, so a
/// verdict never goes stale. A2P traffic goes back to the same customers: a number's next
/// message then costs one lookup. Bounded, so a flood of distinct numbers only turns the
/// cache over.
static VERDICTS: Verdicts = Verdicts(LazyLock::new(|| Mutex::new(LruCache::new(VERDICTS_KEPT))));

const VERDICTS_KEPT: usize = 16_384;

/// Number as given → its verdict.
struct Verdicts(LazyLock<Mutex<LruCache<Box<str>, Verdict>>>);

impl Verdicts {
    /// The remembered verdict on `number`, else `phonenumber`'s (then remembered). The lock
    /// is not held while `phonenumber` works: two threads may both check a new number.
    fn of(&self, number: &str) -> Verdict {
        if let Some(known) = self.lock().get(number) {
            return known.clone();
        }
        let parsed = phonenumber::parse(None, number).ok();
        let verdict = Verdict {
            e164: Verdict::e164_of(parsed.as_ref()),
            country: None,
        };
        self.lock().insert(number.into(), verdict.clone());
        verdict
    }

    /// The number's country, worked out once (with its verdict, if not known yet, from the
    /// same parse) and kept with the verdict.
    fn country(&self, number: &str) -> Option<Box<str>> {
        let known = self.lock().get(number).cloned();
        if let Some(Verdict {
            country: Some(country),
            ..
        }) = known
        {
            return country;
        }
        let parsed = phonenumber::parse(None, number).ok();
        let country = Verdict::country_of(parsed.as_ref());
        let e164 = match known {
            Some(v) => v.e164,
            None => Verdict::e164_of(parsed.as_ref()),
        };
        self.lock().insert(
            number.into(),
            Verdict {
                e164,
                country: Some(country.clone()),
            },
        );
        country
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Box<str>, Verdict>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
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
        for (number, want, land) in [
            ("+44 20 7946 0958", Some("+442079460958"), Some("GB")),
            ("+1202", None, None),
            ("+999123456789", None, None),
            ("+4915112345678", Some("+4915112345678"), Some("DE")),
        ] {
            let first = e164(number).ok();
            assert_eq!(first.as_deref(), want, "{number}");
            assert_eq!(country(number).as_deref(), land, "{number}");
            let kept = VERDICTS.lock().get(number).cloned();
            assert_eq!(
                kept.as_ref().and_then(|v| v.e164.as_deref()),
                want,
                "{number}"
            );
            assert_eq!(
                kept.and_then(|v| v.country).map(|c| c.map(String::from)),
                Some(land.map(String::from)),
                "{number}: the country is kept"
            );
            assert_eq!(e164(number).ok(), first, "{number}");
            assert_eq!(country(number).as_deref(), land, "{number}");
        }
        assert_eq!(
            e164("+1202"),
            Err(AddressError::Phone("+1202".into())),
            "a remembered refusal names the number"
        );
        assert_eq!(country("4915112345678"), None, "no + no country");
        // Asked for its country first, a number's verdict comes from the same parse.
        assert_eq!(country("+33612345678").as_deref(), Some("FR"));
        let kept = VERDICTS.lock().get("+33612345678").cloned();
        assert_eq!(
            kept.and_then(|v| v.e164).as_deref(),
            Some("+33612345678"),
            "the verdict is kept with the country"
        );
        assert_eq!(e164("+33612345678").as_deref(), Ok("+33612345678"));
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
