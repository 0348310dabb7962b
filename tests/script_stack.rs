//! The gateway config that scripts/lib.sh `start_stack` writes for the check scripts and the
//! soak (`journeybee-gateway serve` in front of a `journeybee-sim` process) is the demo's
//! (`demo::demo_config`): same users, keys, issuer, audience, validation and metrics. Only
//! `[log]` differs (JSON, so that the scripts read the listening addresses from the log).
#![cfg(feature = "demo")]

use journeybee_gateway::demo::demo_config;
use journeybee_sim::SimConfig;

const LIB: &str = include_str!("../scripts/lib.sh");

/// The value of a `NAME=value` line of lib.sh.
fn shell_var(name: &str) -> &'static str {
    LIB.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= line in scripts/lib.sh"))
}

/// The here-document between `<<TOML` and `TOML`, with its shell expansions done.
fn script_config(sim_url: &str, alice: u64, bob: u64, own: &str) -> String {
    let start = LIB.find("<<TOML\n").expect("a <<TOML here-document") + "<<TOML\n".len();
    let len = LIB[start..].find("\nTOML\n").expect("its TOML terminator");
    LIB[start..start + len]
        .replace("\\`", "`")
        .replace("$sim_url", sim_url)
        .replace("$STACK_ISSUER", shell_var("STACK_ISSUER"))
        .replace("$STACK_AUDIENCE", shell_var("STACK_AUDIENCE"))
        .replace("$alice", &alice.to_string())
        .replace("$bob", &bob.to_string())
        .replace("$own", own)
}

#[test]
fn start_stack_writes_the_demo_config() {
    let url = "http://127.0.0.1:4567";
    // lib.sh turns the simulator's SIM_COMPANY_DOMAINS (a,b) into `a", "b`.
    let own = SimConfig::default().company_domains.join("\", \"");
    let script = script_config(url, 11, 22, &own);
    assert!(!script.contains('$'), "an unexpanded variable: {script}");
    let mut script: toml::Table = toml::from_str(&script).expect("lib.sh's config is TOML");
    let demo: toml::Table =
        toml::from_str(&demo_config(url, "127.0.0.1:0", "127.0.0.1:0", (11, 22))).unwrap();

    let log = script.remove("log").expect("lib.sh's config has [log]");
    assert_eq!(log["format"].as_str(), Some("json"), "{log}");
    assert!(!demo.contains_key("log"));
    assert_eq!(script, demo);
}
