# shellcheck shell=bash
# Helpers shared by scripts/check-prometheus.sh, scripts/check-openapi.sh and bench/soak.sh
# (sourced, not run). The caller sets CHECK_NAME (the prefix of its messages; bench/soak.sh
# defines its own log, die and stop_pid after sourcing this) and PROM_PID when it starts
# Prometheus; start_stack sets SIM_PID and GW_PID.

log() { printf '==> %s\n' "$*"; }
die() { printf '%s: FAIL: %s\n' "$CHECK_NAME" "$*" >&2; exit 1; }

# stop_pid PID NAME: SIGTERM, up to 10s to exit, then SIGKILL.
stop_pid() {
  local pid=$1 name=$2 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf '%s: %s (pid %s) ignored SIGTERM; killing it\n' "$CHECK_NAME" "$name" "$pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# stop_stack: stops what start_stack started (the gateway first, then the simulator).
stop_stack() {
  stop_pid "${GW_PID:-}" "journeybee-gateway serve"
  stop_pid "${SIM_PID:-}" journeybee-sim
}

# tail_logs DIR LINES FILE...: the last LINES lines of each non-empty DIR/FILE, on stderr (a
# failed run's context).
tail_logs() {
  local dir=$1 lines=$2 f
  shift 2
  for f in "$@"; do
    if [ -s "$dir/$f" ]; then
      printf '\n----- last lines of %s -----\n' "$f" >&2
      tail -n "$lines" "$dir/$f" >&2
    fi
  done
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2s until it succeeds; fails
# at once if the simulator, the gateway (or Prometheus) it waits on has exited.
wait_until() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "${SIM_PID:-}" ] && ! kill -0 "$SIM_PID" 2>/dev/null; then
      die "the simulator (journeybee-sim) exited while waiting for: $what"
    fi
    if [ -n "${GW_PID:-}" ] && ! kill -0 "$GW_PID" 2>/dev/null; then
      die "the gateway exited while waiting for: $what"
    fi
    if [ -n "${PROM_PID:-}" ] && ! kill -0 "$PROM_PID" 2>/dev/null; then
      die "prometheus exited while waiting for: $what"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for: $what"
    sleep 0.2
  done
}

# ------------------------------------------------------------------ the stack
# What runs in production, on loopback: the JourneyBee simulator as a process of its own (the
# `journeybee-sim` binary) and in front of it the gateway binary (built as the image is, with
# `--no-default-features`) running `serve --config` on a config written here. The config is
# the one `journeybee-gateway demo` writes (src/demo.rs `demo_config`): alice (write) and bob
# (read) mapped to the simulator's first two user ids, the simulator's own domains as
# [validation] own_domains, per-user metrics, keys and the HS256 secret in files next to it;
# plus JSON logs, so that the addresses are read from the "gateway listening" line (both
# listeners bind port 0: no port is picked in advance, so none can be taken meanwhile).

# The issuer and audience of the tokens (those of src/demo.rs).
STACK_ISSUER=journeybee-gateway-demo
STACK_AUDIENCE=journeybee-gateway

# stack_binaries GATEWAY [SIM]: resolves and checks the two binaries into GW_BIN and SIM_BIN
# (absolute paths). GATEWAY empty: target/release/journeybee-gateway, else target/debug/.
# SIM empty: journeybee-sim next to the gateway binary.
stack_binaries() {
  local gw=${1:-} sim=${2:-} root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ -z "$gw" ]; then
    if [ -x "$root/target/release/journeybee-gateway" ]; then
      gw=$root/target/release/journeybee-gateway
    elif [ -x "$root/target/debug/journeybee-gateway" ]; then
      gw=$root/target/debug/journeybee-gateway
    else
      die "no gateway binary: build with 'cargo build --release --no-default-features' and 'cargo build --release -p journeybee-sim', or pass its path"
    fi
  fi
  [ -x "$gw" ] || die "$gw is not an executable file"
  GW_BIN=$(cd "$(dirname "$gw")" && pwd)/$(basename "$gw")
  [ -n "$sim" ] || sim=$(dirname "$GW_BIN")/journeybee-sim
  [ -x "$sim" ] || die "no simulator binary $sim: build it with 'cargo build --release -p journeybee-sim' (or pass its path)"
  SIM_BIN=$(cd "$(dirname "$sim")" && pwd)/$(basename "$sim")
  if "$GW_BIN" demo --help >/dev/null 2>&1; then
    log "note: $GW_BIN has the demo feature (the image is built with --no-default-features); only its serve command is used"
  fi
}

# stack_listening LOG: prints "ADDR ADMIN_ADDR" from the gateway's JSON "gateway listening"
# line; fails while there is none.
stack_listening() {
  python3 - "$1" <<'PY'
import json, sys
with open(sys.argv[1], errors="replace") as f:
    for line in f:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("message") == "gateway listening":
            print(event["addr"], event["admin_addr"])
            sys.exit(0)
sys.exit(1)
PY
}

# start_stack WORK ENV_FILE: starts $SIM_BIN and $GW_BIN (see stack_binaries) with their files
# in WORK (sim.env, sim.log, gateway/gateway.toml and its secrets, gateway.log), waits until
# the gateway is ready, and writes ENV_FILE with the KEY=value lines of the demo's
# --env-file: JBGW_URL, JBGW_ADMIN_URL, SIM_URL, READ_TOKEN (bob), WRITE_TOKEN (alice),
# JBGW_CONFIG_FILE. Sets SIM_PID and GW_PID; the caller stops them (stop_pid) on exit.
start_stack() {
  local work=$1 env_out=$2 dir key value
  local sim_url='' read_key='' write_key='' user_ids='' domains=''
  local alice bob own addrs addr admin tokens read_token write_token
  [ -d "$work" ] || die "start_stack: no directory $work"
  dir=$work/gateway
  log "starting $SIM_BIN (loopback, 100 requests/min per key, control endpoints on)"
  env -u SIM_LISTEN -u RUST_LOG "$SIM_BIN" --listen 127.0.0.1:0 --rate-limit 100 \
    --record-limit 1000 --env-file "$work/sim.env" >"$work/sim.log" 2>&1 &
  SIM_PID=$!
  wait_until 30 "the simulator's env file ($work/sim.env)" test -s "$work/sim.env"
  while IFS='=' read -r key value; do
    case $key in
      SIM_URL) sim_url=$value ;;
      SIM_READ_KEY) read_key=$value ;;
      SIM_WRITE_KEY) write_key=$value ;;
      SIM_USER_IDS) user_ids=$value ;;
      SIM_COMPANY_DOMAINS) domains=$value ;;
    esac
  done <"$work/sim.env"
  if [ -z "$sim_url" ] || [ -z "$read_key" ] || [ -z "$write_key" ] || [ -z "$user_ids" ] \
    || [ -z "$domains" ]; then
    die "the simulator's env file lacks one of SIM_URL, SIM_READ_KEY, SIM_WRITE_KEY, SIM_USER_IDS, SIM_COMPANY_DOMAINS (an older journeybee-sim?)"
  fi
  case $sim_url in
    http://127.0.0.1:*) ;;
    *) die "refusing a non-loopback simulator address: $sim_url" ;;
  esac
  # As the demo: alice is the first user id, bob the second (the first again if only one).
  IFS=, read -r alice bob _ <<<"$user_ids,"
  [[ $alice =~ ^[0-9]+$ ]] || die "bad SIM_USER_IDS: $user_ids"
  [[ $bob =~ ^[0-9]+$ ]] || bob=$alice
  own=${domains//,/\", \"}

  # The gateway's config, its secrets in files next to it (never inline).
  mkdir -p "$dir"
  chmod 700 "$dir"
  (
    umask 077
    printf '%s' "$read_key" >"$dir/read.key"
    printf '%s' "$write_key" >"$dir/write.key"
    python3 -c 'import secrets; print(secrets.token_hex(32), end="")' >"$dir/jwt.secret"
  ) || die "cannot write the gateway's secrets in $dir"
  cat >"$dir/gateway.toml" <<TOML
# Written by scripts/lib.sh (start_stack): the config of \`journeybee-gateway demo\`, served by
# \`journeybee-gateway serve\` in front of the journeybee-sim process at $sim_url.
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace = "5s"

# JSON lines: the listening addresses are read from the "gateway listening" event.
[log]
level = "info"
format = "json"

[upstream]
base_url = "$sim_url"

[upstream.keys.read]
secret_file = "read.key"
read = true
write = false

[upstream.keys.write]
secret_file = "write.key"
read = true
write = true

[auth]
algorithms = ["HS256"]
issuer = "$STACK_ISSUER"
audience = "$STACK_AUDIENCE"

[[auth.keys]]
hmac_secret_file = "jwt.secret"

[[users]]
subject = "alice@example.com"
name = "alice"
upstream_key = "write"
user_id = $alice
access = "write"

[[users]]
subject = "bob@example.com"
name = "bob"
upstream_key = "read"
user_id = $bob
access = "read"

[validation]
own_domains = ["$own"]

[metrics]
per_user = true
TOML
  "$GW_BIN" check-config "$dir/gateway.toml" >"$work/check-config.out" 2>&1 \
    || die "the generated gateway config is refused: $(cat "$work/check-config.out")"

  log "starting $GW_BIN serve --config $dir/gateway.toml"
  # RUST_LOG would override the configured level (and could hide the listening line).
  env -u RUST_LOG -u JBGW_CONFIG "$GW_BIN" serve --config "$dir/gateway.toml" \
    >"$work/gateway.log" 2>&1 &
  GW_PID=$!
  wait_until 30 "the gateway's \"gateway listening\" log line" stack_listening "$work/gateway.log"
  addrs=$(stack_listening "$work/gateway.log")
  read -r addr admin <<<"$addrs"
  case "$addr $admin" in
    "127.0.0.1:"*" 127.0.0.1:"*) ;;
    *) die "refusing non-loopback gateway addresses: $addrs" ;;
  esac
  wait_until 30 "gateway readiness (http://$admin/readyz)" \
    curl -sS -f --noproxy '*' --max-time 5 "http://$admin/readyz"

  # Tokens valid 12 h, as the demo's: bob (read) and alice (write).
  tokens=$(python3 - "$dir/jwt.secret" "$STACK_ISSUER" "$STACK_AUDIENCE" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret = open(sys.argv[1], "rb").read()
issuer, audience = sys.argv[2], sys.argv[3]
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def mint(sub):
    now = int(time.time())
    claims = {"sub": sub, "iss": issuer, "aud": audience, "iat": now, "exp": now + 12 * 3600}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"
print(mint("bob@example.com"), mint("alice@example.com"))
PY
  ) || die "cannot mint the tokens"
  read -r read_token write_token <<<"$tokens"
  # Written whole then renamed, so a reader never sees half a file.
  printf 'JBGW_URL=http://%s\nJBGW_ADMIN_URL=http://%s\nSIM_URL=%s\nREAD_TOKEN=%s\nWRITE_TOKEN=%s\nJBGW_CONFIG_FILE=%s\n' \
    "$addr" "$admin" "$sim_url" "$read_token" "$write_token" "$dir/gateway.toml" >"$env_out.tmp"
  mv "$env_out.tmp" "$env_out"
  log "simulator $sim_url (pid $SIM_PID; user ids $user_ids), gateway http://$addr, admin http://$admin (pid $GW_PID)"
}
