#!/usr/bin/env bash
# A bounded soak of journeybee-gateway in its production shape: the gateway binary built without
# the `demo` feature, running `serve --config` in front of the JourneyBee simulator as a process
# of its own (`journeybee-sim`), both on loopback, under mixed traffic for a few minutes while
# the simulator's faults are switched on and off.
#
#   bench/soak.sh                    # 180 s of traffic (about 3.5 minutes in all)
#   SOAK_DURATION=30 bench/soak.sh   # quick mode
#
# Builds nothing unless target/release/journeybee-gateway or target/release/journeybee-sim is
# missing (then `cargo build --release --locked --no-default-features`, and
# `cargo build --release --locked -p journeybee-sim`). Starts both with scripts/lib.sh
# start_stack (the demo's config: users alice (write) and bob (read), the simulator limited to
# 100 requests/min per key, control endpoints on) and runs bench/soak/soak.py (python3 stdlib)
# against them:
#   - traffic: a handful of workers (one keep-alive connection each) at a bounded total rate:
#     lists with varied queries (cache hits and misses), creates with unique e-mail domains
#     (some with Idempotency-Key, some repeated: replays, 409s), invalid bodies (400), own-domain
#     creates (406), read-user creates (403), foreign userId lists (403), bad queries (400),
#     missing/bad tokens (401), unknown paths (404), wrong methods (405);
#   - faults: every SOAK_FAULT_PERIOD s the simulator's fault is switched through its control
#     endpoint (PUT /__sim/fault; journeybee-sim serves it unless --no-control): status 500,
#     reset mid-response, rate_limited, status 503, slow 300 ms, with "none" in between;
#   - every response is classified by status and X-Cache; unexpected: a connection error to the
#     gateway, a body that is not JSON of the expected shape (every non-2xx {"error": "..."}),
#     a status the request kind never gets (e.g. a read-user create that is not 403), a 5xx
#     other than 502/503/504 during a fault, any 5xx with no fault on (grace SOAK_GRACE s after a
#     fault), a response slower than SOAK_MAX_LATENCY s, and creates reaching the simulator more
#     often than the gateway's answers allow;
#   - the gateway process is sampled for VmRSS, VmHWM and open fds at start (after warm-up and
#     idle) and at the end (after idle); the simulator's RSS at the end is reported apart.
# The report goes to bench/results/soak.md (SOAK_REPORT). Exit status: 0 pass, 1 unexpected
# outcomes or an fd leak, 2 a harness problem. Every process started is killed on exit.
#
# Environment: SOAK_DURATION (180), SOAK_WORKERS (6), SOAK_RPS (20, total), SOAK_FAULT_PERIOD
# (15), SOAK_GRACE (12), SOAK_MAX_LATENCY (35), SOAK_FD_MARGIN (2 × workers + 4), SOAK_IDLE (5),
# SOAK_REPORT (bench/results/soak.md), SOAK_BIN (target/release/journeybee-gateway), SOAK_SIM_BIN
# (journeybee-sim next to SOAK_BIN), SOAK_NOTE (a line added to the report),
# SOAK_KEEP_TMP (0: the temp dir with the logs and config is removed on exit unless the soak
# failed).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
BIN=${SOAK_BIN:-$ROOT/target/release/journeybee-gateway}
SIM=${SOAK_SIM_BIN:-$(dirname "$BIN")/journeybee-sim}
DURATION=${SOAK_DURATION:-180}
WORKERS=${SOAK_WORKERS:-6}
RPS=${SOAK_RPS:-20}
PERIOD=${SOAK_FAULT_PERIOD:-15}
GRACE=${SOAK_GRACE:-12}
MAX_LATENCY=${SOAK_MAX_LATENCY:-35}
FD_MARGIN=${SOAK_FD_MARGIN:--1}
IDLE=${SOAK_IDLE:-5}
REPORT=${SOAK_REPORT:-$ROOT/bench/results/soak.md}
KEEP_TMP=${SOAK_KEEP_TMP:-0}

# start_stack, stack_binaries and wait_until; log, die and stop_pid are redefined below.
CHECK_NAME=soak
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

log() { printf '[soak %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 2
}

case ${1:-} in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*) die "no arguments expected (try --help)" ;;
esac

for v in DURATION WORKERS RPS PERIOD GRACE MAX_LATENCY IDLE; do
    [[ ${!v} =~ ^[0-9]+([.][0-9]+)?$ ]] || die "SOAK_$v must be a number, not '${!v}'"
done
command -v python3 >/dev/null || die "python3 is required"

SIM_PID=""
GW_PID=""
PY_PID=""
TMP=$(mktemp -d "${TMPDIR:-/tmp}/jbgw-soak.XXXXXX")

# shellcheck disable=SC2317 # (called from the EXIT trap)
stop_pid() { # stop_pid PID NAME: SIGTERM, up to 10 s to exit, then SIGKILL
    local pid=$1 name=$2
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_pid "$PY_PID" "soak driver"
    stop_stack
    if [ "$rc" -ne 0 ]; then
        tail_logs "$TMP" 5 sim.log gateway.log
    fi
    if [ "$KEEP_TMP" = 1 ] || [ "$rc" -ne 0 ]; then
        log "temp dir kept (sim.log, gateway.log, gateway/, unexpected.jsonl): $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ binaries
if [ ! -x "$BIN" ]; then
    [ -z "${SOAK_BIN:-}" ] || die "SOAK_BIN=$BIN is not an executable"
    log "no release binary: cargo build --release --locked --no-default-features"
    (cd "$ROOT" && cargo build --release --locked --no-default-features) ||
        die "the release build failed"
fi
if [ ! -x "$SIM" ]; then
    [ -z "${SOAK_SIM_BIN:-}" ] || die "SOAK_SIM_BIN=$SIM is not an executable"
    [ "$(dirname "$BIN")" = "$ROOT/target/release" ] ||
        die "no $SIM next to SOAK_BIN: set SOAK_SIM_BIN"
    log "no simulator binary: cargo build --release --locked -p journeybee-sim"
    (cd "$ROOT" && cargo build --release --locked -p journeybee-sim) ||
        die "the simulator's release build failed"
fi
stack_binaries "$BIN" "$SIM" # GW_BIN, SIM_BIN
command -v curl >/dev/null || die "curl is required"

# ------------------------------------------------------------------ simulator and gateway
start_stack "$TMP" "$TMP/stack.env"
[ "$(basename "$(readlink "/proc/$GW_PID/exe" 2>/dev/null)")" = "$(basename "$GW_BIN")" ] ||
    die "pid $GW_PID is not the gateway binary"
[ "$(basename "$(readlink "/proc/$SIM_PID/exe" 2>/dev/null)")" = "$(basename "$SIM_BIN")" ] ||
    die "pid $SIM_PID is not the simulator binary"
ADMIN=$(sed -n 's/^JBGW_ADMIN_URL=//p' "$TMP/stack.env")
case $ADMIN in http://127.0.0.1:*) ;; *) die "refusing a non-loopback admin address '$ADMIN'" ;; esac

# ------------------------------------------------------------------ the soak
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
MACHINE="$(nproc) CPUs (\`nproc\`), ${cpu:-unknown CPU}, $mem RAM, $(uname -sr)"
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    rev="$rev+uncommitted"
fi
SOFTWARE="gateway \`$rev\` ($GW_BIN, release), simulator $SIM_BIN, $(python3 --version) load generator"

mkdir -p "$(dirname "$REPORT")"
rc=0
python3 -B "$BENCH_DIR/soak/soak.py" --env "$TMP/stack.env" --pid "$GW_PID" --sim-pid "$SIM_PID" \
    --duration "$DURATION" --workers "$WORKERS" --rps "$RPS" --period "$PERIOD" \
    --grace "$GRACE" --max-latency "$MAX_LATENCY" --fd-margin "$FD_MARGIN" --idle "$IDLE" \
    --report "$TMP/report.md" --machine "$MACHINE" --software "$SOFTWARE" \
    --unexpected-log "$TMP/unexpected.jsonl" --note "${SOAK_NOTE:-}" &
PY_PID=$!
wait "$PY_PID" || rc=$?
PY_PID=""
kill -0 "$GW_PID" 2>/dev/null || { log "the gateway died during the soak"; rc=2; }
kill -0 "$SIM_PID" 2>/dev/null || { log "the simulator died during the soak"; rc=2; }
if [ "$rc" -le 1 ] && [ -s "$TMP/report.md" ]; then
    cp "$TMP/report.md" "$REPORT"
    log "report: $REPORT"
else
    log "no report written (harness problem, exit $rc)"
    rc=2
fi
[ ! -s "$TMP/unexpected.jsonl" ] || log "every unexpected outcome: $TMP/unexpected.jsonl"
exit "$rc"
