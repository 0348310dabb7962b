#!/usr/bin/env bash
# The economy harness (bench/economy/economy.py; see "The economy" in bench/README.md):
#
#   bench/economy/run.sh [--gateway BIN] [--sim BIN] [--smoke] [--replicas N] [--state redis]
#                        [--duration S] [--seed N] [--extra-config FILE] [--out FILE.json] ...
#
# --gateway/--sim default to target/release/, else target/debug/ (journeybee-sim next to the
# gateway). --smoke is --duration 40. Every other option goes to economy.py (--help there).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
gw='' sim='' args=()
while [ $# -gt 0 ]; do
  case $1 in
    --gateway) gw=$2; shift 2 ;;
    --sim) sim=$2; shift 2 ;;
    --smoke) args+=(--duration 40); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -z "$gw" ]; then
  for d in release debug; do
    if [ -x "$root/target/$d/journeybee-gateway" ]; then gw=$root/target/$d/journeybee-gateway; break; fi
  done
fi
[ -n "$gw" ] || { echo "economy: no gateway binary: build one or pass --gateway" >&2; exit 2; }
[ -n "$sim" ] || sim=$(dirname "$gw")/journeybee-sim
command -v redis-server >/dev/null || echo "economy: note: no redis-server (apt-get install redis-server); only one replica on the memory backend will run" >&2
exec python3 "$root/bench/economy/economy.py" --gateway "$gw" --sim "$sim" "${args[@]}"
