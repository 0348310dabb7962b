//! The JWT `typ` header policy (RFC 9068 §4, RFC 7515 §4.1.9).
//!
//! An OAuth access token in the JWT profile carries `typ: at+jwt`; an ID token from the same
//! identity provider (same keys, often the same audience) carries `JWT` or nothing. A resource
//! server that expects access tokens must refuse the others, or any ID token leaked to a
//! browser becomes an API credential. Not every IdP sets `at+jwt` yet, so the default stays
//! lenient and an issuer opts into the strict profile with `token_types`.

use std::fmt;

/// The `typ` values an issuer's tokens may carry.
///
/// Values are compared as media types: case-insensitively, and with `application/` assumed
/// when there is no `/` (RFC 7515 §4.1.9), so `at+jwt` and `application/at+jwt` are the same.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenTypes {
    /// Normalised media types.
    accepted: Vec<String>,
    /// Whether a token without `typ` is accepted.
    absent: bool,
}

/// What stands for "no `typ` header" in `token_types`.
pub const ABSENT: &str = "";

impl TokenTypes {
    /// `at+jwt`, `application/at+jwt`, `JWT` and no `typ` at all: every token an IdP issues
    /// today, so existing setups keep working.
    pub fn lenient() -> TokenTypes {
        TokenTypes::from_list(&["at+jwt", "JWT", ABSENT])
    }

    /// The RFC 9068 profile: `at+jwt` (or `application/at+jwt`) only.
    pub fn access_tokens_only() -> TokenTypes {
        TokenTypes::from_list(&["at+jwt"])
    }

    /// From config values; [`ABSENT`] (`""`) accepts a token without `typ`.
    pub fn from_list<S: AsRef<str>>(list: &[S]) -> TokenTypes {
        let mut accepted = Vec::new();
        let mut absent = false;
        for value in list {
            let value = value.as_ref();
            if value == ABSENT {
                absent = true;
            } else {
                let n = normalize(value);
                if !accepted.contains(&n) {
                    accepted.push(n);
                }
            }
        }
        TokenTypes { accepted, absent }
    }

    /// Whether a token whose header has this `typ` (or none) is accepted.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        match typ {
            None => self.absent,
            Some(t) => {
                // Compared without allocating: the hot path sees this on every cold verify.
                let t = t.trim();
                self.accepted.iter().any(|a| same_media_type(a, t))
            }
        }
    }
}

impl Default for TokenTypes {
    fn default() -> Self {
        TokenTypes::lenient()
    }
}

impl fmt::Debug for TokenTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        l.entries(&self.accepted);
        if self.absent {
            l.entry(&"(absent)");
        }
        l.finish()
    }
}

/// Whether `value` is a plausible `typ` for config: printable ASCII, no spaces, at most one `/`.
pub(crate) fn check(value: &str) -> Result<(), String> {
    if value == ABSENT {
        return Ok(());
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) || value.matches('/').count() > 1 {
        return Err(format!(
            "{value:?} is not a media type (e.g. \"at+jwt\"; \"\" for no typ)"
        ));
    }
    Ok(())
}

fn normalize(value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    if v.contains('/') {
        v
    } else {
        format!("application/{v}")
    }
}

/// `normalized` is lower case with its `application/` prefix; `typ` is as the token sent it.
fn same_media_type(normalized: &str, typ: &str) -> bool {
    if typ.contains('/') {
        normalized.eq_ignore_ascii_case(typ)
    } else {
        normalized
            .strip_prefix("application/")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(typ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_accepts_what_idps_issue_today() {
        let t = TokenTypes::lenient();
        for typ in [
            Some("at+jwt"),
            Some("application/at+jwt"),
            Some("AT+JWT"),
            Some("JWT"),
            Some("jwt"),
            None,
        ] {
            assert!(t.accepts(typ), "{typ:?}");
        }
        assert!(!t.accepts(Some("dpop+jwt")));
        assert!(!t.accepts(Some("logout+jwt")));
        assert!(!t.accepts(Some("")));
    }

    #[test]
    fn rfc9068_profile_refuses_id_tokens() {
        let t = TokenTypes::access_tokens_only();
        assert!(t.accepts(Some("at+jwt")));
        assert!(t.accepts(Some("Application/AT+JWT")));
        assert!(!t.accepts(Some("JWT")));
        assert!(!t.accepts(None));
        assert!(!t.accepts(Some("text/at+jwt")));
        assert_eq!(
            TokenTypes::from_list(&["application/at+jwt"]),
            TokenTypes::from_list(&["AT+JWT"])
        );
    }

    #[test]
    fn config_values_are_checked() {
        assert!(check("at+jwt").is_ok());
        assert!(check("").is_ok());
        assert!(check("application/at+jwt").is_ok());
        assert!(check("at jwt").is_err());
        assert!(check("a/b/c").is_err());
    }
}
