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
    for cmd in ["serve", "check-config", "healthcheck"] {
        assert!(help.contains(cmd), "{help}");
    }
    // The demo (and its simulator) exists only with the default `demo` feature.
    let lists_demo = help.lines().any(|l| l.trim_start().starts_with("demo "));
    assert_eq!(lists_demo, cfg!(feature = "demo"), "{help}");
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

/// `text` with the `[upstream.keys.<key>]` section given `line`.
fn with_key_line(text: &str, key: &str, line: &str) -> String {
    let header = format!("[upstream.keys.{key}]\n");
    text.replacen(&header, &format!("{header}{line}\n"), 1)
}

/// Whether `p` has a problem at `path` whose message contains every one of `words`.
fn has(p: &[(String, String)], path: &str, words: &[&str]) -> bool {
    p.iter()
        .any(|(at, m)| at == path && words.iter().all(|w| m.contains(w)))
}

#[test]
fn requests_per_minute_beyond_what_a_sliding_log_can_hold_is_refused() {
    let dir = TestDir::new();
    let text = with_key_line(&base(&dir), "read", "requests_per_minute = 4000000000");
    let text = with_key_line(&text, "write", "requests_per_minute = 0");
    let text = text.replace(
        "name = \"bob\"",
        "name = \"bob\"\nrequests_per_minute = 2000000",
    );
    let text = format!("{text}\n[rate_limit]\nper_user_requests_per_minute = 1000001\n");
    let p = problems(&text, &dir);
    assert!(
        has(
            &p,
            "upstream.keys.read.requests_per_minute",
            &["4000000000", "sliding log", "1000000", "\"unlimited\""]
        ),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            "upstream.keys.write.requests_per_minute",
            &["greater than zero"]
        ),
        "{p:#?}"
    );
    assert!(
        has(&p, "users[1].requests_per_minute", &["sliding log"]),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            "rate_limit.per_user_requests_per_minute",
            &["sliding log"]
        ),
        "{p:#?}"
    );
    // The largest accepted value is the ceiling itself.
    let max = config::ceilings::MAX_REQUESTS_PER_MINUTE;
    let text = with_key_line(&base(&dir), "read", &format!("requests_per_minute = {max}"));
    let s = config::from_toml(&text, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    let read = s.upstream.keys.iter().find(|k| &*k.name == "read").unwrap();
    assert_eq!(
        read.requests_per_minute,
        config::RequestsPerMinute::Limited(max)
    );
}

#[test]
fn unlimited_is_a_typed_setting_and_other_words_are_refused() {
    let dir = TestDir::new();
    let text = with_key_line(&base(&dir), "read", "requests_per_minute = \"unlimited\"");
    let s = config::from_toml(&text, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    let key = |name: &str| {
        s.upstream
            .keys
            .iter()
            .find(|k| &*k.name == name)
            .unwrap()
            .requests_per_minute
    };
    assert_eq!(key("read"), config::RequestsPerMinute::Unlimited);
    assert_eq!(key("read").limit(), None);
    assert_eq!(key("write"), config::RequestsPerMinute::Limited(100));
    assert_eq!(s.state.split(key("read")), None, "nothing to split");
    assert_eq!(s.state.split(key("write")), Some((100, 0)));

    let text = with_key_line(&base(&dir), "read", "requests_per_minute = \"lots\"");
    let p = problems(&text, &dir);
    assert!(
        has(
            &p,
            "upstream.keys.read.requests_per_minute",
            &["\"lots\"", "\"unlimited\""]
        ),
        "{p:#?}"
    );
    let text = with_key_line(&base(&dir), "read", "requests_per_minute = 1.5");
    let p = problems(&text, &dir);
    assert!(
        p[0].1.contains("positive integer or \"unlimited\""),
        "{p:#?}"
    );
}

#[test]
fn a_fair_share_of_an_unlimited_key_is_refused() {
    let dir = TestDir::new();
    let text = with_key_line(&base(&dir), "read", "requests_per_minute = \"unlimited\"");
    let text = text.replace("name = \"bob\"", "name = \"bob\"\nrequests_per_minute = 5");
    let p = problems(&text, &dir);
    assert!(
        has(
            &p,
            "users[1].requests_per_minute",
            &["\"read\"", "unlimited"]
        ),
        "{p:#?}"
    );
}

#[test]
fn sizes_and_counts_beyond_what_the_process_can_hold_are_refused_all_at_once() {
    let dir = TestDir::new();
    let text = base(&dir)
        .replace(
            "shutdown_grace = \"5s\"",
            "shutdown_grace = \"5s\"\nmax_body_size = \"1GiB\"\nmax_header_size = \"2MiB\"\nmax_uri_length = \"2MiB\"\nmax_in_flight = 5000000",
        )
        .replace(
            "response_timeout = \"2s\"",
            "response_timeout = \"2s\"\nmax_response_size = \"1GiB\"\nmax_connections = 100000000000",
        );
    let p = problems(&text, &dir);
    for path in [
        "server.max_body_size",
        "server.max_header_size",
        "server.max_uri_length",
        "upstream.max_response_size",
    ] {
        assert!(has(&p, path, &["this process can hold"]), "{path}: {p:#?}");
    }
    assert!(
        has(&p, "server.max_body_size", &["1GiB", "64MiB"]),
        "{p:#?}"
    );
    assert!(
        has(&p, "server.max_in_flight", &["5000000", "1000000"]),
        "{p:#?}"
    );
    assert!(
        has(&p, "upstream.max_connections", &["100000000000", "65536"]),
        "{p:#?}"
    );
}

#[test]
fn what_the_settings_allow_together_is_bounded_too() {
    let dir = TestDir::new();
    // Each value is fine alone; 100,000 bodies of 1 MiB at once are not.
    let text = base(&dir).replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nmax_body_size = \"1MiB\"\nmax_in_flight = 100000",
    );
    let p = problems(&text, &dir);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        has(
            &p,
            "server.max_body_size",
            &[
                "4GiB",
                "server.max_in_flight 100000 × server.max_body_size 1MiB"
            ]
        ),
        "{p:#?}"
    );
    let text = format!("{}\n[cache]\ncapacity = \"8GiB\"\n", base(&dir));
    let p = problems(&text, &dir);
    assert!(
        has(&p, "cache.capacity", &["4GiB", "cache.capacity: 8GiB"]),
        "{p:#?}"
    );
    // A disabled cache holds nothing.
    let text = format!(
        "{}\n[cache]\nenabled = false\ncapacity = \"8GiB\"\n",
        base(&dir)
    );
    config::from_toml(&text, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    let text = format!("{}\n[idempotency]\ncapacity = \"5GiB\"\n", base(&dir));
    let p = problems(&text, &dir);
    assert!(has(&p, "idempotency.capacity", &["4GiB"]), "{p:#?}");
}

/// `sh -c 'ulimit -v <kib>; exec <bin> <args>'`: the gateway under an address-space limit.
#[cfg(unix)]
fn under_address_space_limit(mib: u64, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", mib * 1024))
        .arg(env!("CARGO_BIN_EXE_journeybee-gateway"))
        .args(args);
    cmd
}

/// The base config plus `extra` keys, every key with the largest limit a sliding log may have
/// (as many keys as the memory ceiling allows with room to spare).
fn largest_budgets(dir: &TestDir, extra: usize) -> String {
    let max = config::ceilings::MAX_REQUESTS_PER_MINUTE;
    let line = format!("requests_per_minute = {max}");
    let mut text = with_key_line(&base(dir), "read", &line);
    text = with_key_line(&text, "write", &line);
    let keys: String = (0..extra)
        .map(|i| format!("[upstream.keys.k{i:02}]\nsecret_file = \"read.key\"\n{line}\n\n"))
        .collect();
    text.replacen(
        "[upstream.keys.read]",
        &format!("{keys}[upstream.keys.read]"),
        1,
    )
}

#[cfg(unix)]
#[test]
fn the_largest_budgets_reserve_nothing_up_front() {
    use std::io::{BufRead, BufReader};
    let dir = TestDir::new();
    // 40 keys at the largest finite limit: accepted (their logs could grow to ~1.9 GiB, under
    // the memory ceiling), yet start-up needs no more than a small process, because nothing
    // is reserved for a limit: reserving the logs up front (40 × 1,000,000 entries of 24 B,
    // ~0.9 GiB) could not fit in 256 MiB of address space.
    let text = largest_budgets(&dir, 38);
    let s = config::from_toml(&text, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.upstream.keys.len(), 40);
    let cfg = dir.write("gw.toml", &text);
    let out = under_address_space_limit(256, &["check-config".as_ref(), cfg.as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = under_address_space_limit(
        256,
        &["serve".as_ref(), "--config".as_ref(), cfg.as_os_str()],
    )
    .env("RUST_LOG", "info")
    // Worker threads (and their stacks and heaps) scale with the cores otherwise.
    .env("TOKIO_WORKER_THREADS", "2")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let started = std::time::Instant::now();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("gateway listening") => break,
            Some(Ok(_)) => {}
            _ => {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "serve ended before listening: {:?} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        assert!(started.elapsed().as_secs() < 30, "gateway did not start");
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn tracing_is_checked_and_off_without_an_endpoint() {
    let dir = TestDir::new();
    let ok = format!(
        "{}\n[tracing]\notlp_endpoint = \"https://collector.internal:4318/v1/traces\"\nsample_ratio = 0.25\n",
        base(&dir)
    );
    let s = config::from_toml(&ok, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    let t = s.tracing.expect("tracing on");
    assert_eq!(t.sample_ratio, 0.25);
    assert_eq!(
        t.otlp_endpoint.to_string(),
        "https://collector.internal:4318/v1/traces"
    );
    let off = format!("{}\n[tracing]\nsample_ratio = 0.5\n", base(&dir));
    assert!(config::from_toml(&off, &dir.0).unwrap().tracing.is_none());
    let bad = format!(
        "{}\n[tracing]\notlp_endpoint = \"https://user:pw@collector:4318/v1/traces\"\nsample_ratio = 1.5\nmax_queue_size = 4\nmax_export_batch_size = 8\nexport_interval = \"0s\"\n",
        base(&dir)
    );
    let p = problems(&bad, &dir);
    for path in [
        "tracing.otlp_endpoint",
        "tracing.sample_ratio",
        "tracing.max_export_batch_size",
        "tracing.export_interval",
    ] {
        assert!(p.iter().any(|(q, _)| q == path), "{path}: {p:?}");
    }
    let unknown = format!(
        "{}\n[tracing]\nendpoint = \"http://x/v1/traces\"\n",
        base(&dir)
    );
    let e = config::from_toml(&unknown, &dir.0).expect_err("unknown field");
    assert!(e.to_string().contains("endpoint"), "{e}");
    let plain = format!(
        "{}\n[tracing]\notlp_endpoint = \"collector:4318\"\n",
        base(&dir)
    );
    assert!(problems(&plain, &dir)
        .iter()
        .any(|(q, _)| q == "tracing.otlp_endpoint"));
}
