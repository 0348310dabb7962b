//! Query validation and normalization for every read route (`GET /api/v1/partnerships`, leads,
//! deals, the lookups), each described by a [`QuerySpec`] in the route table.
//!
//! The normalized form is both the cache key and what is forwarded upstream, so two queries
//! normalize to the same form only when JourneyBee must answer them identically:
//!
//! * parameters are ordered by name (order never matters to a query-string reader);
//! * id lists (`stages`, `tags`, `categories`, `tiers`, `users`) are filter *sets*: parsed as
//!   integers, sorted, de-duplicated and joined with `,`; ASCII spaces and tabs around items are
//!   tolerated (`1, 2`) because they carry no meaning once the items are integers;
//! * `customFields` filters are ANDed independently, so they are ordered by id and re-serialized
//!   compactly with a fixed key order; values inside a filter are kept as given;
//! * `sort` is a priority list: re-serialized compactly with a fixed key order, but its array
//!   order is kept;
//! * `search`, `cursor` and `view` are kept exactly as given after percent-decoding (the
//!   project's reading: case and spacing of `search` can change the answer; `cursor` is opaque);
//! * a missing `view` is not the same as `view=all` (the default depends on the company).
//!
//! Decoding follows `application/x-www-form-urlencoded` (`+` is a space); the output is encoded
//! with [`form_urlencoded::Serializer`], so `canonical()` parses back to the same query.
//! Values must be UTF-8 after percent-decoding: a lossy replacement would silently change what
//! upstream is asked.

use super::FieldError;
use serde_json::{Map, Value};
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

/// A validated list query in canonical form. Equality/Hash mean "upstream must answer
/// identically" for the same user: they cover the normalized parameters only. The
/// client-supplied `userId` is left out because it never reaches upstream (the gateway sends
/// the mapped one, after policy has refused any other), so a cache keyed on this value plus
/// the mapped identity shares entries between `?userId=<own>&x` and `?x`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Normalized parameters, ordered by name; never contains `userId`.
    params: Vec<(std::borrow::Cow<'static, str>, String)>,
    /// `params` encoded.
    canonical: String,
    client_user_id: Option<u64>,
}

impl PartialEq for ListQuery {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params
    }
}

impl Eq for ListQuery {}

impl std::hash::Hash for ListQuery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.params.hash(state);
    }
}

impl ListQuery {
    /// The client-supplied userId, if any (the gateway compares it with the mapped identity).
    pub fn client_user_id(&self) -> Option<u64> {
        self.client_user_id
    }

    /// The canonical query WITHOUT userId: parameters ordered by name, percent-encoded
    /// (form_urlencoded::Serializer), e.g. `search=Tech&stages=1%2C2&view=all`. Empty string
    /// when there are no parameters.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The query string to send upstream: the canonical parameters plus `userId=<user_id>`,
    /// all ordered by name.
    pub fn upstream_query(&self, user_id: u64) -> String {
        let mut digits = [0u8; 20];
        let user = format_u64(user_id, &mut digits);
        let mut s = String::with_capacity(self.query_len(Some(user)));
        self.push_query(&mut s, Some(user));
        s
    }

    /// The path and query forwarded upstream for a read of `path` (which the router matched
    /// exactly): the canonical parameters plus the forced `userId` where the route takes one,
    /// all ordered by name. The cache keys on exactly this, so what is cached is what
    /// upstream was asked.
    pub fn target(&self, path: &str, user_id: Option<u64>) -> http::uri::PathAndQuery {
        let mut digits = [0u8; 20];
        let user = user_id.map(|id| format_u64(id, &mut digits));
        // Assembled in a buffer of its exact size, which `Bytes` then takes over without a
        // second allocation.
        let query_len = self.query_len(user);
        let mut s = String::with_capacity(path.len() + usize::from(query_len > 0) + query_len);
        s.push_str(path);
        if query_len > 0 {
            s.push('?');
        }
        self.push_query(&mut s, user);
        debug_assert_eq!(s.len(), s.capacity());
        // A matched path and an encoded query: always a valid request target.
        http::uri::PathAndQuery::try_from(s).expect("a matched path and an encoded query")
    }

    /// The length of the query [`Self::push_query`] writes.
    fn query_len(&self, user: Option<&str>) -> usize {
        let extra = user.map_or(0, |u| "userId=".len() + u.len() + 1);
        (self.canonical.len() + extra)
            .saturating_sub(usize::from(self.canonical.is_empty() && user.is_some()))
    }

    /// Appends the canonical parameters with `userId=<user>` (if any) in its place by name.
    /// The canonical form is already encoded, and `userId=<digits>` needs no encoding;
    /// segments split on `&` are whole parameters (an `&` inside a value is encoded).
    fn push_query(&self, s: &mut String, user: Option<&str>) {
        let mut first = true;
        let mut push = |s: &mut String, segment: &str| {
            if !first {
                s.push('&');
            }
            first = false;
            s.push_str(segment);
        };
        let mut pending = user;
        for segment in self.canonical.split('&').filter(|seg| !seg.is_empty()) {
            let name = segment.split_once('=').map_or(segment, |(k, _)| k);
            if let Some(u) = pending.filter(|_| name > "userId") {
                push(s, "userId=");
                s.push_str(u);
                pending = None;
            }
            push(s, segment);
        }
        if let Some(u) = pending {
            push(s, "userId=");
            s.push_str(u);
        }
    }
}

/// What a documented parameter holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The caller's JourneyBee user id: checked against the mapped one, never forwarded as given.
    UserId,
    /// A non-empty opaque string (`cursor`).
    Opaque,
    /// Free text, bounded (`search`).
    Search,
    /// One of the listed values.
    Enum(&'static [&'static str]),
    /// A comma-separated set of the listed values (sorted, de-duplicated).
    EnumSet(&'static [&'static str]),
    /// A set of positive integer ids.
    Ids,
    /// One positive integer id.
    Id,
    /// Present with the value `1`.
    Flag,
    /// Any value, kept as given (`indirect`: "any value").
    Any,
    /// The JSON custom-field filter list.
    CustomFields,
    /// The JSON sort list, with the sort types the route accepts.
    Sort(&'static [&'static str]),
}

/// The documented query of one route.
#[derive(Debug, Clone, Copy)]
pub struct QuerySpec {
    /// The documented parameters (exact, case-sensitive names).
    pub params: &'static [(&'static str, Kind)],
    /// Whether the route's query is only partly documented: undocumented parameters are then
    /// forwarded as given instead of refused.
    pub open: bool,
}

impl QuerySpec {
    /// Whether the route takes a `userId` (forced to the caller's mapped id).
    pub fn takes_user_id(&self) -> bool {
        self.params.iter().any(|(_, k)| matches!(k, Kind::UserId))
    }
}

/// `GET /api/v1/partnerships`.
pub const PARTNERSHIPS: QuerySpec = QuerySpec {
    params: &[
        ("userId", Kind::UserId),
        ("cursor", Kind::Opaque),
        ("search", Kind::Search),
        (
            "view",
            Kind::Enum(&["all", "assigned", "referral", "reseller"]),
        ),
        ("stages", Kind::Ids),
        ("tags", Kind::Ids),
        ("categories", Kind::Ids),
        ("tiers", Kind::Ids),
        ("users", Kind::Ids),
        ("assigned", Kind::Flag),
        ("unassigned", Kind::Flag),
        ("customFields", Kind::CustomFields),
        ("sort", Kind::Sort(&["stage", "category", "tier"])),
    ],
    open: false,
};

/// `GET /api/v1/leads`.
pub const LEADS: QuerySpec = QuerySpec {
    params: &[
        ("userId", Kind::UserId),
        ("cursor", Kind::Opaque),
        ("search", Kind::Search),
        (
            "view",
            Kind::Enum(&["received", "sent", "reseller", "campaigns"]),
        ),
        ("assigned", Kind::Flag),
        ("unassigned", Kind::Flag),
        (
            "status",
            Kind::EnumSet(&["new", "contacted", "qualified", "converted", "lost"]),
        ),
        ("tags", Kind::Ids),
        ("users", Kind::Ids),
        ("customFields", Kind::CustomFields),
        ("sort", Kind::Sort(&["status"])),
    ],
    open: false,
};

/// `GET /api/v1/lead-deals`: only partly documented, so other parameters are forwarded.
pub const LEAD_DEALS: QuerySpec = QuerySpec {
    params: &[
        ("view", Kind::Opaque),
        ("cursor", Kind::Opaque),
        ("search", Kind::Search),
        ("assigned", Kind::Flag),
        ("unassigned", Kind::Flag),
        ("showPartnersStages", Kind::Any),
        ("stages", Kind::Ids),
        ("phases", Kind::Any),
        ("tags", Kind::Ids),
    ],
    open: true,
};

/// `GET /api/v1/users`.
pub const USERS: QuerySpec = QuerySpec {
    params: &[("indirect", Kind::Any)],
    open: false,
};

/// `GET /api/v1/tags`.
pub const TAGS: QuerySpec = QuerySpec {
    params: &[
        (
            "association",
            Kind::Enum(&["lead", "lead_deal", "partner", "card"]),
        ),
        ("partner_type", Kind::Enum(&["referral", "reseller"])),
    ],
    open: false,
};

/// `GET /api/v1/custom-fields`.
pub const CUSTOM_FIELDS: QuerySpec = QuerySpec {
    params: &[
        ("category", Kind::Enum(&["lead", "lead_deal", "partner"])),
        ("partner_type", Kind::Enum(&["referral", "reseller"])),
    ],
    open: false,
};

/// `GET /api/v1/contacts`.
pub const CONTACTS: QuerySpec = QuerySpec {
    params: &[("partnership_id", Kind::Id)],
    open: false,
};

/// A route with no documented query parameter.
pub const NONE: QuerySpec = QuerySpec {
    params: &[],
    open: false,
};

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

fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// [`decode`], without a copy when there is nothing to decode (a parameter's name, nearly
/// always).
fn decode_borrowed(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    if s.bytes().any(|b| b == b'+' || b == b'%') {
        decode(s).map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(s))
    }
}

/// `application/x-www-form-urlencoded` decoding (`+` → space, `%XX` → byte, a malformed `%`
/// kept literally, as form_urlencoded does); `None` when the result is not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(c: &u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
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
/// `n` in decimal, without allocating.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>()
        .ok()
        .filter(|n| (1..=i64::MAX.unsigned_abs()).contains(n))
}

/// A JSON positive integer id (1..=i64::MAX); floats and strings are refused.
fn json_id(v: &Value) -> Option<u64> {
    v.as_i64()
        .filter(|n| *n >= 1)
        .and_then(|n| u64::try_from(n).ok())
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

/// Parses a JSON parameter that must be an array, reporting on `name` otherwise.
fn json_array(
    name: &'static str,
    value: &str,
    example: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<Value>> {
    match serde_json::from_str::<Value>(value) {
        Ok(Value::Array(items)) => Some(items),
        Ok(_) => {
            errors.push(FieldError::new(
                name,
                format!("must be a JSON array such as {example}"),
            ));
            None
        }
        Err(e) => {
            errors.push(FieldError::new(
                name,
                format!(
                    "not valid JSON (line {} column {}); expected an array such as {example}",
                    e.line(),
                    e.column()
                ),
            ));
            None
        }
    }
}

fn unknown_keys(
    obj: &Map<String, Value>,
    path: &str,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(FieldError::new(
            path,
            format!(
                "unknown key {:?}; allowed keys are {}",
                shorten(key, 32),
                known.join(", ")
            ),
        ));
    }
}

/// `[{"id": 5, "value": {"number": 100}}, ...]` → filters ordered by id, compact, fixed key order.
/// Filter values are checked for their JSON type only (a `date` filter is any string): what
/// they match is upstream's business, and a stricter reading could refuse valid filters.
fn custom_field_filters(value: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    const NAME: &str = "customFields";
    let items = json_array(NAME, value, r#"[{"id":1,"value":{"text":"x"}}]"#, errors)?;
    let before = errors.len();
    let mut filters: Vec<(u64, String)> = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{NAME}[{i}]");
        let Some(obj) = item.as_object() else {
            errors.push(FieldError::new(path, "must be an object with id and value"));
            continue;
        };
        unknown_keys(obj, &path, &["id", "value"], errors);
        let id_path = format!("{path}.id");
        let id = match obj.get("id") {
            None => {
                errors.push(FieldError::new(id_path, "required (a positive integer)"));
                None
            }
            Some(v) => match json_id(v) {
                None => {
                    errors.push(FieldError::new(id_path, "must be a positive integer"));
                    None
                }
                Some(id) if !seen.insert(id) => {
                    errors.push(FieldError::new(
                        id_path,
                        format!("custom field {id} is filtered twice"),
                    ));
                    None
                }
                Some(id) => Some(id),
            },
        };
        let value_path = format!("{path}.value");
        let rendered = match obj.get("value") {
            None => {
                errors.push(FieldError::new(value_path, "required"));
                None
            }
            Some(v) => filter_value(v, &value_path, errors),
        };
        if let (Some(id), Some(rendered)) = (id, rendered) {
            let id_json = id.to_string();
            filters.push((id, format!(r#"{{"id":{id_json},"value":{rendered}}}"#)));
        }
    }
    if errors.len() != before {
        return None;
    }
    filters.sort_by_key(|(id, _)| *id);
    let parts: Vec<String> = filters.into_iter().map(|(_, f)| f).collect();
    Some(format!("[{}]", parts.join(",")))
}

/// `{"<key>": <value of the matching JSON type>}` with exactly one known key, rendered compactly.
fn filter_value(v: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let expected =
        "must be an object with exactly one of text, number, date, boolean, select, multi_select";
    let Some(obj) = v.as_object() else {
        errors.push(FieldError::new(path, expected));
        return None;
    };
    let mut entries = obj.iter();
    let (Some((key, inner)), None) = (entries.next(), entries.next()) else {
        errors.push(FieldError::new(path, expected));
        return None;
    };
    let type_ok = match key.as_str() {
        "text" | "date" => inner.is_string(),
        "number" => inner.is_number(),
        "boolean" => inner.is_boolean(),
        "select" => json_id(inner).is_some(),
        "multi_select" => inner
            .as_array()
            .is_some_and(|a| a.iter().all(|x| json_id(x).is_some())),
        _ => {
            errors.push(FieldError::new(
                path,
                format!("unknown value key {:?}; {expected}", shorten(key, 32)),
            ));
            return None;
        }
    };
    if !type_ok {
        let want = match key.as_str() {
            "text" | "date" => "a string",
            "number" => "a number",
            "boolean" => "a boolean",
            "select" => "a positive integer",
            _ => "an array of positive integers",
        };
        errors.push(FieldError::new(path, format!("`{key}` must be {want}")));
        return None;
    }
    // serde_json's compact output is deterministic for these (strings escaped the same way,
    // numbers in their shortest round-trip form), so equal filters render equally.
    let key_json = serde_json::to_string(key).ok()?;
    let inner_json = serde_json::to_string(inner).ok()?;
    Some(format!("{{{key_json}:{inner_json}}}"))
}

/// `[{"type": "stage", "asc": true}, ...]` → compact, fixed key order, array order kept.
fn sort_list(value: &str, sort_types: &[&str], errors: &mut Vec<FieldError>) -> Option<String> {
    const NAME: &str = "sort";
    let items = json_array(NAME, value, r#"[{"type":"stage","asc":true}]"#, errors)?;
    let before = errors.len();
    let mut parts = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{NAME}[{i}]");
        let Some(obj) = item.as_object() else {
            errors.push(FieldError::new(path, "must be an object with type and asc"));
            continue;
        };
        unknown_keys(obj, &path, &["type", "asc"], errors);
        let ty = match obj.get("type").and_then(Value::as_str) {
            Some(t) if sort_types.contains(&t) => {
                if seen.insert(t) {
                    Some(t)
                } else {
                    errors.push(FieldError::new(
                        format!("{path}.type"),
                        format!("sorting by {t} twice"),
                    ));
                    None
                }
            }
            _ => {
                errors.push(FieldError::new(
                    format!("{path}.type"),
                    format!("must be one of {}", sort_types.join(", ")),
                ));
                None
            }
        };
        let asc = obj.get("asc").and_then(Value::as_bool);
        if asc.is_none() {
            errors.push(FieldError::new(format!("{path}.asc"), "must be a boolean"));
        }
        if let (Some(ty), Some(asc)) = (ty, asc) {
            parts.push(format!(r#"{{"type":"{ty}","asc":{asc}}}"#));
        }
    }
    if errors.len() != before {
        return None;
    }
    Some(format!("[{}]", parts.join(",")))
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

    use super::*;

    #[test]
    fn decode_matches_form_urlencoded() {
        for s in ["a+b", "%41%zz%", "%e2%82%ac", "x%2", "caf%C3%A9+%2B"] {
            let ours = decode(s).unwrap();
            let theirs: String = form_urlencoded::parse(format!("k={s}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned();
            assert_eq!(ours, theirs, "{s}");
        }
        assert_eq!(decode("%FF"), None);
    }
}
