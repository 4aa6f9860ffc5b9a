//! Logging: JSON in production, pretty for people; built apart from installation so tests
//! stay quiet unless `TEST_LOG` is set.

use crate::config::LogConfig;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(cfg: &LogConfig) {
    REDACT.store(cfg.redact, std::sync::atomic::Ordering::Relaxed);
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if cfg.format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

static REDACT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Masks a phone number or address for logs (`+4477•••••123`, `j•••@example.com`) unless
/// `log.redact = false`.
pub fn redact(value: &str) -> String {
    if !REDACT.load(std::sync::atomic::Ordering::Relaxed) {
        return value.to_string();
    }
    mask(value)
}

fn mask(value: &str) -> String {
    if let Some((local, domain)) = value.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}•••@{domain}");
    }
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 6 {
        return "•••".into();
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}•••••{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_middle() {
        assert_eq!(mask("+447700900123"), "+4477•••••123");
        assert_eq!(mask("jo@example.com"), "j•••@example.com");
        assert_eq!(mask("123"), "•••");
    }
}
