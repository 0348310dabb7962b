//! [`KeySet`] and the JWKS parser: which published keys are usable, and for what.

use super::fetcher::{clip, MAX_DOCUMENT_BYTES};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One usable signing key from a JWKS.
pub struct JwkKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
    id: KeyId,
}

/// What makes a published key the same key in a later fetch: its `kid` and its public key
/// material. The verified-token cache remembers it for each token, so a token is served from
/// the cache only while the key that verified it is still published.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(Arc<[u8]>);

impl KeyId {
    fn new(kid: Option<&str>, kty: &str, parts: &[&[u8]]) -> KeyId {
        // Length-prefixed fields, so no two different keys encode to the same bytes.
        let mut bytes = Vec::new();
        let mut field = |b: &[u8]| {
            bytes.extend_from_slice(&(b.len() as u32).to_be_bytes());
            bytes.extend_from_slice(b);
        };
        match kid {
            None => field(b"\0"),
            Some(k) => field(format!("kid:{k}").as_bytes()),
        }
        field(kty.as_bytes());
        for p in parts {
            field(p);
        }
        KeyId(bytes.into())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public material, but long and useless in a log line.
        write!(f, "KeyId({} bytes)", self.0.len())
    }
}

impl JwkKey {
    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key may verify (never empty, never `HS*`).
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The key material.
    pub fn key(&self) -> &DecodingKey {
        &self.key
    }

    /// The key's identity across fetches (its `kid` and public key material).
    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for JwkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwkKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// An immutable, validated set of signing keys from one successful fetch.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<JwkKey>,
    fetched_at: Instant,
}

impl KeySet {
    /// Keys that may verify a token whose header says `alg` and `kid`.
    ///
    /// A key published with an `alg` is used only for that algorithm; one without only for the
    /// allowed algorithms of its type (RSA → RS*/PS*, EC P-256 → ES256, P-384 → ES384, OKP
    /// Ed25519 → EdDSA). When the token names a `kid`, keys with a different `kid` are left out;
    /// keys published without a `kid` stay candidates, as configured keys do in the verifier.
    pub fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a JwkKey> + 'a {
        self.keys.iter().filter(move |k| {
            k.algorithms.contains(&alg)
                && match (kid, k.kid.as_deref()) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        })
    }

    /// Whether the key `id` is in this set and may still verify `alg`: a token verified with
    /// it before is still good.
    pub fn holds(&self, id: &KeyId, alg: Algorithm) -> bool {
        self.keys
            .iter()
            .any(|k| k.id == *id && k.algorithms.contains(&alg))
    }

    /// Whether both sets have the same keys for the same algorithms (document order aside).
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().all(|k| {
                other
                    .keys
                    .iter()
                    .any(|o| o.id == k.id && o.algorithms == k.algorithms)
            })
    }

    /// Whether some key has this `kid`. A token naming a kid not here should lead to
    /// [`JwksSource::refresh_for_unknown_kid`](super::source::JwksSource::refresh_for_unknown_kid).
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys, in document order.
    pub fn keys(&self) -> &[JwkKey] {
        &self.keys
    }

    /// Number of usable keys (never zero for a set from [`parse_jwks`]).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// When the document was fetched (parsed).
    pub fn fetched_at(&self) -> Instant {
        self.fetched_at
    }

    /// Time since the document was fetched.
    pub fn age(&self) -> Duration {
        self.fetched_at.elapsed()
    }
}

/// Parses a JWKS document into the keys this gateway can use.
///
/// Not a JSON object with a `keys` array, or larger than [`MAX_DOCUMENT_BYTES`] → `Err`. Keys
/// it cannot or must not use (unknown `kty` or curve, `use` other than `sig`, symmetric,
/// private, bad base64, weak RSA, an `alg` not allowed or not fitting the key) are skipped with
/// a debug log; no usable key at all → `Err`. At most `max_keys` keys are kept.
pub fn parse_jwks(body: &[u8], allowed: &[Algorithm], max_keys: usize) -> Result<KeySet, String> {
    parse_jwks_fetched_at(body, allowed, max_keys, Instant::now())
}

/// [`parse_jwks`] for a document fetched at `fetched_at` (a remembered one, re-read by a new
/// config generation with its own algorithms).
pub(crate) fn parse_jwks_fetched_at(
    body: &[u8],
    allowed: &[Algorithm],
    max_keys: usize,
    fetched_at: Instant,
) -> Result<KeySet, String> {
    // Not jsonwebtoken's JwkSet: one key it cannot read would fail the whole set, and each
    // key is to be read, and skipped if unusable, on its own.
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "JWKS document is {} bytes, more than the {MAX_DOCUMENT_BYTES} accepted",
            body.len()
        ));
    }
    let doc: Document = serde_json::from_slice(body)
        .map_err(|e| clip(&format!("not a JSON Web Key Set: {e}"), 200))?;
    let mut keys = Vec::new();
    let mut first_skip = None;
    for (index, raw) in doc.keys.iter().enumerate() {
        match parse_key(raw, allowed) {
            Ok(key) if keys.len() < max_keys => keys.push(key),
            Ok(_) => {
                tracing::warn!(
                    max_keys,
                    total = doc.keys.len(),
                    "JWKS has more usable keys than max_keys; the rest are ignored"
                );
                break;
            }
            Err(why) => {
                // The kid is logged clipped: the document is the IdP's, but a broken one
                // should not flood the log.
                let kid = raw.get("kid").and_then(Value::as_str).map(|k| clip(k, 64));
                tracing::debug!(index, ?kid, reason = %why, "JWKS key skipped");
                first_skip.get_or_insert(why);
            }
        }
    }
    if keys.is_empty() {
        return Err(match first_skip {
            None => "JWKS has no keys".to_string(),
            Some(why) => format!(
                "JWKS has no usable signing key ({} skipped; first: {why})",
                doc.keys.len()
            ),
        });
    }
    Ok(KeySet { keys, fetched_at })
}

const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One JWK → a usable key, or why not.
///
/// jsonwebtoken reads the key ([`Jwk`]) and makes the verifying key from it
/// ([`DecodingKey::from_jwk`]); what it does not check, this does: no private or symmetric
/// key, `use` and `key_ops` allow verifying, a modulus aws-lc can verify with, coordinates of
/// the curve's length, and which algorithms the key may verify.
fn parse_key(raw: &Value, allowed: &[Algorithm]) -> Result<JwkKey, String> {
    let obj = raw.as_object().ok_or("not a JSON object")?;
    // Looked for in the document: a Jwk drops the members it does not model, `d` among them.
    if obj.contains_key("d") {
        return Err(
            "carries private key material (d): a published private key is compromised".into(),
        );
    }
    // Named here, before jsonwebtoken reads the key: for a type it does not know it can only
    // say that no variant matched.
    let kty = match text(obj, "kty")? {
        kty @ ("RSA" | "EC" | "OKP") => kty,
        "oct" => return Err(SYMMETRIC.into()),
        other => return Err(clip(&format!("key type {other:?} not supported"), 80)),
    };
    let jwk = Jwk::deserialize(raw).map_err(|e| unreadable(obj, kty, &e))?;
    let kid = jwk.common.key_id.clone();
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(PublicKeyUse::Encryption) => return Err("use is \"enc\", not \"sig\"".into()),
        Some(PublicKeyUse::Other(u)) => {
            return Err(clip(&format!("use is {u:?}, not \"sig\""), 80));
        }
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    let (family, id): (&[Algorithm], KeyId) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = base64url(&rsa.n, "n")?;
            let e = base64url(&rsa.e, "e")?;
            let n_sig = trim_leading_zeros(&n);
            let bits = n_sig
                .first()
                .map_or(0, |b| n_sig.len() * 8 - b.leading_zeros() as usize);
            // aws-lc verifies RSA signatures only for 2048..=8192-bit moduli; refusing others
            // here turns a confusing verify-time failure into a clear skip.
            if !(2048..=8192).contains(&bits) {
                return Err(format!(
                    "RSA modulus of {bits} bits (2048 to 8192 accepted)"
                ));
            }
            let e_sig = trim_leading_zeros(&e);
            if e_sig.is_empty() || e_sig.len() > 8 || e_sig[e_sig.len() - 1] & 1 == 0 {
                return Err("RSA exponent is not a usable public exponent".into());
            }
            (
                RSA_ALGORITHMS,
                KeyId::new(kid.as_deref(), kty, &[n_sig, e_sig]),
            )
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (family, size): (&[Algorithm], usize) = match ec.curve {
                EllipticCurve::P256 => (&[Algorithm::ES256], 32),
                EllipticCurve::P384 => (&[Algorithm::ES384], 48),
                _ => {
                    let crv = text(obj, "crv")?;
                    return Err(clip(&format!("EC curve {crv:?} not supported"), 80));
                }
            };
            let x = base64url(&ec.x, "x")?;
            let y = base64url(&ec.y, "y")?;
            if x.len() != size || y.len() != size {
                return Err("EC coordinates have the wrong length for the curve".into());
            }
            // The same uncompressed point (0x04 ‖ x ‖ y) DecodingKey::from_ec_components builds;
            // whether it is on the curve is checked when a signature is verified.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (family, KeyId::new(kid.as_deref(), kty, &[&point]))
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Err("OKP key is not Ed25519".into());
            }
            let x = base64url(&okp.x, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes".into());
            }
            // The raw public key, as DecodingKey::from_ed_components stores it.
            (&[Algorithm::EdDSA], KeyId::new(kid.as_deref(), kty, &[&x]))
        }
        AlgorithmParameters::OctetKey(_) => return Err(SYMMETRIC.into()),
    };
    let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
        None => family
            .iter()
            .copied()
            .filter(|a| allowed.contains(a))
            .collect(),
        Some(name) => {
            let alg = name.to_string().parse::<Algorithm>().map_err(|_| {
                let name = obj.get("alg").and_then(Value::as_str).unwrap_or_default();
                clip(&format!("alg {name:?} not supported"), 80)
            })?;
            if !family.contains(&alg) {
                return Err(format!("alg {alg:?} does not fit a {kty} key"));
            }
            if !allowed.contains(&alg) {
                return Err(format!("alg {alg:?} is not allowed"));
            }
            vec![alg]
        }
    };
    if algorithms.is_empty() {
        return Err(format!("no allowed algorithm fits this {kty} key"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{kty} key not usable: {e}"))?;
    Ok(JwkKey {
        kid,
        algorithms,
        key,
        id,
    })
}

/// Why jsonwebtoken could not read a key of a type it knows. For a missing member or a curve
/// it does not know, all it can say is that no variant of its key types matched, so those are
/// named here; a member of the wrong type it does name.
fn unreadable(obj: &Map<String, Value>, kty: &str, e: &serde_json::Error) -> String {
    let members: &[&str] = match kty {
        "RSA" => &["n", "e"],
        "EC" => &["crv", "x", "y"],
        _ => &["crv", "x"],
    };
    if let Some(Err(why)) = members.iter().map(|m| text(obj, m)).find(Result::is_err) {
        return why;
    }
    match text(obj, "crv") {
        Ok("P-256" | "P-384" | "P-521" | "Ed25519") | Err(_) => {}
        Ok(crv) if kty == "EC" => return clip(&format!("EC curve {crv:?} not supported"), 80),
        Ok(_) => return "OKP key is not Ed25519".into(),
    }
    clip(&format!("{kty} key not readable: {e}"), 120)
}

const SYMMETRIC: &str = "symmetric key: never taken from a published key set";

fn text<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{name} missing or not a string"))
}

/// RFC 7518 requires unpadded base64url; anything else is a broken key, skipped.
fn base64url(value: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("{name} is not unpadded base64url"))
}

fn trim_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics() {
        let allowed = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"keys\":{}}",
            b"{\"keys\":[]}",
            b"{\"keys\":[1,\"x\",null,[],{}]}",
            b"{\"keys\":[{\"kty\":\"RSA\",\"n\":\"!!\",\"e\":\"AQAB\"}]}",
            b"{\"keys\":[{\"kty\":\"RSA\",\"n\":\"\",\"e\":\"\"}]}",
            b"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":7}]}",
            b"{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"\"}]}",
            b"\xff\xfe",
        ] {
            assert!(parse_jwks(body, &allowed, 32).is_err());
        }
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(parse_jwks(&huge, &allowed, 32).is_err());
    }
}
