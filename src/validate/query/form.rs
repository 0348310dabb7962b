//! `application/x-www-form-urlencoded`, as a query string is read (decoding names and values,
//! `+` a space) and as the canonical form is written.

pub(super) fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// [`decode`], without a copy when there is nothing to decode (a parameter's name, nearly
/// always).
pub(super) fn decode_borrowed(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    if s.bytes().any(|b| b == b'+' || b == b'%') {
        decode(s).map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(s))
    }
}

/// `application/x-www-form-urlencoded` decoding (`+` → space, `%XX` → byte, a malformed `%`
/// kept literally, as form_urlencoded does); `None` when the result is not UTF-8.
pub(super) fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(c: &u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_matches_form_urlencoded() {
        for s in ["a+b", "%41%zz%", "%e2%82%ac", "x%2", "caf%C3%A9+%2B"] {
            let ours = decode(s).unwrap();
            let theirs: String = form_urlencoded::parse(format!("k={s}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned();
            assert_eq!(ours, theirs, "{s}");
        }
        assert_eq!(decode("%FF"), None);
    }
}
