//! Human-readable durations ("30s", "1m30s", "250ms") and sizes ("64KiB", "8MiB") for the config file.
//!
//! `humantime` and `parse-size` parse them; the error messages are ours, worded for the config.

use std::time::Duration;

/// Parses a duration written as one or more `<number><unit>` groups, units `ms`, `s`, `m`, `h`, `d`
/// (and humantime's others: `min`, `hours`, `1.5s`, `2h 30min`, ...). A bare `0` is accepted as
/// zero; any other bare number is refused because its unit would be a guess.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    use humantime::DurationError as E;
    let s = text.trim();
    humantime::parse_duration(s).map_err(|e| match e {
        E::Empty => "empty duration".into(),
        E::NumberExpected(_) => format!("invalid duration {text:?}: expected a number"),
        E::NumberOverflow => format!("invalid duration {text:?}: number too large"),
        E::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("invalid duration {text:?}: missing unit (ms, s, m, h, d)")
        }
        E::UnknownUnit { unit, .. } => {
            format!("invalid duration {text:?}: unknown unit {unit:?}")
        }
        // A character no unit has: the unit is the run of non-digits around it.
        E::InvalidCharacter(at) => {
            let digit = |c: char| c.is_ascii_digit();
            let start = s[..at].rfind(digit).map_or(0, |i| i + 1);
            let end = s[at..].find(digit).map_or(s.len(), |i| at + i);
            format!(
                "invalid duration {text:?}: unknown unit {:?}",
                &s[start..end]
            )
        }
    })
}

/// Parses a byte size: a number with an optional unit `B`, `KB`/`MB`/`GB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB` (powers of 1024), case-insensitive (and parse-size's others: `TiB`,
/// `1.5MiB`, ...).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!("invalid size {text:?}: expected a number"));
    }
    parse_size::parse_size(s).map_err(|e| match e {
        parse_size::Error::PosOverflow if s[..digits].parse::<u64>().is_err() => {
            format!("invalid size {text:?}: number too large")
        }
        parse_size::Error::PosOverflow => format!("invalid size {text:?}: too large"),
        _ => format!(
            "invalid size {text:?}: unknown unit {:?}",
            s[digits..].trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            parse_duration("2h 30min").unwrap(),
            Duration::from_secs(9000)
        );
        let err = |t| parse_duration(t).unwrap_err();
        assert_eq!(
            err("30"),
            "invalid duration \"30\": missing unit (ms, s, m, h, d)"
        );
        assert_eq!(err("s"), "invalid duration \"s\": expected a number");
        assert_eq!(
            err("5 eons"),
            "invalid duration \"5 eons\": unknown unit \"eons\""
        );
        assert_eq!(err("5s!"), "invalid duration \"5s!\": unknown unit \"s!\"");
        assert_eq!(
            err("99999999999999999999s"),
            "invalid duration \"99999999999999999999s\": number too large"
        );
        assert_eq!(err(""), "empty duration");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1KB").unwrap(), 1000);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("8 mib").unwrap(), 8 << 20);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        let err = |t| parse_size(t).unwrap_err();
        assert_eq!(err("KiB"), "invalid size \"KiB\": expected a number");
        assert_eq!(err("1XB"), "invalid size \"1XB\": unknown unit \"XB\"");
        assert_eq!(
            err("99999999999999999999GiB"),
            "invalid size \"99999999999999999999GiB\": number too large"
        );
        assert_eq!(
            err("99999999999GiB"),
            "invalid size \"99999999999GiB\": too large"
        );
    }
}
