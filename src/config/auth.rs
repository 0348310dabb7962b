//! `[auth]` validation: trusted issuers, their keys (static or JWKS) and claim rules.

use super::raw::{RawAuth, RawIssuer, RawRules, RawVerifyKey, StringOrList};
use super::{read_secret, Problems, UpstreamKey};
use crate::identity::auth::typ::TokenTypes;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One configured JWT verification key with the algorithms it may verify.
pub struct VerifyKey {
    /// Matched against the token's `kid` when both are present.
    pub kid: Option<String>,
    /// The key material.
    pub key: DecodingKey,
    /// Allowed algorithms of this key's family (never chosen by the token).
    pub algorithms: Vec<Algorithm>,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.key.family())
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// Where an issuer's JWKS comes from.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    /// The JWKS URL, or None to discover it from the issuer's OIDC configuration.
    pub url: Option<http::Uri>,
    /// Background refresh interval.
    pub refresh: Duration,
    /// Minimum time between refreshes caused by unknown `kid`s; also the longest wait between
    /// retries while the issuer has no keys yet.
    pub cooldown: Duration,
    /// Longest one discovery + JWKS fetch may take, and so the longest a request waits on a
    /// refetch for an unknown `kid`. Separate from the upstream's timeouts.
    pub timeout: Duration,
}

/// Claim rules: how a token not in the user table becomes a JourneyBee identity.
#[derive(Debug)]
pub struct ClaimRules {
    /// Claim holding the JourneyBee userId (a number or numeric string).
    pub user_id_claim: Option<String>,
    /// Claim whose value is looked up in `user_ids`.
    pub user_id_lookup_claim: Option<String>,
    /// Claim value → userId.
    pub user_ids: HashMap<String, u64>,
    /// Key for read-level users.
    pub read_key: Option<Arc<UpstreamKey>>,
    /// Key for write-level users.
    pub write_key: Option<Arc<UpstreamKey>>,
    /// Scopes (`scope`, space-separated, or `scp`) granting write.
    pub write_scopes: Vec<String>,
    /// Groups granting write.
    pub write_groups: Vec<String>,
    /// The claim holding groups.
    pub groups_claim: String,
    /// Roles granting write.
    pub write_roles: Vec<String>,
    /// The claim holding roles.
    pub roles_claim: String,
    /// The routes the mapped users may call (within their access level).
    pub routes: crate::ingress::route::RouteSet,
}

/// One trusted issuer, validated.
#[derive(Debug)]
pub struct IssuerSettings {
    /// Name for logs and metric labels.
    pub name: String,
    /// Algorithms its tokens may use.
    pub algorithms: Vec<Algorithm>,
    /// Accepted `iss` values (required and checked when set). With several issuers, a token is
    /// matched to its issuer by this value before verification.
    pub issuer: Option<Vec<String>>,
    /// Accepted audiences (`aud` required and checked when set).
    pub audience: Option<Vec<String>>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim naming the user in the user table.
    pub subject_claim: String,
    /// Static verification keys.
    pub keys: Vec<VerifyKey>,
    /// JWKS source, when keys are published by the identity provider.
    pub jwks: Option<JwksSettings>,
    /// Accepted `typ` header values (RFC 9068 §4).
    pub token_types: TokenTypes,
    /// Claim rules, when users are mapped by claims.
    pub rules: Option<ClaimRules>,
}

/// `[auth]`, validated.
#[derive(Debug)]
pub struct AuthSettings {
    /// Longest accepted token, in bytes.
    pub max_token_size: usize,
    /// Trusted issuers (at least one).
    pub issuers: Vec<IssuerSettings>,
}

/// How long a discovery or JWKS fetch may take by default: an IdP answers in milliseconds, and
/// a request waiting on an unknown-kid refetch should not hang for the upstream's 30 s.
const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

const ALLOWED_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Minimum HMAC secret length in bytes: RFC 7518 §3.2 requires a key at least as long as the
/// hash output; 32 bytes is the floor for HS256.
const MIN_HMAC_SECRET: usize = 32;

pub(super) fn validate_auth(
    raw: RawAuth,
    keys: &[Arc<UpstreamKey>],
    base: &Path,
    p: &mut Problems,
) -> Option<AuthSettings> {
    let max_token_size = p.size(
        "auth.max_token_size",
        raw.max_token_size.as_deref(),
        8 << 10,
    );
    let has_default = raw.algorithms.is_some()
        || !raw.keys.is_empty()
        || raw.jwks_url.is_some()
        || raw.discovery.is_some()
        || raw.issuers.is_empty();
    let mut issuers = Vec::new();
    if has_default {
        let default = RawIssuer {
            name: Some("default".into()),
            algorithms: raw.algorithms,
            issuer: raw.issuer,
            audience: raw.audience,
            leeway: raw.leeway,
            subject_claim: raw.subject_claim,
            keys: raw.keys,
            jwks_url: raw.jwks_url,
            discovery: raw.discovery,
            jwks_refresh: raw.jwks_refresh,
            jwks_cooldown: raw.jwks_cooldown,
            jwks_timeout: raw.jwks_timeout,
            token_types: raw.token_types,
            rules: raw.rules,
        };
        issuers.push(validate_issuer(default, "auth", keys, base, p));
    } else if raw.rules.is_some()
        || raw.issuer.is_some()
        || raw.audience.is_some()
        || raw.token_types.is_some()
        || raw.jwks_timeout.is_some()
    {
        p.push(
            "auth",
            "issuer, audience, token_types, jwks_timeout and rules need algorithms and keys beside them",
        );
    }
    for (i, iss) in raw.issuers.into_iter().enumerate() {
        let path = format!("auth.issuers[{i}]");
        if iss.issuer.is_none() {
            p.push(
                format!("{path}.issuer"),
                "required: tokens are matched to issuers by `iss`",
            );
        }
        issuers.push(validate_issuer(iss, &path, keys, base, p));
    }
    let mut names = std::collections::HashSet::new();
    for iss in &issuers {
        if !names.insert(iss.name.clone()) {
            p.push(
                "auth.issuers",
                format!("issuer name {:?} is used twice", iss.name),
            );
        }
    }
    if issuers.len() > 1 && issuers.iter().any(|i| i.issuer.is_none()) {
        p.push(
            "auth.issuer",
            "with several issuers, each needs its `issuer` (iss) value",
        );
    }
    Some(AuthSettings {
        max_token_size: usize::try_from(max_token_size).unwrap_or(usize::MAX),
        issuers,
    })
}

fn non_empty(v: Option<StringOrList>, path: &str, p: &mut Problems) -> Option<Vec<String>> {
    let v = v?.into_vec();
    if v.is_empty() || v.iter().any(|s| s.is_empty()) {
        p.push(
            path,
            "must be a non-empty string or list of non-empty strings",
        );
    }
    Some(v)
}

fn validate_issuer(
    mut raw: RawIssuer,
    path: &str,
    upstream_keys: &[Arc<UpstreamKey>],
    base: &Path,
    p: &mut Problems,
) -> IssuerSettings {
    let at = |field: &str| format!("{path}.{field}");
    let mut algorithms = Vec::new();
    match &raw.algorithms {
        None => p.push(
            at("algorithms"),
            "missing: list the algorithms tokens may use",
        ),
        Some(list) if list.is_empty() => p.push(at("algorithms"), "must not be empty"),
        Some(list) => {
            for (i, name) in list.iter().enumerate() {
                match name.parse::<Algorithm>() {
                    Ok(a) if ALLOWED_ALGORITHMS.contains(&name.as_str()) => {
                        if !algorithms.contains(&a) {
                            algorithms.push(a)
                        }
                    }
                    _ => p.push(
                        format!("{path}.algorithms[{i}]"),
                        format!("{name:?} is not one of {}", ALLOWED_ALGORITHMS.join(", ")),
                    ),
                }
            }
        }
    }
    let issuer = non_empty(raw.issuer.take(), &at("issuer"), p);
    let audience = non_empty(raw.audience.take(), &at("audience"), p);
    let leeway = p.duration(
        &at("leeway"),
        raw.leeway.as_deref(),
        Duration::from_secs(30),
    );
    let jwks = validate_jwks(&raw, path, issuer.as_deref(), p);
    let subject_claim = raw.subject_claim.unwrap_or_else(|| "sub".into());
    if subject_claim.is_empty() {
        p.push(at("subject_claim"), "must not be empty");
    }
    if raw.keys.is_empty() && jwks.is_none() {
        p.push(
            at("keys"),
            "declare at least one verification key ([[auth.keys]]) or a jwks_url / discovery",
        );
    }
    let keys: Vec<VerifyKey> = raw
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| validate_key(k, &format!("{path}.keys[{i}]"), &algorithms, base, p))
        .collect();
    if jwks.is_some()
        && algorithms
            .iter()
            .any(|a| a.family() == jsonwebtoken::AlgorithmFamily::Hmac)
    {
        p.push(
            at("algorithms"),
            "HMAC algorithms cannot be verified with a JWKS (its keys are public)",
        );
    }
    if jwks.is_none() {
        for a in &algorithms {
            if !keys.is_empty() && !keys.iter().any(|k| k.algorithms.contains(a)) {
                p.push(
                    at("algorithms"),
                    format!("{a:?} is allowed but no key can verify it"),
                );
            }
        }
    }
    let token_types = match &raw.token_types {
        None => TokenTypes::lenient(),
        Some(list) if list.is_empty() => {
            p.push(
                at("token_types"),
                "must not be empty (it would refuse every token); leave it out for the default",
            );
            TokenTypes::lenient()
        }
        Some(list) => {
            for (i, value) in list.iter().enumerate() {
                if let Err(e) = crate::identity::auth::typ::check(value) {
                    p.push(format!("{path}.token_types[{i}]"), e);
                }
            }
            TokenTypes::from_list(list)
        }
    };
    let rules = raw
        .rules
        .map(|r| validate_rules(r, &at("rules"), upstream_keys, p));
    IssuerSettings {
        name: raw.name.unwrap_or_else(|| path.to_string()),
        algorithms,
        issuer,
        audience,
        leeway,
        subject_claim,
        keys,
        jwks,
        token_types,
        rules,
    }
}

fn validate_jwks(
    raw: &RawIssuer,
    path: &str,
    issuer: Option<&[String]>,
    p: &mut Problems,
) -> Option<JwksSettings> {
    let discovery = raw.discovery.unwrap_or(false);
    let url = match (&raw.jwks_url, discovery) {
        (None, false) => return None,
        (Some(_), true) => {
            p.push(
                format!("{path}.jwks_url"),
                "set jwks_url or discovery = true, not both",
            );
            None
        }
        (Some(u), false) => match u.parse::<http::Uri>() {
            Ok(uri) => {
                if let Err(e) = crate::identity::auth::jwks::check_jwks_url(&uri) {
                    p.push(format!("{path}.jwks_url"), e);
                }
                Some(uri)
            }
            Err(_) => {
                p.push(format!("{path}.jwks_url"), format!("{u:?} is not a URL"));
                None
            }
        },
        (None, true) => {
            if issuer.is_none_or(|i| i.len() != 1) {
                p.push(
                    format!("{path}.discovery"),
                    "needs exactly one `issuer` to discover from",
                );
            }
            None
        }
    };
    Some(JwksSettings {
        url,
        refresh: p.duration(
            &format!("{path}.jwks_refresh"),
            raw.jwks_refresh.as_deref(),
            Duration::from_secs(300),
        ),
        cooldown: p.duration(
            &format!("{path}.jwks_cooldown"),
            raw.jwks_cooldown.as_deref(),
            Duration::from_secs(30),
        ),
        timeout: {
            let at = format!("{path}.jwks_timeout");
            let t = p.duration(&at, raw.jwks_timeout.as_deref(), DEFAULT_JWKS_TIMEOUT);
            if t.is_zero() {
                p.push(at, "must be more than zero");
            }
            t
        },
    })
}

fn validate_key(
    k: &RawVerifyKey,
    path: &str,
    algorithms: &[Algorithm],
    base: &Path,
    p: &mut Problems,
) -> Option<VerifyKey> {
    let hmac = k.hmac_secret_env.is_some() || k.hmac_secret_file.is_some();
    let public = k.public_key_env.is_some() || k.public_key_file.is_some();
    let key = match (hmac, public) {
        (true, true) => {
            p.push(path, "set either an HMAC secret or a public key, not both");
            return None;
        }
        (false, false) => {
            p.push(
                path,
                "set hmac_secret_env/hmac_secret_file or public_key_env/public_key_file",
            );
            return None;
        }
        (true, false) => {
            let secret = read_secret(
                path,
                k.hmac_secret_env.as_deref(),
                k.hmac_secret_file.as_deref(),
                base,
                "hmac secret",
                p,
            )?;
            if secret.len() < MIN_HMAC_SECRET {
                p.push(
                    path,
                    format!("HMAC secret must be at least {MIN_HMAC_SECRET} bytes"),
                );
            }
            DecodingKey::from_secret(secret.as_bytes())
        }
        (false, true) => {
            let pem = read_secret(
                path,
                k.public_key_env.as_deref(),
                k.public_key_file.as_deref(),
                base,
                "public key",
                p,
            )?;
            // The key's own encoding decides its family, never a token.
            let parsed = DecodingKey::from_rsa_pem(pem.as_bytes())
                .or_else(|_| DecodingKey::from_ec_pem(pem.as_bytes()))
                .or_else(|_| DecodingKey::from_ed_pem(pem.as_bytes()));
            match parsed {
                Ok(key) => key,
                Err(_) => {
                    p.push(path, "not a PEM RSA, EC or Ed25519 public key");
                    return None;
                }
            }
        }
    };
    let own: Vec<Algorithm> = algorithms
        .iter()
        .copied()
        .filter(|a| a.family() == key.family())
        .collect();
    if own.is_empty() && !algorithms.is_empty() {
        p.push(
            path,
            format!("no allowed algorithm fits this {:?} key", key.family()),
        );
    }
    Some(VerifyKey {
        kid: k.kid.clone(),
        key,
        algorithms: own,
    })
}

fn validate_rules(
    raw: RawRules,
    path: &str,
    keys: &[Arc<UpstreamKey>],
    p: &mut Problems,
) -> ClaimRules {
    let find = |name: &Option<String>, field: &str, p: &mut Problems| {
        let name = name.as_ref()?;
        let key = keys.iter().find(|k| &*k.name == name).cloned();
        if key.is_none() && !keys.is_empty() {
            p.push(
                format!("{path}.{field}"),
                format!("no key named {name:?} in upstream.keys"),
            );
        }
        key
    };
    let read_key = find(&raw.read_key, "read_key", p);
    let write_key = find(&raw.write_key, "write_key", p);
    if raw.read_key.is_none() && raw.write_key.is_none() {
        p.push(
            path,
            "set read_key and/or write_key: the upstream key rule-mapped users use",
        );
    }
    if let Some(k) = &read_key {
        if !k.read {
            p.push(
                format!("{path}.read_key"),
                format!("key {:?} has no read access", k.name),
            );
        }
    }
    if let Some(k) = &write_key {
        if !k.write || !k.read {
            p.push(
                format!("{path}.write_key"),
                format!("key {:?} must have read and write access", k.name),
            );
        }
    }
    let grants_write =
        !raw.write_scopes.is_empty() || !raw.write_groups.is_empty() || !raw.write_roles.is_empty();
    if grants_write && raw.write_key.is_none() {
        p.push(
            format!("{path}.write_key"),
            "write scopes/groups/roles need a write_key",
        );
    }
    match (&raw.user_id_claim, &raw.user_id_lookup_claim, &raw.user_ids) {
        (Some(_), None, None) | (None, Some(_), Some(_)) => {}
        _ => p.push(
            path,
            "set user_id_claim, or user_id_lookup_claim with a user_ids table",
        ),
    }
    let mut user_ids = HashMap::new();
    for (k, v) in raw.user_ids.iter().flatten() {
        if *v <= 0 {
            p.push(format!("{path}.user_ids.{k}"), "must be a positive integer");
        } else {
            user_ids.insert(k.clone(), *v as u64);
        }
    }
    ClaimRules {
        user_id_claim: raw.user_id_claim,
        user_id_lookup_claim: raw.user_id_lookup_claim,
        user_ids,
        read_key,
        write_key,
        write_scopes: raw.write_scopes,
        write_groups: raw.write_groups,
        groups_claim: raw.groups_claim.unwrap_or_else(|| "groups".into()),
        write_roles: raw.write_roles,
        roles_claim: raw.roles_claim.unwrap_or_else(|| "roles".into()),
        routes: super::route_set(&format!("{path}.routes"), raw.routes.as_deref(), p),
    }
}
