//! The upstream connection pool, against a raw HTTP/1.1 upstream that counts connections and
//! requests: keep-alive connections are reused, and a connection the upstream closed while
//! idle is noticed before anything is written on it, so a create still goes out exactly once.

mod common;

use common::*;
use http::Method;
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// A raw upstream: answers every request 201 with a small JSON body.
struct RawUpstream {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Bumped to make the upstream close every open connection, without a word, as a server
    /// does when its keep-alive timeout ends.
    close: watch::Sender<u64>,
    /// One message per connection the upstream has closed.
    closed: mpsc::UnboundedReceiver<()>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (tx, closed) = mpsc::unbounded_channel();
        let (close, close_rx) = watch::channel(0);
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let (r, tx) = (r.clone(), tx.clone());
                let mut close_rx = close_rx.clone();
                close_rx.borrow_and_update();
                tokio::spawn(async move {
                    serve(stream, &r, close_rx).await;
                    let _ = tx.send(());
                });
            }
        });
        RawUpstream {
            url,
            connections,
            requests,
            close,
            closed,
        }
    }

    /// Closes every connection open now and waits until they are closed.
    async fn close_all(&mut self, open: usize) {
        self.close.send_modify(|n| *n += 1);
        for _ in 0..open {
            self.closed.recv().await.unwrap();
        }
    }
}

/// Reads requests (head, then a `Content-Length` body) and answers each, until told to close.
async fn serve(mut stream: TcpStream, requests: &AtomicUsize, mut close: watch::Receiver<u64>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            tokio::select! {
                read = stream.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                _ = close.changed() => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        requests.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"id":1,"name":"Globex Partners"}"#;
        let answer = format!(
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A gateway in front of `upstream`; the test's client.
struct Setup {
    _dir: TestDir,
    gw: journeybee_gateway::server::Gateway,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<bytes::Bytes>,
    >,
    token: String,
}

impl Setup {
    async fn start(upstream: &RawUpstream) -> Setup {
        Setup::at(&upstream.url, false).await
    }

    /// A gateway whose upstream is `url`; with `test_ca`, trusting the test CA
    /// (`upstream.extra_ca_file`).
    async fn at(url: &str, test_ca: bool) -> Setup {
        Setup::with(url, test_ca, "").await
    }

    /// [`Setup::at`], with more `[upstream]` lines.
    async fn with(url: &str, test_ca: bool, upstream: &str) -> Setup {
        let dir = TestDir::new();
        dir.write("read.key", journeybee_sim::SIM_READ_KEY);
        dir.write("write.key", journeybee_sim::SIM_WRITE_KEY);
        dir.write("jwt.secret", JWT_SECRET);
        let mut opts = Opts {
            upstream: upstream.into(),
            ..Opts::default()
        };
        if test_ca {
            dir.write("ca.pem", &fixture("tls_ca.pem"));
            opts.upstream.push_str("\nextra_ca_file = \"ca.pem\"");
        }
        let text = config_text(&opts, url, (1, 2, 3));
        let path = dir.write("gateway.toml", &text);
        let settings = journeybee_gateway::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let gw = journeybee_gateway::server::Gateway::start(settings)
            .await
            .unwrap();
        Setup {
            _dir: dir,
            gw,
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
            token: sign(AuthMode::Hs256, &default_claims("alice@corp.test")),
        }
    }

    /// Creates a partnership as alice; the answer's status.
    async fn create(&self, n: usize) -> u16 {
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}/api/v1/partnerships", self.gw.addr()))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(create_body(&format!("pool{n}.test")).into()))
            .unwrap();
        let resp = self.client.request(req).await.expect("gateway answers");
        let status = resp.status().as_u16();
        resp.into_body().collect().await.unwrap();
        status
    }

    /// Lists partnerships as alice, bypassing the cache; the answer's status.
    async fn read(&self) -> u16 {
        let req = http::Request::builder()
            .method(Method::GET)
            .uri(format!("http://{}/api/v1/partnerships", self.gw.addr()))
            .header("authorization", format!("Bearer {}", self.token))
            .header("cache-control", "no-store")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = self.client.request(req).await.expect("gateway answers");
        let status = resp.status().as_u16();
        resp.into_body().collect().await.unwrap();
        status
    }
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let upstream = RawUpstream::start().await;
    let setup = Setup::start(&upstream).await;
    for n in 0..5 {
        assert_eq!(setup.create(n).await, 201);
    }
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 5);
    // One request at a time: one connection serves them all.
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_written_to() {
    let mut upstream = RawUpstream::start().await;
    let setup = Setup::start(&upstream).await;
    for n in 0..3 {
        assert_eq!(setup.create(n).await, 201, "create {n}");
        // The upstream closes the connection the create came on, now idle in the pool: the
        // next create finds it there, dead.
        upstream.close_all(1).await;
    }
    // Each create was sent once, each on a new connection; none failed on a dead one.
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 3);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 3);
}

/// A write never goes out on a connection idle longer than the pool's write bound (2 s: a
/// server with a 5 s keep-alive timeout may be closing it as the write arrives); a read may.
#[tokio::test]
async fn a_write_takes_a_fresh_connection_after_the_write_idle_bound_and_a_read_reuses() {
    let bound = journeybee_gateway::upstream::pool::WRITE_IDLE_MAX;
    let upstream = RawUpstream::start().await;
    let setup = Setup::start(&upstream).await;
    let connections = || upstream.connections.load(Ordering::SeqCst);
    assert_eq!(setup.create(0).await, 201);
    assert_eq!(connections(), 1);
    // Idle past the bound (time itself is the event waited for here).
    tokio::time::sleep(bound + Duration::from_millis(200)).await;
    assert_eq!(setup.read().await, 201);
    assert_eq!(
        connections(),
        1,
        "a read reuses a connection idle past the bound"
    );
    tokio::time::sleep(bound + Duration::from_millis(200)).await;
    assert_eq!(setup.create(1).await, 201);
    assert_eq!(
        connections(),
        2,
        "a write after the bound opens a new connection"
    );
    // Within the bound, a write reuses it.
    assert_eq!(setup.create(2).await, 201);
    assert_eq!(connections(), 2, "a write within the bound reuses");
    assert_eq!(
        upstream.requests.load(Ordering::SeqCst),
        4,
        "each sent once"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_pool_idle_timeout() {
    let mut upstream = RawUpstream::start().await;
    let setup = Setup::with(&upstream.url, false, "pool_idle_timeout = \"300ms\"").await;
    assert_eq!(setup.create(0).await, 201);
    // Nobody takes the connection again: the gateway closes it on its own (the upstream sees
    // the close; it never closes a connection itself unless told to).
    let closed = tokio::time::timeout(Duration::from_secs(5), upstream.closed.recv()).await;
    assert!(
        closed.is_ok(),
        "the idle connection was still open after 5 s"
    );
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

/// The TLS side of a test upstream: the test CA's certificate for `localhost` and 127.0.0.1.
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let pem = fixture("tls_server.pem");
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = fixture("tls_server_key.pem");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS upstream (a test CA's certificate for `localhost`), answering every request 201:
/// the pool's connections are TLS ones, verified against `upstream.extra_ca_file`, with SNI
/// and `Host` from the base URL, and kept alive like plain ones.
#[tokio::test]
async fn a_tls_upstream_is_verified_and_its_connections_reused() {
    let acceptor = tls_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c, h) = (connections.clone(), hosts.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            let service = hyper::service::service_fn(move |req: http::Request<_>| {
                let host = req.headers()["host"].to_str().unwrap().to_string();
                h.lock().unwrap().push(host);
                async {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .status(201)
                            .header("content-type", "application/json")
                            .body(Full::new(bytes::Bytes::from_static(br#"{"id":1}"#)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service),
            );
        }
    });

    let setup = Setup::at(&format!("https://localhost:{port}"), true).await;
    for n in 0..3 {
        assert_eq!(setup.create(n).await, 201, "create {n}");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one TLS connection, reused"
    );
    assert_eq!(*hosts.lock().unwrap(), vec![format!("localhost:{port}"); 3]);
}

/// The same upstream without the CA: the certificate is refused, nothing is sent, and the
/// client hears 502.
#[tokio::test]
async fn an_upstream_certificate_from_an_unknown_ca_is_refused() {
    let acceptor = tls_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let h = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            if acceptor.accept(tcp).await.is_ok() {
                h.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let setup = Setup::at(&format!("https://localhost:{port}"), false).await;
    assert_eq!(setup.create(0).await, 502);
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no handshake completed"
    );
}
