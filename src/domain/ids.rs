//! Prefixed, time-sortable ids (`msg_01J…`): a ULID behind a type prefix.

/// The kinds of id weft hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Message,
    Conversation,
    Contact,
    Identity,
    WebhookEndpoint,
    Event,
    Attempt,
    Tenant,
    ApiKey,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Message => "msg_",
            IdKind::Conversation => "conv_",
            IdKind::Contact => "ct_",
            IdKind::Identity => "idn_",
            IdKind::WebhookEndpoint => "wh_",
            IdKind::Event => "evt_",
            IdKind::Attempt => "att_",
            IdKind::Tenant => "tn_",
            IdKind::ApiKey => "key_",
        }
    }
}

/// A new id of the given kind.
pub fn new_id(kind: IdKind) -> String {
    format!("{}{}", kind.prefix(), ulid::Ulid::new())
}

/// True when `s` looks like an id of `kind` (prefix and a well-formed ULID).
pub fn is_id(kind: IdKind, s: &str) -> bool {
    s.strip_prefix(kind.prefix())
        .is_some_and(|rest| ulid::Ulid::from_string(rest).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_sortable() {
        let a = new_id(IdKind::Message);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(IdKind::Message);
        assert!(a.starts_with("msg_") && a < b);
        assert!(is_id(IdKind::Message, &a));
        assert!(!is_id(IdKind::Conversation, &a));
        assert!(!is_id(IdKind::Message, "msg_nope"));
    }
}
