# Shared by bench/run.sh and bench/profile.sh: dependency check, the generated configs, and
# starting/stopping the upstream nginx, the peer nginx and the gateway. Sourced, not executed.
# Everything listens on 127.0.0.1 only; every process started is recorded in BENCH_PIDS and
# killed by bench_cleanup (installed as an EXIT trap by the caller).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
BIN="$ROOT/target/release/journeybee-gateway"
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
# Servers and wrk run at this nice level (when allowed) so that other work on the machine (a
# build, say) takes as little of the two cores as possible. BENCH_NICE=0 turns it off.
NICE=${BENCH_NICE:--15}
ISSUER="https://idp.bench.test"
AUDIENCE="journeybee-gateway"
SUBJECT="bench@corp.test"
USER_ID=456
LIST_PATH="/api/v1/partnerships?view=referral&search=tech"
BENCH_PIDS=()
TMP=""

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs what is missing: one `apt-get update`, then one `apt-get install`.
bench_install_deps() {
    local need=()
    command -v wrk >/dev/null || need+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
    command -v taskset >/dev/null || need+=(util-linux)
    command -v openssl >/dev/null || need+=(openssl)
    command -v python3 >/dev/null || need+=(python3)
    command -v curl >/dev/null || need+=(curl)
    # The Redis state backend's scenarios (Debian's redis-server brings redis-cli).
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v redis-cli >/dev/null || need+=(redis-tools)
    if [ "${#need[@]}" -gt 0 ]; then
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get: install them yourself"
        log "installing ${need[*]} (apt-get)"
        "${sudo[@]}" apt-get update
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${need[@]}"
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
    command -v nginx >/dev/null || die "nginx not found after install"
    command -v redis-server >/dev/null || die "redis-server not found after install"
}

bench_check_cpus() {
    local n
    n=$(nproc --all)
    if [ "$n" -lt 2 ] && [ "$SERVER_CPU" = "$CLIENT_CPU" ]; then
        log "warning: one CPU only: servers and wrk share it, figures are not per-core"
    fi
    for c in "$SERVER_CPU" "$CLIENT_CPU"; do
        taskset -c "$c" true 2>/dev/null || die "cannot pin to CPU $c (set BENCH_SERVER_CPU / BENCH_CLIENT_CPU)"
    done
    if ! nice -n "$NICE" true 2>/dev/null || [ "$(nice -n "$NICE" nice)" != "$((NICE < -20 ? -20 : NICE))" ]; then
        log "note: cannot run at nice $NICE (not root?): running at the default priority"
        NICE=0
    fi
}

# "${PRIO[@]}" <nice> <cpu> <command...>: execs the command in its own session, pinned to <cpu>,
# at nice <nice>. The own session matters: with autogroup scheduling (the default on many
# kernels) nice only ranks processes within one session's group, so the group's own nice is set
# too (/proc/self/autogroup); a build running in another terminal then cannot take the cores.
# setsid does not fork here (the caller is never a process-group leader), so $! is the pid.
# shellcheck disable=SC2016
PRIO=(setsid bash -c 'n=$1 c=$2; shift 2; [ "$n" = 0 ] || echo "$n" >/proc/self/autogroup 2>/dev/null; exec nice -n "$n" taskset -c "$c" "$@"' prio)

# pin <cpu> <command...>: runs the command (in the foreground) like PRIO.
pin() {
    local cpu=$1
    shift
    "${PRIO[@]}" "$NICE" "$cpu" "$@"
}

# Fails unless pid $1 is running an executable named $2 (or $3...): guards against a forked
# wrapper.
check_exe() {
    local pid=$1 exe name
    shift
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    for name in "$@"; do
        [ "$(basename "$exe")" = "$name" ] && return 0
    done
    die "pid $pid runs '$exe', not $*"
}

bench_build() {
    if [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && [ -x "$BIN" ]; then
        log "BENCH_SKIP_BUILD=1: using the existing $BIN"
        return
    fi
    # What ships: the image's build, without the demo feature (and so without the simulator).
    log "cargo build --release --no-default-features"
    (cd "$ROOT" && cargo build --release --no-default-features --quiet) ||
        die "cargo build --release failed"
}

# A free loopback TCP port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Kills every process this run started, TERM first, KILL after 5 s; removes the temp dir.
bench_cleanup() {
    local pid i
    for pid in "${BENCH_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
    if [ -n "$TMP" ] && [ -d "$TMP" ] && [ "${BENCH_KEEP_TMP:-0}" != 1 ]; then
        rm -rf "$TMP"
    fi
}

# Stops one process started by this run (the gateways are started and stopped per phase).
stop_pid() {
    local pid=$1 i rest=()
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
    BENCH_PIDS=("${rest[@]}")
}

# Waits (bounded, 10 s) until something accepts on 127.0.0.1:$1; fails if $2 (a pid) died.
wait_port() {
    local port=$1 pid=$2 i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The temp dir: secrets, keys, configs, nginx prefix, the list fixture, tokens.
bench_prepare() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/jbgw-bench.XXXXXX")
    chmod 700 "$TMP"
    mkdir -p "$TMP/www" "$TMP/upstream" "$TMP/proxy/cache" "$TMP/redis"
    cp "$BENCH_DIR/partnerships.json" "$TMP/www/partnerships.json"
    # Secrets in files, never inline in the gateway config.
    UPSTREAM_KEY="jb_api_$(openssl rand -hex 16)"
    printf '%s' "$UPSTREAM_KEY" >"$TMP/journeybee-write.key"
    openssl rand -hex 32 | tr -d '\n' >"$TMP/jwt-hmac.secret"
    openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/es256-private.pem" 2>/dev/null
    openssl ec -in "$TMP/es256-private.pem" -pubout -out "$TMP/es256-public.pem" 2>/dev/null
    chmod 600 "$TMP"/*.key "$TMP"/*.secret "$TMP"/*.pem
    TOKEN_HS256=$(python3 "$BENCH_DIR/mint_jwt.py" --alg HS256 --key "$TMP/jwt-hmac.secret" \
        --sub "$SUBJECT" --iss "$ISSUER" --aud "$AUDIENCE")
    TOKEN_ES256=$(python3 "$BENCH_DIR/mint_jwt.py" --alg ES256 --key "$TMP/es256-private.pem" \
        --sub "$SUBJECT" --iss "$ISSUER" --aud "$AUDIENCE")
    # A private copy: a rebuild during the run (someone else's cargo build) cannot swap it.
    cp "$BIN" "$TMP/journeybee-gateway"
    BIN="$TMP/journeybee-gateway"
    GATEWAY_REV="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+uncommitted')"
    UPSTREAM_PORT=$(free_port)
    PLAIN_PORT=$(free_port)
    CACHE_PORT=$(free_port)
    GW_PORT=$(free_port)
    GW_ADMIN_PORT=$(free_port)
    REDIS_PORT=$(free_port)
}

# The static upstream: 200 + the ~2 KB list for GET, 201 for POST, and the lookups the
# gateway checks a create's references against (tier 2, category 3, tags 10 and 11, no custom
# fields), so the create path runs with the production default `check_references = true`
# (each lookup is fetched once, then cached for `lookup_ttl`).
write_upstream_conf() {
    cat >"$TMP/upstream/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/upstream/nginx.pid;
error_log $TMP/upstream/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    client_body_temp_path $TMP/upstream/body;
    proxy_temp_path $TMP/upstream/proxy;
    fastcgi_temp_path $TMP/upstream/fastcgi;
    uwsgi_temp_path $TMP/upstream/uwsgi;
    scgi_temp_path $TMP/upstream/scgi;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
        location = /api/v1/partnerships {
            default_type application/json;
            if (\$request_method = POST) {
                return 201 '{"status":"created","message":"Partnership created successfully"}';
            }
            root $TMP/www;
            try_files /partnerships.json =404;
        }
        location = /api/v1/tiers {
            default_type application/json;
            return 200 '[{"id":2,"name":"Gold"}]';
        }
        location = /api/v1/categories {
            default_type application/json;
            return 200 '[{"id":3,"name":"Resellers"}]';
        }
        location = /api/v1/tags {
            default_type application/json;
            return 200 '[{"id":10,"name":"emea"},{"id":11,"name":"saas"}]';
        }
        location = /api/v1/custom-fields {
            default_type application/json;
            return 200 '[]';
        }
        location / {
            default_type application/json;
            return 404 '{"error":"Not found"}';
        }
    }
}
EOF
}

# The peer: nginx as a plain proxy (key injected, upstream keepalive) and as a proxy_cache.
write_proxy_conf() {
    local proxy_common="proxy_pass http://journeybee;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Authorization \"Bearer $UPSTREAM_KEY\";"
    cat >"$TMP/proxy/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/proxy/nginx.pid;
error_log $TMP/proxy/error.log warn;
events { worker_connections 4096; }
http {
    # Production settings for the peer as for the gateway: every request logged.
    access_log $TMP/proxy/access.log;
    server_tokens off;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $TMP/proxy/body;
    proxy_temp_path $TMP/proxy/tmp;
    fastcgi_temp_path $TMP/proxy/fastcgi;
    uwsgi_temp_path $TMP/proxy/uwsgi;
    scgi_temp_path $TMP/proxy/scgi;
    upstream journeybee {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 100000000;
    }
    proxy_cache_path ${BENCH_NGINX_CACHE_DIR:-$TMP/proxy/cache} levels=1:2 keys_zone=jb_lists:10m max_size=64m inactive=10m use_temp_path=off;
    server {
        listen 127.0.0.1:$PLAIN_PORT backlog=4096;
        location / {
            $proxy_common
        }
    }
    server {
        listen 127.0.0.1:$CACHE_PORT backlog=4096;
        location / {
            $proxy_common
            proxy_cache jb_lists;
            proxy_cache_key \$request_uri;
            proxy_cache_valid 200 30s;
            proxy_cache_lock on;
            add_header X-Cache \$upstream_cache_status always;
        }
    }
}
EOF
}

# The gateway config; $1 = true|false for [cache] enabled, $2 = memory (default) | redis for
# [state] backend, $3 = the key's requests_per_minute ("unlimited" by default: no budget).
# Secrets are files next to it.
write_gateway_conf() {
    local cache=$1 backend=${2:-memory} budget=${3:-'"unlimited"'}
    local out="$TMP/gateway-cache-$1-${2:-memory}.toml"
    cat >"$out" <<EOF
# Generated by bench/run.sh.
[server]
listen = "127.0.0.1:$GW_PORT"
admin_listen = "127.0.0.1:$GW_ADMIN_PORT"
shutdown_grace = "2s"

# Production settings: one JSON access-log line per request (and an audit line per create).
[log]
level = "info"
format = "json"

[upstream]
base_url = "http://127.0.0.1:$UPSTREAM_PORT"

[upstream.keys.write]
secret_file = "journeybee-write.key"
read = true
write = true
# JourneyBee's real budget is 100/min; the benchmark measures the proxy, not the budget, so
# the key has none ("unlimited": no sliding log, no store call for it; an upstream 429 would
# still pause the key). Only the Redis round-trip counts set one, to count its admit.
requests_per_minute = $budget

[auth]
algorithms = ["HS256", "ES256"]
issuer = "$ISSUER"
audience = "$AUDIENCE"

[[auth.keys]]
hmac_secret_file = "jwt-hmac.secret"

[[auth.keys]]
public_key_file = "es256-public.pem"

[[users]]
subject = "$SUBJECT"
name = "bench"
upstream_key = "write"
user_id = $USER_ID
access = "write"

[validation]
own_domains = ["corp.test"]

[cache]
enabled = $cache
EOF
    if [ "$backend" = redis ]; then
        # The bench's redis-server has no password, so the URL may be inline.
        cat >>"$out" <<EOF

[state]
backend = "redis"
url = "redis://127.0.0.1:$REDIS_PORT/0"
command_timeout = "50ms"
key_prefix = "jbgw-bench"
EOF
    fi
    echo "$out"
}

start_upstream() {
    write_upstream_conf
    "${PRIO[@]}" "$NICE" "$SERVER_CPU" nginx -p "$TMP/upstream/" -c "$TMP/upstream/nginx.conf" \
        -e "$TMP/upstream/error.log" >"$TMP/upstream/stdout.log" 2>&1 &
    UPSTREAM_PID=$!
    BENCH_PIDS+=("$UPSTREAM_PID")
    wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" || {
        cat "$TMP/upstream/stdout.log" "$TMP/upstream/error.log" >&2 2>/dev/null
        die "upstream nginx did not start"
    }
    check_exe "$UPSTREAM_PID" nginx
}

start_proxy() {
    write_proxy_conf
    "${PRIO[@]}" "$NICE" "$SERVER_CPU" nginx -p "$TMP/proxy/" -c "$TMP/proxy/nginx.conf" \
        -e "$TMP/proxy/error.log" >"$TMP/proxy/stdout.log" 2>&1 &
    PROXY_PID=$!
    BENCH_PIDS+=("$PROXY_PID")
    wait_port "$PLAIN_PORT" "$PROXY_PID" && wait_port "$CACHE_PORT" "$PROXY_PID" || {
        cat "$TMP/proxy/stdout.log" "$TMP/proxy/error.log" >&2 2>/dev/null
        die "peer nginx did not start"
    }
    check_exe "$PROXY_PID" nginx
}

# A local redis-server for the Redis state backend: loopback, no persistence (`--save ''
# --appendonly no`), pinned with the other servers. Sets REDIS_PID.
start_redis() {
    "${PRIO[@]}" "$NICE" "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save '' --appendonly no --daemonize no --dir "$TMP/redis" \
        --logfile "$TMP/redis/redis.log" >"$TMP/redis/stdout.log" 2>&1 &
    REDIS_PID=$!
    BENCH_PIDS+=("$REDIS_PID")
    local i
    for i in $(seq 1 100); do
        [ "$(rcli PING 2>/dev/null)" = PONG ] && break
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ "$(rcli PING 2>/dev/null)" = PONG ] || {
        cat "$TMP/redis/stdout.log" "$TMP/redis/redis.log" >&2 2>/dev/null
        die "redis-server did not start"
    }
    # Debian's redis-server is a symlink to redis-check-rdb.
    check_exe "$REDIS_PID" redis-server redis-check-rdb
}

# rcli <command...>: redis-cli against the bench's redis-server (control only, not pinned).
rcli() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}

# $1 = true|false (cache), $2 = memory (default) | redis (state backend), $3 = the key's
# requests_per_minute (default "unlimited"). Sets GW_PID. One tokio worker thread
# (TOKIO_WORKER_THREADS), pinned.
start_gateway() {
    local conf
    conf=$(write_gateway_conf "$1" "${2:-memory}" "${3:-\"unlimited\"}")
    "$BIN" check-config "$conf" >/dev/null || die "generated config $conf refused"
    env -u RUST_LOG TOKIO_WORKER_THREADS="${BENCH_GATEWAY_THREADS:-1}" \
        "${PRIO[@]}" "$NICE" "$SERVER_CPU" "$BIN" serve --config "$conf" >>"$TMP/gateway.log" 2>&1 &
    GW_PID=$!
    BENCH_PIDS+=("$GW_PID")
    wait_port "$GW_PORT" "$GW_PID" || { cat "$TMP/gateway.log" >&2; die "gateway did not start"; }
    check_exe "$GW_PID" "$(basename "$BIN")"
    local i
    for i in $(seq 1 50); do
        "$BIN" healthcheck --url "http://127.0.0.1:$GW_ADMIN_PORT/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "gateway not ready"
}

# The create body: passes the gateway's validation (business domain, referral, inactive).
CREATE_BODY='{"name":"Some Company Ltd","emails":[{"email":"jane.doe@some-company.com","firstName":"Jane","lastName":"Doe"}],"partnerType":"referral","tierId":2,"categoryId":3,"countryId":1,"tags":[10,11],"inactive":true}'

# check <expected status> <method> <url> <token> [<expected X-Cache>]: one request with curl.
check() {
    local want=$1 method=$2 url=$3 token=$4 want_cache=${5:-} out status xcache
    if [ "$method" = POST ]; then
        out=$(curl -sS -o "$TMP/check.body" -D - -X POST -H "Authorization: Bearer $token" \
            -H 'Content-Type: application/json' --data "$CREATE_BODY" "$url")
    else
        out=$(curl -sS -o "$TMP/check.body" -D - -H "Authorization: Bearer $token" "$url")
    fi
    # awk reads all its input: `head -1` here could exit before bash's (line-buffered) printf
    # finished writing, and under pipefail that SIGPIPE (141) ended the whole run.
    status=$(printf '%s\n' "$out" | awk 'NR == 1 {print $2}')
    xcache=$(printf '%s' "$out" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
    if [ "$status" != "$want" ]; then
        log "check failed: $method $url -> $status (want $want): $(head -c 300 "$TMP/check.body")"
        return 1
    fi
    if [ -n "$want_cache" ] && [ "$xcache" != "$want_cache" ]; then
        log "check failed: $method $url -> X-Cache '$xcache' (want $want_cache)"
        return 1
    fi
    if [ "$method" = GET ] && ! cmp -s "$TMP/check.body" "$BENCH_DIR/partnerships.json"; then
        log "check failed: $url body differs from the fixture"
        return 1
    fi
}

# Busy and steal ticks of one CPU from /proc/stat: "<busy> <steal>" (busy excludes idle, iowait).
cpu_core_ticks() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $9 }' /proc/stat
}

# utime+stime of a process (all its threads), in clock ticks.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
