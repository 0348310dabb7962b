//! What a name in the config (a user, an upstream key, an issuer) may be: it ends up in log
//! lines and metric labels, so it is short and plain.

/// 1 to 64 ASCII letters, digits, `-`, `_`, `.` or `@`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b'@')
}
