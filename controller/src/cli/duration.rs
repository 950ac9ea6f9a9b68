//! The one format of every duration flag: bare seconds (`90`) or a number
//! with one unit, `s`, `m`, `h` or `d` (`30s`, `5m`, `2h`, `1d`).

use std::time::Duration;

/// The accepted format, as help texts and errors describe it.
pub const FORMAT_HELP: &str = "seconds (90) or a number with s, m, h or d (30s, 5m, 2h, 1d)";

/// Parses a duration flag of at least one second.
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let invalid = || format!("{text:?} is not a duration: write {FORMAT_HELP}");
    if number.is_empty() {
        return Err(invalid());
    }
    let factor: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(factor))
        .ok_or_else(|| format!("{text:?} is too long for a duration"))?;
    if seconds == 0 {
        return Err(format!("{text:?} is zero; a duration is at least 1s"));
    }
    Ok(Duration::from_secs(seconds))
}

/// Parses a duration flag and rejects one above `max`, naming both.
pub fn parse_at_most(text: &str, max: Duration, what: &str) -> Result<Duration, String> {
    let duration = parse(text)?;
    if duration > max {
        return Err(format!(
            "{text:?} is longer than the maximum {what} of {}",
            format(max)
        ));
    }
    Ok(duration)
}

/// Formats whole seconds in the largest unit that divides them, the way
/// [`parse`] reads them back: `365d`, `2h`, `90s`.
pub fn format(duration: Duration) -> String {
    let seconds = duration.as_secs();
    for (unit, factor) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= factor && seconds.is_multiple_of(factor) {
            return format!("{}{unit}", seconds / factor);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_seconds_and_units_parse() {
        let cases = [
            ("90", 90),
            ("30s", 30),
            ("5m", 300),
            ("2h", 7_200),
            ("1d", 86_400),
            (" 45 ", 45),
        ];
        for (text, seconds) in cases {
            assert_eq!(parse(text), Ok(Duration::from_secs(seconds)), "{text:?}");
        }
    }

    #[test]
    fn invalid_durations_name_the_value() {
        for text in ["", "m", "5x", "1.5h", "-3s", "3 m", "1h30m", "h5"] {
            let message = parse(text).expect_err(text);
            assert!(message.contains(&format!("{text:?}")), "{message}");
            assert!(message.contains("30s, 5m, 2h, 1d"), "{message}");
        }
        let zero = parse("0s").unwrap_err();
        assert!(zero.contains("at least 1s"), "{zero}");
        let huge = parse("99999999999999999999d").unwrap_err();
        assert!(huge.contains("too long"), "{huge}");
        let overflow = parse("300000000000000000d").unwrap_err();
        assert!(overflow.contains("too long"), "{overflow}");
    }

    #[test]
    fn maximum_is_checked_and_named() {
        let year = Duration::from_secs(365 * 86_400);
        assert_eq!(parse_at_most("365d", year, "silence"), Ok(year));
        let message = parse_at_most("3000000d", year, "silence").unwrap_err();
        assert_eq!(
            message,
            "\"3000000d\" is longer than the maximum silence of 365d"
        );
    }

    #[test]
    fn format_reads_back() {
        for seconds in [1, 59, 60, 90, 3_600, 5_400, 86_400, 365 * 86_400] {
            let duration = Duration::from_secs(seconds);
            assert_eq!(parse(&format(duration)), Ok(duration), "{seconds}");
        }
        assert_eq!(format(Duration::from_secs(120)), "2m");
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }
}
