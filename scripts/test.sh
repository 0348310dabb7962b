#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs exactly this, after fmt and
# clippy). It works on a fresh machine: it first installs what the tests need and a clean
# checkout lacks,
#   - Debian's `redis-server` when it is not on PATH (the replica and state-store tests start
#     their own on a free loopback port; the package's service is kept from starting), with
#     apt-get, which needs root, as scripts/check-prometheus.sh does for Prometheus;
#   - the npm modules of tests/oidc (the OpenID provider tests/oidc_interop.rs runs), with
#     `npm ci` from the committed lockfile when node_modules is missing or was installed from
#     another package.json/package-lock.json (needs node >= 20 and npm on PATH);
# then runs every Rust test of the workspace (the gateway and the simulator crate `sim/`: unit,
# integration over real sockets, property tests), then checks the metrics, dashboard and alert
# rules against a real Prometheus and the OpenAPI document, both against the production shape:
# the gateway built as the Docker image builds it (without the default `demo` feature) running
# `serve --config`, in front of the simulator's own binary `journeybee-sim`.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECK_NAME=test.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# ------------------------------------------------------------------ redis-server
if ! command -v redis-server >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "need redis-server: run as root (apt-get) or install Debian's redis-server package"
  command -v apt-get >/dev/null 2>&1 || die "need redis-server and there is no apt-get"
  log "installing redis-server (Debian package)"
  # The package's service is not what the tests use: keep it from starting when nothing else
  # already decides (policy-rc.d exit 101 = "action forbidden").
  policy_created=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_created=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -q
  timeout 900 apt-get install -y -q --no-install-recommends redis-server
  if [ -n "$policy_created" ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing"
fi
log "$(redis-server --version)"

# ------------------------------------------------------------------ tests/oidc npm modules
# A stamp of the manifest and lockfile the modules were installed from: a lockfile changed by
# a pull or a branch switch is installed again, an unchanged one is not.
oidc_stamp=tests/oidc/node_modules/.installed-from.sha256
oidc_want=$(cd tests/oidc && sha256sum package.json package-lock.json)
if [ ! -d tests/oidc/node_modules ] || [ "$(cat "$oidc_stamp" 2>/dev/null)" != "$oidc_want" ]; then
  command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 ||
    die "need node (>= 20) and npm for the OpenID provider of tests/oidc_interop.rs"
  log "npm ci in tests/oidc (node $(node --version))"
  (cd tests/oidc && timeout 900 npm ci --no-audit --no-fund)
  printf '%s\n' "$oidc_want" >"$oidc_stamp"
fi

# ------------------------------------------------------------------ the tests
# The house has no import circles (ARCHITECTURE.md): the module graph of src/ and sim/src/.
python3 scripts/import-graph.py --check src sim/src
cargo test --locked --workspace --all-targets
if [ -x scripts/check-prometheus.sh ]; then
  cargo build --locked --release --no-default-features
  cargo build --locked --release -p journeybee-sim
  scripts/check-prometheus.sh target/release/journeybee-gateway target/release/journeybee-sim
  scripts/check-openapi.sh target/release/journeybee-gateway target/release/journeybee-sim
fi
