//! The Redis key names. All of one upstream key's state shares one hash slot
//! (`{prefix:key}`), so a Redis Cluster works too; nothing in a name is a secret: upstream
//! keys are named by their config name, users and `Idempotency-Key`s by a SHA-256.

use super::connection::RedisStore;
use crate::state::idempotency::IdemId;

/// The first 16 bytes of the SHA-256 of `parts` (each followed by a NUL), in hex.
pub(super) fn sha_hex(parts: &[&[u8]]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p);
        ctx.update(&[0]);
    }
    hex::encode(&ctx.finish().as_ref()[..16])
}

impl RedisStore {
    /// The Redis key of `key`'s generation of `scope` (also what the bump channel names).
    pub(super) fn gen_key(&self, key: &str, scope: &str) -> String {
        format!("{}:gen:{scope}", self.tag(key))
    }

    /// `prefix:{name}` with the key name as the hash tag (braces in a name would break the
    /// tag, so they are replaced).
    pub(super) fn tag(&self, key: &str) -> String {
        let clean: String = key
            .chars()
            .map(|c| if c == '{' || c == '}' { '_' } else { c })
            .collect();
        format!("{}:{{{clean}}}", self.prefix)
    }

    /// The Redis key of an idempotency record.
    pub(super) fn idem_key(&self, id: &IdemId) -> String {
        format!(
            "{}:idem:{}",
            self.tag(&id.key),
            sha_hex(&[id.user.as_bytes(), id.idem.as_bytes()])
        )
    }
}
