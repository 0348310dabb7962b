//! The cost of a TLS connection to the gateway's public listener, over loopback, as a client
//! sees it: TCP connect plus a full handshake (TLS 1.3, X25519, an ECDSA P-256 certificate),
//! the same with client certificates required (mTLS), and a resumed handshake (a session
//! ticket from an earlier connection). Plain TCP connect is the baseline. Client and server
//! run in this process on one current-thread runtime, so each figure is the CPU of both ends
//! plus loopback latency. `cargo bench --bench tls_handshake`; results in bench/results/tls.md.

use criterion::{criterion_group, criterion_main, Criterion};
use journeybee_gateway::config;
use journeybee_gateway::server::Gateway;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    client_cert: rcgen::Certificate,
    client_key: KeyPair,
}

fn pki() -> Pki {
    let dir = std::env::temp_dir().join(format!("jbgw-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca.self_signed(&ca_key).unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server = server.signed_by(&server_key, &ca, &ca_key).unwrap();
    let mut client = CertificateParams::new(vec!["bench-client.corp.test".to_string()]).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("k"), "jb_key").unwrap();
    std::fs::write(
        dir.join("s"),
        "bench-hmac-secret-0123456789abcdef-0123456789",
    )
    .unwrap();
    Pki {
        dir,
        ca,
        client_cert,
        client_key,
    }
}

fn gateway(rt: &tokio::runtime::Runtime, pki: &Pki, mtls: bool) -> Gateway {
    let client = if mtls {
        "client_ca_file = \"ca.pem\"\nclient_cert = \"required\"\n"
    } else {
        ""
    };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[server.tls]
cert_file = "server.pem"
key_file = "server.key"
{client}
[log]
level = "warn"
[upstream]
base_url = "http://127.0.0.1:9"
[upstream.keys.k]
secret_file = "k"
[auth]
algorithms = ["HS256"]
issuer = "https://idp.bench"
audience = "journeybee-gateway"
[[auth.keys]]
hmac_secret_file = "s"
"#
    );
    let settings = config::from_toml(&text, &pki.dir).unwrap();
    rt.block_on(Gateway::start(settings)).unwrap()
}

fn connector(pki: &Pki, resume: bool, client_cert: bool) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = if client_cert {
        builder
            .with_client_auth_cert(
                vec![pki.client_cert.der().clone()],
                PrivateKeyDer::from_pem_slice(pki.client_key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    TlsConnector::from(Arc::new(config))
}

/// One connection: TCP connect, handshake, and a clean close (read to the end: TLS 1.3
/// session tickets arrive after the handshake, and are kept only once read).
async fn handshake(addr: SocketAddr, connector: &TlsConnector) -> bool {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let _ = tls.shutdown().await;
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    resumed
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pki = pki();
    let gw = gateway(&rt, &pki, false);
    let mtls = gateway(&rt, &pki, true);
    let (addr, mtls_addr) = (gw.addr(), mtls.addr());
    let full = connector(&pki, false, false);
    let resuming = connector(&pki, true, false);
    let full_mtls = connector(&pki, false, true);
    // A first connection fills the resuming client's ticket store; each resumed connection
    // receives a fresh ticket, so every measured one resumes.
    rt.block_on(handshake(addr, &resuming));
    assert!(rt.block_on(handshake(addr, &resuming)), "resumption works");

    let mut g = c.benchmark_group("tls");
    g.bench_function("tcp_connect_only", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tcp = TcpStream::connect(addr).await.unwrap();
                drop(tcp);
            })
        })
    });
    g.bench_function("full_handshake_tls13_p256", |b| {
        b.iter(|| rt.block_on(handshake(addr, &full)))
    });
    g.bench_function("full_handshake_tls13_p256_mtls", |b| {
        b.iter(|| rt.block_on(handshake(mtls_addr, &full_mtls)))
    });
    // Primed again: the client's last ticket may be from before the full handshakes.
    rt.block_on(handshake(addr, &resuming));
    g.bench_function("resumed_handshake_tls13", |b| {
        b.iter(|| assert!(rt.block_on(handshake(addr, &resuming))))
    });
    g.finish();
    // Wall time above is at the mercy of other load on the machine; CPU time (this process:
    // both ends) is not, and is what a handshake costs a core.
    for (name, addr, connector, n) in [
        ("full_handshake_tls13_p256", addr, &full, 2000),
        (
            "full_handshake_tls13_p256_mtls",
            mtls_addr,
            &full_mtls,
            2000,
        ),
        ("resumed_handshake_tls13", addr, &resuming, 4000),
    ] {
        let before = cpu_seconds();
        let mut resumed = 0;
        for _ in 0..n {
            resumed += u32::from(rt.block_on(handshake(addr, connector)));
        }
        println!("cpu/{name}: {resumed} of {n} connections resumed");
        if let (Some(a), Some(b)) = (before, cpu_seconds()) {
            println!(
                "cpu/{name}: {:.1} µs of CPU per connection (client + server, {n} connections)",
                (b - a) * 1e6 / f64::from(n)
            );
        }
    }
    rt.block_on(gw.shutdown());
    rt.block_on(mtls.shutdown());
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// User plus system CPU time of this process so far (Linux), in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

criterion_group!(benches, bench);
criterion_main!(benches);
