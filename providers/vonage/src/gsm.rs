//! GSM-7 detection and SMS part splitting: decides `type=unicode` on send, and lets the
//! simulator cut a long text into parts (153 septets / 67 UCS-2 units each) as a carrier does.

/// The GSM 03.38 default alphabet (one septet each).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table (an escape plus one septet: two each).
const EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// How a text travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 160 septets in one part, 153 per part when concatenated.
    Gsm7,
    /// 70 UTF-16 units in one part, 67 per part when concatenated.
    Ucs2,
}

/// Septets a character takes in GSM-7, or `None` if it has no GSM-7 form.
pub fn septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// GSM-7 when every character has a GSM-7 form, else UCS-2.
pub fn encoding(text: &str) -> Encoding {
    if text.chars().all(|c| septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The units a character takes in `enc` (septets, or UTF-16 code units).
fn units(c: char, enc: Encoding) -> usize {
    match enc {
        Encoding::Gsm7 => septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// Cuts `text` into the parts a carrier would send, never splitting an escape or a surrogate
/// pair. An empty text is one empty part.
pub fn split_parts(text: &str, enc: Encoding) -> Vec<String> {
    let (single, per_part) = match enc {
        Encoding::Gsm7 => (160, 153),
        Encoding::Ucs2 => (70, 67),
    };
    let total: usize = text.chars().map(|c| units(c, enc)).sum();
    if total <= single {
        return vec![text.to_string()];
    }
    let mut parts = Vec::new();
    let (mut cur, mut used) = (String::new(), 0);
    for c in text.chars() {
        let u = units(c, enc);
        if used + u > per_part {
            parts.push(std::mem::take(&mut cur));
            used = 0;
        }
        cur.push(c);
        used += u;
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_encodings() {
        assert_eq!(encoding("Hello, world! 1+1=2 @ £5"), Encoding::Gsm7);
        assert_eq!(encoding("Price: 5€ [promo]"), Encoding::Gsm7);
        assert_eq!(encoding("Grüße"), Encoding::Gsm7);
        assert_eq!(encoding("Cześć"), Encoding::Ucs2);
        assert_eq!(encoding("danke — bis bald"), Encoding::Ucs2);
        assert_eq!(encoding("🙂"), Encoding::Ucs2);
        assert_eq!(encoding("Ça va"), Encoding::Gsm7);
    }

    #[test]
    fn splits_like_a_carrier() {
        assert_eq!(split_parts(&"a".repeat(160), Encoding::Gsm7).len(), 1);
        let parts = split_parts(&"a".repeat(161), Encoding::Gsm7);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![153, 8]
        );
        assert_eq!(split_parts(&"€".repeat(80), Encoding::Gsm7).len(), 1);
        assert_eq!(split_parts(&"€".repeat(81), Encoding::Gsm7).len(), 2);
        assert_eq!(split_parts(&"ж".repeat(70), Encoding::Ucs2).len(), 1);
        let parts = split_parts(&"ж".repeat(140), Encoding::Ucs2);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![67, 67, 6]
        );
        // Surrogate pairs stay whole: 34 emoji = 68 units > 67 per part.
        let parts = split_parts(&"🙂".repeat(40), Encoding::Ucs2);
        assert!(parts.iter().all(|p| p.encode_utf16().count() <= 67));
        assert_eq!(parts.concat(), "🙂".repeat(40));
    }
}
