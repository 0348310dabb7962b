//! `GET /api/v1/partnerships`: query parsing, filtering, sorting, paging.

use std::cmp::Ordering;

use serde_json::Value;

use crate::data::{Dataset, Item};
use crate::records::{CfValue, CustomFieldValue, PartnerType, Partnership};
use crate::time::parse_timestamp_millis;

/// Why a list query was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// `userId` missing or not a number → 400 "userId is required".
    MissingUserId,
    /// Any other malformed parameter → 400 "Invalid query parameters".
    Invalid,
}

/// The `view` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// No `view` given: the company's enabled partner types. Kept apart from
    /// `All` because upstream documents them as different things, even though
    /// the simulated company has every type enabled.
    Default,
    All,
    Assigned,
    Type(PartnerType),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortType {
    Stage,
    Category,
    Tier,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SortKey {
    ty: SortType,
    asc: bool,
}

/// One `customFields` filter condition; the value key decides the comparison.
#[derive(Clone, Debug, PartialEq)]
enum CfCond {
    /// Lower-cased needle, substring match on text/textarea values.
    Text(String),
    Number(f64),
    /// `YYYY-MM-DD`
    Date(String),
    Boolean(bool),
    Select(u64),
    MultiSelect(Vec<u64>),
}

/// One condition of a `customFields` query filter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CfFilter {
    id: u64,
    cond: CfCond,
}

/// A parsed, validated list query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ListQuery {
    pub user_id: u64,
    view: View,
    /// Lower-cased; `None` when absent or empty.
    search: Option<String>,
    stages: Option<Vec<u64>>,
    tags: Option<Vec<u64>>,
    categories: Option<Vec<u64>>,
    tiers: Option<Vec<u64>>,
    users: Option<Vec<u64>>,
    assigned: bool,
    unassigned: bool,
    custom_fields: Vec<CfFilter>,
    sort: Vec<SortKey>,
    /// Unix milliseconds.
    cursor: Option<i64>,
}

/// Strict decimal id: digits only (`u64::from_str` would also take `+7`).
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Comma-separated ids; an empty value means "no filter".
pub(crate) fn parse_id_list(s: &str) -> Result<Option<Vec<u64>>, QueryError> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.split(',')
        .map(|part| parse_id(part.trim()).ok_or(QueryError::Invalid))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `assigned` / `unassigned`: `1` switches the filter on, `0` or empty off.
pub(crate) fn parse_flag(s: &str) -> Result<bool, QueryError> {
    match s {
        "1" | "true" => Ok(true),
        "" | "0" | "false" => Ok(false),
        _ => Err(QueryError::Invalid),
    }
}

fn json_id(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// A `customFields` query filter: `[{"id": 5, "value": {"number": 1}}]`.
pub(crate) fn parse_custom_fields_filter(s: &str) -> Result<Vec<CfFilter>, QueryError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(s).map_err(|_| QueryError::Invalid)?;
    let arr = v.as_array().ok_or(QueryError::Invalid)?;
    arr.iter()
        .map(|f| {
            let obj = f.as_object().ok_or(QueryError::Invalid)?;
            let id = obj.get("id").and_then(json_id).ok_or(QueryError::Invalid)?;
            let value = obj
                .get("value")
                .and_then(Value::as_object)
                .ok_or(QueryError::Invalid)?;
            // Exactly one value key: a filter that says two things at once has
            // no obvious meaning, so it is refused rather than guessed at.
            if value.len() != 1 {
                return Err(QueryError::Invalid);
            }
            let (key, val) = value.iter().next().ok_or(QueryError::Invalid)?;
            let cond = match key.as_str() {
                "text" => CfCond::Text(val.as_str().ok_or(QueryError::Invalid)?.to_lowercase()),
                "number" => CfCond::Number(val.as_f64().ok_or(QueryError::Invalid)?),
                "date" => {
                    let d = val.as_str().ok_or(QueryError::Invalid)?;
                    parse_timestamp_millis(d).ok_or(QueryError::Invalid)?;
                    CfCond::Date(d[..10].to_string())
                }
                "boolean" => CfCond::Boolean(val.as_bool().ok_or(QueryError::Invalid)?),
                "select" => CfCond::Select(json_id(val).ok_or(QueryError::Invalid)?),
                "multi_select" => CfCond::MultiSelect(
                    val.as_array()
                        .ok_or(QueryError::Invalid)?
                        .iter()
                        .map(|x| json_id(x).ok_or(QueryError::Invalid))
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(QueryError::Invalid),
            };
            Ok(CfFilter { id, cond })
        })
        .collect()
}

fn parse_sort(s: &str) -> Result<Vec<SortKey>, QueryError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(s).map_err(|_| QueryError::Invalid)?;
    let arr = v.as_array().ok_or(QueryError::Invalid)?;
    arr.iter()
        .map(|k| {
            let obj = k.as_object().ok_or(QueryError::Invalid)?;
            let ty = match obj.get("type").and_then(Value::as_str) {
                Some("stage") => SortType::Stage,
                Some("category") => SortType::Category,
                Some("tier") => SortType::Tier,
                _ => return Err(QueryError::Invalid),
            };
            let asc = match obj.get("asc") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(QueryError::Invalid),
            };
            Ok(SortKey { ty, asc })
        })
        .collect()
}

/// Parses the raw query string. Unknown parameters are ignored and, for a
/// repeated parameter, the first occurrence wins.
pub(crate) fn parse_list_query(raw: Option<&str>) -> Result<ListQuery, QueryError> {
    let get_first = {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        move |name: &str| -> Option<String> {
            pairs
                .iter()
                .position(|(k, _)| k == name)
                .map(|i| pairs[i].1.clone())
        }
    };
    let user_id = get_first("userId")
        .as_deref()
        .and_then(parse_id)
        .ok_or(QueryError::MissingUserId)?;
    let view = match get_first("view").as_deref() {
        None => View::Default,
        Some("all") => View::All,
        Some("assigned") => View::Assigned,
        Some("referral") => View::Type(PartnerType::Referral),
        Some("reseller") => View::Type(PartnerType::Reseller),
        Some(_) => return Err(QueryError::Invalid),
    };
    let list = |v: Option<String>| v.map_or(Ok(None), |s| parse_id_list(&s));
    let cursor = match get_first("cursor") {
        None => None,
        Some(c) if c.is_empty() => None,
        Some(c) => Some(parse_timestamp_millis(&c).ok_or(QueryError::Invalid)?),
    };
    Ok(ListQuery {
        user_id,
        view,
        search: get_first("search")
            .filter(|s| !s.is_empty())
            .map(|s| s.to_lowercase()),
        stages: list(get_first("stages"))?,
        tags: list(get_first("tags"))?,
        categories: list(get_first("categories"))?,
        tiers: list(get_first("tiers"))?,
        users: list(get_first("users"))?,
        assigned: get_first("assigned").map_or(Ok(false), |s| parse_flag(&s))?,
        unassigned: get_first("unassigned").map_or(Ok(false), |s| parse_flag(&s))?,
        custom_fields: get_first("customFields")
            .map_or(Ok(Vec::new()), |s| parse_custom_fields_filter(&s))?,
        sort: get_first("sort").map_or(Ok(Vec::new()), |s| parse_sort(&s))?,
        cursor,
    })
}

fn in_list(list: &Option<Vec<u64>>, id: Option<u64>) -> bool {
    match list {
        None => true,
        Some(ids) => id.is_some_and(|id| ids.contains(&id)),
    }
}

fn any_in_list(list: &Option<Vec<u64>>, ids: &[u64]) -> bool {
    match list {
        None => true,
        Some(wanted) => ids.iter().any(|id| wanted.contains(id)),
    }
}

fn search_matches(ds: &Dataset, p: &Partnership, needle: &str) -> bool {
    let hit = |s: &str| s.to_lowercase().contains(needle);
    hit(&p.name)
        || hit(&p.website_url)
        || p.contacts.iter().any(|c| hit(&c.email))
        || p.country_id
            .and_then(|id| ds.country(id))
            .is_some_and(|c| hit(&c.label))
        || p.assigned_users
            .iter()
            .filter_map(|id| ds.user(*id))
            .any(|u| hit(&format!("{} {}", u.first_name, u.last_name)))
}

/// Whether the stored values satisfy one filter condition.
pub(crate) fn values_match(values: &[CustomFieldValue], f: &CfFilter) -> bool {
    let Some(v) = values.iter().find(|v| v.field_id == f.id) else {
        return false;
    };
    match (&f.cond, &v.value) {
        (CfCond::Text(needle), CfValue::Text(s)) => s.to_lowercase().contains(needle.as_str()),
        (CfCond::Number(n), CfValue::Number(m)) => m.as_f64() == Some(*n),
        (CfCond::Date(d), CfValue::Date(s)) => s.get(..10) == Some(d.as_str()),
        (CfCond::Boolean(b), CfValue::Boolean(c)) => b == c,
        (CfCond::Select(a), CfValue::Select(b)) => a == b,
        (CfCond::MultiSelect(want), CfValue::MultiSelect(have)) => {
            want.iter().any(|w| have.contains(w))
        }
        _ => false,
    }
}

fn matches(ds: &Dataset, q: &ListQuery, p: &Partnership) -> bool {
    let view_ok = match q.view {
        View::Default => ds.enabled_partner_types.contains(&p.partner_type),
        View::All => true,
        View::Assigned => p.assigned_users.contains(&q.user_id),
        View::Type(t) => p.partner_type == t,
    };
    view_ok
        && q.search
            .as_deref()
            .is_none_or(|needle| search_matches(ds, p, needle))
        && in_list(&q.stages, Some(p.stage_id))
        && any_in_list(&q.tags, &p.tags)
        && in_list(&q.categories, p.category_id)
        && in_list(&q.tiers, p.tier_id)
        && any_in_list(&q.users, &p.assigned_users)
        && (!q.assigned || !p.assigned_users.is_empty())
        && (!q.unassigned || p.assigned_users.is_empty())
        && q.custom_fields
            .iter()
            .all(|f| values_match(&p.custom_fields, f))
}

/// Sort value of one key: stage series, tier rank (its id) or category label.
fn sort_value(ds: &Dataset, p: &Partnership, ty: SortType) -> Option<(u64, String)> {
    match ty {
        SortType::Stage => ds.stage(p.stage_id).map(|s| (s.series, String::new())),
        SortType::Tier => p.tier_id.map(|id| (id, String::new())),
        SortType::Category => p
            .category_id
            .and_then(|id| ds.category(id))
            .map(|c| (0, c.label.to_lowercase())),
    }
}

fn compare(ds: &Dataset, keys: &[SortKey], a: &Partnership, b: &Partnership) -> Ordering {
    for k in keys {
        let ord = match (sort_value(ds, a, k.ty), sort_value(ds, b, k.ty)) {
            (Some(x), Some(y)) if k.asc => x.cmp(&y),
            (Some(x), Some(y)) => y.cmp(&x),
            // Missing values go last whatever the direction.
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id))
}

/// Runs a parsed query: filter, count, cursor, sort, page.
pub(crate) fn list<'a>(ds: &'a Dataset, q: &ListQuery, page_size: usize) -> Vec<Item<'a>> {
    let matching: Vec<&Partnership> = ds
        .partnerships
        .iter()
        .filter(|p| matches(ds, q, p))
        .collect();
    let total = matching.len();
    let mut page: Vec<&Partnership> = matching
        .into_iter()
        .filter(|p| q.cursor.is_none_or(|c| p.created_at * 1000 < c))
        .collect();
    page.sort_by(|a, b| compare(ds, &q.sort, a, b));
    page.into_iter()
        .take(page_size)
        .map(|p| ds.item(p, total))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_list_query(None), Err(QueryError::MissingUserId));
        assert_eq!(
            parse_list_query(Some("userId=abc")),
            Err(QueryError::MissingUserId)
        );
        assert_eq!(
            parse_list_query(Some("userId=+456")),
            Err(QueryError::MissingUserId)
        );
        let q =
            parse_list_query(Some("userId=456&foo=bar&stages=1,%202&search=Tech")).expect("valid");
        assert_eq!(q.stages, Some(vec![1, 2]));
        assert_eq!(q.search.as_deref(), Some("tech"));
        assert_eq!(q.view, View::Default);
        for bad in [
            "userId=456&stages=1,,2",
            "userId=456&tags=x",
            "userId=456&view=nope",
            "userId=456&sort=[{\"type\":\"name\"}]",
            "userId=456&sort=notjson",
            "userId=456&customFields=[{\"id\":\"5\",\"value\":{\"number\":1}}]",
            "userId=456&customFields=[{\"id\":5,\"value\":{\"colour\":1}}]",
            "userId=456&cursor=yesterday",
            "userId=456&assigned=yes",
        ] {
            assert_eq!(
                parse_list_query(Some(bad)),
                Err(QueryError::Invalid),
                "{bad}"
            );
        }
    }
}
