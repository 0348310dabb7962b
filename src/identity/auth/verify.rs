//! Bearer-token verification across the trusted issuers.
//!
//! The token's header is read only for `alg` and `kid`, and its payload (unverified) only for
//! `iss`, to pick which issuer's keys to try; the verification itself then checks `iss` again.
//! The key, and the algorithms it may be used with, come from config or from the issuer's
//! published JWKS, so `alg` never picks the key type. A token's `jku`, `x5u` and `jwk` headers
//! are never read: a token never tells the gateway where to find its key.

use super::jwks::{
    Fetcher, JwksLocation, JwksOptions, JwksSource, KeyId, KeyMemory, KeySet, MemoryKey,
    RefreshTask,
};
use super::typ::TokenTypes;
use crate::config::{AuthSettings, IssuerSettings};
use crate::error::AuthFailure;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
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
    #[serde(default)]
    typ: Option<String>,
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
    token_types: TokenTypes,
}

/// Which key verified a cached token: the cache answers only while that key can still
/// verify it.
enum KeyBinding {
    /// A key from the config: it lives exactly as long as the verifier (a reload builds a new
    /// verifier with an empty cache).
    Static,
    /// A key from the issuer's JWKS.
    Published {
        id: KeyId,
        alg: Algorithm,
        /// The source's [`version`](JwksSource::version) at which the key was last seen in
        /// the set: while the version is unchanged, one atomic load proves the key is still
        /// there.
        seen: AtomicU64,
    },
}

/// A verified-token cache entry.
struct CachedToken {
    token: Arc<VerifiedToken>,
    key: KeyBinding,
}

/// One issuer's readiness, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStatus {
    /// The issuer's config name.
    pub name: String,
    /// Whether it can verify tokens now (static keys, or a usable key set).
    pub ready: bool,
    /// `static`, `jwks` or `static+jwks`.
    pub source: &'static str,
    /// Usable keys: static ones plus the current published set.
    pub keys: usize,
    /// When its keys were last loaded successfully (a JWKS fetch, or the config load for
    /// static keys), in seconds since the Unix epoch.
    pub last_success_unix: Option<u64>,
    /// Failed JWKS fetches since the last success.
    pub consecutive_failures: u64,
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
    verified: RwLock<HashMap<Box<str>, CachedToken>>,
    /// Background JWKS refreshes; they stop when the verifier (its config generation) goes.
    _refresh: Vec<RefreshTask>,
    /// When the config (and its static keys) was loaded, for the last-success metric.
    built_unix: u64,
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
    /// Builds the verifier with a memory of its own (see [`build_remembering`]).
    ///
    /// [`build_remembering`]: Verifier::build_remembering
    pub async fn build(settings: &AuthSettings, fetcher: Arc<dyn Fetcher>) -> Verifier {
        Verifier::build_remembering(settings, fetcher, Arc::new(KeyMemory::new())).await
    }

    /// Builds the verifier. Each issuer with a JWKS gets a source (discovering its URL from
    /// the issuer's OIDC configuration when asked) that starts from the last good key set in
    /// `memory` (left by an earlier config generation of the same issuer and source), and a
    /// background refresh that retries until it has keys. Waits for each source without keys
    /// to finish its first fetch (at most its `jwks_timeout`), never longer: an issuer whose
    /// IdP is down is not ready (readiness says so) until a retry succeeds.
    pub async fn build_remembering(
        settings: &AuthSettings,
        fetcher: Arc<dyn Fetcher>,
        memory: Arc<KeyMemory>,
    ) -> Verifier {
        let mut issuers = Vec::new();
        let mut refresh = Vec::new();
        let mut in_use = HashSet::new();
        for iss in &settings.issuers {
            let jwks = iss.jwks.as_ref().and_then(|j| {
                let location = match (&j.url, iss.issuer.as_ref().and_then(|v| v.first())) {
                    (Some(u), _) => JwksLocation::Url(u.clone()),
                    (None, Some(issuer)) => JwksLocation::Discover(issuer.clone()),
                    // Config validation refuses discovery without an issuer.
                    (None, None) => return None,
                };
                in_use.insert(MemoryKey::new(&iss.name, &location));
                let source = JwksSource::remembered(
                    location,
                    fetcher.clone(),
                    JwksOptions {
                        refresh_interval: j.refresh,
                        unknown_kid_cooldown: j.cooldown,
                        allowed: iss.algorithms.clone(),
                        fetch_timeout: j.timeout,
                        ..JwksOptions::default()
                    },
                    memory.clone(),
                    &iss.name,
                );
                refresh.push(source.spawn_refresh());
                Some(source)
            });
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
                token_types: iss.token_types.clone(),
            });
        }
        // Keys of issuers or sources no longer configured are forgotten.
        memory.retain(&in_use);
        // The background loops fetch at once when they have nothing; all issuers' first
        // fetches run concurrently, so this waits about the slowest one, bounded by its
        // timeout.
        for i in &issuers {
            if let Some(source) = i.jwks.as_ref().filter(|s| !s.is_ready()) {
                let _ = tokio::time::timeout(source.fetch_timeout(), source.first_attempt()).await;
                if !source.is_ready() {
                    tracing::warn!(issuer = %i.name, "no JWKS keys yet; this issuer's tokens are refused until a background retry succeeds");
                }
            }
        }
        Verifier {
            issuers,
            max_token_size: settings.max_token_size,
            verified: RwLock::new(HashMap::new()),
            _refresh: refresh,
            built_unix: unix_now(),
        }
    }

    /// Ready when every issuer can verify: it has static keys or a loaded JWKS.
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(IssuerVerifier::is_ready)
    }

    /// Each issuer's readiness and key state, in config order.
    pub fn issuer_status(&self) -> Vec<IssuerStatus> {
        self.issuers
            .iter()
            .map(|i| {
                let stats = i.jwks.as_ref().map(|j| j.stats());
                let source = match (i.keys.is_empty(), i.jwks.is_some()) {
                    (false, true) => "static+jwks",
                    (true, true) => "jwks",
                    _ => "static",
                };
                let last_success_unix = match &stats {
                    Some(s) => s.last_success_unix,
                    None => Some(self.built_unix),
                };
                IssuerStatus {
                    name: i.name.clone(),
                    ready: i.is_ready(),
                    source,
                    keys: i.keys.len() + stats.as_ref().map_or(0, |s| s.keys),
                    last_success_unix,
                    consecutive_failures: stats.map_or(0, |s| s.consecutive_failures),
                }
            })
            .collect()
    }

    /// The JWKS sources, by issuer name (for metrics).
    pub fn jwks_sources(&self) -> impl Iterator<Item = (&str, &Arc<JwksSource>)> {
        self.issuers
            .iter()
            .filter_map(|i| i.jwks.as_ref().map(|j| (i.name.as_str(), j)))
    }

    /// The cached verification of `token`, if it was verified before, has not expired, and
    /// the key that verified it can still verify it.
    pub fn cached(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        let cache = self.verified.read().expect("token cache lock");
        let hit = cache.get(token)?;
        let issuer = self.issuers.get(hit.token.issuer)?;
        let fresh = unix_now() <= hit.token.expires_at.saturating_add(issuer.leeway);
        (fresh && issuer.still_holds(&hit.key)).then(|| hit.token.clone())
    }

    /// Verifies `token`, answering from the verified-token cache when it can.
    pub async fn verify_cached(&self, token: &str) -> Result<Arc<VerifiedToken>, AuthFailure> {
        if let Some(hit) = self.cached(token) {
            return Ok(hit);
        }
        let now = unix_now();
        let (verified, key) = match self.verify_bound(token).await {
            Ok(v) => v,
            Err(failure) => {
                // A token cached before (its key since withdrawn, or expired) is dropped, so
                // the cache holds only tokens that still verify.
                let stale = self
                    .verified
                    .read()
                    .expect("token cache lock")
                    .contains_key(token);
                if stale {
                    self.verified
                        .write()
                        .expect("token cache lock")
                        .remove(token);
                }
                return Err(failure);
            }
        };
        let verified = Arc::new(verified);
        let mut cache = self.verified.write().expect("token cache lock");
        if cache.len() >= TOKEN_CACHE_CAPACITY {
            cache.retain(|_, t| now <= t.token.expires_at);
            if cache.len() >= TOKEN_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            Box::from(token),
            CachedToken {
                token: verified.clone(),
                key,
            },
        );
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
        self.verify_bound(token).await.map(|(t, _)| t)
    }

    /// [`verify`](Self::verify), also saying which key verified the token.
    async fn verify_bound(&self, token: &str) -> Result<(VerifiedToken, KeyBinding), AuthFailure> {
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
        // Before any key is tried: an ID token must not even cause an unknown-kid refetch.
        if !issuer.token_types.accepts(header.typ.as_deref()) {
            return Err(AuthFailure::WrongTokenType);
        }
        // `none`, unknown names and algorithms not configured for this issuer all stop here.
        let Some((_, alg, validation)) = issuer
            .validations
            .iter()
            .find(|(name, _, _)| *name == header.alg)
        else {
            return Err(AuthFailure::AlgorithmNotAllowed);
        };
        let kid = header.kid.as_deref();
        let set = issuer.jwks.as_ref().map(|j| j.versioned());
        let first = self.try_keys(issuer, *alg, kid, validation, token, set.as_ref());
        // A kid the current key set does not know may be a rotation: refetch (at most once
        // per cooldown, shared by everyone asking) and try again. Any other outcome stands:
        // the keys are not tried a second time.
        if let (Err(AuthFailure::UnknownKey | AuthFailure::BadSignature), Some(source), Some(kid)) =
            (&first, &issuer.jwks, kid)
        {
            if !set
                .as_ref()
                .and_then(|(_, s)| s.as_ref())
                .is_some_and(|s| s.contains_kid(kid))
            {
                // Bounded by the issuer's jwks_timeout inside, whatever the IdP does.
                source.refresh_for_unknown_kid().await;
                let fresh = source.versioned();
                return self
                    .try_keys(issuer, *alg, Some(kid), validation, token, Some(&fresh))
                    .and_then(|(claims, key)| Ok((self.finish(index, claims)?, key)));
            }
        }
        first.and_then(|(claims, key)| Ok((self.finish(index, claims)?, key)))
    }

    fn try_keys(
        &self,
        issuer: &IssuerVerifier,
        alg: Algorithm,
        kid: Option<&str>,
        validation: &Validation,
        token: &str,
        set: Option<&(u64, Option<Arc<KeySet>>)>,
    ) -> Result<(Map<String, Value>, KeyBinding), AuthFailure> {
        let (version, set) = match set {
            Some((v, s)) => (*v, s.as_deref()),
            None => (0, None),
        };
        let statics = issuer
            .keys
            .iter()
            .filter(|k| {
                k.algorithms.contains(&alg)
                    && match (kid, &k.kid) {
                        (Some(want), Some(have)) => want == have,
                        _ => true,
                    }
            })
            .map(|k| (&k.key, None));
        let published = set
            .into_iter()
            .flat_map(|s| s.candidates(alg, kid))
            .map(|k| (k.key(), Some(k.id())));
        let mut last = AuthFailure::UnknownKey;
        for (key, id) in statics.chain(published) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
                Ok(data) => {
                    let binding = match id {
                        None => KeyBinding::Static,
                        Some(id) => KeyBinding::Published {
                            id: id.clone(),
                            alg,
                            seen: AtomicU64::new(version),
                        },
                    };
                    return Ok((data.claims, binding));
                }
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

impl IssuerVerifier {
    fn is_ready(&self) -> bool {
        !self.keys.is_empty() || self.jwks.as_ref().is_some_and(|j| j.is_ready())
    }

    /// Whether the key that verified a cached token can still verify it.
    fn still_holds(&self, key: &KeyBinding) -> bool {
        match key {
            KeyBinding::Static => true,
            KeyBinding::Published { id, alg, seen } => {
                let Some(source) = &self.jwks else {
                    return false;
                };
                let version = source.version();
                if version == seen.load(Ordering::Relaxed) {
                    return true;
                }
                let held = source.current().is_some_and(|set| set.holds(id, *alg));
                if held {
                    seen.store(version, Ordering::Relaxed);
                }
                held
            }
        }
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
