//! Bearer-token verification: the token's header is read only to find `alg` and `kid`; the key
//! and the algorithms it may be used with come from config, so `alg` never picks the key type.

use crate::config::AuthSettings;
use crate::error::AuthFailure;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The claims of a verified token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The value of the configured subject claim.
    pub subject: String,
    /// All claims, for rules that look beyond the subject.
    pub claims: Map<String, Value>,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

/// The part of a JOSE header the gateway looks at. `jku`, `x5u` and `jwk` are deliberately not
/// read: a token never tells the gateway where to fetch or find its key.
#[derive(Deserialize)]
struct PeekHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

struct KeyEntry {
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// How many verified tokens are remembered. A busy gateway sees far fewer distinct live tokens
/// (one per app instance and user); past this the expired ones are dropped, then all.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// Verifies tokens against the configured keys.
pub struct Verifier {
    allowed: Vec<(String, Algorithm)>,
    keys: Vec<KeyEntry>,
    subject_claim: String,
    max_token_size: usize,
    leeway: u64,
    /// Tokens already verified, keyed by their exact bytes, so an RS256 or ES256 signature is
    /// checked once per token rather than once per request. Only successes are kept, and each
    /// only until its `exp` (plus the leeway the verifier itself allows).
    verified: RwLock<HashMap<Box<str>, Arc<VerifiedToken>>>,
}

impl Verifier {
    /// Builds one `Validation` per key up front so the request path allocates none.
    pub fn new(settings: &AuthSettings) -> Verifier {
        let keys = settings
            .keys
            .iter()
            .map(|k| {
                let mut v =
                    Validation::new(k.algorithms.first().copied().unwrap_or(Algorithm::HS256));
                v.algorithms = k.algorithms.clone();
                v.leeway = settings.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                match &settings.issuer {
                    Some(iss) => {
                        v.set_issuer(iss);
                        required.push("iss");
                    }
                    None => v.iss = None,
                }
                match &settings.audience {
                    Some(aud) => {
                        v.set_audience(aud);
                        required.push("aud");
                    }
                    // jsonwebtoken refuses any `aud` when none is configured; an audience we
                    // were not told to check is not a reason to refuse.
                    None => v.validate_aud = false,
                }
                v.set_required_spec_claims(&required);
                KeyEntry {
                    kid: k.kid.clone(),
                    key: k.key.clone(),
                    validation: v,
                }
            })
            .collect();
        Verifier {
            allowed: settings
                .algorithms
                .iter()
                .map(|a| (format!("{a:?}"), *a))
                .collect(),
            keys,
            subject_claim: settings.subject_claim.clone(),
            max_token_size: settings.max_token_size,
            leeway: settings.leeway.as_secs(),
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// Verifies `token`, answering from the verified-token cache when it can.
    pub fn verify_cached(&self, token: &str) -> Result<Arc<VerifiedToken>, AuthFailure> {
        let now = unix_now();
        if let Some(hit) = self.verified.read().expect("token cache lock").get(token) {
            if now <= hit.expires_at.saturating_add(self.leeway) {
                return Ok(hit.clone());
            }
        }
        let verified = Arc::new(self.verify(token)?);
        let mut cache = self.verified.write().expect("token cache lock");
        if cache.len() >= TOKEN_CACHE_CAPACITY {
            cache.retain(|_, t| now <= t.expires_at.saturating_add(self.leeway));
            if cache.len() >= TOKEN_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(Box::from(token), verified.clone());
        Ok(verified)
    }

    /// Verifies a compact JWS and returns its claims, or the precise reason it was refused.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthFailure> {
        if token.len() > self.max_token_size {
            return Err(AuthFailure::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthFailure::Malformed);
        };
        let header_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| AuthFailure::Malformed)?;
        let header: PeekHeader =
            serde_json::from_slice(&header_json).map_err(|_| AuthFailure::Malformed)?;
        // `none`, unknown names and algorithms not configured all stop here.
        let Some(&(_, alg)) = self.allowed.iter().find(|(name, _)| *name == header.alg) else {
            return Err(AuthFailure::AlgorithmNotAllowed);
        };
        let mut last = AuthFailure::UnknownKey;
        for entry in self.keys.iter().filter(|k| {
            k.validation.algorithms.contains(&alg)
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        }) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, &entry.validation) {
                Ok(data) => return self.finish(data.claims),
                Err(e) => {
                    last = classify(e.kind());
                    // A signature that does not verify may verify with the next key; any
                    // other failure is about the token itself.
                    if last != AuthFailure::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn finish(&self, claims: Map<String, Value>) -> Result<VerifiedToken, AuthFailure> {
        let subject = match claims.get(&self.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(AuthFailure::MissingClaim),
        };
        let expires_at = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(VerifiedToken {
            subject,
            claims,
            expires_at,
        })
    }
}

fn classify(kind: &ErrorKind) -> AuthFailure {
    match kind {
        ErrorKind::ExpiredSignature => AuthFailure::Expired,
        ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
        ErrorKind::InvalidIssuer => AuthFailure::WrongIssuer,
        ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            AuthFailure::AlgorithmNotAllowed
        }
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            AuthFailure::MissingClaim
        }
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthFailure::BadSignature,
        _ => AuthFailure::Malformed,
    }
}
