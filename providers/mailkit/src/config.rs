//! The e-mail parts of a connection spec, read the same way by every e-mail adapter. Each
//! check adds its problems to the adapter's list, so every problem is reported at once.

use crate::email::{self, Address};
use weft_provider::{Channel, ConnectionSpec};

/// `settings.from`: the default sender (`Name <addr>` allowed), if set.
pub fn from_setting(spec: &ConnectionSpec, problems: &mut Vec<String>) -> Option<Address> {
    match spec.settings.get("from") {
        None => None,
        Some(serde_json::Value::String(s)) => {
            let a = email::parse_mailbox(s);
            if a.is_none() {
                problems.push("settings.from must be an e-mail address".to_string());
            }
            a
        }
        Some(_) => {
            problems.push("settings.from must be a string".to_string());
            None
        }
    }
}

/// Every one of `spec.senders` must be an e-mail address.
pub fn check_senders(spec: &ConnectionSpec, problems: &mut Vec<String>) {
    for s in &spec.senders {
        if email::parse_mailbox(s).is_none() {
            problems.push(format!("senders: {s:?} is not an e-mail address"));
        }
    }
}

/// `spec.channels` may hold only e-mail; `carrier` (`"sendgrid"`) names the adapter.
pub fn check_email_only(spec: &ConnectionSpec, carrier: &str, problems: &mut Vec<String>) {
    for c in &spec.channels {
        if *c != Channel::Email {
            problems.push(format!(
                "channels: {carrier} does not carry {c} (only email)"
            ));
        }
    }
}

/// The sender of a message that names none: `from` (the setting), else the first sender that
/// is a mailbox.
pub fn default_sender(from: Option<&Address>, senders: &[String]) -> Option<Address> {
    from.cloned()
        .or_else(|| senders.iter().find_map(|s| email::parse_mailbox(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::ProviderKind;

    #[test]
    fn email_settings() {
        let mut s = ConnectionSpec::new("x", ProviderKind::Sendgrid);
        let mut problems = Vec::new();
        assert_eq!(from_setting(&s, &mut problems), None);
        s.settings
            .insert("from".into(), serde_json::json!("Shop <news@shop.example>"));
        s.senders = vec!["+1555".into(), "b@shop.example".into()];
        s.channels = vec![Channel::Email, Channel::Sms];
        let from = from_setting(&s, &mut problems);
        assert_eq!(
            from.as_ref().map(|a| a.email.as_str()),
            Some("news@shop.example")
        );
        check_senders(&s, &mut problems);
        check_email_only(&s, "sendgrid", &mut problems);
        assert_eq!(
            problems,
            vec![
                "senders: \"+1555\" is not an e-mail address",
                "channels: sendgrid does not carry sms (only email)"
            ]
        );
        assert_eq!(default_sender(from.as_ref(), &s.senders), from);
        assert_eq!(
            default_sender(None, &s.senders).map(|a| a.email).as_deref(),
            Some("b@shop.example")
        );
        assert_eq!(default_sender(None, &[]), None);

        let mut problems = Vec::new();
        s.settings
            .insert("from".into(), serde_json::json!("nobody"));
        assert_eq!(from_setting(&s, &mut problems), None);
        s.settings.insert("from".into(), serde_json::json!(7));
        assert_eq!(from_setting(&s, &mut problems), None);
        assert_eq!(
            problems,
            vec![
                "settings.from must be an e-mail address",
                "settings.from must be a string"
            ]
        );
    }
}
