//! The logs of a full run: one access event per request with its fields, an audit event per
//! create, and no API key, token or secret anywhere.

mod common;

use common::*;
use journeybee_sim::{Fault, SIM_READ_KEY, SIM_WRITE_KEY};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_access_and_audit_events_and_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let h = Harness::start().await;
    let alice = h.token("alice@corp.test");
    let bob = h.token("bob@corp.test");
    let expired = h.token_with("bob@corp.test", |c| c["exp"] = json!(now() - 600));
    let list = "/api/v1/partnerships";
    assert_eq!(h.get(list, Some(&bob)).await.status, 200);
    assert_eq!(h.get(list, Some(&bob)).await.status, 200);
    assert_eq!(
        h.post_json(list, Some(&alice), &create_body("log-gw.com"))
            .await
            .status,
        201
    );
    h.get(list, Some(&expired)).await;
    h.get(list, None).await;
    h.post_json(list, Some(&bob), &create_body("log2-gw.com"))
        .await;
    h.post_json(list, Some(&alice), "{}").await;
    h.get("/nowhere", Some(&alice)).await;
    h.sim.set_fault(Fault::Status(500));
    h.get(&format!("{list}?view=all"), Some(&bob)).await;
    h.sim.shutdown();
    h.get(&format!("{list}?view=referral"), Some(&bob)).await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for s in [
        SIM_READ_KEY,
        SIM_WRITE_KEY,
        JWT_SECRET,
        &alice,
        &bob,
        &expired,
    ] {
        assert!(!text.contains(s), "a secret reached the logs");
    }
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let access: Vec<&Value> = events.iter().filter(|e| e["target"] == "access").collect();
    assert_eq!(access.len(), 10, "one access event per request");
    for e in &access {
        for field in ["request_id", "method", "route", "status", "duration_ms"] {
            assert!(!e[field].is_null(), "{field} missing in {e}");
        }
    }
    let hit = access
        .iter()
        .find(|e| e["cache"] == "HIT")
        .expect("a cache hit was logged");
    assert_eq!(hit["user"], "bob");
    let created = access.iter().find(|e| e["status"] == 201).unwrap();
    assert_eq!(created["upstream_status"], 201);
    assert!(created["upstream_ms"].as_f64().is_some());
    let expired_event = access
        .iter()
        .find(|e| e["reason"] == "expired")
        .expect("auth reason logged");
    assert_eq!(expired_event["status"], 401);
    let audit: Vec<&Value> = events.iter().filter(|e| e["target"] == "audit").collect();
    assert_eq!(
        audit.len(),
        1,
        "only the create that passed validation is audited: {audit:?}"
    );
    let a = audit[0];
    assert_eq!(a["user"], "alice");
    assert_eq!(a["upstream_key"], "write");
    assert_eq!(a["partner_name"], "Globex Partners");
    assert_eq!(a["email_domain"], "log-gw.com");
    assert_eq!(a["upstream_status"], 201);
    assert_eq!(a["outcome"], "created");
    assert_eq!(a["request_id"], created["request_id"]);
}

/// A production gateway's stdout is a pipe to a log collector: escape codes there are noise.
#[tokio::test]
async fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    let sim = journeybee_sim::Simulator::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let dir = TestDir::new();
    let opts = Opts {
        tail: "[log]\nformat = \"text\"\nlevel = \"debug\"\n".into(),
        ..Opts::default()
    };
    let process = common::binary::GatewayProcess::start(&write_config(&dir, &opts, &sim));
    let listening = |lines: &Vec<String>| lines.iter().any(|l| l.contains("gateway listening"));
    eventually(
        "the line saying it listens",
        std::time::Duration::from_secs(10),
        || listening(&process.stdout()) || process.exited(),
    )
    .await;
    let (out, err) = process.stop();
    assert!(listening(&out), "stdout: {out:?}, stderr: {err:?}");
    for line in out.iter().chain(&err) {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
    }
}
