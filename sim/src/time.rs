//! Minimal UTC timestamp helpers.
//!
//! The simulator needs to print `created_at` values and to parse `cursor`
//! values, both ISO-8601. Pulling in a date crate for that is not allowed in
//! this project, so the civil-calendar conversion is done by hand (Howard
//! Hinnant's `days_from_civil` / `civil_from_days` algorithms).

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Calendar date (year, month, day) for a number of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`, the shape of the
/// documented `created_at` example.
pub(crate) fn format_timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Formats Unix seconds as a bare `YYYY-MM-DD` date.
pub(crate) fn format_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The wall clock as Unix seconds, for `updated_at` stamps of writes (the
/// generated data and `created_at` of creates stay clock-free).
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads exactly `n` ASCII digits from the front of `s`.
fn take_digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

/// Parses an ISO-8601 date or date-time into Unix **milliseconds**.
///
/// Accepted: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff...]]` with an optional
/// `Z` or `±HH:MM` / `±HHMM` offset (no offset means UTC). A space is accepted
/// instead of `T` because clients copy timestamps from logs. Milliseconds are
/// returned so that a cursor with a fractional part still compares correctly
/// against whole-second `created_at` values.
pub(crate) fn parse_timestamp_millis(s: &str) -> Option<i64> {
    let (year, rest) = take_digits(s, 4)?;
    let rest = rest.strip_prefix('-')?;
    let (month, rest) = take_digits(rest, 2)?;
    let rest = rest.strip_prefix('-')?;
    let (day, rest) = take_digits(rest, 2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) {
        return None;
    }
    let date_days = days_from_civil(i64::from(year), month, day);
    if rest.is_empty() {
        return Some(date_days * 86_400_000);
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let (hour, rest) = take_digits(rest, 2)?;
    let rest = rest.strip_prefix(':')?;
    let (minute, mut rest) = take_digits(rest, 2)?;
    let mut second = 0;
    let mut millis: i64 = 0;
    if let Some(r) = rest.strip_prefix(':') {
        let (s2, r) = take_digits(r, 2)?;
        second = s2;
        rest = r;
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            if frac_len == 0 {
                return None;
            }
            // Only the first three digits matter at millisecond precision.
            let frac = &r[..frac_len];
            let padded = format!("{:0<3}", &frac[..frac_len.min(3)]);
            millis = padded.parse().ok()?;
            rest = &r[frac_len..];
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_secs: i64 = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = &rest[1..];
            let (oh, r) = take_digits(r, 2)?;
            let r = r.strip_prefix(':').unwrap_or(r);
            let (om, r) = take_digits(r, 2)?;
            if !r.is_empty() || oh > 23 || om > 59 {
                return None;
            }
            sign * (i64::from(oh) * 3600 + i64::from(om) * 60)
        }
    };
    let secs =
        date_days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - offset_secs;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_instant() {
        // 2024-01-15T10:30:00Z, the documented example.
        let secs = 1_705_314_600;
        assert_eq!(format_timestamp(secs), "2024-01-15T10:30:00Z");
        assert_eq!(
            parse_timestamp_millis("2024-01-15T10:30:00Z"),
            Some(secs * 1000)
        );
        assert_eq!(format_date(secs), "2024-01-15");
    }

    #[test]
    fn parses_variants() {
        let base = 1_705_314_600_000;
        assert_eq!(parse_timestamp_millis("2024-01-15T10:30:00"), Some(base));
        assert_eq!(
            parse_timestamp_millis("2024-01-15T10:30:00.5Z"),
            Some(base + 500)
        );
        assert_eq!(
            parse_timestamp_millis("2024-01-15T11:30:00+01:00"),
            Some(base)
        );
        assert_eq!(parse_timestamp_millis("2024-01-15T10:30"), Some(base));
        assert_eq!(
            parse_timestamp_millis("2024-01-15"),
            Some(base - (10 * 3600 + 30 * 60) * 1000)
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-02-30",
            "2024-01-15T25:00:00Z",
            "2024-01-15T10:30:00X",
            "2024-01-15T10:30:00.Z",
            "１２３４-01-01",
        ] {
            assert_eq!(parse_timestamp_millis(bad), None, "{bad}");
        }
    }
}
