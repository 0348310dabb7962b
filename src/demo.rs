//! `journeybee-gateway demo`: the simulator as upstream, the gateway in front of it, a read
//! user and a write user with ready tokens, and copy-paste curl commands. The demo builds a
//! real config file and loads it through the normal path, so what it shows is what runs.
//!
//! With `--tls` the gateway serves HTTPS with a CA made on the spot (rcgen, aws-lc-rs) and
//! written into the demo's temp dir, asks for client certificates (optional), and maps a
//! machine user by its certificate's URI SAN.
//!
//! Only with the default `demo` feature (it links the `journeybee-sim` crate); release images
//! build with `--no-default-features` and carry no simulator.

use crate::config;
use crate::server::Gateway;
use journeybee_sim::{SimConfig, Simulator, SIM_READ_KEY, SIM_WRITE_KEY};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::path::{Path, PathBuf};
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

/// The machine user's certificate name in the TLS demo.
pub const DEMO_MACHINE_SAN: &str = "spiffe://journeybee-demo/crm-sync";

/// The files `demo --tls` writes: a CA, the gateway's certificate (for `localhost` and
/// 127.0.0.1) signed by it, and a client certificate for the machine user.
#[derive(Debug, Clone)]
pub struct DemoTls {
    /// The CA certificate (`curl --cacert`), also the CA client certificates must chain to.
    pub ca: PathBuf,
    /// The machine user's certificate (`curl --cert`).
    pub client_cert: PathBuf,
    /// Its key (`curl --key`).
    pub client_key: PathBuf,
}

/// Makes the demo's CA, server and client certificates and writes them into `dir`.
pub fn write_tls(dir: &Path) -> Result<DemoTls, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    let e = |e: rcgen::Error| format!("generating the demo certificates: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name
        .push(DnType::CommonName, "journeybee-gateway demo CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let valid = |p: &mut CertificateParams| {
        // A day in the past (clock skew) to 90 days ahead, like a short-lived real one.
        let now = SystemTime::now();
        p.not_before = (now - std::time::Duration::from_secs(86_400)).into();
        p.not_after = (now + std::time::Duration::from_secs(90 * 86_400)).into();
    };
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).map_err(e)?;
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    valid(&mut server);
    let server_key = KeyPair::generate().map_err(e)?;
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(e)?;
    let mut client = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    client.subject_alt_names = vec![SanType::URI(
        DEMO_MACHINE_SAN.to_string().try_into().map_err(e)?,
    )];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    valid(&mut client);
    let client_key = KeyPair::generate().map_err(e)?;
    let client_cert = client
        .signed_by(&client_key, &ca_cert, &ca_key)
        .map_err(e)?;
    write(dir, "ca.pem", &ca_cert.pem())?;
    write(dir, "server.pem", &server_cert.pem())?;
    write(dir, "server.key", &server_key.serialize_pem())?;
    write(dir, "client.pem", &client_cert.pem())?;
    write(dir, "client.key", &client_key.serialize_pem())?;
    Ok(DemoTls {
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    })
}

/// The demo config with HTTPS: `[server.tls]` with the files of [`write_tls`] (client
/// certificates optional, so the tokens keep working), and the machine user `crm-sync`,
/// mapped by its certificate, reading as JourneyBee user `user_id`.
pub fn with_tls(config: &str, user_id: u64) -> String {
    let tls = r#"
[server.tls]
cert_file = "server.pem"
key_file = "server.key"
client_ca_file = "ca.pem"
client_cert = "optional"
"#;
    let config = config.replacen("\n[upstream]\n", &format!("{tls}\n[upstream]\n"), 1);
    format!(
        r#"{config}
[[users]]
certificate = "{DEMO_MACHINE_SAN}"
name = "crm-sync"
upstream_key = "read"
user_id = {user_id}
access = "read"
"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

/// The TLS demo's own lines: the CA, an HTTP/2 request, the machine user's certificate.
fn tls_lines(base: &str, c: &DemoTls, machine: u64) -> String {
    format!(
        r#"
HTTPS (a CA made for this demo; client certificates optional):
  CA:          {ca}
  client cert: {cert}   (crm-sync: {san}, read access, userId {machine})

  # the same list over HTTP/2 (ALPN h2)
  curl -s --http2 --cacert {ca} -o /dev/null -w '%{{http_version}} %{{http_code}}\n' \
       "{base}/api/v1/partnerships?view=all" -H "Authorization: Bearer $READ_TOKEN"

  # a machine user: its client certificate is its credential, no token
  curl -s --cacert {ca} --cert {cert} --key {key} "{base}/api/v1/partnerships?view=all"

  # a certificate and a token that name different users are refused (403)
  curl -s --cacert {ca} --cert {cert} --key {key} "{base}/api/v1/partnerships?view=all" \
       -H "Authorization: Bearer $READ_TOKEN"
"#,
        ca = c.ca.display(),
        cert = c.client_cert.display(),
        key = c.client_key.display(),
        san = DEMO_MACHINE_SAN,
    )
}

/// Runs the demo until Ctrl-C (or SIGTERM). With `env_file`, also writes the addresses and
/// tokens there as `KEY=value` lines once serving, for scripts that drive the demo. (The
/// project's own scripts run the production shape instead: scripts/lib.sh `start_stack` starts
/// the `journeybee-sim` binary and `journeybee-gateway serve` on this config, with JSON logs.)
pub async fn run(env_file: Option<&Path>, tls: bool) -> Result<(), String> {
    // Installed before anything listens, so an early Ctrl-C still cleans up.
    let stop = crate::server::signals::shutdown();
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
    let machine = ids.get(2).copied().unwrap_or(users.1);
    let certs = if tls { Some(write_tls(&dir)?) } else { None };

    // The usual ports when free, any free port otherwise.
    let mut gateway = None;
    let mut log = None;
    for (listen, admin) in [
        ("127.0.0.1:8080", "127.0.0.1:9090"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ] {
        let mut text = demo_config(&sim.base_url(), listen, admin, users);
        if certs.is_some() {
            text = with_tls(&text, machine);
        }
        write(&dir, "gateway.toml", &text)?;
        let settings = config::load(&dir.join("gateway.toml")).map_err(|e| e.to_string())?;
        if log.is_none() {
            log = Some(crate::observe::logging::init(&settings.log));
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
    let base = match certs {
        Some(_) => format!("https://{}", gateway.addr()),
        None => format!("http://{}", gateway.addr()),
    };
    // With TLS every curl line trusts the demo CA.
    let cacert = certs
        .as_ref()
        .map(|c| format!(" --cacert {}", c.ca.display()))
        .unwrap_or_default();
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
  curl -s{cacert} "{base}/api/v1/partnerships?view=all&search=tech" -H "Authorization: Bearer $READ_TOKEN"

  # create a partnership as alice
  curl -s{cacert} -X POST "{base}/api/v1/partnerships" -H "Authorization: Bearer $WRITE_TOKEN" \
       -H "Content-Type: application/json" -d '{body}'

  # the same create as bob is refused locally with 403, never reaching upstream
  curl -s{cacert} -X POST "{base}/api/v1/partnerships" -H "Authorization: Bearer $READ_TOKEN" \
       -H "Content-Type: application/json" -d '{body}'

  # a lookup: the company's tiers (cached per API key for 5 minutes, shared by all users)
  curl -s{cacert} "{base}/api/v1/tiers" -H "Authorization: Bearer $READ_TOKEN"

  # an update as alice: move a partnership to tier 2 (checked against the real tiers first)
  curl -s{cacert} -X PATCH "{base}/api/v1/partnerships/{partnership}" -H "Authorization: Bearer $WRITE_TOKEN" \
       -H "Content-Type: application/json" -H "Idempotency-Key: demo-update-1" -d '{{"tierId":2}}'

  # every route the gateway serves, as OpenAPI 3.1 (no token needed)
  curl -s{cacert} "{base}/openapi.json"
{tls_lines}
Ctrl-C to stop.
"#,
        tls_lines = certs
            .as_ref()
            .map(|c| tls_lines(&base, c, machine))
            .unwrap_or_default(),
        admin = gateway.admin_addr(),
        upstream = sim.base_url(),
        config = dir.join("gateway.toml").display(),
        alice = users.0,
        bob = users.1,
    );
    if let Some(path) = env_file {
        let mut env = format!(
            "JBGW_URL={base}\nJBGW_ADMIN_URL=http://{admin}\nSIM_URL={upstream}\nREAD_TOKEN={read}\nWRITE_TOKEN={write_token}\nJBGW_CONFIG_FILE={config}\n",
            admin = gateway.admin_addr(),
            upstream = sim.base_url(),
            config = dir.join("gateway.toml").display(),
        );
        if let Some(c) = &certs {
            env += &format!(
                "JBGW_CA_FILE={}\nJBGW_CLIENT_CERT={}\nJBGW_CLIENT_KEY={}\n",
                c.ca.display(),
                c.client_cert.display(),
                c.client_key.display()
            );
        }
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
