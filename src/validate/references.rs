//! Reference checks: a partnership create or update names tiers, categories, stages, tags,
//! users and custom fields by id. Before it is sent, each is checked against the company's
//! lookups (fetched through the gateway's own cache, budget and upstream layers, so a lookup
//! is fetched once per `[cache] lookup_ttl` per upstream key and shared by all its users).
//!
//! An unknown reference is a 400 listing every problem, and costs no upstream call. A lookup
//! the gateway cannot read (budget spent, upstream down) is never a reason to refuse: the
//! references it would have checked are left to JourneyBee, and the skip is counted.

use super::validated::{Purpose, Read};
use super::FieldError;
use crate::exchange::{Ctx, Reply};
use crate::ingress::route::Route;
use crate::validate::metrics::{ReferenceCheck, ValidationMetrics};
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

/// The read pipeline (cache → guard → upstream) lookups are fetched through.
pub type Fetch = BoxCloneSyncService<Read, Reply, Infallible>;

/// Fetches the company's lookups and checks a body's references against them.
#[derive(Clone)]
pub struct Lookups {
    fetch: Fetch,
    /// The cache `fetch` starts with: a fresh lookup is read from it directly.
    cache: Arc<crate::cache::ListCache>,
    metrics: Arc<ValidationMetrics>,
    parsed: Arc<Mutex<ParsedLookups>>,
    /// Per upstream key and lookup route: when a read of it last failed. For
    /// [`NEGATIVE_TTL`] after, creates skip it (the schema-only check) instead of each
    /// spending an upstream call on a lookup that just failed.
    failed: Arc<Mutex<FailedLookups>>,
}

/// Per upstream key and lookup route: when a read of it last failed.
type FailedLookups = HashMap<(Arc<str>, Route), tokio::time::Instant>;

/// How long a lookup that could not be read (404, 5xx, timeout, no budget) is not asked
/// again: long enough that a burst of creates costs one failed read, not one each; short
/// enough that a recovered upstream is used again within half a minute.
const NEGATIVE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Per upstream key and lookup route: its last parsed items.
type ParsedLookups = HashMap<(Arc<str>, Route), Parsed>;

/// A lookup's items as last parsed, with the cached body they were parsed from: while the
/// cache answers with the same body (the same shared bytes), it is not parsed again.
type Parsed = (bytes::Bytes, Arc<Vec<Value>>);

/// A custom field definition, as far as a value's check needs it.
#[derive(Debug)]
struct FieldDef {
    ty: String,
    category: String,
    required: bool,
    label: String,
    options: HashSet<u64>,
}

fn ids(items: &[Value], field: &str) -> HashSet<u64> {
    items
        .iter()
        .filter_map(|i| i.get(field).and_then(Value::as_u64))
        .collect()
}

impl Lookups {
    /// Lookups read from `cache` while fresh there, else fetched through `fetch` (the read
    /// pipeline that starts with that cache).
    pub fn new(
        fetch: Fetch,
        cache: Arc<crate::cache::ListCache>,
        metrics: Arc<ValidationMetrics>,
    ) -> Self {
        Self {
            fetch,
            cache,
            metrics,
            parsed: Arc::default(),
            failed: Arc::default(),
        }
    }

    /// The items of the lookups `routes`, in order, None where one cannot be read now. They
    /// are read on behalf of the request being checked (same id, deadline and upstream key):
    /// fresh ones from the cache, every generation in one store call; the others through the
    /// read pipeline, concurrently.
    async fn get_all(&self, routes: &[Route], ctx: &Ctx) -> Vec<Option<Arc<Vec<Value>>>> {
        let Some(specs) = routes.iter().map(|r| r.spec()).collect::<Option<Vec<_>>>() else {
            return vec![None; routes.len()];
        };
        let name = &ctx.identity.key.name;
        let mut bodies = self.cache.peek(name, &specs).await;
        let now = tokio::time::Instant::now();
        let misses: Vec<usize> = {
            let mut failed = crate::lock(&self.failed);
            failed.retain(|_, at| now.saturating_duration_since(*at) < NEGATIVE_TTL);
            (0..bodies.len())
                .filter(|&i| {
                    bodies[i].is_none() && !failed.contains_key(&(name.clone(), routes[i]))
                })
                .collect()
        };
        let fetched = futures_util::future::join_all(misses.iter().map(|&i| {
            // A lookup takes no query: its path is its whole target.
            let target = PathAndQuery::from_static(specs[i].template);
            self.fetch_through(ctx, specs[i], target)
        }))
        .await;
        for (i, body) in misses.into_iter().zip(fetched) {
            if body.is_none() {
                crate::lock(&self.failed).insert((name.clone(), routes[i]), now);
            }
            bodies[i] = body;
        }
        routes
            .iter()
            .zip(bodies)
            .map(|(route, body)| self.parsed(name, *route, body?))
            .collect()
    }

    /// A lookup's items parsed from `body`, or as last parsed while the cache answers with
    /// the same body (the same shared bytes).
    fn parsed(&self, name: &Arc<str>, route: Route, body: Bytes) -> Option<Arc<Vec<Value>>> {
        let slot = (name.clone(), route);
        if let Some((bytes, items)) = crate::lock(&self.parsed).get(&slot) {
            if bytes.as_ptr() == body.as_ptr() && bytes.len() == body.len() {
                return Some(items.clone());
            }
        }
        let items = match serde_json::from_slice::<Value>(&body).ok()? {
            Value::Array(items) => Arc::new(items),
            _ => return None,
        };
        crate::lock(&self.parsed).insert(slot, (body, items.clone()));
        Some(items)
    }

    /// A lookup read through the whole read pipeline (a cache miss: coalesced, budgeted,
    /// stored for the next create).
    async fn fetch_through(
        &self,
        ctx: &Ctx,
        spec: &'static crate::ingress::route::RouteSpec,
        target: PathAndQuery,
    ) -> Option<Bytes> {
        let read = Read {
            ctx: Ctx {
                spec,
                ..ctx.clone()
            },
            target,
            headers: HeaderMap::new(),
            purpose: Purpose::References,
        };
        let reply = self.fetch.clone().oneshot(read).await.ok()?;
        if !reply.status().is_success() {
            return None;
        }
        match reply.response.into_body().collect().await {
            Ok(c) => Some(c.to_bytes()),
            Err(never) => match never {},
        }
    }

    /// Checks the references of a partnership create (`create`) or update body. Every
    /// problem is listed; lookups that could not be read are skipped (and counted).
    pub async fn check(
        &self,
        ctx: &Ctx,
        body: &Value,
        create: bool,
    ) -> Result<(), Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Ok(());
        };
        let has = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
        let email_tags = obj
            .get("emails")
            .and_then(Value::as_array)
            .is_some_and(|e| e.iter().any(|m| m.get("tags").is_some()));
        // Only what the body names is fetched (a create always needs the custom fields: the
        // company's required ones must be present).
        let wanted = [
            (has("tierId"), Route::Tiers),
            (has("categoryId"), Route::Categories),
            (has("stageUuid"), Route::PartnerStages),
            (has("tags") || email_tags, Route::Tags),
            (has("assignedUsers"), Route::Users),
            (create || has("customFields"), Route::CustomFields),
        ];
        let routes: Vec<Route> = wanted.iter().filter(|(w, _)| *w).map(|(_, r)| *r).collect();
        let mut found = self.get_all(&routes, ctx).await.into_iter();
        let [tiers, categories, stages, tags, users, fields] =
            wanted.map(|(w, _)| if w { found.next().flatten() } else { None });
        let mut problems = Vec::new();
        let mut check_id = |field: &str, value: Option<&Value>, known: &Option<Arc<Vec<Value>>>| {
            let (Some(v), Some(items)) = (value, known) else {
                return;
            };
            if let Some(id) = v.as_u64() {
                if !items
                    .iter()
                    .any(|i| i.get("id").and_then(Value::as_u64) == Some(id))
                {
                    problems.push(FieldError::new(
                        field,
                        format!("no {field} {id} in this company"),
                    ));
                }
            }
        };
        check_id("tierId", obj.get("tierId"), &tiers);
        check_id("categoryId", obj.get("categoryId"), &categories);
        if let (Some(uuid), Some(items)) = (obj.get("stageUuid").and_then(Value::as_str), &stages) {
            if !items
                .iter()
                .any(|s| s.get("uuid").and_then(Value::as_str) == Some(uuid))
            {
                problems.push(FieldError::new(
                    "stageUuid",
                    "no partner stage with this uuid in this company",
                ));
            }
        }
        if let Some(items) = &tags {
            let known = ids(items, "id");
            let mut check_tags = |path: String, list: Option<&Value>| {
                for (i, t) in list
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    if let Some(id) = t.as_u64().filter(|id| !known.contains(id)) {
                        problems.push(FieldError::new(
                            format!("{path}[{i}]"),
                            format!("no tag {id} in this company"),
                        ));
                    }
                }
            };
            check_tags("tags".into(), obj.get("tags"));
            for (e, email) in obj
                .get("emails")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                check_tags(format!("emails[{e}].tags"), email.get("tags"));
            }
        }
        if let Some(items) = &users {
            let known = ids(items, "id");
            for (i, u) in obj
                .get("assignedUsers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(id) = u.as_u64().filter(|id| !known.contains(id)) {
                    problems.push(FieldError::new(
                        format!("assignedUsers[{i}]"),
                        format!("no user {id} in this company"),
                    ));
                }
            }
        }
        if let Some(items) = &fields {
            check_custom_fields(obj, items, create, &mut problems);
        }
        // A lookup asked for and not read: its references are left to JourneyBee.
        let read = [&tiers, &categories, &stages, &tags, &users, &fields];
        let skipped = wanted
            .iter()
            .zip(read)
            .any(|((asked, _), got)| *asked && got.is_none());
        let result = match (problems.is_empty(), skipped) {
            (false, _) => ReferenceCheck::Refused,
            (true, true) => ReferenceCheck::Skipped,
            (true, false) => ReferenceCheck::Passed,
        };
        self.metrics.reference_check(result);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn check_custom_fields(
    obj: &serde_json::Map<String, Value>,
    items: &[Value],
    create: bool,
    problems: &mut Vec<FieldError>,
) {
    let defs: HashMap<u64, FieldDef> = items
        .iter()
        .filter_map(|d| {
            Some((
                d.get("id")?.as_u64()?,
                FieldDef {
                    ty: d.get("type")?.as_str()?.to_string(),
                    category: d
                        .get("category")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    required: d.get("required").and_then(Value::as_bool).unwrap_or(false),
                    label: d
                        .get("label")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    options: d
                        .get("options")
                        .and_then(Value::as_array)
                        .map(|o| ids(o, "id"))
                        .unwrap_or_default(),
                },
            ))
        })
        .collect();
    let given = obj.get("customFields").and_then(Value::as_array);
    let mut present = HashSet::new();
    for (i, cf) in given.into_iter().flatten().enumerate() {
        let path = format!("customFields[{i}]");
        let Some(id) = cf.get("customFieldId").and_then(Value::as_u64) else {
            continue;
        };
        present.insert(id);
        let Some(def) = defs.get(&id) else {
            problems.push(FieldError::new(
                format!("{path}.customFieldId"),
                format!("no custom field {id} in this company"),
            ));
            continue;
        };
        if def.category != "partner" {
            problems.push(FieldError::new(
                format!("{path}.customFieldId"),
                format!(
                    "custom field {id} is a {} field, not a partner field",
                    def.category
                ),
            ));
        }
        if let Some(ty) = cf.get("type").and_then(Value::as_str) {
            if ty != def.ty {
                problems.push(FieldError::new(
                    format!("{path}.type"),
                    format!("custom field {id} is of type {}", def.ty),
                ));
                continue;
            }
        }
        let value = cf.get("value");
        match def.ty.as_str() {
            "select" => {
                if let Some(opt) = value.and_then(|v| v.get("select")).and_then(Value::as_u64) {
                    if !def.options.contains(&opt) {
                        problems.push(FieldError::new(
                            format!("{path}.value.select"),
                            format!("option {opt} is not one of custom field {id}'s options"),
                        ));
                    }
                }
            }
            "multi_select" => {
                for (j, opt) in value
                    .and_then(|v| v.get("multi_select"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    if let Some(o) = opt.as_u64().filter(|o| !def.options.contains(o)) {
                        problems.push(FieldError::new(
                            format!("{path}.value.multi_select[{j}]"),
                            format!("option {o} is not one of custom field {id}'s options"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if create {
        let mut missing: Vec<(&u64, &FieldDef)> = defs
            .iter()
            .filter(|(id, d)| d.required && d.category == "partner" && !present.contains(id))
            .collect();
        missing.sort_by_key(|(id, _)| **id);
        for (id, d) in missing {
            problems.push(FieldError::new(
                "customFields",
                format!("required custom field {id} ({}) is missing", d.label),
            ));
        }
    }
}
