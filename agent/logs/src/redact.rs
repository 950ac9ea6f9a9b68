//! Removing secrets from log text before it leaves the node.

use regex::Regex;
use std::sync::OnceLock;

/// Maximum length of a record sample, in bytes.
pub const MAX_SAMPLE_BYTES: usize = 512;

fn rules() -> &'static [(Regex, &'static str)] {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let rule = |pattern: &str, replacement| {
            (Regex::new(pattern).expect("redaction pattern compiles"), replacement)
        };
        vec![
            // user:password@ in transport and database URLs (rabbit://, mysql+pymysql://).
            rule(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", "${keep}***@"),
            rule(
                r"(?i)(?P<keep>x-(?:auth|subject|service)-token['\x22]?\s*[:=]\s*['\x22]?)[^\s'\x22,}]+",
                "${keep}***",
            ),
            rule(
                r"(?i)(?P<keep>\b[\w.-]*(?:password|passwd|secret|token|api_key)['\x22]?\s*[:=]\s*['\x22]?)[^\s'\x22,}&]+",
                "${keep}***",
            ),
            // Fernet tokens, in case one appears without a key name.
            rule(r"gAAAAA[A-Za-z0-9_-]{40,}={0,2}", "***"),
        ]
    })
}

/// Returns `text` with secrets replaced by `***`, cut to [`MAX_SAMPLE_BYTES`]
/// at a character boundary.
pub fn redact_sample(text: &str) -> String {
    // Redact before cutting, so a secret split by the cut is still recognised.
    let mut redacted = redact(text);
    if redacted.len() > MAX_SAMPLE_BYTES {
        let mut cut = MAX_SAMPLE_BYTES;
        while !redacted.is_char_boundary(cut) {
            cut -= 1;
        }
        redacted.truncate(cut);
    }
    redacted
}

/// Returns `text` with secrets replaced by `***`, whole.
pub fn redact(text: &str) -> String {
    let mut redacted = text.to_string();
    for (pattern, replacement) in rules() {
        if pattern.is_match(&redacted) {
            redacted = pattern.replace_all(&redacted, *replacement).into_owned();
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_url_passwords() {
        let out = redact_sample("transport_url=rabbit://nova:S3cret@192.0.2.5:5672/ and mysql+pymysql://nova:pw2@db/nova");
        assert!(!out.contains("S3cret"), "{out}");
        assert!(!out.contains("pw2"), "{out}");
        assert!(out.contains("rabbit://nova:***@192.0.2.5"), "{out}");
    }

    #[test]
    fn redact_hides_password_fields_and_tokens() {
        let out = redact_sample(
            "auth password=hunter2 X-Auth-Token: gAAAAAB1234 {'admin_password': 'p4ss'}",
        );
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("gAAAAAB1234"), "{out}");
        assert!(!out.contains("p4ss"), "{out}");
    }

    #[test]
    fn redact_cuts_at_char_boundary() {
        let long = "é".repeat(600);
        let out = redact_sample(&long);
        assert!(out.len() <= MAX_SAMPLE_BYTES);
        assert!(out.chars().all(|c| c == 'é'));
    }
}
