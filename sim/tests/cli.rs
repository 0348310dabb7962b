//! The `journeybee-sim` binary as the scripts run it: its env file and printed line name the
//! URL, the keys, the company's user ids and its own domains, and those ids are the ones the
//! simulator serves (`GET /api/v1/users`) and accepts as `userId`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use journeybee_sim::{DEFAULT_COMPANY_DOMAIN, SIM_READ_KEY, SIM_WRITE_KEY};

/// Kills the child on drop, so a failed assertion leaves no simulator behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse(text: &str, separator: char) -> HashMap<String, String> {
    text.split(separator)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// One HTTP/1.1 GET with the read key; returns (status, body).
fn get(base: &str, path: &str) -> (u16, String) {
    let host = base.strip_prefix("http://").expect("http URL");
    let mut s = TcpStream::connect(host).expect("connect to the simulator");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SIM_READ_KEY}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn wait_for(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "no env file within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_binary_announces_user_ids_and_domains_it_really_serves() {
    let dir = std::env::temp_dir().join(format!("journeybee-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("sim.env");
    let _ = std::fs::remove_file(&env_file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_journeybee-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--rate-limit",
            "100",
            "--env-file",
        ])
        .arg(&env_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("journeybee-sim starts");
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);

    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let printed = parse(&line, ' ');
    let env = parse(&wait_for(&env_file), '\n');
    assert_eq!(printed, env, "the printed line and the env file agree");
    let keys: Vec<&str> = {
        let mut k: Vec<&str> = env.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    };
    assert_eq!(
        keys,
        [
            "SIM_COMPANY_DOMAINS",
            "SIM_READ_KEY",
            "SIM_URL",
            "SIM_USER_IDS",
            "SIM_WRITE_KEY"
        ]
    );
    assert_eq!(env["SIM_READ_KEY"], SIM_READ_KEY);
    assert_eq!(env["SIM_WRITE_KEY"], SIM_WRITE_KEY);
    assert_eq!(env["SIM_COMPANY_DOMAINS"], DEFAULT_COMPANY_DOMAIN);
    let base = &env["SIM_URL"];
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let ids: Vec<u64> = env["SIM_USER_IDS"]
        .split(',')
        .map(|id| id.parse().expect("a numeric user id"))
        .collect();
    assert!(
        ids.len() >= 2,
        "a read and a write user need two ids: {ids:?}"
    );

    // The same ids as the simulator's own user list.
    let (status, body) = get(base, "/api/v1/users");
    assert_eq!(status, 200, "{body}");
    let users: serde_json::Value = serde_json::from_str(&body).unwrap();
    let served: Vec<u64> = users
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|u| u["id"].as_u64().expect("an id"))
        .collect();
    assert_eq!(ids, served);

    // Valid as `userId`.
    let (status, body) = get(
        base,
        &format!("/api/v1/partnerships?userId={}&view=all", ids[0]),
    );
    assert_eq!(status, 200, "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}
