#!/usr/bin/env bash
# The journeybee-gateway benchmark: the gateway against nginx on the same machine, same run.
#
#   bench/run.sh            # full run (about 20 minutes)
#   bench/run.sh --quick    # smoke run (about 2.5 minutes): 1 round, short durations
#
# Installs wrk, nginx-light (and util-linux, openssl, python3, curl) with apt-get when missing,
# builds the release binary, then on loopback only:
#   - a static upstream (its own nginx): GET /api/v1/partnerships -> 200 + a ~2 KB JSON list,
#     POST -> 201 {"status":"created",...};
#   - the peer: nginx proxy_pass injecting the API key (upstream keepalive), and nginx
#     proxy_cache keyed on $request_uri (valid 30 s);
#   - the gateway (release, one tokio worker thread), cache off (miss path) and cache on (hit
#     path, creates), HS256 and ES256 client tokens;
#   - the same gateway scenarios with the Redis state backend ([state] backend = "redis"): a
#     local redis-server (installed with apt-get when missing) on a free loopback port,
#     `--save '' --appendonly no`, pinned with the servers, FLUSHALL before each gateway;
#     then, for a fixed number of requests per scenario, the Redis round trips and commands
#     each request costs (bench/roundtrips.py: MONITOR and INFO commandstats/stats).
# Servers are pinned to CPU $BENCH_SERVER_CPU (0), wrk to $BENCH_CLIENT_CPU (1): a figure is
# "requests per server core". Each scenario: warm-up, throughput at $BENCH_CONNECTIONS (64)
# connections, latency at 1 and 8 connections; the whole set repeated $BENCH_RUNS (3) times,
# round-robin, medians reported. The table goes to bench/results/latest.md; raw wrk outputs
# to bench/work/<timestamp>/ (git-ignored).
#
# Environment: BENCH_DURATION (10s, throughput runs), BENCH_LAT_DURATION (5s, latency runs),
# BENCH_WARMUP (2s), BENCH_RUNS (3), BENCH_RT_REQUESTS (2000; 300 with --quick: requests per
# round-trip count), BENCH_CONNECTIONS (64), BENCH_SERVER_CPU (0),
# BENCH_CLIENT_CPU (1), BENCH_GATEWAY_THREADS (1), BENCH_SKIP_BUILD (0), BENCH_QUICK (0),
# BENCH_KEEP_TMP (0: the temp dir with configs and keys is removed on exit),
# BENCH_NGINX_CACHE_DIR (nginx proxy_cache files; default in the temp dir, e.g. /dev/shm/x),
# BENCH_RESULTS (bench/results/latest.md).
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

QUICK=${BENCH_QUICK:-0}
for arg in "$@"; do
    case $arg in
    --quick) QUICK=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $arg (try --help)" ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    DURATION=${BENCH_DURATION:-3s}
    LAT_DURATION=${BENCH_LAT_DURATION:-2s}
    WARMUP=${BENCH_WARMUP:-1s}
    RUNS=${BENCH_RUNS:-1}
    RT_REQUESTS=${BENCH_RT_REQUESTS:-300}
else
    DURATION=${BENCH_DURATION:-10s}
    LAT_DURATION=${BENCH_LAT_DURATION:-5s}
    WARMUP=${BENCH_WARMUP:-2s}
    RUNS=${BENCH_RUNS:-3}
    RT_REQUESTS=${BENCH_RT_REQUESTS:-2000}
fi
CONNS=${BENCH_CONNECTIONS:-64}
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results/latest.md}
case $RUNS in '' | *[!0-9]* | 0) die "BENCH_RUNS must be a positive integer" ;; esac
[ "$RUNS" -le 20 ] || die "BENCH_RUNS is at most 20"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bench_install_deps
bench_check_cpus
bench_build
bench_prepare

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK="$BENCH_DIR/work/$STAMP"
mkdir -p "$WORK/raw"
ln -sfn "$STAMP" "$BENCH_DIR/work/latest"
TSV="$WORK/measurements.tsv"
printf 'scenario\tkind\tconns\tround\tserver_ticks\tupstream_ticks\tredis_ticks\tclient_ticks\tscore_busy\tscore_steal\tccore_busy\thwm_kib\tredis_kib\tthreads\tfile\n' >"$TSV"
CLK_TCK=$(getconf CLK_TCK)
log "work dir: $WORK (throughput ${DURATION} @${CONNS}, latency ${LAT_DURATION} @1 and @8, ${RUNS} round(s))"

start_upstream
start_proxy
start_redis
log "upstream nginx pid $UPSTREAM_PID :$UPSTREAM_PORT; peer nginx pid $PROXY_PID :$PLAIN_PORT (plain) :$CACHE_PORT (cache); redis-server pid $REDIS_PID :$REDIS_PORT"

UP="http://127.0.0.1:$UPSTREAM_PORT"
PLAIN="http://127.0.0.1:$PLAIN_PORT"
CACHE="http://127.0.0.1:$CACHE_PORT"
GW="http://127.0.0.1:$GW_PORT"

check 200 GET "$UP$LIST_PATH" "$TOKEN_HS256"
check 201 POST "$UP/api/v1/partnerships" "$TOKEN_HS256"
check 200 GET "$PLAIN$LIST_PATH" "$TOKEN_HS256"
check 201 POST "$PLAIN/api/v1/partnerships" "$TOKEN_HS256"
check 200 GET "$CACHE$LIST_PATH" "$TOKEN_HS256"
check 200 GET "$CACHE$LIST_PATH" "$TOKEN_HS256" HIT || die "nginx proxy_cache does not hit"

# wrk_run <file> <conns> <duration> <method> <url> <token>: wrk pinned to the client CPU. The
# CPU ticks wrk used are written to <file>.ticks (its parent shell's cutime + cstime).
wrk_run() {
    local file=$1 conns=$2 dur=$3 method=$4 url=$5 token=$6 args=()
    if [ "$method" = POST ]; then
        args=(-s "$BENCH_DIR/post.lua")
    else
        args=(-H "Authorization: Bearer $token")
    fi
    # shellcheck disable=SC2016
    BENCH_TOKEN=$token BENCH_BODY=$CREATE_BODY pin "$CLIENT_CPU" bash -c \
        '"$@"; rc=$?; read -r -a f </proc/$$/stat; echo $((f[15] + f[16])) >&3; exit $rc' wrk-run \
        wrk -t1 -c"$conns" -d"$dur" --latency --timeout 5s "${args[@]}" "$url" \
        >"$file" 2>&1 3>"$file.ticks"
}

# scenario <name> <server pid> <method> <url> <token> <round> [rss]: warm-up, @CONNS, @1, @8.
scenario() {
    local name=$1 pid=$2 method=$3 url=$4 token=$5 round=$6 rss=${7:-} conns kind dur file
    local s0 s1 u0 u1 r0 r1 hwm rmem threads cs0 cs1 cc0 cc1
    log "round $round: $name"
    wrk_run "$WORK/raw/$name.warmup.r$round.txt" "$CONNS" "$WARMUP" "$method" "$url" "$token"
    for conns in "$CONNS" 1 8; do
        if [ "$conns" = "$CONNS" ]; then kind=throughput dur=$DURATION; else kind=latency dur=$LAT_DURATION; fi
        file="$WORK/raw/$name.c$conns.r$round.txt"
        hwm=""
        if [ -n "$rss" ] && [ "$kind" = throughput ]; then
            # Resets VmHWM so the peak below is this run's own.
            echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || log "warning: cannot reset VmHWM (peak is since start)"
        fi
        case $name in gw_redis_*) [ "$kind" != throughput ] || rcli INFO commandstats >"$file.cmdstats0" ;; esac
        s0=$(cpu_ticks "$pid")
        u0=$(cpu_ticks "$UPSTREAM_PID")
        r0=$(cpu_ticks "$REDIS_PID")
        cs0=$(cpu_core_ticks "$SERVER_CPU")
        cc0=$(cpu_core_ticks "$CLIENT_CPU")
        wrk_run "$file" "$conns" "$dur" "$method" "$url" "$token" || true
        s1=$(cpu_ticks "$pid")
        u1=$(cpu_ticks "$UPSTREAM_PID")
        r1=$(cpu_ticks "$REDIS_PID")
        cs1=$(cpu_core_ticks "$SERVER_CPU")
        cc1=$(cpu_core_ticks "$CLIENT_CPU")
        kill -0 "$pid" 2>/dev/null || die "$name: server pid $pid died"
        kill -0 "$REDIS_PID" 2>/dev/null || die "$name: redis-server died"
        grep -q 'Requests/sec' "$file" || { cat "$file" >&2; die "$name: wrk failed"; }
        threads=$(awk '/^Threads:/{print $2}' "/proc/$pid/status")
        if [ -n "$rss" ] && [ "$kind" = throughput ]; then
            hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$pid/status")
        fi
        rmem=""
        case $name in gw_redis_*)
            [ "$kind" != throughput ] || rcli INFO commandstats >"$file.cmdstats1"
            rmem=$(rcli INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print int($2 / 1024) }') ;;
        esac
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$conns" "$round" \
            $((s1 - s0)) $((u1 - u0)) $((r1 - r0)) "$(cat "$file.ticks" 2>/dev/null || echo 0)" \
            $((${cs1% *} - ${cs0% *})) $((${cs1#* } - ${cs0#* })) $((${cc1% *} - ${cc0% *})) \
            "$hwm" "$rmem" "$threads" "raw/$(basename "$file")" >>"$TSV"
    done
}

LIST_URL_PATH=$LIST_PATH
for round in $(seq 1 "$RUNS"); do
    scenario direct_get "$UPSTREAM_PID" GET "$UP$LIST_URL_PATH" "$TOKEN_ES256" "$round"
    scenario direct_post "$UPSTREAM_PID" POST "$UP/api/v1/partnerships" "$TOKEN_ES256" "$round"
    scenario nginx_plain_get "$PROXY_PID" GET "$PLAIN$LIST_URL_PATH" "$TOKEN_ES256" "$round"
    scenario nginx_plain_post "$PROXY_PID" POST "$PLAIN/api/v1/partnerships" "$TOKEN_ES256" "$round"
    scenario nginx_cache_get "$PROXY_PID" GET "$CACHE$LIST_URL_PATH" "$TOKEN_ES256" "$round"

    start_gateway false
    check 200 GET "$GW$LIST_PATH" "$TOKEN_HS256"
    check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256"
    scenario gw_miss_hs256 "$GW_PID" GET "$GW$LIST_URL_PATH" "$TOKEN_HS256" "$round"
    scenario gw_miss_es256 "$GW_PID" GET "$GW$LIST_URL_PATH" "$TOKEN_ES256" "$round"
    # Issue 24: a create through the gateway with the list cache off costs what it costs with
    # it on (the reference checks' lookups are kept either way).
    scenario gw_create_nocache_es256 "$GW_PID" POST "$GW/api/v1/partnerships" "$TOKEN_ES256" "$round"
    stop_pid "$GW_PID"

    start_gateway true
    check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256"
    check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256" HIT || die "gateway cache does not hit"
    check 201 POST "$GW/api/v1/partnerships" "$TOKEN_HS256"
    check 201 POST "$GW/api/v1/partnerships" "$TOKEN_ES256"
    scenario gw_hit_hs256 "$GW_PID" GET "$GW$LIST_URL_PATH" "$TOKEN_HS256" "$round" rss
    scenario gw_hit_es256 "$GW_PID" GET "$GW$LIST_URL_PATH" "$TOKEN_ES256" "$round" rss
    scenario gw_create_hs256 "$GW_PID" POST "$GW/api/v1/partnerships" "$TOKEN_HS256" "$round"
    scenario gw_create_es256 "$GW_PID" POST "$GW/api/v1/partnerships" "$TOKEN_ES256" "$round"
    stop_pid "$GW_PID"

    # The same gateway scenarios, in the same order, with the Redis state backend. Each
    # gateway starts on an empty Redis (no budget is kept: the key is "unlimited", but the
    # list generations, L2 entries and idempotency records of the previous one would be).
    rcli FLUSHALL >/dev/null
    start_gateway false redis
    check 200 GET "$GW$LIST_PATH" "$TOKEN_HS256"
    check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256"
    scenario gw_redis_miss_hs256 "$GW_PID" GET "$GW$LIST_URL_PATH" "$TOKEN_HS256" "$round"
    scenario gw_redis_miss_es256 "$GW_PID" GET "$GW$LIST_URL_PATH" "$TOKEN_ES256" "$round"
    stop_pid "$GW_PID"

    rcli FLUSHALL >/dev/null
    start_gateway true redis
    check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256"
    check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256" HIT || die "gateway (redis) cache does not hit"
    check 201 POST "$GW/api/v1/partnerships" "$TOKEN_HS256"
    check 201 POST "$GW/api/v1/partnerships" "$TOKEN_ES256"
    scenario gw_redis_hit_hs256 "$GW_PID" GET "$GW$LIST_URL_PATH" "$TOKEN_HS256" "$round" rss
    scenario gw_redis_hit_es256 "$GW_PID" GET "$GW$LIST_URL_PATH" "$TOKEN_ES256" "$round" rss
    scenario gw_redis_create_hs256 "$GW_PID" POST "$GW/api/v1/partnerships" "$TOKEN_HS256" "$round"
    scenario gw_redis_create_es256 "$GW_PID" POST "$GW/api/v1/partnerships" "$TOKEN_ES256" "$round"
    stop_pid "$GW_PID"
done

# Redis round trips per request: a fixed number of requests per scenario, one at a time on one
# connection, counted on the server (MONITOR, INFO commandstats / stats) by roundtrips.py.
# These count the budget's admit too, so the key has a budget here: the largest a sliding log
# may hold (1,000,000 a minute), which $RT_REQUESTS requests one at a time never reach.
RT_BUDGET=1000000
RT="$WORK/roundtrips.jsonl"
: >"$RT"
RT_TAG=$(openssl rand -hex 4)
rt() {
    log "round trips: $1 ($RT_REQUESTS requests)"
    python3 "$BENCH_DIR/roundtrips.py" --redis-port "$REDIS_PORT" --gateway "$GW" \
        --token "$TOKEN_ES256" --body "$CREATE_BODY" --requests "$RT_REQUESTS" --tag "$RT_TAG" \
        --scenario "$1" --out "$RT" || die "round-trip count $1 failed"
}
rcli FLUSHALL >/dev/null
start_gateway false redis "$RT_BUDGET"
check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256"
rt miss_cache_off
stop_pid "$GW_PID"
rcli FLUSHALL >/dev/null
start_gateway true redis "$RT_BUDGET"
check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256"
check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256" HIT || die "gateway (redis) cache does not hit"
rt hit
rt miss_cache_on
# A restarted gateway (an empty local cache) asks for the lists miss_cache_on put in the L2.
stop_pid "$GW_PID"
start_gateway true redis "$RT_BUDGET"
rt l2_hit
rt create
rt create_idem
stop_pid "$GW_PID"

# What the report's header line says about the setup.
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
    echo "kernel=$(uname -sr)"
    echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "gateway=$GATEWAY_REV (the worktree at run time)"
    echo "gateway_built=$(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
    echo "clk_tck=$CLK_TCK"
    echo "duration=$DURATION"
    echo "lat_duration=$LAT_DURATION"
    echo "warmup=$WARMUP"
    echo "runs=$RUNS"
    echo "conns=$CONNS"
    echo "server_cpu=$SERVER_CPU"
    echo "client_cpu=$CLIENT_CPU"
    echo "gateway_threads=${BENCH_GATEWAY_THREADS:-1}"
    echo "nice=$NICE"
    echo "autogroup=$(cat "/proc/$UPSTREAM_PID/autogroup" 2>/dev/null || echo none)"
    echo "body_bytes=$(wc -c <"$BENCH_DIR/partnerships.json")"
    echo "redis=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
    echo "rt_requests=$RT_REQUESTS"
} >"$WORK/meta.txt"

mkdir -p "$(dirname "$RESULTS")"
python3 "$BENCH_DIR/report.py" "$WORK" >"$WORK/report.md"
cp "$WORK/report.md" "$RESULTS"
cat "$WORK/report.md"
log "written: $RESULTS (raw: $WORK)"
