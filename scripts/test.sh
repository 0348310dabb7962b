#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs exactly this).
# Runs every Rust test of the workspace (the gateway and the simulator crate `sim/`: unit,
# integration over real sockets, property tests), then checks the metrics, dashboard and alert
# rules against a real Prometheus and the OpenAPI document, both against the production shape:
# the gateway built as the Docker image builds it (without the default `demo` feature) running
# `serve --config`, in front of the simulator's own binary `journeybee-sim`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --workspace --all-targets
if [ -x scripts/check-prometheus.sh ]; then
  cargo build --locked --release --no-default-features
  cargo build --locked --release -p journeybee-sim
  scripts/check-prometheus.sh target/release/journeybee-gateway target/release/journeybee-sim
  scripts/check-openapi.sh target/release/journeybee-gateway target/release/journeybee-sim
fi
