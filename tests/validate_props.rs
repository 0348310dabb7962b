//! Property tests of the create-body validator and the list-query normalizer.

use journeybee_gateway::validate::body::{validate_create, BodyRejection, BodyRules};
use journeybee_gateway::validate::query::{parse_list_query, ListQuery, QueryLimits};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Strategies: bodies
// ---------------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "name",
    "emails",
    "partnerType",
    "tierId",
    "categoryId",
    "stageUuid",
    "inactive",
    "countryId",
    "emailDomain",
    "reseller",
    "assignedUsers",
    "tags",
    "customFields",
    "email",
    "firstName",
    "lastName",
    "customFieldId",
    "type",
    "value",
    "text",
    "number",
    "date",
    "boolean",
    "select",
    "multi_select",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z_]{0,12}",
        1 => "\\PC{0,8}",
    ]
}

/// Arbitrary JSON, biased towards the keys and shapes the validator looks at, so the deep
/// paths are reached.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0i64..10).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        prop::sample::select(vec![
            "a@techcorp.com",
            "b@gmail.com",
            "@",
            "a@b",
            "referral",
            "reseller",
            "company",
            "number",
            "multi_select",
            "2024-02-29",
            "2024-01-15T10:30:00Z",
            "123e4567-e89b-12d3-a456-426614174000",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_object_body() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(arb_key(), arb_json(), 0..14)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Bodies that are valid under `BodyRules::default()`.
fn valid_body() -> impl Strategy<Value = Value> {
    let email = ("[a-z][a-z0-9.]{0,10}", prop::option::of("[A-Za-z]{1,10}"));
    (
        "[A-Za-z][A-Za-z0-9 ]{0,40}",
        "biz-[a-z]{3,8}\\.(com|io|co\\.uk)",
        prop::collection::vec(email, 1..5),
        prop::bool::ANY,
        prop::option::of(1i64..1000),
        prop::option::of(any::<bool>()),
        prop::collection::btree_set(1u64..500, 0..5),
    )
        .prop_map(|(name, domain, emails, reseller, tier, inactive, tags)| {
            let emails: Vec<Value> = emails
                .into_iter()
                .map(|(local, first)| {
                    let mut e = json!({ "email": format!("{local}@{domain}") });
                    if let Some(f) = first {
                        e["firstName"] = json!(f);
                    }
                    e
                })
                .collect();
            let mut body = json!({
                "name": name,
                "emails": emails,
                "partnerType": if reseller { "reseller" } else { "referral" },
                "tags": tags.into_iter().collect::<Vec<_>>(),
                "customFields": [{"customFieldId": 1, "type": "number", "value": {"number": 3}}],
            });
            if reseller {
                body["reseller"] = json!("partner");
            }
            if let Some(t) = tier {
                body["tierId"] = json!(t);
            }
            if let Some(i) = inactive {
                body["inactive"] = json!(i);
            }
            body
        })
}

// ---------------------------------------------------------------------------------------------
// Strategies: queries
// ---------------------------------------------------------------------------------------------

const VIEWS: &[&str] = &["all", "assigned", "referral", "reseller"];
const LISTS: &[&str] = &["stages", "tags", "categories", "tiers", "users"];
const SORT_TYPES: &[&str] = &["stage", "category", "tier"];

fn filter_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "\\PC{0,12}".prop_map(|s| json!({ "text": s })),
        (-1_000_000i64..1_000_000).prop_map(|n| json!({ "number": n })),
        (-1e9f64..1e9).prop_map(|n| json!({ "number": n })),
        "20[0-9]{2}-0[1-9]-1[0-9]".prop_map(|d| json!({ "date": d })),
        any::<bool>().prop_map(|b| json!({ "boolean": b })),
        (1u64..100).prop_map(|n| json!({ "select": n })),
        prop::collection::vec(1u64..100, 0..5).prop_map(|v| json!({ "multi_select": v })),
    ]
}

fn custom_fields() -> impl Strategy<Value = String> {
    prop::collection::btree_map(1u64..1000, filter_value(), 0..4).prop_flat_map(|m| {
        let filters: Vec<Value> = m
            .into_iter()
            .map(|(id, value)| json!({ "id": id, "value": value }))
            .collect();
        Just(filters)
            .prop_shuffle()
            .prop_map(|f| Value::Array(f).to_string())
    })
}

fn sort_spec() -> impl Strategy<Value = Vec<(&'static str, bool)>> {
    prop::sample::subsequence(SORT_TYPES, 1..=3)
        .prop_shuffle()
        .prop_flat_map(|types| {
            let n = types.len();
            (Just(types), prop::collection::vec(any::<bool>(), n))
        })
        .prop_map(|(types, asc)| types.into_iter().zip(asc).collect())
}

fn render_sort(spec: &[(&str, bool)]) -> String {
    Value::Array(
        spec.iter()
            .map(|(t, a)| json!({ "type": t, "asc": a }))
            .collect(),
    )
    .to_string()
}

fn render_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Any non-empty text, including the characters that matter to query strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{1,30}", "\\PC{1,20}"]
}

/// A valid query as an ordered list of (name, decoded value) pairs.
fn valid_params() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        prop::option::of(1u64..1_000_000),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(prop::sample::select(VIEWS)),
        prop::collection::vec(
            prop::option::of(prop::collection::vec(1u64..10_000, 1..12)),
            LISTS.len(),
        ),
        0u8..3,
        prop::option::of(custom_fields()),
        prop::option::of(sort_spec()),
    )
        .prop_map(|(user, cursor, search, view, lists, flag, cf, sort)| {
            let mut p: Vec<(String, String)> = Vec::new();
            if let Some(u) = user {
                p.push(("userId".into(), u.to_string()));
            }
            if let Some(c) = cursor {
                p.push(("cursor".into(), c));
            }
            if let Some(s) = search {
                p.push(("search".into(), s));
            }
            if let Some(v) = view {
                p.push(("view".into(), v.into()));
            }
            for (name, ids) in LISTS.iter().zip(lists) {
                if let Some(ids) = ids {
                    p.push(((*name).into(), render_ids(&ids)));
                }
            }
            match flag {
                1 => p.push(("assigned".into(), "1".into())),
                2 => p.push(("unassigned".into(), "1".into())),
                _ => {}
            }
            if let Some(cf) = cf {
                p.push(("customFields".into(), cf));
            }
            if let Some(s) = sort {
                p.push(("sort".into(), render_sort(&s)));
            }
            p
        })
}

fn encode(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn parse(raw: &str) -> ListQuery {
    match parse_list_query(Some(raw), &QueryLimits::default()) {
        Ok(q) => q,
        Err(e) => panic!("{raw}: {e:?}"),
    }
}

fn canonical_of(params: &[(&str, String)]) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    parse(&encode(&owned)).canonical().to_string()
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = validate_create(&bytes, &BodyRules::default());
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse_list_query(Some(&s), &QueryLimits::default());
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let _ = validate_create(v.to_string().as_bytes(), &BodyRules::default());
    }

    #[test]
    fn arbitrary_object_bodies_never_panic(v in arb_object_body()) {
        let lenient = BodyRules { allow_unknown_fields: true, ..BodyRules::default() };
        let _ = validate_create(v.to_string().as_bytes(), &BodyRules::default());
        let _ = validate_create(v.to_string().as_bytes(), &lenient);
    }

    #[test]
    fn arbitrary_query_strings_never_panic(raw in "[a-zA-Z=&%+,0-9\\[\\]{}\":]{0,80}") {
        let _ = parse_list_query(Some(&raw), &QueryLimits::default());
    }

    #[test]
    fn valid_bodies_are_accepted(body in valid_body()) {
        let got = validate_create(body.to_string().as_bytes(), &BodyRules::default());
        prop_assert!(got.is_ok(), "{body}: {got:?}");
    }

    #[test]
    fn a_body_missing_a_required_field_is_never_accepted(
        body in valid_body(),
        missing in prop::sample::select(vec!["name", "emails", "partnerType"]),
    ) {
        let mut body = body;
        body.as_object_mut().unwrap().remove(missing);
        match validate_create(body.to_string().as_bytes(), &BodyRules::default()) {
            Err(BodyRejection::Schema(errs)) => {
                prop_assert!(errs.iter().any(|e| e.field == missing), "{errs:?}");
            }
            other => prop_assert!(false, "{body}: {other:?}"),
        }
    }

    #[test]
    fn an_arbitrary_object_missing_a_required_field_is_never_accepted(
        body in arb_object_body(),
        missing in prop::sample::select(vec!["name", "emails", "partnerType"]),
    ) {
        let mut map: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
        map.remove(missing);
        let lenient = BodyRules { allow_unknown_fields: true, ..BodyRules::default() };
        let got = validate_create(Value::Object(map).to_string().as_bytes(), &lenient);
        prop_assert!(got.is_err());
    }

    #[test]
    fn parameter_order_does_not_matter(
        (params, shuffled) in valid_params().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
    ) {
        let a = parse(&encode(&params));
        let b = parse(&encode(&shuffled));
        prop_assert_eq!(a.canonical(), b.canonical());
        prop_assert_eq!(a, b);
    }

    #[test]
    fn id_list_order_and_repeats_do_not_matter(
        name in prop::sample::select(LISTS),
        (ids, shuffled) in prop::collection::vec(1u64..10_000, 1..30)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        repeat in any::<prop::sample::Index>(),
    ) {
        let mut repeated = shuffled.clone();
        repeated.push(shuffled[repeat.index(shuffled.len())]);
        let a = parse(&encode(&[(name.into(), render_ids(&ids))]));
        let b = parse(&encode(&[(name.into(), render_ids(&shuffled))]));
        let c = parse(&encode(&[(name.into(), render_ids(&repeated))]));
        prop_assert_eq!(a.canonical(), b.canonical());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
    }

    #[test]
    fn changing_one_id_changes_the_canonical_form(
        name in prop::sample::select(LISTS),
        ids in prop::collection::btree_set(1u64..10_000, 1..20),
        at in any::<prop::sample::Index>(),
        replacement in 1u64..20_000,
    ) {
        prop_assume!(!ids.contains(&replacement));
        let ids: Vec<u64> = ids.into_iter().collect();
        let mut changed = ids.clone();
        changed[at.index(ids.len())] = replacement;
        prop_assert_ne!(
            canonical_of(&[(name, render_ids(&ids))]),
            canonical_of(&[(name, render_ids(&changed))])
        );
    }

    #[test]
    fn changing_search_cursor_or_view_changes_the_canonical_form(
        a in text(),
        b in text(),
        name in prop::sample::select(vec!["search", "cursor"]),
        views in prop::sample::subsequence(VIEWS, 2),
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(canonical_of(&[(name, a)]), canonical_of(&[(name, b)]));
        prop_assert_ne!(
            canonical_of(&[("view", views[0].to_string())]),
            canonical_of(&[("view", views[1].to_string())])
        );
    }

    #[test]
    fn changing_the_sort_changes_the_canonical_form(
        spec in sort_spec(),
        flip in any::<prop::sample::Index>(),
    ) {
        let original = canonical_of(&[("sort", render_sort(&spec))]);
        // Flipping one direction.
        let mut flipped = spec.clone();
        let i = flip.index(flipped.len());
        flipped[i].1 = !flipped[i].1;
        prop_assert_ne!(&original, &canonical_of(&[("sort", render_sort(&flipped))]));
        // Reordering the priorities (the types are distinct, so a reversal of ≥2 differs).
        if spec.len() >= 2 {
            let reversed: Vec<_> = spec.iter().rev().copied().collect();
            prop_assert_ne!(&original, &canonical_of(&[("sort", render_sort(&reversed))]));
        }
    }

    #[test]
    fn canonical_form_is_a_fixed_point(params in valid_params()) {
        let q = parse(&encode(&params));
        let again = parse(q.canonical());
        prop_assert_eq!(again.canonical(), q.canonical());
        prop_assert_eq!(again.client_user_id(), None);
        if q.client_user_id().is_none() {
            prop_assert_eq!(&again, &q);
        }
        // What is sent upstream parses back to the same query for that user.
        let up = parse(&q.upstream_query(42));
        prop_assert_eq!(up.canonical(), q.canonical());
        prop_assert_eq!(up.client_user_id(), Some(42));
    }
}
