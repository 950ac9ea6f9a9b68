//! The controller's wall clock, in the Unix milliseconds the wire and the
//! store use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current time as Unix milliseconds; 0 if the clock is set
/// before 1970.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats an age in milliseconds the way operators read it: "3s ago",
/// "5m ago", "2h ago", "4d ago". A negative age (clock skew) is "just now".
pub fn format_age(age_ms: i64) -> String {
    if age_ms < 1_000 {
        return "just now".to_string();
    }
    let seconds = age_ms / 1_000;
    match seconds {
        0..=59 => format!("{seconds}s ago"),
        60..=3_599 => format!("{}m ago", seconds / 60),
        3_600..=86_399 => format!("{}h ago", seconds / 3_600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::format_age;

    #[test]
    fn age_units() {
        let cases = [
            (-5_000, "just now"),
            (999, "just now"),
            (3_000, "3s ago"),
            (59_999, "59s ago"),
            (60_000, "1m ago"),
            (3_599_000, "59m ago"),
            (7_200_000, "2h ago"),
            (4 * 86_400_000, "4d ago"),
        ];
        for (age_ms, expected) in cases {
            assert_eq!(format_age(age_ms), expected, "age {age_ms} ms");
        }
    }
}
