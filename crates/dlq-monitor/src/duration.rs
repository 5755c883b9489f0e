//! Durations as people write them in configs and flags: `15s`, `5m`,
//! `1h30m`, `7d`, `500ms`.

use std::time::Duration;

/// Units, longest name first so that `ms` is not read as `m` then `s`.
const UNITS: [(&str, u64); 6] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

/// Parses a duration: one or more `<integer><unit>` parts, units `ms`,
/// `s`, `m`, `h`, `d`, `w` (`1h30m`, `15s`). `0` alone is zero. The error
/// says what is wrong in words a user can act on.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("a duration is empty; write e.g. \"15s\", \"5m\", \"2h\" or \"7d\"".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.starts_with('-') {
        return Err(format!(
            "duration {text:?} is negative; durations are 0 or more"
        ));
    }
    let mut ms: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {rest:?}; write e.g. \"15s\", \"5m\", \"1h30m\""
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {text:?} is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: {n} has no unit; add one of ms, s, m, h, d, w (e.g. \"{n}s\")"
            ));
        }
        let Some(&(_, factor)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?}; use ms, s, m, h, d or w (e.g. \"15s\")"
            ));
        };
        ms = n
            .checked_mul(factor)
            .and_then(|v| ms.checked_add(v))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way [`parse_duration`] reads it, largest units
/// first, days at most (`1h30m`, `15s`, `250ms`, `14d`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, factor) in UNITS.iter().rev().filter(|(u, _)| *u != "w") {
        if ms >= *factor {
            out.push_str(&format!("{}{unit}", ms / factor));
            ms %= factor;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_and_compound_durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_what_to_write() {
        let e = parse_duration("15x").unwrap_err();
        assert!(e.contains("unknown unit \"x\""), "{e}");
        let e = parse_duration("15").unwrap_err();
        assert!(e.contains("has no unit"), "{e}");
        let e = parse_duration("-5s").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("9999999999999999w").is_err(), "overflow");
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["15s", "1h30m", "250ms", "7d", "9d3h4m5s6ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(parse_duration("2w").unwrap()), "14d");
    }
}
