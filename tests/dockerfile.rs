//! Checks of the Dockerfile that need no container engine (CI has none).
//!
//! The dependency-caching stage builds against stub sources; cargo refuses to parse a manifest
//! whose declared targets have no file, so a new `[[bench]]`, `[[bin]]` or `[[test]]` without a
//! stub there breaks `docker build` while every other check stays green. This runs that stage's
//! stub commands in a scratch directory with the real `Cargo.toml`/`Cargo.lock` and asks cargo
//! to load the manifest. The rest are the promises the README makes about the image.

mod common;

use common::TestDir;
use std::path::Path;
use std::process::Command;

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap()
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// The `RUN` that follows `COPY Cargo.toml Cargo.lock ./`: the stub build.
fn stub_run(instructions: &[String]) -> String {
    let at = instructions
        .iter()
        .position(|i| i.starts_with("COPY Cargo.toml Cargo.lock"))
        .expect("a COPY of the manifest before the sources");
    instructions[at + 1]
        .strip_prefix("RUN ")
        .expect("a RUN right after the manifest COPY")
        .to_string()
}

#[test]
fn the_dependency_stage_stubs_every_target_the_manifest_declares() {
    let run = stub_run(&instructions(&dockerfile()));
    // Everything before the build itself: the mkdir/echo lines that create the stubs.
    let setup: Vec<&str> = run
        .split("&&")
        .map(str::trim)
        .take_while(|c| !c.starts_with("cargo "))
        .collect();
    assert!(
        run.contains("cargo build --release --locked"),
        "the stub stage builds the dependencies: {run}"
    );
    let dir = TestDir::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(root.join(f), dir.0.join(f)).unwrap();
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(setup.join(" && "))
        .current_dir(&dir.0)
        .status()
        .unwrap();
    assert!(status.success(), "stub commands failed: {setup:?}");
    // Loading the workspace parses the manifest and discovers every target, then fails on the
    // package name before compiling anything: the cheapest way to ask "would this build?".
    // Not `--offline`: on a cold cargo cache, resolving the lockfile may need the registry.
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--locked",
            "--package",
            "no-such-package-stub-check",
        ])
        .arg("--target-dir")
        .arg(dir.0.join("target"))
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("failed to parse manifest"),
        "the Dockerfile's stub stage would fail: {err}"
    );
    assert!(
        err.contains("did not match any packages"),
        "cargo did not get as far as the package list: {err}"
    );
}

#[test]
fn the_image_runs_unprivileged_with_both_ports_and_a_shell_free_healthcheck() {
    let text = dockerfile();
    let ins = instructions(&text);
    let last_from = ins.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
    let runtime = &ins[last_from..];
    let find = |prefix: &str| {
        runtime
            .iter()
            .find(|i| i.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in the runtime stage"))
            .clone()
    };
    assert!(
        ins[..last_from].iter().any(|i| i.starts_with("FROM ")),
        "multi-stage"
    );
    assert!(
        ins.iter()
            .filter(|i| i.contains("cargo build"))
            .all(|i| i.contains("--locked")),
        "every build is --locked"
    );
    let user = find("USER ");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    let expose = find("EXPOSE ");
    assert!(
        expose.contains("8080") && expose.contains("9090"),
        "{expose}"
    );
    // Exec form (a JSON array), so no shell is needed in the image.
    let health = find("HEALTHCHECK ");
    assert!(
        health.contains(r#"CMD ["/usr/local/bin/journeybee-gateway","healthcheck""#),
        "{health}"
    );
    assert!(find("VOLUME ").contains("/etc/journeybee-gateway"));
    assert!(find("ENTRYPOINT ").contains(r#"["/usr/local/bin/journeybee-gateway"]"#));
}
