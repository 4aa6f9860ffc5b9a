//! Small e-mail helpers: addresses (`Name <a@b>`), message ids with and without angle brackets.

/// One mailbox; `email` keeps its case (a `reply+<token>` local part may need it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub name: Option<String>,
    pub email: String,
}

/// A bare address: one `@`, non-empty local part and domain, no spaces or brackets.
pub fn valid_email(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && (domain.contains('.') || domain == "localhost")
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';' | '"'))
}

/// Every mailbox of an address list header (`"Jane" <Jane@X.com>, b@y.org`), groups flattened.
pub fn parse_address_list(s: &str) -> Vec<Address> {
    let Ok(list) = mailparse::addrparse(s) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for addr in list.iter() {
        let singles = match addr {
            mailparse::MailAddr::Single(one) => vec![one.clone()],
            mailparse::MailAddr::Group(g) => g.addrs.clone(),
        };
        for one in singles {
            let email = one.addr.trim().to_string();
            if valid_email(&email) {
                let name = one
                    .display_name
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty());
                out.push(Address { name, email });
            }
        }
    }
    out
}

/// The first mailbox of `s`, if it holds one.
pub fn parse_mailbox(s: &str) -> Option<Address> {
    parse_address_list(s).into_iter().next()
}

/// The bare address of the first mailbox of `s`; `s` itself when it holds none.
pub fn bare_address(s: &str) -> String {
    parse_mailbox(s)
        .map(|a| a.email)
        .unwrap_or_else(|| s.to_string())
}

/// `mailto:<lower-case bare address>` for the first mailbox of `s`.
pub fn mailto(s: &str) -> Option<String> {
    parse_mailbox(s).map(|a| format!("mailto:{}", a.email.to_lowercase()))
}

/// `<id>` -> `id` (surrounding whitespace removed too).
pub fn strip_brackets(id: &str) -> &str {
    let id = id.trim();
    id.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(id)
        .trim()
}

/// `id` -> `<id>`.
pub fn bracket(id: &str) -> String {
    format!("<{}>", strip_brackets(id))
}

/// Message ids of an `In-Reply-To` / `References` value, in order, without brackets. Ids in
/// `<…>` are taken as they are; a value without brackets is split on whitespace and commas.
pub fn msg_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.contains('<') {
        let mut rest = value;
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('>') else { break };
            let id = after[..end].trim();
            if !id.is_empty() {
                out.push(id.to_string());
            }
            rest = &after[end + 1..];
        }
    } else {
        out.extend(
            value
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    out
}

/// A `Message-ID` we can put in a header: `local@domain`, printable, no brackets or spaces.
pub fn valid_msg_id(id: &str) -> bool {
    let mut parts = id.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && !d.is_empty())
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\' | ','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes() {
        assert_eq!(
            mailto("\"Jane\" <Jane@X.com>").as_deref(),
            Some("mailto:jane@x.com")
        );
        assert_eq!(
            mailto("Jane <Jane@X.com>").as_deref(),
            Some("mailto:jane@x.com")
        );
        assert_eq!(
            mailto("bo@example.net").as_deref(),
            Some("mailto:bo@example.net")
        );
        assert_eq!(mailto("not an address"), None);
        assert_eq!(bare_address("Jane <Jane@X.com>"), "Jane@X.com");
        assert_eq!(bare_address("not an address"), "not an address");
        let list = parse_address_list("A <a@x.org>, b@y.org");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name.as_deref(), Some("A"));
        assert_eq!(list[1].email, "b@y.org");
        assert!(valid_email("a@b.co"));
        assert!(
            !valid_email("a@@b.co")
                && !valid_email("a b@c.d")
                && !valid_email("@b.c")
                && !valid_email("abc")
        );
    }

    #[test]
    fn message_ids() {
        assert_eq!(strip_brackets(" <a@b> "), "a@b");
        assert_eq!(bracket("a@b"), "<a@b>");
        assert_eq!(bracket("<a@b>"), "<a@b>");
        assert_eq!(msg_ids("<a@b>\r\n <c@d>"), vec!["a@b", "c@d"]);
        assert_eq!(msg_ids("a@b c@d"), vec!["a@b", "c@d"]);
        assert_eq!(msg_ids(""), Vec::<String>::new());
        assert!(valid_msg_id("msg_01@mail.example"));
        assert!(!valid_msg_id("no-at") && !valid_msg_id("a b@c") && !valid_msg_id("<a@b>"));
    }
}
