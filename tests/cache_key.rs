//! Property tests on the cache key: permutations share a key; anything upstream could answer
//! differently (an id, search, cursor, view, sort order, the user, the upstream key) does not.

use journeybee_gateway::cache::CacheKey;
use journeybee_gateway::ingress::route::Group;
use journeybee_gateway::validate::query::{parse_list_query, QueryLimits};
use proptest::prelude::*;
use std::sync::Arc;

fn key(query: &str, user: u64, upstream: &str) -> CacheKey {
    CacheKey::new(
        Arc::from(upstream),
        Group::Partnerships,
        0,
        "/api/v1/partnerships",
        &parse_list_query(Some(query), &QueryLimits::default()).unwrap(),
        Some(user),
    )
}

fn render(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn base_params() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        prop::collection::vec(1u64..500, 1..6),
        prop::collection::vec(1u64..50, 1..4),
        "[a-z]{1,8}",
        prop::sample::select(vec!["all", "assigned", "referral", "reseller"]),
        prop::sample::select(vec!["stage", "tier", "category"]),
    )
        .prop_map(|(tags, tiers, search, view, sort)| {
            let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            vec![
                ("tags".into(), join(&tags)),
                ("tiers".into(), join(&tiers)),
                ("search".into(), search),
                ("view".into(), view.into()),
                (
                    "sort".into(),
                    format!("%5B%7B%22type%22%3A%22{sort}%22%2C%22asc%22%3Atrue%7D%5D"),
                ),
                ("cursor".into(), "2026-01-01T00%3A00%3A00Z".into()),
            ]
        })
}

proptest! {
    #[test]
    fn permutations_share_a_key(params in base_params(), seed in any::<u64>()) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut shuffled = params.clone();
        rng.shuffle(&mut shuffled);
        // Shuffle the id lists' elements too, and repeat one.
        for (k, v) in shuffled.iter_mut() {
            if k == "tags" || k == "tiers" {
                let mut ids: Vec<&str> = v.split(',').collect();
                rng.shuffle(&mut ids);
                let first = ids[0];
                ids.push(first);
                *v = ids.join(",");
            }
        }
        prop_assert_eq!(key(&render(&params), 7, "write"), key(&render(&shuffled), 7, "write"));
    }

    #[test]
    fn any_meaningful_change_gives_another_key(params in base_params(), which in 0usize..6, bump in 1u64..1000) {
        let original = key(&render(&params), 7, "write");
        prop_assert_ne!(&original, &key(&render(&params), 8, "write"), "user");
        prop_assert_ne!(&original, &key(&render(&params), 7, "read"), "upstream key");
        let mut changed = params.clone();
        let (name, value) = &mut changed[which];
        match name.as_str() {
            "tags" | "tiers" => value.push_str(&format!(",{}", 1000 + bump)),
            "search" => value.push('Z'),
            "view" => *value = if value == "all" { "assigned".into() } else { "all".into() },
            "sort" => *value = format!("%5B{},{}%5D", &value[3..value.len() - 3], "%7B%22type%22%3A%22zzz%22%7D"),
            "cursor" => *value = "2026-01-01T00%3A00%3A01Z".into(),
            _ => unreachable!(),
        }
        if name == "sort" {
            // A two-element sort in either order: the order is a priority list.
            let a = "%7B%22type%22%3A%22stage%22%2C%22asc%22%3Atrue%7D";
            let b = "%7B%22type%22%3A%22tier%22%2C%22asc%22%3Afalse%7D";
            let mut p1 = params.clone();
            p1[4].1 = format!("%5B{a}%2C{b}%5D");
            let mut p2 = params.clone();
            p2[4].1 = format!("%5B{b}%2C{a}%5D");
            prop_assert_ne!(key(&render(&p1), 7, "write"), key(&render(&p2), 7, "write"));
        } else {
            prop_assert_ne!(original, key(&render(&changed), 7, "write"));
        }
    }
}

#[test]
fn search_case_and_spacing_are_kept() {
    assert_ne!(key("search=Tech", 1, "k"), key("search=tech", 1, "k"));
    assert_ne!(key("search=a+b", 1, "k"), key("search=a++b", 1, "k"));
    assert_ne!(
        key("", 1, "k"),
        key("view=all", 1, "k"),
        "no view is not view=all"
    );
}
