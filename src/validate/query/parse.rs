//! Validating and normalizing a query string against a route's [`QuerySpec`]: every problem
//! reported, the rest in canonical form ([`ListQuery`]); and [`ParsedQuery`], what the later
//! stages need from a request's query.

use super::canonical::ListQuery;
use super::form::{decode, decode_borrowed, encode};
use super::json_params::{custom_field_filters, sort_list};
use super::spec::{Kind, QuerySpec, PARTNERSHIPS};
use crate::validate::problems::{shorten, FieldError};
use std::collections::HashSet;

/// Size limits for list queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Maximum length of the whole raw query string, in bytes (default 4096).
    pub max_query_len: usize,
    /// Maximum length of one decoded value, in bytes (default 1024).
    pub max_value_len: usize,
    /// Maximum number of items in one id list (default 100).
    pub max_ids: usize,
    /// Maximum length of `search`, in characters (default 200).
    pub max_search_len: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_query_len: 4096,
            max_value_len: 1024,
            max_ids: 100,
            max_search_len: 200,
        }
    }
}

/// Validates and normalizes a raw query string (without the leading `?`). Every problem is
/// reported, with `field` naming the parameter (or a path inside a JSON parameter, such as
/// `customFields[0].value`). `None` and `""` are the empty query.
pub fn parse_list_query(
    raw: Option<&str>,
    limits: &QueryLimits,
) -> Result<ListQuery, Vec<FieldError>> {
    parse_query(raw, &PARTNERSHIPS, limits)
}

/// A request's query string, parsed once (by the router) for every later stage: auth looks
/// for a second credential, policy for another user's id, validation for the canonical form.
#[derive(Debug)]
pub struct ParsedQuery {
    /// It carries `access_token` (RFC 6750 §2.3): a second credential, refused by auth.
    pub access_token: bool,
    /// Every well-formed `userId` it names, repeats included (policy refuses another user's).
    pub user_ids: Vec<u64>,
    /// A read's canonical query, or every problem found; `None` for a write, whose query is
    /// never forwarded.
    pub list: Option<Result<ListQuery, Vec<FieldError>>>,
}

impl ParsedQuery {
    /// Parses `raw` for a route: in full against `spec` for a read (`read`), only for the
    /// credential for a write.
    pub fn parse(raw: Option<&str>, spec: &QuerySpec, read: bool, limits: &QueryLimits) -> Self {
        if !read {
            let access_token = raw.is_some_and(|q| {
                q.split('&').any(|seg| {
                    decode(seg.split_once('=').map_or(seg, |(k, _)| k)).as_deref()
                        == Some("access_token")
                })
            });
            return ParsedQuery {
                access_token,
                user_ids: Vec::new(),
                list: None,
            };
        }
        let mut seen = Seen::default();
        let list = parse_query_seen(raw, spec, limits, &mut seen);
        ParsedQuery {
            access_token: seen.access_token,
            user_ids: seen.user_ids,
            list: Some(list),
        }
    }
}

/// What a parse noticed besides the canonical form.
#[derive(Debug, Default)]
struct Seen {
    access_token: bool,
    user_ids: Vec<u64>,
}

/// Validates and normalizes a raw query string against a route's [`QuerySpec`].
pub fn parse_query(
    raw: Option<&str>,
    spec: &QuerySpec,
    limits: &QueryLimits,
) -> Result<ListQuery, Vec<FieldError>> {
    parse_query_seen(raw, spec, limits, &mut Seen::default())
}

fn parse_query_seen(
    raw: Option<&str>,
    spec: &QuerySpec,
    limits: &QueryLimits,
    noticed: &mut Seen,
) -> Result<ListQuery, Vec<FieldError>> {
    let raw = raw.unwrap_or("");
    if raw.len() > limits.max_query_len {
        // Nothing else is looked at: the limit exists to bound the work done here.
        return Err(vec![FieldError::new(
            "query",
            format!("query string longer than {} bytes", limits.max_query_len),
        )]);
    }
    let mut errors = Vec::new();
    // The documented parameters given, and given twice, by their place in the spec (a spec
    // has at most 64: checked by a test over every route).
    let mut seen: u64 = 0;
    let mut repeated: u64 = 0;
    let bit = |name: &str| {
        spec.params
            .iter()
            .position(|(k, _)| *k == name)
            .map_or(0, |i| 1u64 << i)
    };
    let mut unknown: HashSet<String> = HashSet::new();
    let mut params: Vec<(std::borrow::Cow<'static, str>, String)> = Vec::new();
    let mut client_user_id = None;

    // Empty segments (`a=1&&b=2`) are skipped, as form_urlencoded::parse does.
    for segment in raw.split('&').filter(|s| !s.is_empty()) {
        let (raw_name, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
        let Some(name) = decode_borrowed(raw_name) else {
            errors.push(FieldError::new(
                shorten(raw_name, 64),
                "parameter name is not valid UTF-8 after percent-decoding",
            ));
            continue;
        };
        match &*name {
            "access_token" => noticed.access_token = true,
            "userId" => noticed
                .user_ids
                .extend(decode(raw_value).as_deref().and_then(parse_id)),
            _ => {}
        }
        let Some((index, &(name, kind))) = spec
            .params
            .iter()
            .enumerate()
            .find(|(_, (k, _))| *k == name)
        else {
            if spec.open {
                // Undocumented here: forwarded as given (and part of the cache key).
                match decode(raw_value) {
                    Some(v) if v.len() <= limits.max_value_len => {
                        params.push((std::borrow::Cow::Owned(name.into_owned()), v));
                    }
                    _ => errors.push(FieldError::new(
                        shorten(&name, 64),
                        format!(
                            "must be valid UTF-8 and at most {} bytes",
                            limits.max_value_len
                        ),
                    )),
                }
                continue;
            }
            if unknown.insert(name.to_string()) {
                errors.push(FieldError::new(
                    shorten(&name, 64),
                    "unknown query parameter",
                ));
            }
            continue;
        };
        // A repeated parameter is ambiguous (first wins? last wins? both?), and upstream's
        // reading is undocumented, so it is refused instead of guessed.
        let b = 1u64 << index;
        if seen & b != 0 {
            if repeated & b == 0 {
                repeated |= b;
                errors.push(FieldError::new(
                    name,
                    "given more than once; give each parameter once",
                ));
            }
            continue;
        }
        seen |= b;
        let Some(value) = decode(raw_value) else {
            errors.push(FieldError::new(
                name,
                "not valid UTF-8 after percent-decoding",
            ));
            continue;
        };
        if value.len() > limits.max_value_len {
            errors.push(FieldError::new(
                name,
                format!("longer than {} bytes", limits.max_value_len),
            ));
            continue;
        }
        let normalized = match kind {
            Kind::UserId => {
                match parse_id(&value) {
                    Some(id) => client_user_id = Some(id),
                    None => errors.push(FieldError::new(name, "must be a positive integer")),
                }
                // userId is never part of the canonical form: upstream gets the mapped one.
                continue;
            }
            Kind::Opaque => non_empty(name, value, &mut errors),
            Kind::Search => non_empty(name, value, &mut errors).and_then(|v| {
                if v.chars().count() > limits.max_search_len {
                    errors.push(FieldError::new(
                        name,
                        format!("must be at most {} characters", limits.max_search_len),
                    ));
                    None
                } else {
                    Some(v)
                }
            }),
            Kind::Enum(allowed) => {
                if allowed.contains(&value.as_str()) {
                    Some(value)
                } else {
                    errors.push(FieldError::new(
                        name,
                        format!("must be one of {}", allowed.join(", ")),
                    ));
                    None
                }
            }
            Kind::EnumSet(allowed) => {
                let mut items: Vec<&str> = value.split(',').map(str::trim).collect();
                if let Some(bad) = items.iter().find(|i| !allowed.contains(i)) {
                    errors.push(FieldError::new(
                        name,
                        format!(
                            "{:?} is not one of {} (a comma-separated list)",
                            shorten(bad, 32),
                            allowed.join(", ")
                        ),
                    ));
                    None
                } else {
                    items.sort_unstable();
                    items.dedup();
                    Some(items.join(","))
                }
            }
            Kind::Id => match parse_id(&value) {
                Some(id) => Some(id.to_string()),
                None => {
                    errors.push(FieldError::new(name, "must be a positive integer"));
                    None
                }
            },
            Kind::Any => Some(value),
            Kind::Ids => id_list(name, &value, limits.max_ids, &mut errors),
            Kind::Flag => {
                if value == "1" {
                    Some(value)
                } else {
                    errors.push(FieldError::new(name, "only the value 1 is accepted"));
                    None
                }
            }
            Kind::CustomFields => custom_field_filters(&value, &mut errors),
            Kind::Sort(types) => sort_list(&value, types, &mut errors),
        };
        if let Some(v) = normalized {
            params.push((std::borrow::Cow::Borrowed(name), v));
        }
    }
    let (assigned, unassigned) = (bit("assigned"), bit("unassigned"));
    if assigned != 0 && seen & assigned != 0 && unassigned != 0 && seen & unassigned != 0 {
        errors.push(FieldError::new(
            "unassigned",
            "cannot be combined with assigned; give one of them",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    params.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let canonical = encode(params.iter().map(|(k, v)| (&**k, v.as_str())));
    Ok(ListQuery {
        params,
        canonical,
        client_user_id,
    })
}

fn non_empty(name: &'static str, value: String, errors: &mut Vec<FieldError>) -> Option<String> {
    if value.is_empty() {
        errors.push(FieldError::new(name, "must not be empty"));
        None
    } else {
        Some(value)
    }
}

/// A positive integer written as plain ASCII digits (no sign, no spaces), 1..=i64::MAX.
/// Leading zeros are accepted and normalized away.
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>()
        .ok()
        .filter(|n| (1..=i64::MAX.unsigned_abs()).contains(n))
}

/// Comma-separated positive integers → sorted, de-duplicated, joined by `,`.
fn id_list(
    name: &'static str,
    value: &str,
    max_ids: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let items: Vec<&str> = value.split(',').collect();
    if items.len() > max_ids {
        errors.push(FieldError::new(
            name,
            format!("at most {max_ids} ids are accepted"),
        ));
        return None;
    }
    let mut ids = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            errors.push(FieldError::new(
                name,
                format!(
                    "item {} is empty; expected comma-separated positive integers such as 1,2,3",
                    i + 1
                ),
            ));
            ok = false;
        } else if let Some(id) = parse_id(item) {
            ids.push(id);
        } else {
            errors.push(FieldError::new(
                name,
                format!(
                    "item {} ({:?}) is not a positive integer",
                    i + 1,
                    shorten(item, 32)
                ),
            ));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    ids.sort_unstable();
    ids.dedup();
    Some(ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_query_spec_fits_the_parsers_bitmask() {
        for route in crate::ingress::route::Route::ALL {
            if let Some(spec) = route.spec() {
                assert!(spec.query.params.len() <= 64, "{route:?}");
            }
        }
    }
}
