//! Checks of the Dockerfile that need no container engine (CI has none).
//!
//! The dependency-caching stage builds against stub sources; cargo refuses to parse a manifest
//! whose declared targets have no file, so a new `[[bench]]`, `[[bin]]` or `[[test]]` (or a
//! workspace member such as `sim/`) without a stub there breaks `docker build` while every other
//! check stays green. This runs that stage's manifest copies and stub commands in a scratch
//! directory with the real manifests and `Cargo.lock` and asks cargo to load the workspace. The
//! rest are the promises the README makes about the image, among them that it carries no
//! simulator (built with `--no-default-features`, the gateway does not depend on
//! `journeybee-sim`).

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

/// The stub build: the files the `COPY`s from `COPY Cargo.toml Cargo.lock ./` on copy (the
/// workspace's manifests, as paths relative to the context) and the `RUN` right after them.
fn stub_stage(instructions: &[String]) -> (Vec<String>, String) {
    let at = instructions
        .iter()
        .position(|i| i.starts_with("COPY Cargo.toml Cargo.lock"))
        .expect("a COPY of the manifest before the sources");
    let mut files = Vec::new();
    let mut i = at;
    while let Some(copy) = instructions[i].strip_prefix("COPY ") {
        let words: Vec<&str> = copy.split_whitespace().collect();
        let (dest, sources) = words.split_last().expect("COPY <src>... <dest>");
        for src in sources {
            assert!(!src.starts_with("--"), "plain COPYs of manifests: {copy}");
            // Each file lands at the same path as in the context (`COPY sim/Cargo.toml sim/`).
            let name = Path::new(src).file_name().unwrap();
            let landed = Path::new(dest).join(name);
            assert_eq!(
                landed.strip_prefix(".").unwrap_or(&landed),
                Path::new(src),
                "manifests keep their paths: {copy}"
            );
            files.push((*src).to_string());
        }
        i += 1;
    }
    let run = instructions[i]
        .strip_prefix("RUN ")
        .expect("a RUN right after the manifest COPYs")
        .to_string();
    (files, run)
}

#[test]
fn the_dependency_stage_stubs_every_target_the_manifest_declares() {
    let (files, run) = stub_stage(&instructions(&dockerfile()));
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
    for f in &files {
        let to = dir.0.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(f), to).unwrap();
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
    // Cargo loads a target declared with an explicit `path` (the simulator's) without looking
    // for its file; the build would still need it. Every target of every member has a stub.
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--no-deps", "--format-version", "1"])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    assert!(
        packages.len() >= 2,
        "the gateway and the simulator: {packages:?}"
    );
    for target in packages
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
    {
        let src = target["src_path"].as_str().unwrap();
        assert!(
            Path::new(src).is_file(),
            "no stub for target {} ({src}) in the Dockerfile's dependency stage",
            target["name"]
        );
    }
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

/// The gateway's dependencies, as `cargo tree` lists them for the host (normal edges only).
fn normal_dependencies(features: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--package",
            "journeybee-gateway",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ])
        .args(features)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_image_is_built_without_the_simulator() {
    let ins = instructions(&dockerfile());
    let builds: Vec<&String> = ins.iter().filter(|i| i.contains("cargo build")).collect();
    assert!(!builds.is_empty());
    for build in builds {
        for command in build.split("&&").filter(|c| c.contains("cargo build")) {
            assert!(
                command.contains("--no-default-features"),
                "the image's builds leave out the `demo` feature (the simulator): {command}"
            );
        }
    }
    // What `--no-default-features` leaves out: the simulator crate, as a normal dependency.
    let with_demo = normal_dependencies(&[]);
    assert!(
        with_demo.lines().any(|l| l.starts_with("journeybee-sim ")),
        "the default features bring the simulator for `demo`:\n{with_demo}"
    );
    let without = normal_dependencies(&["--no-default-features"]);
    assert!(
        !without.contains("journeybee-sim"),
        "a --no-default-features build must not link the simulator:\n{without}"
    );
}
