//! `journeybee-gateway demo`: the simulator as upstream, the gateway in front of it, a read
//! user and a write user with ready tokens, and copy-paste curl commands. The demo builds a
//! real config file and loads it through the normal path, so what it shows is what runs.
//!
//! Only with the default `demo` feature (it links the `journeybee-sim` crate); release images
//! build with `--no-default-features` and carry no simulator.

use crate::config;
use crate::server::Gateway;
use journeybee_sim::{SimConfig, Simulator, SIM_READ_KEY, SIM_WRITE_KEY};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "journeybee-gateway-demo";
const AUDIENCE: &str = "journeybee-gateway";

/// Mints an HS256 token for `subject`, valid for `ttl_secs`.
pub fn mint_hs256(secret: &[u8], subject: &str, ttl_secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "sub": subject,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl_secs,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}

/// The demo's config text. Secrets are files next to it, never inline.
pub fn demo_config(upstream: &str, listen: &str, admin: &str, users: (u64, u64)) -> String {
    let own = SimConfig::default().company_domains.join("\", \"");
    format!(
        r#"# Written by `journeybee-gateway demo`.
[server]
listen = "{listen}"
admin_listen = "{admin}"
shutdown_grace = "5s"

[upstream]
base_url = "{upstream}"

[upstream.keys.read]
secret_file = "read.key"
read = true
write = false

[upstream.keys.write]
secret_file = "write.key"
read = true
write = true

[auth]
algorithms = ["HS256"]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[auth.keys]]
hmac_secret_file = "jwt.secret"

[[users]]
subject = "alice@example.com"
name = "alice"
upstream_key = "write"
user_id = {alice}
access = "write"

[[users]]
subject = "bob@example.com"
name = "bob"
upstream_key = "read"
user_id = {bob}
access = "read"

[validation]
own_domains = ["{own}"]

[metrics]
per_user = true
"#,
        alice = users.0,
        bob = users.1,
    )
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

/// Runs the demo until Ctrl-C (or SIGTERM). With `env_file`, also writes the addresses and
/// tokens there as `KEY=value` lines once serving, for scripts that drive the demo. (The
/// project's own scripts run the production shape instead: scripts/lib.sh `start_stack` starts
/// the `journeybee-sim` binary and `journeybee-gateway serve` on this config, with JSON logs.)
pub async fn run(env_file: Option<&Path>) -> Result<(), String> {
    // Installed before anything listens, so an early Ctrl-C still cleans up.
    let stop = crate::signals::shutdown();
    let sim = Simulator::start(
        "127.0.0.1:0".parse().expect("literal address"),
        SimConfig {
            rate_limit_per_minute: Some(100),
            // Lets the user switch upstream faults (`PUT /__sim/fault`).
            control: true,
            // The demo may run for days: keep the count exact but only recent requests.
            record_limit: Some(1_000),
            ..SimConfig::default()
        },
    )
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    let dir = std::env::temp_dir().join(format!("journeybee-gateway-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let secret = format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..));
    write(&dir, "read.key", SIM_READ_KEY)?;
    write(&dir, "write.key", SIM_WRITE_KEY)?;
    write(&dir, "jwt.secret", &secret)?;
    let ids = sim.user_ids();
    let users = (ids[0], ids.get(1).copied().unwrap_or(ids[0]));

    // The usual ports when free, any free port otherwise.
    let mut gateway = None;
    let mut log = None;
    for (listen, admin) in [
        ("127.0.0.1:8080", "127.0.0.1:9090"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ] {
        let text = demo_config(&sim.base_url(), listen, admin, users);
        write(&dir, "gateway.toml", &text)?;
        let settings = config::load(&dir.join("gateway.toml")).map_err(|e| e.to_string())?;
        if log.is_none() {
            log = Some(crate::logging::init(&settings.log));
        }
        match Gateway::start(settings).await {
            Ok(g) => {
                gateway = Some(g);
                break;
            }
            Err(e) => tracing::warn!(error = %e, "demo ports busy, picking free ones"),
        }
    }
    let gateway = gateway.ok_or("could not start the gateway")?;
    let base = format!("http://{}", gateway.addr());
    let read = mint_hs256(secret.as_bytes(), "bob@example.com", 12 * 3600);
    let write_token = mint_hs256(secret.as_bytes(), "alice@example.com", 12 * 3600);
    let body = r#"{"name":"Globex Partners","emails":[{"email":"jane@globex-demo.com","firstName":"Jane"}],"partnerType":"referral","inactive":true}"#;
    // The newest generated partnership, for the update example.
    let partnership = sim.partnership_ids().first().copied().unwrap_or(1);
    println!(
        r#"
journeybee-gateway demo
  gateway:    {base}
  metrics:    http://{admin}/metrics   (health: /healthz, readiness: /readyz)
  upstream:   {upstream}  (JourneyBee simulator)
  config:     {config}

Tokens (HS256, valid 12 h):
  READ_TOKEN={read}      # bob, read access, userId {bob}
  WRITE_TOKEN={write_token}     # alice, write access, userId {alice}

Try:
  # list partnerships as bob (the gateway adds userId and the API key)
  curl -s "{base}/api/v1/partnerships?view=all&search=tech" -H "Authorization: Bearer $READ_TOKEN"

  # create a partnership as alice
  curl -s -X POST "{base}/api/v1/partnerships" -H "Authorization: Bearer $WRITE_TOKEN" \
       -H "Content-Type: application/json" -d '{body}'

  # the same create as bob is refused locally with 403, never reaching upstream
  curl -s -X POST "{base}/api/v1/partnerships" -H "Authorization: Bearer $READ_TOKEN" \
       -H "Content-Type: application/json" -d '{body}'

  # a lookup: the company's tiers (cached per API key for 5 minutes, shared by all users)
  curl -s "{base}/api/v1/tiers" -H "Authorization: Bearer $READ_TOKEN"

  # an update as alice: move a partnership to tier 2 (checked against the real tiers first)
  curl -s -X PATCH "{base}/api/v1/partnerships/{partnership}" -H "Authorization: Bearer $WRITE_TOKEN" \
       -H "Content-Type: application/json" -H "Idempotency-Key: demo-update-1" -d '{{"tierId":2}}'

  # every route the gateway serves, as OpenAPI 3.1 (no token needed)
  curl -s "{base}/openapi.json"

Ctrl-C to stop.
"#,
        admin = gateway.admin_addr(),
        upstream = sim.base_url(),
        config = dir.join("gateway.toml").display(),
        alice = users.0,
        bob = users.1,
    );
    if let Some(path) = env_file {
        let env = format!(
            "JBGW_URL={base}\nJBGW_ADMIN_URL=http://{admin}\nSIM_URL={upstream}\nREAD_TOKEN={read}\nWRITE_TOKEN={write_token}\nJBGW_CONFIG_FILE={config}\n",
            admin = gateway.admin_addr(),
            upstream = sim.base_url(),
            config = dir.join("gateway.toml").display(),
        );
        // Written whole then renamed, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, env).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    stop.await;
    gateway.shutdown().await;
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
