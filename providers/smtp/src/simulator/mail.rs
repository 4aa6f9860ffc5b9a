//! What the sink keeps of a received mail, and just enough MIME to read it back: unfolded
//! headers with RFC 2047 encoded words decoded (UTF-8 and US-ASCII), and a single-part body
//! decoded from base64 or quoted-printable.

use base64::Engine as _;

/// One mail the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The queue id the sink answered with (`250 2.0.0 Ok: queued as <id>`).
    pub queue_id: String,
    /// The envelope sender (`MAIL FROM`), without brackets.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), without brackets.
    pub rcpt_to: Vec<String>,
    /// The user that authenticated on this session, if any (never the password).
    pub auth_user: Option<String>,
    /// The EHLO / HELO name the client gave.
    pub hello: Option<String>,
    /// The message data as received, dot-unstuffed, lines ending in CRLF.
    pub raw: String,
    /// Unfolded headers in order, values with encoded words decoded.
    pub headers: Vec<(String, String)>,
    /// The body, transfer encoding undone.
    pub body: String,
}

impl ReceivedMail {
    pub(crate) fn parse(raw: String) -> (Vec<(String, String)>, String) {
        let (head, body) = split_head(&raw);
        let headers = unfold(head);
        let encoding = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-transfer-encoding"))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let body = decode_body(body, &encoding);
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k, decode_words(&v)))
            .collect();
        (headers, body)
    }

    /// The first header of that name (case-insensitive), decoded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Message-ID` without angle brackets.
    pub fn message_id(&self) -> Option<&str> {
        self.header("message-id").map(strip_brackets)
    }

    pub fn subject(&self) -> Option<&str> {
        self.header("subject")
    }

    /// `X-Weft-Message-Id`: weft's message id.
    pub fn weft_message_id(&self) -> Option<&str> {
        self.header(crate::MESSAGE_ID_HEADER).map(str::trim)
    }
}

fn strip_brackets(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(v)
}

fn split_head(raw: &str) -> (&str, &str) {
    if let Some(i) = raw.find("\r\n\r\n") {
        (&raw[..i], &raw[i + 4..])
    } else if let Some(i) = raw.find("\n\n") {
        (&raw[..i], &raw[i + 2..])
    } else {
        (raw, "")
    }
}

fn unfold(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim_start().to_string()));
        }
    }
    out
}

fn decode_body(body: &str, encoding: &str) -> String {
    match encoding {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            match base64::engine::general_purpose::STANDARD.decode(compact) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => body.to_string(),
            }
        }
        "quoted-printable" => {
            match quoted_printable::decode(body, quoted_printable::ParseMode::Robust) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => body.to_string(),
            }
        }
        _ => body.to_string(),
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); whitespace between two
/// encoded words is dropped, as the RFC says. Other charsets stay as they are.
pub(crate) fn decode_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut pending_space = String::new();
    let mut last_was_word = false;
    for token in split_keep_space(value) {
        if token.chars().all(char::is_whitespace) {
            pending_space.push_str(token);
            continue;
        }
        match decode_word(token) {
            Some(decoded) => {
                if !last_was_word {
                    out.push_str(&pending_space);
                }
                out.push_str(&decoded);
                last_was_word = true;
            }
            None => {
                out.push_str(&pending_space);
                out.push_str(token);
                last_was_word = false;
            }
        }
        pending_space.clear();
    }
    out.push_str(&pending_space);
    out
}

fn split_keep_space(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_space = None;
    for (i, c) in s.char_indices() {
        let space = c.is_whitespace();
        if in_space.is_some_and(|was| was != space) {
            out.push(&s[start..i]);
            start = i;
        }
        in_space = Some(space);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let charset = parts.next()?.to_ascii_lowercase();
    let encoding = parts.next()?.to_ascii_lowercase();
    let text = parts.next()?;
    // RFC 2231 language suffix: utf-8*en
    let charset = charset.split('*').next().unwrap_or_default();
    if !matches!(charset, "utf-8" | "us-ascii") {
        return None;
    }
    let bytes = match encoding.as_str() {
        "b" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
        "q" => {
            let text = text.replace('_', " ");
            quoted_printable::decode(text, quoted_printable::ParseMode::Robust).ok()?
        }
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_decode() {
        assert_eq!(decode_words("=?utf-8?b?R3LDvMOfZQ==?="), "Grüße");
        assert_eq!(decode_words("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_du?="), "Grüße du");
        assert_eq!(
            decode_words("=?utf-8?b?R3LDvA==?= =?utf-8?b?w59l?="),
            "Grüße"
        );
        assert_eq!(
            decode_words("plain =?utf-8?q?=C3=A9t=C3=A9?= text"),
            "plain été text"
        );
        assert_eq!(
            decode_words("=?iso-8859-1?q?caf=E9?="),
            "=?iso-8859-1?q?caf=E9?="
        );
        assert_eq!(decode_words("no words here"), "no words here");
    }

    #[test]
    fn headers_unfold_and_bodies_decode() {
        let raw = "Subject: a\r\n b\r\nContent-Transfer-Encoding: base64\r\nMessage-ID: <x@y>\r\n\r\nw7xiZXI=\r\n";
        let (headers, body) = ReceivedMail::parse(raw.to_string());
        assert_eq!(headers[0], ("Subject".to_string(), "a b".to_string()));
        assert_eq!(body, "über");
        let qp = "Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=BCber l=\r\nang";
        assert_eq!(ReceivedMail::parse(qp.to_string()).1, "über lang");
    }
}
