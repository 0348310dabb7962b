//! Config: strict parsing, every problem reported with its path, and the CLI around it.

mod common;

use common::*;
use journeybee_gateway::config;
use std::process::Command;

fn base(dir: &TestDir) -> String {
    dir.write("read.key", "jb_read");
    dir.write("write.key", "jb_write");
    dir.write("jwt.secret", JWT_SECRET);
    config_text(&Opts::default(), "http://127.0.0.1:9", (1, 2, 3))
}

fn problems(text: &str, dir: &TestDir) -> Vec<(String, String)> {
    config::from_toml(text, &dir.0)
        .expect_err("should be refused")
        .problems
}

#[test]
fn the_base_config_and_the_example_are_valid() {
    let dir = TestDir::new();
    let text = base(&dir);
    let s = config::from_toml(&text, &dir.0).unwrap();
    assert_eq!(s.users.len(), 3);
    assert_eq!(s.auth.issuers[0].leeway.as_secs(), 30, "default leeway");
    assert_eq!(s.server.max_body_size, 64 * 1024);
    assert_eq!(s.cache.ttl.as_secs(), 30);
}

#[test]
fn unknown_keys_are_errors() {
    let dir = TestDir::new();
    let text = base(&dir).replace("shutdown_grace = \"5s\"", "shutdown_grase = \"5s\"");
    let p = problems(&text, &dir);
    assert!(p[0].1.contains("shutdown_grase"), "{p:?}");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let dir = TestDir::new();
    let text = base(&dir)
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"5 parsecs\"")
        .replace("response_timeout = \"2s\"", "response_timeout = \"2\"")
        .replace(
            "secret_file = \"read.key\"",
            "secret_file = \"missing.key\"",
        )
        .replace(
            "algorithms = [\"HS256\"]",
            "algorithms = [\"HS256\", \"none\"]",
        )
        .replace("access = \"read\"", "access = \"admin\"")
        .replace("user_id = 3", "user_id = 0");
    let p = problems(&text, &dir);
    let paths: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "server.shutdown_grace",
        "upstream.response_timeout",
        "upstream.keys.read",
        "auth.algorithms[1]",
        "users[1].access",
        "users[2].user_id",
    ] {
        assert!(paths.contains(&want), "missing {want} in {p:#?}");
    }
}

#[test]
fn a_write_user_on_a_read_only_key_is_refused() {
    let dir = TestDir::new();
    let text = base(&dir).replacen("upstream_key = \"write\"", "upstream_key = \"read\"", 1);
    let p = problems(&text, &dir);
    assert!(
        p.iter()
            .any(|(path, msg)| path == "users[0].upstream_key" && msg.contains("read-only")),
        "{p:?}"
    );
}

#[test]
fn secrets_come_from_env_or_file_and_short_hmac_secrets_are_refused() {
    let dir = TestDir::new();
    let text = base(&dir);
    dir.write("jwt.secret", "short");
    let p = problems(&text, &dir);
    assert!(
        p.iter()
            .any(|(path, m)| path == "auth.keys[0]" && m.contains("at least 32")),
        "{p:?}"
    );
    let text = text.replace(
        "secret_file = \"write.key\"",
        "secret_env = \"JBGW_TEST_UNSET_VARIABLE\"",
    );
    let p = problems(&text, &dir);
    assert!(p
        .iter()
        .any(|(path, m)| path == "upstream.keys.write" && m.contains("JBGW_TEST_UNSET_VARIABLE")));
}

#[test]
fn algorithms_must_fit_the_keys() {
    let dir = TestDir::new();
    // An RS256-only gateway given an HMAC secret: nothing can verify RS256.
    let text = base(&dir).replace("algorithms = [\"HS256\"]", "algorithms = [\"RS256\"]");
    let p = problems(&text, &dir);
    assert!(p.iter().any(|(path, _)| path == "auth.keys[0]"), "{p:?}");
    assert!(
        p.iter()
            .any(|(path, m)| path == "auth.algorithms" && m.contains("RS256")),
        "{p:?}"
    );
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let dir = TestDir::new();
    let text = base(&dir).replace("http://127.0.0.1:9", "http://journeybee.example.com");
    let p = problems(&text, &dir);
    assert!(
        p.iter()
            .any(|(path, m)| path == "upstream.base_url" && m.contains("clear text")),
        "{p:?}"
    );
}

#[test]
fn the_example_config_documents_a_valid_setup() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/gateway.example.toml"
    ))
    .unwrap();
    let dir = TestDir::new();
    dir.write("journeybee-write.key", "jb_write");
    dir.write("journeybee-read.key", "jb_read");
    dir.write("jwt-hmac.secret", JWT_SECRET);
    let s = config::from_toml(&example, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert!(!s.users.is_empty());
}

#[test]
fn check_config_subcommand_reports_and_exits() {
    let bin = env!("CARGO_BIN_EXE_journeybee-gateway");
    let dir = TestDir::new();
    let good = dir.write("good.toml", &base(&dir));
    let out = Command::new(bin)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.write(
        "bad.toml",
        &base(&dir).replace("user_id = 3", "user_id = -3"),
    );
    let out = Command::new(bin)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("users[2].user_id"), "{err}");
    assert!(
        !err.contains(JWT_SECRET) && !err.contains("jb_write"),
        "no secret in errors"
    );
    let out = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "check-config", "demo", "healthcheck"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[cfg(unix)]
#[test]
fn serve_exits_zero_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let bin = env!("CARGO_BIN_EXE_journeybee-gateway");
    let dir = TestDir::new();
    let cfg = dir.write("gw.toml", &base(&dir));
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let started = std::time::Instant::now();
    loop {
        let line = lines.next().expect("output").unwrap();
        if line.contains("gateway listening") {
            break;
        }
        assert!(started.elapsed().as_secs() < 30, "gateway did not start");
    }
    // Both signals at once, the moment the gateway says it listens: the handlers must already
    // be installed (SIGHUP's and SIGTERM's default actions would kill the process), SIGHUP
    // must reload rather than end it, and SIGTERM must drain and exit 0.
    let pid = child.id().to_string();
    for sig in ["-HUP", "-TERM"] {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}
