//! The digest that tells two configs apart: a reload that parses to the same settings (the
//! same file, comments and key order aside, and the same files it names) rebuilds nothing.

/// SHA-256 over length-prefixed parts, so `["ab", "c"]` and `["a", "bc"]` differ.
pub(super) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
