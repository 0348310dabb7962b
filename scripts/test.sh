#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs exactly this).
# Runs every Rust test of the workspace (the gateway and the simulator crate `sim/`: unit,
# integration over real sockets, property tests), then checks the metrics, dashboard and alert
# rules against a real Prometheus and the OpenAPI document, both against the running demo (the
# release build has the default `demo` feature; the Docker image is built without it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --workspace --all-targets
if [ -x scripts/check-prometheus.sh ]; then
  cargo build --locked --release
  scripts/check-prometheus.sh target/release/journeybee-gateway
  scripts/check-openapi.sh target/release/journeybee-gateway
fi
