//! Closed sets used on the wire and as metric labels.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Voice,
    Whatsapp,
    Telegram,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Sms,
        Channel::Voice,
        Channel::Whatsapp,
        Channel::Telegram,
        Channel::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Voice => "voice",
            Channel::Whatsapp => "whatsapp",
            Channel::Telegram => "telegram",
            Channel::Email => "email",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown channel {s:?}; expected one of sms, voice, whatsapp, telegram, email"
                )
            })
    }
}

/// A provider; one adapter crate each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Twilio,
    Vonage,
    Sendgrid,
    Mailgun,
    WhatsappCloud,
    Telegram,
    Smtp,
    Sandbox,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 8] = [
        ProviderKind::Twilio,
        ProviderKind::Vonage,
        ProviderKind::Sendgrid,
        ProviderKind::Mailgun,
        ProviderKind::WhatsappCloud,
        ProviderKind::Telegram,
        ProviderKind::Smtp,
        ProviderKind::Sandbox,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Twilio => "twilio",
            ProviderKind::Vonage => "vonage",
            ProviderKind::Sendgrid => "sendgrid",
            ProviderKind::Mailgun => "mailgun",
            ProviderKind::WhatsappCloud => "whatsapp_cloud",
            ProviderKind::Telegram => "telegram",
            ProviderKind::Smtp => "smtp",
            ProviderKind::Sandbox => "sandbox",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown provider {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>(), Ok(c));
        }
        for p in ProviderKind::ALL {
            assert_eq!(p.as_str().parse::<ProviderKind>(), Ok(p));
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
