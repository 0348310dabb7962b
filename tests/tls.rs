//! TLS on the public listener, over real sockets with a rustls client: the handshake and ALPN
//! (h2, http/1.1), a certificate swapped by a reload (and by a renewal on disk) while a
//! keep-alive connection stays open, a bad new certificate refused, plain HTTP to the TLS
//! port answered 400 in clear, the expiry metric; client certificates (mTLS) required and
//! optional, a certificate mapped to a user, a JWT that disagrees with it, an expired one.
//! Every certificate is made here with rcgen.

mod common;

use bytes::Bytes;
use common::{Harness, Opts, TestDir};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A CA that issues server and client certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM.
struct Issued {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A server certificate for `localhost` expiring on `not_after` (year, month, day).
    fn server(&self, not_after: (i32, u8, u8)) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with these SANs (`spiffe://...` as a URI, anything else as DNS).
    fn client(&self, sans: &[&str], not_after: (i32, u8, u8)) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans
            .iter()
            .map(|s| {
                if s.contains("://") {
                    SanType::URI(s.to_string().try_into().unwrap())
                } else {
                    SanType::DnsName(s.to_string().try_into().unwrap())
                }
            })
            .collect();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }
}

const FAR: (i32, u8, u8) = (2090, 1, 1);
const LATER: (i32, u8, u8) = (2091, 6, 15);
const PAST: (i32, u8, u8) = (2021, 1, 1);

/// The certificate files a gateway's `[server.tls]` names, in their own directory.
struct Files {
    dir: TestDir,
}

impl Files {
    fn new(ca: &Ca, server: &Issued) -> Files {
        let files = Files {
            dir: TestDir::new(),
        };
        files.put(server);
        files.dir.write("client-ca.pem", &ca.pem());
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Replaces the certificate and key (as a renewal does: new files renamed into place).
    fn put(&self, issued: &Issued) {
        for (name, text) in [("server.key", &issued.key), ("server.pem", &issued.cert)] {
            let tmp = self.dir.write(&format!("{name}.tmp"), text);
            std::fs::rename(tmp, self.path(name)).unwrap();
        }
    }

    /// The `[server.tls]` block; `client` adds the client CA and its mode.
    fn block(&self, client: Option<&str>) -> String {
        let mut s = format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.path("server.pem"),
            self.path("server.key")
        );
        if let Some(mode) = client {
            s += &format!(
                "client_ca_file = {:?}\nclient_cert = \"{mode}\"\n",
                self.path("client-ca.pem")
            );
        }
        s
    }
}

/// A gateway serving HTTPS with `files`, plus these `[[users]]` lines after the harness's.
async fn gateway(files: &Files, client: Option<&str>, tail: &str) -> Harness {
    Harness::with(Opts {
        server: files.block(client),
        tail: tail.to_string(),
        ..Opts::default()
    })
    .await
}

fn port(h: &Harness) -> u16 {
    h.gw.as_ref().unwrap().addr().port()
}

/// A rustls client trusting `ca`, offering `alpn`, presenting `client` if given.
fn connector(ca: &Ca, alpn: &[&[u8]], client: Option<&Issued>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                vec![c.der.clone()],
                PrivateKeyDer::from_pem_slice(c.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every handshake a full one: a resumed session shows the certificate of the session it
    // resumes, not the one the server would send now.
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

async fn handshake(port: u16, connector: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The leaf certificate the server presented on `tls`.
fn served(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One HTTP/1.1 connection over TLS, kept alive across requests.
struct H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl H1 {
    async fn open(tls: TlsStream<TcpStream>) -> H1 {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        H1(send)
    }

    async fn get(&mut self, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::get(path).header("host", "localhost");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = self
            .0
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("the connection answers");
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

async fn metric(h: &Harness, name: &str) -> Option<String> {
    let body = h.admin_get("/metrics").await.body;
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with(name))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
}

fn unix(d: (i32, u8, u8)) -> i64 {
    rcgen::date_time_ymd(d.0, d.1, d.2).unix_timestamp()
}

#[tokio::test]
async fn https_with_alpn_h2_and_http1() {
    let ca = Ca::new("test CA");
    let files = Files::new(&ca, &ca.server(FAR));
    let h = gateway(&files, None, "").await;

    // HTTP/1.1, chosen by ALPN.
    let tls = handshake(port(&h), &connector(&ca, &[b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let version = tls.get_ref().1.protocol_version().unwrap();
    assert!(
        matches!(
            version,
            rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2
        ),
        "{version:?}"
    );
    let mut h1 = H1::open(tls).await;
    let (status, _) = h1.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    // A real proxied list, authenticated by a JWT over TLS.
    let token = h.token("bob@corp.test");
    let (status, body) = h1.get("/api/v1/partnerships?view=all", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.upstream_count(), 1);

    // HTTP/2, chosen by ALPN.
    let tls = handshake(port(&h), &connector(&ca, &[b"h2", b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("https://localhost/openapi.json")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);

    // TLS 1.2 is still offered (and nothing older exists in rustls).
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = handshake(port(&h), &TlsConnector::from(Arc::new(tls12)))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    // The expiry is exported; the admin listener stays plain HTTP.
    assert_eq!(
        metric(&h, "jbgw_tls_cert_expiry_seconds").await,
        Some(unix(FAR).to_string())
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_a_400_in_clear() {
    let ca = Ca::new("test CA");
    let files = Files::new(&ca, &ca.server(FAR));
    let h = gateway(&files, None, "").await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port(&h))).await.unwrap();
    tcp.write_all(
        b"GET /api/v1/partnerships HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    // The gateway closes the connection after its answer: read_to_end returns.
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(json["error"].as_str().unwrap().contains("https://"));
    assert_eq!(h.upstream_count(), 0);
    // And the listener still serves TLS.
    let tls = handshake(port(&h), &connector(&ca, &[b"http/1.1"], None)).await;
    assert!(tls.is_ok());
}

#[tokio::test]
async fn a_reload_swaps_the_certificate_while_a_keep_alive_connection_stays_open() {
    let ca = Ca::new("test CA");
    let first = ca.server(FAR);
    let files = Files::new(&ca, &first);
    let h = gateway(&files, None, "").await;
    let gw = h.gw.as_ref().unwrap();
    let connector = connector(&ca, &[b"http/1.1"], None);

    let tls = handshake(port(&h), &connector).await.unwrap();
    assert_eq!(served(&tls), first.der);
    let mut open = H1::open(tls).await;
    assert_eq!(open.get("/openapi.json", None).await.0, StatusCode::OK);

    // Renewed on disk, then the reload SIGHUP runs (the config itself is unchanged).
    let second = ca.server(LATER);
    files.put(&second);
    let path = h.dir.0.join("gateway.toml");
    assert!(journeybee_gateway::server::reload::reload_from(gw, &path, "test").await);

    // New connections get the new certificate...
    let tls = handshake(port(&h), &connector).await.unwrap();
    assert_eq!(served(&tls), second.der);
    // ...the open one was not dropped, and keeps serving.
    assert_eq!(open.get("/openapi.json", None).await.0, StatusCode::OK);
    assert_eq!(
        metric(&h, "jbgw_tls_cert_expiry_seconds").await,
        Some(unix(LATER).to_string())
    );

    // A bad new certificate (a key that does not fit it) is refused: the old one stays.
    let other = ca.server(FAR);
    std::fs::write(files.path("server.pem"), ca.server(FAR).cert).unwrap();
    std::fs::write(files.path("server.key"), &other.key).unwrap();
    assert!(gw.reload_tls("test") == Some(false));
    let tls = handshake(port(&h), &connector).await.unwrap();
    assert_eq!(served(&tls), second.der);
    // So is an expired one.
    files.put(&ca.server(PAST));
    assert!(gw.reload_tls("test") == Some(false));
    let tls = handshake(port(&h), &connector).await.unwrap();
    assert_eq!(served(&tls), second.der);
    assert_eq!(
        metric(&h, "jbgw_tls_cert_expiry_seconds").await,
        Some(unix(LATER).to_string())
    );
    assert_eq!(
        metric(&h, "jbgw_tls_cert_reloads_total{result=\"failure\"}").await,
        Some("2".into())
    );
    assert_eq!(open.get("/openapi.json", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_renewed_certificate_on_disk_is_picked_up_without_a_signal() {
    let ca = Ca::new("test CA");
    let first = ca.server(FAR);
    let files = Files::new(&ca, &first);
    let h = gateway(&files, None, "").await;
    let gw = h.gw.as_ref().unwrap();
    let connector = connector(&ca, &[b"http/1.1"], None);
    let path = h.dir.0.join("gateway.toml");
    let hup = journeybee_gateway::server::signals::Handler::hangup();
    let watch = journeybee_gateway::server::reload::watch(
        gw,
        &path,
        std::time::Duration::from_millis(20),
        hup,
    );
    let renewed = ca.server(LATER);
    let test = async {
        let mut open = H1::open(handshake(port(&h), &connector).await.unwrap()).await;
        files.put(&renewed);
        common::eventually(
            "the renewed certificate served",
            std::time::Duration::from_secs(10),
            || gw.tls().unwrap().expires() == unix(LATER) as u64,
        )
        .await;
        let tls = handshake(port(&h), &connector).await.unwrap();
        assert_eq!(served(&tls), renewed.der);
        assert_eq!(open.get("/openapi.json", None).await.0, StatusCode::OK);
    };
    tokio::select! {
        _ = watch => unreachable!("watch runs forever"),
        _ = test => {}
    }
}

#[test]
fn check_config_reports_tls_problems() {
    let ca = Ca::new("test CA");
    let files = Files::new(&ca, &ca.server(FAR));
    files.dir.write("jwt.secret", common::JWT_SECRET);
    let base = "[upstream]\nbase_url = \"http://127.0.0.1:1\"\nallow_plain_http = true\n[upstream.keys.k]\nsecret_file = \"jwt.secret\"\n[auth]\nalgorithms = [\"HS256\"]\nissuer = \"i\"\naudience = \"a\"\n[[auth.keys]]\nhmac_secret_file = \"jwt.secret\"\n";
    let load = |tls: &str| {
        journeybee_gateway::config::from_toml(&format!("[server]\n{tls}\n{base}"), &files.dir.0)
    };
    load(&files.block(None)).unwrap_or_else(|e| panic!("{e}"));
    load(&files.block(Some("required"))).unwrap_or_else(|e| panic!("{e}"));
    let problems = |tls: &str| load(tls).unwrap_err().problems;
    let p = problems("[server.tls]\ncert_file = \"server.pem\"\n");
    assert!(p.iter().any(|(k, _)| k == "server.tls.key_file"), "{p:?}");
    let p = problems("[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\nclient_cert = \"sometimes\"\n");
    assert!(
        p.iter()
            .any(|(k, m)| k == "server.tls.client_cert" && m.contains("sometimes")),
        "{p:?}"
    );
    let p = problems("[server.tls]\ncert_file = \"client-ca.pem\"\nkey_file = \"server.key\"\n");
    assert!(
        p.iter()
            .any(|(k, m)| k == "server.tls.cert_file" && m.contains("does not fit")),
        "{p:?}"
    );
    let p = problems(
        "[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\ncert = \"x\"\n",
    );
    assert!(!p.is_empty());
    // An expired chain is refused, with the path.
    std::fs::write(files.path("old.pem"), ca.server(PAST).cert).unwrap();
    let p = problems("[server.tls]\ncert_file = \"old.pem\"\nkey_file = \"server.key\"\n");
    assert!(
        p.iter()
            .any(|(k, m)| k == "server.tls.cert_file" && m.contains("expired")),
        "{p:?}"
    );
}

/// Machine users mapped by certificate: crm-sync by a URI SAN (as carol's JourneyBee user,
/// read), batch by a DNS SAN and by a token subject too (as alice's, write).
fn machine_users(h: &Harness) -> String {
    format!(
        r#"
[[users]]
certificate = "spiffe://corp/crm-sync"
name = "crm-sync"
upstream_key = "read"
user_id = {carol}
access = "read"

[[users]]
subject = "batch@corp.test"
certificate = "Batch.Corp.Test"
name = "batch"
upstream_key = "write"
user_id = {alice}
access = "write"
"#,
        carol = h.carol_id,
        alice = h.alice_id
    )
}

/// A gateway asking for client certificates (`mode`), with the machine users loaded.
async fn mtls_gateway(ca: &Ca, mode: &str) -> (Harness, Files) {
    let files = Files::new(ca, &ca.server(FAR));
    let h = gateway(&files, Some(mode), "").await;
    let users = machine_users(&h);
    assert!(h.reload(|text| text + &users).await, "machine users load");
    (h, files)
}

/// One request on a new TLS connection presenting `client`: the status and body, or None
/// when the connection was refused (handshake or first read failed).
async fn get_as(
    h: &Harness,
    ca: &Ca,
    client: Option<&Issued>,
    path: &str,
    token: Option<&str>,
) -> Option<(StatusCode, String)> {
    let tls = handshake(port(h), &connector(ca, &[b"http/1.1"], client))
        .await
        .ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", "localhost");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    // In TLS 1.3 the client finishes its handshake before the server has checked its
    // certificate: a refusal shows as the first exchange failing.
    let resp = send
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .ok()?;
    let status = resp.status();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The userId the last upstream request was made for.
fn last_user_id(h: &Harness) -> String {
    let last = h.sim.requests().pop().expect("an upstream request");
    let query = last.query.unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "userId")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

const LIST: &str = "/api/v1/partnerships?view=all";

#[tokio::test]
async fn required_client_certificates() {
    let ca = Ca::new("client CA");
    let (h, _files) = mtls_gateway(&ca, "required").await;
    let bob = h.token("bob@corp.test");
    let crm = ca.client(&["spiffe://corp/crm-sync"], FAR);

    // No certificate: refused at the handshake, even with a valid token.
    assert_eq!(get_as(&h, &ca, None, LIST, Some(&bob)).await, None);
    // A certificate from another CA: refused.
    let stranger = Ca::new("another CA").client(&["spiffe://corp/crm-sync"], FAR);
    assert_eq!(get_as(&h, &ca, Some(&stranger), LIST, None).await, None);
    assert_eq!(h.upstream_count(), 0);

    // The certificate alone is crm-sync's credential: the list runs as its JourneyBee user.
    let (status, body) = get_as(&h, &ca, Some(&crm), LIST, None).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_user_id(&h), h.carol_id.to_string());

    // A certificate that maps to nobody is a transport credential: the token decides.
    let device = ca.client(&["spiffe://corp/laptop-42"], FAR);
    let (status, body) = get_as(&h, &ca, Some(&device), LIST, Some(&bob))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_user_id(&h), h.bob_id.to_string());
    // ... and alone it maps to no user.
    let (status, body) = get_as(&h, &ca, Some(&device), LIST, None).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(h.upstream_count(), 2);
}

#[tokio::test]
async fn a_token_and_a_certificate_must_name_the_same_user() {
    let ca = Ca::new("client CA");
    let (h, _files) = mtls_gateway(&ca, "optional").await;
    let crm = ca.client(&["spiffe://corp/crm-sync"], FAR);
    let batch = ca.client(&["batch.corp.test"], FAR);

    // crm-sync's certificate with bob's token: refused with a JSON 403, nothing sent upstream.
    let bob = h.token("bob@corp.test");
    let (status, body) = get_as(&h, &ca, Some(&crm), LIST, Some(&bob)).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["error"],
        "Client certificate and bearer token name different users"
    );
    // So is a token of a subject the table does not know, with a mapped certificate.
    let stranger = h.token("mallory@corp.test");
    let (status, _) = get_as(&h, &ca, Some(&crm), LIST, Some(&stranger))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    // And a bad token is never ignored because a certificate came with it.
    let (status, _) = get_as(&h, &ca, Some(&crm), LIST, Some("not.a.jwt"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.upstream_count(), 0);

    // batch's DNS SAN (matched case-insensitively) and batch's own token agree.
    let token = h.token("batch@corp.test");
    let (status, body) = get_as(&h, &ca, Some(&batch), LIST, Some(&token))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_user_id(&h), h.alice_id.to_string());

    // A certificate naming two different users is ambiguous: refused.
    let both = ca.client(&["spiffe://corp/crm-sync", "batch.corp.test"], FAR);
    let (status, _) = get_as(&h, &ca, Some(&both), LIST, None).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.upstream_count(), 1);

    let denials = metric(
        &h,
        "jbgw_authz_denials_total{reason=\"credential_mismatch\"}",
    )
    .await;
    assert_eq!(denials, Some("3".into()));
}

#[tokio::test]
async fn optional_client_certificates() {
    let ca = Ca::new("client CA");
    let (h, _files) = mtls_gateway(&ca, "optional").await;
    let bob = h.token("bob@corp.test");
    // Without a certificate: the token, as on a plain listener.
    let (status, body) = get_as(&h, &ca, None, LIST, Some(&bob)).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = get_as(&h, &ca, None, LIST, None).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // With one: the certificate's user.
    let crm = ca.client(&["spiffe://corp/crm-sync"], FAR);
    let (status, body) = get_as(&h, &ca, Some(&crm), LIST, None).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_user_id(&h), h.carol_id.to_string());
    // crm-sync is a read user: its certificate does not make it a writer.
    let (status, _) = get_as(&h, &ca, Some(&crm), "/api/v1/tiers", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let ca = Ca::new("client CA");
    for mode in ["required", "optional"] {
        let (h, _files) = mtls_gateway(&ca, mode).await;
        let expired = ca.client(&["spiffe://corp/crm-sync"], PAST);
        assert_eq!(
            get_as(&h, &ca, Some(&expired), LIST, None).await,
            None,
            "{mode}"
        );
        let bob = h.token("bob@corp.test");
        assert_eq!(
            get_as(&h, &ca, Some(&expired), LIST, Some(&bob)).await,
            None,
            "{mode}"
        );
        assert_eq!(h.upstream_count(), 0, "{mode}");
    }
}

#[test]
fn a_certificate_user_needs_a_client_ca() {
    let ca = Ca::new("test CA");
    let files = Files::new(&ca, &ca.server(FAR));
    files.dir.write("jwt.secret", common::JWT_SECRET);
    let users = "[[users]]\ncertificate = \"spiffe://corp/crm-sync\"\nname = \"crm-sync\"\nupstream_key = \"k\"\nuser_id = 7\naccess = \"read\"\n";
    let text = |tls: &str| {
        format!("[server]\n{tls}\n[upstream]\nbase_url = \"http://127.0.0.1:1\"\nallow_plain_http = true\n[upstream.keys.k]\nsecret_file = \"jwt.secret\"\n[auth]\nalgorithms = [\"HS256\"]\nissuer = \"i\"\naudience = \"a\"\n[[auth.keys]]\nhmac_secret_file = \"jwt.secret\"\n{users}")
    };
    let load = |tls: &str| journeybee_gateway::config::from_toml(&text(tls), &files.dir.0);
    let p = load(&files.block(None)).unwrap_err().problems;
    assert!(
        p.iter()
            .any(|(k, m)| k == "users" && m.contains("client_ca_file")),
        "{p:?}"
    );
    let s = load(&files.block(Some("optional"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&*s.certificates["spiffe://corp/crm-sync"].name, "crm-sync");
    assert!(s.users.is_empty());
    // A wildcard is not a user.
    let p = journeybee_gateway::config::from_toml(
        &text(&files.block(Some("optional"))).replace("spiffe://corp/crm-sync", "*.corp.test"),
        &files.dir.0,
    )
    .unwrap_err()
    .problems;
    assert!(p.iter().any(|(k, _)| k == "users[0].certificate"), "{p:?}");
}

#[tokio::test]
async fn a_client_certificate_that_expires_on_an_open_connection_is_refused_from_then_on() {
    let ca = Ca::new("client CA");
    let (h, _files) = mtls_gateway(&ca, "required").await;
    // Valid for three more seconds (X.509 times have whole seconds).
    let until = std::time::SystemTime::now() + std::time::Duration::from_secs(3);
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://corp/crm-sync".to_string().try_into().unwrap(),
    )];
    params.not_after = until.into();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let short = ca.issue(params);
    let tls = handshake(port(&h), &connector(&ca, &[b"http/1.1"], Some(&short)))
        .await
        .unwrap();
    let mut open = H1::open(tls).await;
    let (status, body) = open.get(LIST, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Wait for the certificate's notAfter to pass (the event is the clock itself).
    let left = until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(1100)).await;
    let (status, body) = open.get(LIST, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{:.200}", body);
    assert!(body.contains("Client certificate expired"), "{body}");
    assert_eq!(h.upstream_count(), 1);
}
