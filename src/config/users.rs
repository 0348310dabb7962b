//! `[[users]]`: the identity table (subject → JourneyBee user, access, key, fair share,
//! routes), and the route lists users and rules may be restricted to.

use super::names::valid_name;
use super::raw::RawUser;
use super::{ceilings, Problems, RequestsPerMinute, UpstreamKey};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Access level of a mapped user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// May list.
    Read,
    /// May list and create.
    Write,
}

/// A mapped user: who the verified token belongs to, as far as JourneyBee is concerned.
#[derive(Debug)]
pub struct Identity {
    /// The config's name for the user (log field and optional metric label).
    pub name: Arc<str>,
    /// Position in the user table, for per-user state held in arrays.
    pub index: usize,
    /// The JourneyBee `userId` put on list calls.
    pub user_id: u64,
    /// What the user may do through the gateway.
    pub access: Access,
    /// The upstream key the user's requests use.
    pub key: Arc<UpstreamKey>,
    /// The user's fair share of upstream requests per minute (None: no per-user limit).
    pub requests_per_minute: Option<u32>,
    /// The routes the user may call (within its access level).
    pub routes: crate::ingress::route::RouteSet,
}

/// A `[[users]] certificate` value as it is matched: a URI SAN as written, a DNS SAN in lower
/// case. Wildcards are refused: a user is one client.
fn certificate_name(value: &str) -> Result<String, String> {
    let printable = |s: &str| s.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if value.contains("://") {
        if printable(value) {
            return Ok(value.to_string());
        }
        return Err(format!(
            "{value:?} is not a URI (no spaces or control characters)"
        ));
    }
    let dns = value.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if dns.len() <= 253 && dns.split('.').all(label_ok) {
        Ok(dns)
    } else {
        Err(format!(
            "{value:?} is neither a URI SAN (spiffe://trust-domain/path) nor a DNS name (no wildcards)"
        ))
    }
}

/// The identity table: by token subject, and by client certificate name (URI or DNS SAN). A
/// user may be in both (then the two credentials name the same user).
pub(super) struct UserTable {
    pub(super) by_subject: HashMap<String, Arc<Identity>>,
    pub(super) by_certificate: HashMap<String, Arc<Identity>>,
}

pub(super) fn validate_users(
    raw: &[RawUser],
    keys: &[Arc<UpstreamKey>],
    keys_known: bool,
    default_rpm: Option<u32>,
    p: &mut Problems,
) -> UserTable {
    if let Some(n) = default_rpm {
        if let Err(e) = ceilings::requests_per_minute(i64::from(n)) {
            p.push("rate_limit.per_user_requests_per_minute", e);
        }
    }
    let mut users = HashMap::new();
    let mut certificates = HashMap::new();
    let mut names = HashSet::new();
    // Positions in the table, for per-user state held in arrays (by subject or certificate).
    let mut count = 0usize;
    for (i, u) in raw.iter().enumerate() {
        let path = format!("users[{i}]");
        let subject = u.subject.clone().filter(|s| !s.is_empty());
        let certificate = match u.certificate.as_deref().map(certificate_name) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                p.push(format!("{path}.certificate"), e);
                continue;
            }
        };
        let name = match (&u.name, &subject) {
            (Some(n), _) => n.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) if certificate.is_some() => {
                p.push(
                    format!("{path}.name"),
                    "missing (a user mapped by certificate needs a name: it becomes a log field and metric label)",
                );
                continue;
            }
            (None, None) => {
                p.push(
                    format!("{path}.subject"),
                    "missing (or a certificate, for a machine client)",
                );
                continue;
            }
        };
        if !valid_name(&name) {
            p.push(
                format!("{path}.name"),
                "use letters, digits, '-', '_', '.', '@' (it becomes a log field and metric label)",
            );
        }
        if !names.insert(name.clone()) {
            p.push(format!("{path}.name"), format!("{name:?} is used twice"));
        }
        let access = match u.access.as_deref() {
            Some("read") => Access::Read,
            Some("write") => Access::Write,
            Some(other) => {
                p.push(
                    format!("{path}.access"),
                    format!("{other:?} is not \"read\" or \"write\""),
                );
                continue;
            }
            None => {
                p.push(format!("{path}.access"), "missing (\"read\" or \"write\")");
                continue;
            }
        };
        let user_id = match u.user_id {
            Some(id) if id > 0 => id as u64,
            Some(_) => {
                p.push(format!("{path}.user_id"), "must be a positive integer");
                continue;
            }
            None => {
                p.push(format!("{path}.user_id"), "missing (the JourneyBee userId)");
                continue;
            }
        };
        let Some(key_name) = u.upstream_key.as_deref() else {
            p.push(format!("{path}.upstream_key"), "missing");
            continue;
        };
        let Some(key) = keys.iter().find(|k| &*k.name == key_name) else {
            if keys_known {
                p.push(
                    format!("{path}.upstream_key"),
                    format!("no key named {key_name:?} in upstream.keys"),
                );
            }
            continue;
        };
        if !key.read {
            p.push(
                format!("{path}.upstream_key"),
                format!("key {key_name:?} is declared without read access"),
            );
        }
        if access == Access::Write && !key.write {
            p.push(
                format!("{path}.upstream_key"),
                format!("write user mapped to key {key_name:?}, which is declared read-only"),
            );
        }
        let identity = Arc::new(Identity {
            name: Arc::from(name.as_str()),
            index: count,
            user_id,
            access,
            key: key.clone(),
            requests_per_minute: match (u.requests_per_minute, key.requests_per_minute) {
                (Some(_), RequestsPerMinute::Unlimited) => {
                    p.push(
                        format!("{path}.requests_per_minute"),
                        format!(
                            "a fair share of key {key_name:?}'s budget, but the key is \"unlimited\" \
                             (no local budget to share): remove one of them"
                        ),
                    );
                    None
                }
                (Some(n), _) => match ceilings::requests_per_minute(i64::from(n)) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        p.push(format!("{path}.requests_per_minute"), e);
                        None
                    }
                },
                (None, _) => default_rpm.filter(|n| *n > 0),
            },
            routes: route_set(&format!("{path}.routes"), u.routes.as_deref(), p),
        });
        count += 1;
        if let Some(subject) = subject {
            if users.insert(subject.clone(), identity.clone()).is_some() {
                p.push(
                    format!("{path}.subject"),
                    format!("{subject:?} is mapped twice"),
                );
            }
        }
        if let Some(certificate) = certificate {
            if certificates.insert(certificate.clone(), identity).is_some() {
                p.push(
                    format!("{path}.certificate"),
                    format!("{certificate:?} is mapped twice"),
                );
            }
        }
    }
    UserTable {
        by_subject: users,
        by_certificate: certificates,
    }
}

/// A config list of route names (`"GET /api/v1/tiers"`) as a set; `None` is every route.
pub(crate) fn route_set(
    path: &str,
    names: Option<&[String]>,
    p: &mut Problems,
) -> crate::ingress::route::RouteSet {
    match names {
        None => crate::ingress::route::RouteSet::ALL,
        Some(names) => crate::ingress::route::RouteSet::parse(names).unwrap_or_else(|unknown| {
            p.push(
                path,
                format!(
                    "not served routes: {} (names look like \"GET /api/v1/tiers\"; see GET /openapi.json)",
                    unknown.join(", ")
                ),
            );
            crate::ingress::route::RouteSet::ALL
        }),
    }
}
