//! SMS encoding and segment counting: GSM 03.38 7-bit (160 chars, 153 per part when
//! concatenated; extension characters count twice) or UCS-2 (70, 67 per part; characters
//! outside the BMP take two UTF-16 units).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

/// How a body goes over SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub count: u32,
}

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

fn gsm_units(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Detects the encoding and counts the parts of an SMS body.
pub fn count(body: &str) -> Segments {
    let gsm: Option<usize> = body.chars().map(gsm_units).sum();
    let (encoding, units, single, multi) = match gsm {
        Some(units) => (Encoding::Gsm7, units, 160, 153),
        None => (Encoding::Ucs2, body.encode_utf16().count(), 70, 67),
    };
    let count = if units <= single {
        1
    } else {
        units.div_ceil(multi)
    };
    Segments {
        encoding,
        units,
        count: u32::try_from(count).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_lengths() {
        assert_eq!(count("hello").count, 1);
        assert_eq!(count(&"a".repeat(160)).count, 1);
        assert_eq!(count(&"a".repeat(161)).count, 2);
        assert_eq!(count(&"a".repeat(306)).count, 2);
        assert_eq!(count(&"a".repeat(307)).count, 3);
        assert_eq!(count(&"€".repeat(80)).units, 160);
        assert_eq!(count(&"€".repeat(81)).count, 2);
        let u = count("héllo ☃");
        assert_eq!(u.encoding, Encoding::Ucs2);
        assert_eq!(count(&"☃".repeat(70)).count, 1);
        assert_eq!(count(&"☃".repeat(71)).count, 2);
        assert_eq!(count(&"😀".repeat(35)).count, 1);
        assert_eq!(count(&"😀".repeat(36)).count, 2);
        assert_eq!(count("").count, 1);
    }

    proptest! {
        #[test]
        fn gsm_bodies_count_by_septets(s in "[a-zA-Z0-9 .,!?@£$]{0,600}") {
            let seg = count(&s);
            prop_assert_eq!(seg.encoding, Encoding::Gsm7);
            let n = s.chars().count();
            let expect = if n <= 160 { 1 } else { n.div_ceil(153) };
            prop_assert_eq!(seg.count as usize, expect);
        }

        #[test]
        fn parts_always_hold_the_body(s in "\\PC{0,400}") {
            let seg = count(&s);
            let per = match seg.encoding { Encoding::Gsm7 => 153, Encoding::Ucs2 => 67 };
            let single = match seg.encoding { Encoding::Gsm7 => 160, Encoding::Ucs2 => 70 };
            prop_assert!(seg.count >= 1);
            if seg.count == 1 { prop_assert!(seg.units <= single); }
            else { prop_assert!(seg.units <= per * seg.count as usize && seg.units > per * (seg.count as usize - 1)); }
        }
    }
}
