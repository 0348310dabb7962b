//! Client-side limits: each maps to its own status and a JSON error, and a slow client is cut
//! off while others are served.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::Full;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn opts(server: &str) -> Opts {
    Opts {
        server: server.into(),
        ..Opts::default()
    }
}

#[tokio::test]
async fn long_uris_are_414_and_large_headers_431() {
    let h = Harness::with(opts(
        "max_uri_length = \"1KiB\"\nmax_header_size = \"4KiB\"",
    ))
    .await;
    let t = h.token("bob@corp.test");
    let r = h
        .get(
            &format!("/api/v1/partnerships?search={}", "a".repeat(1100)),
            Some(&t),
        )
        .await;
    assert!(r.assert_error(414).contains("URI"));
    let req = h
        .request(Method::GET, "/api/v1/partnerships", Some(&t))
        .header("x-padding", "p".repeat(5000))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = h.send(req).await;
    assert!(r.assert_error(431).contains("headers"));
    assert_eq!(h.upstream_count(), 0);
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let h = Harness::with(opts("header_read_timeout = \"500ms\"")).await;
    let addr = h.gw.as_ref().unwrap().addr();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let first_byte = Instant::now();
    slow.write_all(b"GET /api/v1/partnerships HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Others are served meanwhile.
    let t = h.token("bob@corp.test");
    assert_eq!(h.get("/api/v1/partnerships", Some(&t)).await.status, 200);
    // Keep dripping a header byte now and then: the deadline is for the whole header section.
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if slow.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                // hyper may answer 408 before closing.
            }
            Err(_) => {}
        }
    }
    assert!(closed, "the slow client was not cut off");
    let took = first_byte.elapsed();
    assert!(took >= Duration::from_millis(500), "cut off after {took:?}");
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let h = Harness::with(opts("body_read_timeout = \"300ms\"")).await;
    let t = h.token("alice@corp.test");
    let addr = h.gw.as_ref().unwrap().addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/partnerships HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""));
    assert_eq!(h.upstream_count(), 0);
}

/// The short and the long timeout of the tests below: the short one closes a connection in
/// well under the long one, which tells which of the two closed it.
const SHORT: Duration = Duration::from_millis(500);
const LONG: Duration = Duration::from_secs(3);

/// Waits for the gateway to close `s` (EOF, or a reset) and returns the time from
/// `since` to the close. Fails the test when the connection is still open after `within`.
async fn time_to_close(s: &mut TcpStream, since: Instant, within: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(within, s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("still open after {within:?}"));
    match read {
        Ok(0) | Err(_) => since.elapsed(),
        Ok(n) => panic!(
            "data instead of a close: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

/// Sends one GET on `s` and reads its whole answer, which keeps the connection alive.
async fn keep_alive_exchange(h: &Harness, s: &mut TcpStream) {
    let t = h.token("bob@corp.test");
    let req = format!(
        "GET /api/v1/partnerships HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let resp = read_response(s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        !resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    // header_read_timeout stays at its default (10 s): only the idle timeout closes in time.
    let idle = Duration::from_millis(400);
    let h = Harness::with(opts("idle_timeout = \"400ms\"")).await;
    let addr = h.gw.as_ref().unwrap().addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let sent = Instant::now();
    keep_alive_exchange(&h, &mut s).await;
    let answered = Instant::now();
    let closed = time_to_close(&mut s, sent, Duration::from_secs(8)).await;
    // Not before idle_timeout (no close right after the answer), and well before the 10 s
    // header-read timeout could fire.
    assert!(closed >= idle, "closed {closed:?} after the request");
    let idle_for = answered.elapsed();
    assert!(
        idle_for < Duration::from_secs(5),
        "closed after {idle_for:?} idle"
    );
}

#[tokio::test]
async fn an_idle_connection_lives_idle_timeout_when_longer_than_header_read_timeout() {
    let h = Harness::with(opts(&format!(
        "idle_timeout = \"{}ms\"\nheader_read_timeout = \"{}ms\"",
        LONG.as_millis(),
        SHORT.as_millis()
    )))
    .await;
    let addr = h.gw.as_ref().unwrap().addr();

    // Idle keep-alive: lives the (longer) idle timeout; the header-read timer does not run.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let sent = Instant::now();
    keep_alive_exchange(&h, &mut s).await;
    let closed = time_to_close(&mut s, sent, LONG + Duration::from_secs(5)).await;
    assert!(
        closed >= LONG,
        "idle connection closed after {closed:?}, not idle_timeout"
    );

    // A request started on a fresh connection: its headers are due within the (shorter)
    // header-read timeout of its first byte.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let first_byte = Instant::now();
    s.write_all(b"GET /api/v1/partnerships HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let closed = time_to_close(&mut s, first_byte, LONG + Duration::from_secs(5)).await;
    assert!(closed >= SHORT, "partial request closed after {closed:?}");
    // The idle timer cannot fire before LONG after the last byte: this close was the header's.
    assert!(
        closed < LONG,
        "partial request closed after {closed:?}, not header_read_timeout"
    );
}

#[tokio::test]
async fn a_started_request_gets_header_read_timeout_when_longer_than_idle_timeout() {
    let h = Harness::with(opts(&format!(
        "idle_timeout = \"{}ms\"\nheader_read_timeout = \"{}ms\"",
        SHORT.as_millis(),
        LONG.as_millis()
    )))
    .await;
    let addr = h.gw.as_ref().unwrap().addr();

    // After one request on keep-alive, the next one trickles in: first part of a request line,
    // nothing for longer than idle_timeout (the connection stays open), a little more, then
    // nothing. It is closed header_read_timeout after its first byte, not when idle.
    let mut s = TcpStream::connect(addr).await.unwrap();
    keep_alive_exchange(&h, &mut s).await;
    let first_byte = Instant::now();
    s.write_all(b"GET /api/v1/partner").await.unwrap();
    let mut buf = [0u8; 256];
    let pause = SHORT * 2;
    let read = tokio::time::timeout(pause, s.read(&mut buf)).await;
    assert!(
        read.is_err(),
        "a started request was closed at idle_timeout: {read:?}"
    );
    s.write_all(b"ships HTTP/1.1\r\n").await.unwrap();
    let closed = time_to_close(&mut s, first_byte, LONG + Duration::from_secs(5)).await;
    assert!(
        closed >= LONG,
        "partial request closed after {closed:?}, not header_read_timeout"
    );

    // An idle keep-alive connection: closed at the (shorter) idle timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let sent = Instant::now();
    keep_alive_exchange(&h, &mut s).await;
    let answered = Instant::now();
    let closed = time_to_close(&mut s, sent, LONG + Duration::from_secs(5)).await;
    assert!(closed >= SHORT, "idle connection closed after {closed:?}");
    // A header-read timer started when the answer went out would fire LONG after it.
    let idle_for = answered.elapsed();
    assert!(
        idle_for < LONG - SHORT,
        "idle connection closed after {idle_for:?} idle, not idle_timeout"
    );
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_shed_at_once() {
    let h = Harness::with(opts("max_in_flight = 2")).await;
    let t = h.token("bob@corp.test");
    h.sim
        .set_fault(journeybee_sim::Fault::Slow(Duration::from_millis(800)));
    let mut tasks = Vec::new();
    for i in 0..2 {
        let client = h.client.clone();
        let req = h
            .request(
                Method::GET,
                &format!("/api/v1/partnerships?search=s{i}"),
                Some(&t),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            client.request(req).await.unwrap().status()
        }));
    }
    h.wait_for_upstream(2).await;
    // Answered while the two slow ones still hold their slots: shed, not queued.
    let r = h.get("/api/v1/partnerships?search=third", Some(&t)).await;
    assert_eq!(r.assert_error(503), "Gateway overloaded, retry later");
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        h.upstream_count(),
        2,
        "the shed request never reached upstream"
    );
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body) from `s`.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn an_early_refusal_of_a_post_keeps_the_connection_usable() {
    let h = Harness::start().await;
    let bob = h.token("bob@corp.test");
    let addr = h.gw.as_ref().unwrap().addr();
    let body = create_body("early-gw.com");
    for token in [Some(bob.as_str()), None] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /api/v1/partnerships HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // Headers and body in separate packets, as many clients send them.
        s.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(body.as_bytes()).await.unwrap();
        let first = read_response(&mut s).await;
        assert!(
            first.starts_with("HTTP/1.1 403") || first.starts_with("HTTP/1.1 401"),
            "{first}"
        );
        assert!(
            !first.to_ascii_lowercase().contains("connection: close"),
            "{first}"
        );
        let get = format!(
            "GET /api/v1/partnerships HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bob}\r\n\r\n"
        );
        s.write_all(get.as_bytes()).await.unwrap();
        let second = read_response(&mut s).await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    }
    assert_eq!(h.upstream_count(), 1, "only the GET reached upstream");
}
