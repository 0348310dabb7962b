//! A stdout nobody reads (a stalled log shipper) never stalls requests: past the log buffer's
//! bound, access lines are dropped and counted, and audit events are kept and written once the
//! pipe drains.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use journeybee_sim::Simulator;
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIST: &str = "/api/v1/partnerships";

/// Requests made while nobody reads stdout. An access line with a 128-character request id
/// is about 400 bytes: these write well over 4 MiB, the bound past which the old writer made
/// every logging thread (runtime threads included) wait. (1,500 requests, about 0.6 MB, stay
/// below it and pass with the stall still there.)
const READS: usize = 14_000;
/// Creates made at the end, once the buffer is past its bound for access lines.
const CREATES: usize = 40;
const CLIENTS: usize = 16;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Status and body; a stalled request is a failure, not a hang of the test.
async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> (u16, Bytes) {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("answered within 20 s")
        .expect("answered");
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn request_id(n: usize) -> String {
    format!("{n:0>128}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_stdout_stalls_no_request_and_loses_no_audit_event() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let dir = TestDir::new();
    let opts = Opts {
        tail: "[log]\nformat = \"json\"\n".into(),
        ..Opts::default()
    };
    let path = write_config(&dir, &opts, &sim);
    let mut child = Command::new(env!("CARGO_BIN_EXE_journeybee-gateway"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .env_remove("JBGW_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway binary starts");
    // Read up to the line giving the addresses, then not a byte more until the requests
    // are done: the pipe (64 KiB) fills and the log thread blocks writing to it.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let listening: Value = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the gateway exited");
        if line.contains("gateway listening") {
            break serde_json::from_str(&line).unwrap();
        }
    };
    let base = format!("http://{}", listening["addr"].as_str().unwrap());
    let admin = format!("http://{}", listening["admin_addr"].as_str().unwrap());

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let bob = sign(AuthMode::Hs256, &default_claims("bob@corp.test"));
    let alice = sign(AuthMode::Hs256, &default_claims("alice@corp.test"));
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, base, bob) = (client.clone(), base.clone(), bob.clone());
        tasks.push(tokio::spawn(async move {
            for n in (c..READS).step_by(CLIENTS) {
                let req = Request::get(format!("{base}{LIST}"))
                    .header("authorization", format!("Bearer {bob}"))
                    .header("x-request-id", request_id(n))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                assert_eq!(send(&client, req).await.0, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let reads_took = started.elapsed();
    let mut created = Vec::new();
    for n in 0..CREATES {
        let id = format!("create-{n}");
        let req = Request::post(format!("{base}{LIST}"))
            .header("authorization", format!("Bearer {alice}"))
            .header("content-type", "application/json")
            .header("x-request-id", &id)
            .body(Full::new(Bytes::from(create_body(&format!(
                "stuck-{n}.example"
            )))))
            .unwrap();
        assert_eq!(send(&client, req).await.0, 201);
        created.push(id);
    }
    // The lines lost are counted.
    let (status, body) = send(
        &client,
        Request::get(format!("{admin}/metrics"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    let dropped = |kind: &str| -> u64 {
        let series = format!("jbgw_log_lines_dropped_total{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        dropped("access") > 0,
        "nothing dropped: the pipe never filled"
    );
    assert_eq!(dropped("audit"), 0);

    // Now the pipe drains: every audit event is there, after the lines written before.
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { return };
                lines.lock().unwrap().push(line);
            }
        })
    };
    let audited = || -> HashSet<String> {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["target"] == "audit" && e["outcome"] == "created")
            .filter_map(|e| e["request_id"].as_str().map(str::to_string))
            .collect()
    };
    let want: HashSet<String> = created.iter().cloned().collect();
    eventually("every audit event", Duration::from_secs(30), || {
        audited() == want
    })
    .await;
    eventually(
        "the warning that lines were dropped",
        Duration::from_secs(10),
        || {
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("log lines were dropped"))
        },
    )
    .await;
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    reader.join().unwrap();
    eprintln!(
        "{READS} reads in {reads_took:?} with stdout unread; {} access lines dropped",
        dropped("access")
    );
}
