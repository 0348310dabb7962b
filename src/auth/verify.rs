//! Bearer-token verification across the trusted issuers.
//!
//! The token's header is read only for `alg` and `kid`, and its payload (unverified) only for
//! `iss`, to pick which issuer's keys to try; the verification itself then checks `iss` again.
//! The key, and the algorithms it may be used with, come from config or from the issuer's
//! published JWKS, so `alg` never picks the key type. A token's `jku`, `x5u` and `jwk` headers
//! are never read: a token never tells the gateway where to find its key.

use super::jwks::{Fetcher, JwksOptions, JwksSource, KeySet, RefreshTask};
use crate::config::{AuthSettings, IssuerSettings};
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
    /// The value of the issuer's subject claim.
    pub subject: String,
    /// All claims, for claim rules.
    pub claims: Map<String, Value>,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// Position of the issuer in `auth.issuers` that verified it.
    pub issuer: usize,
}

#[derive(Deserialize)]
struct PeekHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct PeekPayload {
    #[serde(default)]
    iss: Option<Value>,
}

struct StaticKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// One issuer's verification material.
struct IssuerVerifier {
    name: String,
    iss: Option<Vec<String>>,
    /// Allowed algorithms by name, each with its prebuilt `Validation`.
    validations: Vec<(String, Algorithm, Validation)>,
    keys: Vec<StaticKey>,
    jwks: Option<Arc<JwksSource>>,
    subject_claim: String,
    leeway: u64,
}

/// How many verified tokens are remembered. Far more than the distinct live tokens of a
/// company's apps; past this the expired ones are dropped, then all.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// Verifies tokens against the configured issuers.
pub struct Verifier {
    issuers: Vec<IssuerVerifier>,
    max_token_size: usize,
    /// Tokens already verified, keyed by their exact bytes, so an RS256 or ES256 signature is
    /// checked once per token rather than once per request. Only successes are kept, and each
    /// only until its `exp` (plus the leeway the verifier itself allows).
    verified: RwLock<HashMap<Box<str>, Arc<VerifiedToken>>>,
    /// Background JWKS refreshes; they stop when the verifier (its config generation) goes.
    _refresh: Vec<RefreshTask>,
}

fn validation(iss: &IssuerSettings, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = iss.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    match &iss.issuer {
        Some(list) => {
            v.set_issuer(list);
            required.push("iss");
        }
        None => v.iss = None,
    }
    match &iss.audience {
        Some(aud) => {
            v.set_audience(aud);
            required.push("aud");
        }
        // jsonwebtoken refuses any `aud` when none is configured; an audience we were not
        // told to check is not a reason to refuse.
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

impl Verifier {
    /// Builds the verifier. Issuers with a JWKS get a source (discovered from the issuer's
    /// OIDC configuration when asked), a first fetch, and a background refresh; a failed first
    /// fetch is logged and retried in the background (readiness says so), never fatal.
    pub async fn build(settings: &AuthSettings, fetcher: Arc<dyn Fetcher>) -> Verifier {
        let mut issuers = Vec::new();
        let mut refresh = Vec::new();
        for iss in &settings.issuers {
            let jwks = match &iss.jwks {
                None => None,
                Some(j) => {
                    let url = match &j.url {
                        Some(u) => Some(u.clone()),
                        None => {
                            let issuer = iss.issuer.as_ref().and_then(|v| v.first()).cloned();
                            match issuer {
                                Some(issuer) => {
                                    match super::jwks::discover_jwks_uri(&issuer, &*fetcher).await {
                                        Ok(u) => Some(u),
                                        Err(e) => {
                                            tracing::error!(issuer = %iss.name, error = %e, "OIDC discovery failed; this issuer's tokens are refused until a restart or reload");
                                            None
                                        }
                                    }
                                }
                                None => None,
                            }
                        }
                    };
                    url.map(|url| {
                        JwksSource::new(
                            url,
                            fetcher.clone(),
                            JwksOptions {
                                refresh_interval: j.refresh,
                                unknown_kid_cooldown: j.cooldown,
                                allowed: iss.algorithms.clone(),
                                ..JwksOptions::default()
                            },
                        )
                    })
                }
            };
            if let Some(source) = &jwks {
                if let Err(e) = source.refresh().await {
                    tracing::warn!(issuer = %iss.name, error = %e, "first JWKS fetch failed; retrying in the background");
                }
                refresh.push(source.spawn_refresh());
            }
            issuers.push(IssuerVerifier {
                name: iss.name.clone(),
                iss: iss.issuer.clone(),
                validations: iss
                    .algorithms
                    .iter()
                    .map(|a| (format!("{a:?}"), *a, validation(iss, *a)))
                    .collect(),
                keys: iss
                    .keys
                    .iter()
                    .map(|k| StaticKey {
                        kid: k.kid.clone(),
                        key: k.key.clone(),
                        algorithms: k.algorithms.clone(),
                    })
                    .collect(),
                jwks,
                subject_claim: iss.subject_claim.clone(),
                leeway: iss.leeway.as_secs(),
            });
        }
        Verifier {
            issuers,
            max_token_size: settings.max_token_size,
            verified: RwLock::new(HashMap::new()),
            _refresh: refresh,
        }
    }

    /// Ready when every issuer can verify: it has static keys or a loaded JWKS.
    pub fn is_ready(&self) -> bool {
        self.issuers
            .iter()
            .all(|i| !i.keys.is_empty() || i.jwks.as_ref().is_some_and(|j| j.is_ready()))
    }

    /// The JWKS sources, by issuer name (for metrics).
    pub fn jwks_sources(&self) -> impl Iterator<Item = (&str, &Arc<JwksSource>)> {
        self.issuers
            .iter()
            .filter_map(|i| i.jwks.as_ref().map(|j| (i.name.as_str(), j)))
    }

    /// The cached verification of `token`, if it was verified before and has not expired.
    pub fn cached(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        let hit = self
            .verified
            .read()
            .expect("token cache lock")
            .get(token)?
            .clone();
        let leeway = self.issuers.get(hit.issuer).map_or(0, |i| i.leeway);
        (unix_now() <= hit.expires_at.saturating_add(leeway)).then_some(hit)
    }

    /// Verifies `token`, answering from the verified-token cache when it can.
    pub async fn verify_cached(&self, token: &str) -> Result<Arc<VerifiedToken>, AuthFailure> {
        if let Some(hit) = self.cached(token) {
            return Ok(hit);
        }
        let now = unix_now();
        let verified = Arc::new(self.verify(token).await?);
        let mut cache = self.verified.write().expect("token cache lock");
        if cache.len() >= TOKEN_CACHE_CAPACITY {
            cache.retain(|_, t| now <= t.expires_at);
            if cache.len() >= TOKEN_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(Box::from(token), verified.clone());
        Ok(verified)
    }

    /// Picks the issuer by the (unverified) `iss`; verification checks it again.
    fn select_issuer(&self, payload_b64: &str) -> Result<usize, AuthFailure> {
        if self.issuers.len() == 1 && self.issuers[0].iss.is_none() {
            return Ok(0);
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| AuthFailure::Malformed)?;
        let peek: PeekPayload =
            serde_json::from_slice(&json).map_err(|_| AuthFailure::Malformed)?;
        let Some(Value::String(iss)) = peek.iss else {
            return Err(AuthFailure::MissingClaim);
        };
        self.issuers
            .iter()
            .position(|i| i.iss.as_ref().is_some_and(|list| list.contains(&iss)))
            .ok_or(AuthFailure::WrongIssuer)
    }

    /// Verifies a compact JWS and returns its claims, or the precise reason it was refused.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthFailure> {
        if token.len() > self.max_token_size {
            return Err(AuthFailure::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthFailure::Malformed);
        };
        let header_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| AuthFailure::Malformed)?;
        let header: PeekHeader =
            serde_json::from_slice(&header_json).map_err(|_| AuthFailure::Malformed)?;
        let index = self.select_issuer(payload_b64)?;
        let issuer = &self.issuers[index];
        // `none`, unknown names and algorithms not configured for this issuer all stop here.
        let Some((_, alg, validation)) = issuer
            .validations
            .iter()
            .find(|(name, _, _)| *name == header.alg)
        else {
            return Err(AuthFailure::AlgorithmNotAllowed);
        };
        let kid = header.kid.as_deref();
        let set = issuer.jwks.as_ref().and_then(|j| j.current());
        let first = self.try_keys(issuer, *alg, kid, validation, token, set.as_deref());
        // A kid the current key set does not know may be a rotation: refetch (at most once
        // per cooldown, shared by everyone asking) and try again. Any other outcome stands:
        // the keys are not tried a second time.
        if let (Err(AuthFailure::UnknownKey | AuthFailure::BadSignature), Some(source), Some(kid)) =
            (&first, &issuer.jwks, kid)
        {
            if !set.as_ref().is_some_and(|s| s.contains_kid(kid)) {
                let fresh = source.refresh_for_unknown_kid().await;
                return self
                    .try_keys(issuer, *alg, Some(kid), validation, token, fresh.as_deref())
                    .and_then(|claims| self.finish(index, claims));
            }
        }
        first.and_then(|claims| self.finish(index, claims))
    }

    fn try_keys(
        &self,
        issuer: &IssuerVerifier,
        alg: Algorithm,
        kid: Option<&str>,
        validation: &Validation,
        token: &str,
        set: Option<&KeySet>,
    ) -> Result<Map<String, Value>, AuthFailure> {
        let statics = issuer.keys.iter().filter(|k| {
            k.algorithms.contains(&alg)
                && match (kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        });
        let published = set.into_iter().flat_map(|s| s.candidates(alg, kid));
        let mut last = AuthFailure::UnknownKey;
        for key in statics.map(|k| &k.key).chain(published) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
                Ok(data) => return Ok(data.claims),
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

    fn finish(
        &self,
        issuer: usize,
        claims: Map<String, Value>,
    ) -> Result<VerifiedToken, AuthFailure> {
        let subject = match claims.get(&self.issuers[issuer].subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(AuthFailure::MissingClaim),
        };
        let expires_at = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(VerifiedToken {
            subject,
            claims,
            expires_at,
            issuer,
        })
    }

    /// The issuer's name, for logs.
    pub fn issuer_name(&self, index: usize) -> &str {
        self.issuers.get(index).map_or("-", |i| i.name.as_str())
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
