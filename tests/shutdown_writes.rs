//! A rolling deploy: SIGTERM while a create whose client has hung up is still upstream. The
//! gateway owns that write: it waits for it within `shutdown_grace`, logs its audit event with
//! the real outcome, and logs one it could not wait for as `unknown`, never silently.

mod common;

use common::binary::GatewayProcess;
use common::*;
use journeybee_sim::{Fault, SimHandle, Simulator};
use serde_json::Value;
use std::io::Write as _;
use std::time::{Duration, Instant};

const LIST: &str = "/api/v1/partnerships";

/// The binary (JSON logs) in front of a simulator that takes `slow` to answer, with
/// `shutdown_grace` as given.
async fn gateway(grace: &str, slow: Duration) -> (SimHandle, GatewayProcess, String, TestDir) {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let dir = TestDir::new();
    let opts = Opts {
        tail: "[log]\nformat = \"json\"\n".into(),
        ..Opts::default()
    };
    let path = write_config(&dir, &opts, &sim);
    // The upstream is slow, not failing: the response timeout must outlast it.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "shutdown_grace = \"5s\"",
            &format!("shutdown_grace = \"{grace}\""),
        )
        .replace("response_timeout = \"2s\"", "response_timeout = \"30s\"");
    std::fs::write(&path, text).unwrap();
    let process = GatewayProcess::start(&path);
    let (base, _admin) = process.listening().await;
    sim.set_fault(Fault::Slow(slow));
    (sim, process, base, dir)
}

/// Sends a create with request id `id` on a connection of its own, waits until the upstream
/// has it, and hangs up.
async fn create_and_hang_up(sim: &SimHandle, base: &str, id: &str) {
    let token = sign(AuthMode::Hs256, &default_claims("alice@corp.test"));
    let body = create_body(&format!("{id}.example"));
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "POST {LIST} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\nx-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    eventually(
        "the create to reach the upstream",
        Duration::from_secs(10),
        || sim.requests_to("POST", LIST) == 1,
    )
    .await;
    drop(conn);
}

fn audit_of<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|e| e["target"] == "audit" && e["request_id"] == id)
        .collect()
}

fn json(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_an_accepted_write_whose_client_left() {
    let slow = Duration::from_millis(2000);
    let (sim, process, base, _dir) = gateway("10s", slow).await;
    let id = "deploy-create-1";
    create_and_hang_up(&sim, &base, id).await;
    let term = Instant::now();
    let (out, err) = process.stop();
    let waited = term.elapsed();
    let lines = json(&out);
    let audit = audit_of(&lines, id);
    assert_eq!(audit.len(), 1, "one audit event: {audit:?}; stderr {err:?}");
    assert_eq!(audit[0]["status"], 201, "{}", audit[0]);
    assert_eq!(audit[0]["upstream_status"], 201, "{}", audit[0]);
    assert_eq!(audit[0]["outcome"], "created", "{}", audit[0]);
    // The access line says the same, and that its client had gone.
    let access: Vec<_> = lines
        .iter()
        .filter(|e| e["target"] == "access" && e["request_id"] == id)
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["outcome_status"], 201, "{}", access[0]);
    assert_eq!(access[0]["delivery"], "client_gone", "{}", access[0]);
    assert_eq!(sim.requests_to("POST", LIST), 1, "sent exactly once");
    assert!(
        waited < Duration::from_secs(10),
        "it waited for the write, not for the grace: {waited:?}"
    );
    // The audit line comes before the process says it stopped.
    let pos = |f: &dyn Fn(&Value) -> bool| lines.iter().position(f);
    let audited = pos(&|e| e["target"] == "audit").unwrap();
    let stopped = pos(&|e| e["message"] == "stopped").expect("a 'stopped' line");
    assert!(audited < stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_still_upstream_when_the_grace_ends_is_logged_as_unknown() {
    let (sim, process, base, _dir) = gateway("500ms", Duration::from_secs(20)).await;
    let id = "deploy-create-2";
    create_and_hang_up(&sim, &base, id).await;
    let term = Instant::now();
    let (out, err) = process.stop();
    let waited = term.elapsed();
    let lines = json(&out);
    let audit = audit_of(&lines, id);
    assert_eq!(audit.len(), 1, "one audit event: {audit:?}; stderr {err:?}");
    assert_eq!(audit[0]["outcome"], "unknown", "{}", audit[0]);
    assert_eq!(audit[0]["user"], "alice", "{}", audit[0]);
    assert!(audit[0].get("upstream_status").is_none(), "{}", audit[0]);
    assert!(
        waited < Duration::from_secs(10),
        "exited at the end of the grace, not the upstream's: {waited:?}"
    );
    assert_eq!(sim.requests_to("POST", LIST), 1);
}
