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

/// A new id of the given kind. Ids made by one process strictly increase (a monotonic ULID
/// generator), so two made in the same millisecond — an inbound message and its auto-reply —
/// still sort in the order they were made (timelines and cursors order by id).
pub fn new_id(kind: IdKind) -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let id = match GENERATOR.lock().ok().and_then(|mut g| g.generate().ok()) {
        Some(id) => id,
        // A poisoned lock or an exhausted millisecond: a plain random ULID.
        None => ulid::Ulid::new(),
    };
    format!("{}{}", kind.prefix(), id)
}

/// The smallest id of `kind` made at `ms` (Unix milliseconds): every id made before then
/// sorts below it, every id made at or after it sorts at or above it. Lets time ranges of
/// rows keyed by such ids be found through their primary key.
pub fn floor_id(kind: IdKind, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    format!("{}{}", kind.prefix(), ulid::Ulid::from_parts(ms, 0))
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

    #[test]
    fn floor_ids_split_ids_by_time() {
        let before = crate::domain::now_ms();
        let id = new_id(IdKind::Event);
        let after = crate::domain::now_ms() + 1;
        assert!(floor_id(IdKind::Event, before) <= id);
        assert!(id < floor_id(IdKind::Event, after));
        assert_eq!(floor_id(IdKind::Event, -5), floor_id(IdKind::Event, 0));
    }

    #[test]
    fn ids_made_in_one_millisecond_keep_their_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id(IdKind::Message)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
