//! Just enough of the Prometheus text exposition format to read weft's counters.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",…} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample in `text`; comments, blank and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` (after the `{`); returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[close + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        }
    }
}

/// Sum of `name` over every label set whose labels include all of `filter`.
pub fn sum(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| filter.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

/// Whether any sample is called `name`.
pub fn has(samples: &[Sample], name: &str) -> bool {
    samples.iter().any(|s| s.name == name)
}

/// `name` summed per value of `label` (e.g. message_status_total per status).
pub fn sum_by(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        if let Some(v) = s.label(label) {
            *out.entry(v.to_string()).or_insert(0.0) += s.value;
        }
    }
    out
}

/// The counter that says a message reached a status.
pub const STATUS_METRIC: &str = "weft_message_status_total";
/// The outbox gauge (optional; used to tell that weft is idle).
pub const OUTBOX_DEPTH: &str = "weft_outbox_depth";

/// Statuses that end a message without delivery.
pub const FAILED_STATUSES: &[&str] = &["rejected", "failed", "undeliverable", "expired"];

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP weft_message_status_total Messages reaching each status.
# TYPE weft_message_status_total counter
weft_message_status_total{channel="sms",status="accepted"} 50000
weft_message_status_total{channel="sms",status="delivered"} 41234
weft_message_status_total{status="delivered",channel="whatsapp"} 10
weft_message_status_total{channel="sms",status="failed"} 3 1712345678000
weft_message_status_total{channel="email", status="delivered"} 1.5e1

# TYPE weft_outbox_depth gauge
weft_outbox_depth 17
weft_http_request_duration_seconds_bucket{path="/v1/messages",le="+Inf"} 99
weft_odd{detail="a \"quoted\", comma} and \\ slash",status="delivered"} 1000
weft_dispatch_duration_seconds{quantile="0.99"} NaN
garbage line without value
{status="delivered"} 5
"#;

    #[test]
    fn parses_samples() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 9);
        assert_eq!(s[0].name, "weft_message_status_total");
        assert_eq!(s[0].label("status"), Some("accepted"));
        assert_eq!(s[0].value, 50000.0);
        assert_eq!(s[5].name, "weft_outbox_depth");
        assert!(s[5].labels.is_empty());
        assert_eq!(s[6].value, 99.0);
        assert_eq!(s[6].label("le"), Some("+Inf"));
        assert_eq!(
            s[7].label("detail"),
            Some("a \"quoted\", comma} and \\ slash")
        );
        assert!(s[8].value.is_nan());
    }

    #[test]
    fn sums_delivered_over_labels() {
        let s = parse(TEXT);
        assert_eq!(
            sum(&s, STATUS_METRIC, &[("status", "delivered")]),
            41234.0 + 10.0 + 15.0
        );
        assert_eq!(sum(&s, STATUS_METRIC, &[("status", "failed")]), 3.0);
        assert_eq!(sum(&s, STATUS_METRIC, &[("status", "read")]), 0.0);
        assert_eq!(sum(&s, OUTBOX_DEPTH, &[]), 17.0);
        assert!(has(&s, OUTBOX_DEPTH));
        assert!(!has(&s, "weft_nothing"));
        let by = sum_by(&s, STATUS_METRIC, "status");
        assert_eq!(by.get("delivered"), Some(&41259.0));
        assert_eq!(by.get("accepted"), Some(&50000.0));
        assert_eq!(by.len(), 3);
    }

    #[test]
    fn empty_and_junk() {
        assert!(parse("").is_empty());
        assert!(parse("# only a comment\n\n").is_empty());
        assert!(parse("x{a=\"unterminated} 1").is_empty());
        assert_eq!(parse("x 1\r\ny 2\r\n").len(), 2);
    }
}
