//! The string formats a body's values must have: e-mail addresses, domain names, UUIDs and
//! ISO 8601 / RFC 3339 dates.

/// Splits an address and returns its domain, or why it is not acceptable. Deliberately
/// simpler than RFC 5322 (no quoted local parts or IP literals): these are business contacts.
pub(crate) fn email_domain(addr: &str) -> Result<&str, &'static str> {
    if addr.len() > 254 {
        return Err("longer than 254 bytes");
    }
    let Some((local, domain)) = addr.split_once('@') else {
        return Err("must contain an @");
    };
    if domain.contains('@') {
        return Err("must contain exactly one @");
    }
    if local.is_empty() || local.len() > 64 {
        return Err("the part before @ must be 1 to 64 bytes");
    }
    if local.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the part before @ must not contain spaces or control characters");
    }
    if !is_domain(domain) {
        return Err("the part after @ is not a valid domain name");
    }
    Ok(domain)
}

/// A DNS host name with at least two labels: labels of 1–63 ASCII letters, digits and `-`
/// (not at either end), an alphabetic top-level label of at least two letters, ≤ 253 bytes.
pub(super) fn is_domain(d: &str) -> bool {
    if d.is_empty() || d.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let labels_ok = labels.iter().all(|l| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    let tld = labels[labels.len() - 1];
    labels_ok && tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// 8-4-4-4-12 hexadecimal digits, either case.
pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parses a fixed-width run of ASCII digits.
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// `YYYY-MM-DD`, or an RFC 3339 date-time `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with a
/// real calendar check (no 2023-02-29). Leap seconds (`:60`) are refused: common upstream
/// date parsers reject them.
pub(super) fn is_iso_date_or_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 || !is_calendar_date(&b[..10]) {
        return false;
    }
    match b.get(10) {
        None => true,
        Some(b'T' | b't') => is_rfc3339_time(&b[11..]),
        Some(_) => false,
    }
}

fn is_calendar_date(b: &[u8]) -> bool {
    if b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&b[..4]), digits(&b[5..7]), digits(&b[8..10])) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

fn is_rfc3339_time(b: &[u8]) -> bool {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(h), Some(m), Some(s)) = (digits(&b[..2]), digits(&b[3..5]), digits(&b[6..8])) else {
        return false;
    };
    if h > 23 || m > 59 || s > 59 {
        return false;
    }
    let mut rest = &b[8..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            matches!((digits(&[*h1, *h2]), digits(&[*m1, *m2])), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in [
            "2024-02-29",
            "2023-12-31",
            "2024-01-15T10:30:00Z",
            "2024-01-15t10:30:00.123z",
            "2024-01-15T10:30:00+05:30",
            "2000-02-29T23:59:59-00:00",
        ] {
            assert!(is_iso_date_or_datetime(ok), "{ok}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-1-01",
            "2024-01-15 10:30:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:30:00",
            "2024-01-15T10:30:60Z",
            "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00+5:30",
            "2024-01-15T",
            "+024-01-15",
            "",
            "2024-01-15Z",
        ] {
            assert!(!is_iso_date_or_datetime(bad), "{bad}");
        }
    }

    #[test]
    fn domains_and_uuid() {
        assert!(is_domain("a.io"));
        assert!(is_domain("x-y.example.co.uk"));
        assert!(!is_domain("localhost"));
        assert!(!is_domain("a.c"));
        assert!(!is_domain("a.c0m"));
        assert!(!is_domain("-a.com"));
        assert!(!is_domain("a..com"));
        assert!(!is_domain("a.com."));
        assert!(is_uuid("123e4567-E89B-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
    }
}
