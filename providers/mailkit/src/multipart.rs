//! A small `multipart/form-data` reader (RFC 7578) over bytes already in memory, and a writer
//! for the simulators. Webhook bodies arrive whole, so no streaming parser is needed.

use memchr::memmem;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

impl Part {
    /// The part's bytes as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let essence = params.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 200).then(|| v.to_string())
    })
}

/// A header parameter (`name="x"`) of a `Content-Disposition` value.
fn param(value: &str, key: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits `body` into parts. Errors name what is wrong; a body without a closing delimiter
/// keeps the parts read so far only if at least one was complete.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let Some(first) = memmem::find(body, delim.as_bytes()) else {
        return Err("no multipart boundary in the body".into());
    };
    let mut pos = first + delim.len();
    let mut parts = Vec::new();
    // Each turn consumes at least one delimiter, so this ends.
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let line_end = memmem::find(rest, b"\n").ok_or("a delimiter line has no end")?;
        pos += line_end + 1;
        let rest = &body[pos..];
        let (head_len, sep_len) = match memmem::find(rest, b"\r\n\r\n") {
            Some(i) => (i, 4),
            None if rest.starts_with(b"\r\n") => (0, 2),
            None => return Err("a part has no header end".into()),
        };
        let head = String::from_utf8_lossy(&rest[..head_len]).into_owned();
        let data_start = pos + head_len + sep_len;
        let Some(len) = memmem::find(&body[data_start..], next_delim.as_bytes()) else {
            return if parts.is_empty() {
                Err("the body has no closing boundary".into())
            } else {
                Ok(parts)
            };
        };
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body[data_start..data_start + len].to_vec(),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                part.name = param(v, "name").unwrap_or_default();
                part.filename = param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_string());
            }
        }
        parts.push(part);
        pos = data_start + len + next_delim.len();
    }
}

/// The text fields of a form, in order, repeats kept (file parts left out).
pub fn text_fields(parts: &[Part]) -> Vec<(String, String)> {
    parts
        .iter()
        .filter(|p| p.filename.is_none())
        .map(|p| (p.name.clone(), p.text()))
        .collect()
}

/// Encodes text fields as `multipart/form-data`; returns `(content type, body)`.
pub fn encode(fields: &[(String, String)], boundary: &str) -> (String, Vec<u8>) {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n")
                .as_bytes(),
        );
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\nJane <jane@x.com>\r\n--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nline 1\r\nline 2\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile\r\n--XyZ--\r\n";

    #[test]
    fn reads_fields_and_files() {
        assert_eq!(
            boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        let parts = match parse(BODY.as_bytes(), "XyZ") {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[1].text(), "line 1\r\nline 2\r\n");
        assert_eq!(parts[2].text(), "");
        assert_eq!(parts[3].filename.as_deref(), Some("a.txt"));
        assert_eq!(parts[3].content_type.as_deref(), Some("text/plain"));
        let fields = text_fields(&parts);
        assert_eq!(
            fields[0],
            ("from".to_string(), "Jane <jane@x.com>".to_string())
        );
        assert_eq!(fields.len(), 3);
    }

    #[test]
    fn broken_bodies_fail_or_stop() {
        assert!(parse(b"no boundary here", "XyZ").is_err());
        assert!(parse(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
            "XyZ"
        )
        .is_err());
        assert!(parse(b"--XyZ", "XyZ").is_err());
        assert_eq!(parse(b"--XyZ--\r\n", "XyZ"), Ok(vec![]));
    }

    #[test]
    fn round_trip() {
        let fields = vec![
            ("a".to_string(), "1\r\n2".to_string()),
            ("b".to_string(), String::new()),
        ];
        let (ct, body) = encode(&fields, "bnd");
        let b = boundary(&ct).unwrap_or_default();
        let parts = parse(&body, &b).unwrap_or_default();
        assert_eq!(text_fields(&parts), fields);
    }
}
