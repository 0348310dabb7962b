//! `[[users]]`: the identity table (subject → JourneyBee user, access, key, fair share,
//! routes), and the route lists users and rules may be restricted to.

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
    pub routes: crate::route::RouteSet,
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b'@')
}

pub(super) fn validate_users(
    raw: &[RawUser],
    keys: &[Arc<UpstreamKey>],
    keys_known: bool,
    default_rpm: Option<u32>,
    p: &mut Problems,
) -> HashMap<String, Arc<Identity>> {
    if let Some(n) = default_rpm {
        if let Err(e) = ceilings::requests_per_minute(i64::from(n)) {
            p.push("rate_limit.per_user_requests_per_minute", e);
        }
    }
    let mut users = HashMap::new();
    let mut names = HashSet::new();
    for (i, u) in raw.iter().enumerate() {
        let path = format!("users[{i}]");
        let Some(subject) = u.subject.clone().filter(|s| !s.is_empty()) else {
            p.push(format!("{path}.subject"), "missing");
            continue;
        };
        let name = u.name.clone().unwrap_or_else(|| subject.clone());
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
            index: users.len(),
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
        if users.insert(subject.clone(), identity).is_some() {
            p.push(
                format!("{path}.subject"),
                format!("{subject:?} is mapped twice"),
            );
        }
    }
    users
}

/// A config list of route names (`"GET /api/v1/tiers"`) as a set; `None` is every route.
pub(crate) fn route_set(
    path: &str,
    names: Option<&[String]>,
    p: &mut Problems,
) -> crate::route::RouteSet {
    match names {
        None => crate::route::RouteSet::ALL,
        Some(names) => crate::route::RouteSet::parse(names).unwrap_or_else(|unknown| {
            p.push(
                path,
                format!(
                    "not served routes: {} (names look like \"GET /api/v1/tiers\"; see GET /openapi.json)",
                    unknown.join(", ")
                ),
            );
            crate::route::RouteSet::ALL
        }),
    }
}
