//! `journeybee-gateway demo --tls`: the files it writes (a CA, the gateway's certificate, a
//! machine user's client certificate) and its config serve HTTPS, over HTTP/1.1 and HTTP/2,
//! to a client trusting only that CA, and map the machine user by its certificate.
#![cfg(feature = "demo")]

mod common;

use bytes::Bytes;
use common::TestDir;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use journeybee_gateway::demo;
use journeybee_gateway::server::Gateway;
use journeybee_sim::{SimConfig, Simulator, SIM_READ_KEY, SIM_WRITE_KEY};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use tokio_rustls::TlsConnector;

fn client(certs: &demo::DemoTls, alpn: &[u8], with_cert: bool) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&certs.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = if with_cert {
        let chain = CertificateDer::pem_file_iter(&certs.client_cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&certs.client_key).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn the_tls_demo_serves_https_and_maps_its_machine_user() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let dir = TestDir::new();
    let certs = demo::write_tls(&dir.0).unwrap();
    let secret = "demo-test-secret-0123456789abcdef-0123456789";
    dir.write("read.key", SIM_READ_KEY);
    dir.write("write.key", SIM_WRITE_KEY);
    dir.write("jwt.secret", secret);
    let ids = sim.user_ids();
    let text = demo::with_tls(
        &demo::demo_config(
            &sim.base_url(),
            "127.0.0.1:0",
            "127.0.0.1:0",
            (ids[0], ids[1]),
        ),
        ids[2],
    );
    let path = dir.write("gateway.toml", &text);
    let settings = journeybee_gateway::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let gw = Gateway::start(settings).await.unwrap();
    let connect = |alpn: &'static [u8], with_cert: bool| {
        let connector = client(&certs, alpn, with_cert);
        let addr = gw.addr();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            // The address the demo prints: the certificate names 127.0.0.1 too.
            let name = ServerName::IpAddress(addr.ip().into());
            connector.connect(name, tcp).await.unwrap()
        }
    };

    // The machine user, by its certificate alone, over HTTP/1.1.
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect(b"http/1.1", true).await))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("/api/v1/partnerships?view=all")
                .header("host", "127.0.0.1")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let last = sim.requests().pop().unwrap();
    assert!(
        last.query
            .unwrap_or_default()
            .contains(&format!("userId={}", ids[2])),
        "the list runs as the machine user's JourneyBee user"
    );

    // Bob's token, over HTTP/2, without a client certificate (they are optional).
    let token = demo::mint_hs256(secret.as_bytes(), "bob@example.com", 600);
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(connect(b"h2", false).await),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get(format!(
                "https://{}/api/v1/partnerships?view=all",
                gw.addr()
            ))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, StatusCode::OK, "{body:?}");
    gw.shutdown().await;
    sim.shutdown();
}
