//! Micro-benchmarks of the pieces on the request path: token verification (cold and from the
//! verified-token cache), list-query normalization (the cache key), and validation of a
//! realistic create body. `cargo bench --bench hot_path`.

use criterion::{criterion_group, criterion_main, Criterion};
use journeybee_gateway::config;
use journeybee_gateway::identity::auth::Verifier;
use journeybee_gateway::validate::body::{validate_create, BodyRules};
use journeybee_gateway::validate::query::{parse_list_query, QueryLimits};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const SECRET: &str = "bench-hmac-secret-0123456789abcdef-0123456789";

struct NoFetch;
impl journeybee_gateway::identity::auth::jwks::Fetcher for NoFetch {
    fn get(&self, _url: &http::Uri) -> journeybee_gateway::identity::auth::jwks::FetchFuture {
        Box::pin(async { Err("no network in benchmarks".to_string()) })
    }
}

fn verifier(rt: &tokio::runtime::Runtime) -> Verifier {
    let dir = std::env::temp_dir().join(format!("jbgw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("k"), "jb_key").unwrap();
    std::fs::write(dir.join("s"), SECRET).unwrap();
    std::fs::copy(format!("{FIXTURES}/ec_public.pem"), dir.join("ec.pem")).unwrap();
    let text = r#"
[upstream]
base_url = "http://127.0.0.1:9"
[upstream.keys.k]
secret_file = "k"
[auth]
algorithms = ["HS256", "ES256"]
issuer = "https://idp.bench"
audience = "journeybee-gateway"
[[auth.keys]]
hmac_secret_file = "s"
[[auth.keys]]
public_key_file = "ec.pem"
"#;
    let settings = config::from_toml(text, &dir).unwrap();
    let v = rt.block_on(Verifier::build(&settings.auth, Arc::new(NoFetch)));
    let _ = std::fs::remove_dir_all(&dir);
    v
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "sub": "crm-sync@corp.example", "iss": "https://idp.bench",
        "aud": "journeybee-gateway", "iat": now, "exp": now + 3600,
    });
    encode(&Header::new(alg), &claims, key).unwrap()
}

fn tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let v = verifier(&rt);
    let ec = EncodingKey::from_ec_pem(
        std::fs::read_to_string(format!("{FIXTURES}/ec_private.pem"))
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let es = token(Algorithm::ES256, &ec);
    let hs = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    c.bench_function("verify ES256 cold", |b| {
        b.iter(|| rt.block_on(v.verify(black_box(&es))).unwrap())
    });
    c.bench_function("verify HS256 cold", |b| {
        b.iter(|| rt.block_on(v.verify(black_box(&hs))).unwrap())
    });
    rt.block_on(v.verify_cached(&es)).unwrap();
    c.bench_function("verify ES256 cached", |b| {
        b.iter(|| v.cached(black_box(&es)).unwrap())
    });
}

fn normalization(c: &mut Criterion) {
    let limits = QueryLimits::default();
    let q = "view=all&search=tech&tags=11,3,7,3&stages=2,1&tiers=4&sort=%5B%7B%22type%22%3A%22stage%22%2C%22asc%22%3Atrue%7D%5D&customFields=%5B%7B%22id%22%3A5%2C%22value%22%3A%7B%22number%22%3A100000%7D%7D%5D&userId=456";
    c.bench_function("list query normalization", |b| {
        b.iter(|| parse_list_query(black_box(Some(q)), &limits).unwrap())
    });
    c.bench_function("list query normalization (short)", |b| {
        b.iter(|| parse_list_query(black_box(Some("view=all")), &limits).unwrap())
    });
}

fn create_body(c: &mut Criterion) {
    let rules = BodyRules::default();
    let body = serde_json::json!({
        "name": "TechCorp Solutions",
        "emails": [{"email": "john@techcorp.com", "firstName": "John", "lastName": "Smith", "tags": [1, 2]}],
        "partnerType": "referral", "tierId": 2, "categoryId": 3, "countryId": 1,
        "assignedUsers": [456], "tags": [10, 11],
        "customFields": [
            {"customFieldId": 5, "type": "number", "value": {"number": 100000}},
            {"customFieldId": 6, "type": "select", "value": {"select": 2}}
        ]
    })
    .to_string();
    c.bench_function("create body validation", |b| {
        b.iter(|| validate_create(black_box(body.as_bytes()), &rules).unwrap())
    });
}

criterion_group!(benches, tokens, normalization, create_body);
criterion_main!(benches);
