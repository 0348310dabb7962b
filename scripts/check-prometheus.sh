#!/usr/bin/env bash
# Checks the gateway's metrics, the Grafana dashboard and the alert rules against a real
# Prometheus:
#
#   1. promtool check rules / test rules on dashboards/alerts.yml and alerts_test.yml;
#   2. static checks of dashboards/journeybee-gateway.json (datasource variable on every panel);
#   3. starts the production shape on loopback (scripts/lib.sh start_stack): the simulator as its
#      own process (`journeybee-sim`) and the gateway binary (built like the image, without the
#      `demo` feature) running `serve --config` on the demo's config, and drives traffic of
#      every kind through it with curl (lists: miss, hit, bypass; creates: 201, 409; 400, 406,
#      413, 415 validation rejections; 401 for missing, malformed, mis-signed, expired tokens;
#      403 for a read user creating, a foreign userId, an unmapped user; 404, 405; upstream 429);
#   4. `promtool check metrics` on the gateway's /metrics (any reported problem fails);
#   5. starts a second gateway on the same config whose state backend (Redis) is unreachable
#      (a degraded replica, which also serves HTTPS with a 7-day certificate) and its own Prometheus on a free loopback port (temporary storage,
#      generated config, 1s scrapes of both admin listeners, alerts.yml loaded), drives more
#      traffic between scrapes, and exhausts the simulator's rate limit (an upstream 429);
#   6. evaluates every panel query of the dashboard (and every template-variable query) through
#      Prometheus's HTTP API, failing on an error or an empty result, and fails if an expression
#      of the dashboard or the alert rules names a metric the gateway does not export; checks
#      that every alert rule evaluates without error against the live data, and that the
#      upstream 429 provoked above puts JourneyBeeUpstreamRateLimited in pending (and the
#      degraded replica JourneyBeeStateBackendDegraded and JourneyBeeTLSCertificateExpiringSoon).
#
# Usage: scripts/check-prometheus.sh [path/to/journeybee-gateway [path/to/journeybee-sim]]
#        (default target/release/journeybee-gateway, else target/debug/journeybee-gateway; the
#        simulator next to it. Build both with `cargo build --release --no-default-features`
#        and `cargo build --release -p journeybee-sim`, as scripts/test.sh does.)
#
# Installs Debian's `prometheus` package (and curl/python3 when missing) if promtool or
# prometheus is not on PATH; that needs root. The package's own service is never used (its
# start is suppressed during the install when possible). Everything listens on 127.0.0.1 only,
# every wait is bounded, and every process started here is stopped on exit.
# Set KEEP_WORK=1 to keep the temporary directory (logs, metrics, Prometheus config).
set -euo pipefail

CHECK_NAME=check-prometheus
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# ------------------------------------------------------------------ arguments and paths
stack_binaries "${1:-}" "${2:-}" # GW_BIN, SIM_BIN
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DASHBOARD=$ROOT/dashboards/journeybee-gateway.json
RULES=$ROOT/dashboards/alerts.yml
RULE_TESTS=$ROOT/dashboards/alerts_test.yml
for f in "$DASHBOARD" "$RULES" "$RULE_TESTS"; do
  [ -f "$f" ] || die "missing $f"
done

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jbgw-check-prometheus.XXXXXX")
SIM_PID=
GW_PID=
DEGRADED_PID=
PROM_PID=
POLICY_RC_CREATED=


cleanup() {
  local rc=$?
  set +e
  stop_pid "$PROM_PID" prometheus
  stop_pid "$DEGRADED_PID" "journeybee-gateway serve (degraded replica)"
  stop_stack
  if [ -n "$POLICY_RC_CREATED" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$rc" -ne 0 ]; then
    tail_logs "$WORK" 40 sim.log gateway.log degraded.log prometheus.log
  fi
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    printf 'check-prometheus: work directory kept: %s\n' "$WORK" >&2
  else
    rm -rf "$WORK"
  fi
  if [ "$rc" -eq 0 ]; then
    printf 'check-prometheus: OK\n'
  else
    printf 'check-prometheus: FAILED (exit %s)\n' "$rc" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ------------------------------------------------------------------ tools
missing=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  missing+=(prometheus)
fi
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "need ${missing[*]}: run as root (apt-get) or install them first"
  command -v apt-get >/dev/null 2>&1 || die "need ${missing[*]} and there is no apt-get"
  log "installing ${missing[*]} (Debian packages)"
  # The package's service is not what this script uses: keep it from starting when nothing
  # else already decides (policy-rc.d exit 101 = "action forbidden").
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -q
  timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ -n "$POLICY_RC_CREATED" ]; then
    rm -f /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=
  fi
fi
for t in promtool prometheus curl python3; do
  command -v "$t" >/dev/null 2>&1 || die "$t is still missing"
done
log "$(promtool --version 2>&1 | head -n 1)"

CURL=(curl -sS --noproxy '*' --connect-timeout 5 --max-time 20)

# ------------------------------------------------------------------ 1. rules
log "promtool check rules dashboards/alerts.yml"
promtool check rules "$RULES"
log "promtool test rules dashboards/alerts_test.yml"
promtool test rules "$RULE_TESTS"

# ------------------------------------------------------------------ 2. dashboard, statically
log "static checks of dashboards/journeybee-gateway.json"
python3 - "$DASHBOARD" <<'PY'
import json, sys
path = sys.argv[1]
with open(path) as f:
    d = json.load(f)
errors = []
variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    errors.append("no `datasource` template variable of type datasource with query prometheus")
def uses_var(ref):
    return isinstance(ref, dict) and ref.get("uid") in ("${datasource}", "$datasource")
for name, v in variables.items():
    if v.get("type") == "query" and not uses_var(v.get("datasource")):
        errors.append(f"variable {name}: datasource is not ${{datasource}}")
def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))
ids = set()
n = 0
for p in walk(d.get("panels", [])):
    title = p.get("title", "?")
    if p.get("id") in ids:
        errors.append(f"panel {title}: duplicate id {p.get('id')}")
    ids.add(p.get("id"))
    if not uses_var(p.get("datasource")):
        errors.append(f"panel {title}: datasource is not ${{datasource}}")
    if p.get("type") == "row":
        continue
    n += 1
    targets = p.get("targets") or []
    if not targets:
        errors.append(f"panel {title}: no queries")
    for t in targets:
        if not uses_var(t.get("datasource")):
            errors.append(f"panel {title} [{t.get('refId')}]: datasource is not ${{datasource}}")
        if not (t.get("expr") or "").strip():
            errors.append(f"panel {title} [{t.get('refId')}]: empty expr")
for e in errors:
    print("  " + e, file=sys.stderr)
if errors:
    sys.exit(f"{len(errors)} problem(s) in {path}")
print(f"  {n} panels, schemaVersion {d.get('schemaVersion')}, variables: {', '.join(variables)}")
PY

# ------------------------------------------------------------------ 3. simulator and gateway
start_stack "$WORK" "$WORK/stack.env"

JBGW_URL='' JBGW_ADMIN_URL='' READ_TOKEN='' WRITE_TOKEN='' JBGW_CONFIG_FILE=''
while IFS='=' read -r key value; do
  case $key in
    JBGW_URL) JBGW_URL=$value ;;
    JBGW_ADMIN_URL) JBGW_ADMIN_URL=$value ;;
    READ_TOKEN) READ_TOKEN=$value ;;
    WRITE_TOKEN) WRITE_TOKEN=$value ;;
    JBGW_CONFIG_FILE) JBGW_CONFIG_FILE=$value ;;
  esac
done <"$WORK/stack.env"
for v in JBGW_URL JBGW_ADMIN_URL READ_TOKEN WRITE_TOKEN JBGW_CONFIG_FILE; do
  [ -n "${!v}" ] || die "the stack's env file has no $v"
done
for u in "$JBGW_URL" "$JBGW_ADMIN_URL"; do
  case $u in
    http://127.0.0.1:*) ;;
    *) die "refusing a non-loopback gateway address: $u" ;;
  esac
done
ADMIN_HOSTPORT=${JBGW_ADMIN_URL#http://}
ADMIN_HOSTPORT=${ADMIN_HOSTPORT%%/*}
wait_until 30 "gateway readiness ($JBGW_ADMIN_URL/readyz)" "${CURL[@]}" -f "$JBGW_ADMIN_URL/readyz"
log "gateway $JBGW_URL, admin $JBGW_ADMIN_URL"

# Extra tokens signed with the config's HMAC secret: expired, wrong issuer, unmapped subject.
EXPIRED_TOKEN='' WRONG_ISS_TOKEN='' UNMAPPED_TOKEN=''
SECRET_FILE=$(dirname "$JBGW_CONFIG_FILE")/jwt.secret
[ -r "$SECRET_FILE" ] || die "no $SECRET_FILE next to the gateway's config"
read -r EXPIRED_TOKEN WRONG_ISS_TOKEN UNMAPPED_TOKEN < <(python3 - "$SECRET_FILE" "$STACK_ISSUER" "$STACK_AUDIENCE" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret = open(sys.argv[1], "rb").read()
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def mint(claims):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"
now = int(time.time())
base = {"iss": sys.argv[2], "aud": sys.argv[3], "iat": now - 60}
print(
    mint({**base, "sub": "alice@example.com", "iat": now - 7200, "exp": now - 3600}),
    mint({**base, "sub": "alice@example.com", "iss": "https://evil.example", "exp": now + 600}),
    mint({**base, "sub": "mallory@example.com", "exp": now + 600}),
)
PY
)
[ -n "$UNMAPPED_TOKEN" ] || die "cannot mint the extra tokens"
# The write token with its signature's first character changed: a bad signature.
sig=${WRITE_TOKEN##*.}
if [ "${sig:0:1}" = A ]; then first=B; else first=A; fi
BAD_SIG_TOKEN=${WRITE_TOKEN%.*}.$first${sig:1}

# ------------------------------------------------------------------ traffic
# expect STATUS DESCRIPTION CURL-ARGS...: one request, which must answer STATUS.
LAST_HEADERS=$WORK/last.headers
LAST_BODY=$WORK/last.body
REQUESTS=0
expect() {
  local want=$1 what=$2 got
  shift 2
  got=$("${CURL[@]}" -o "$LAST_BODY" -D "$LAST_HEADERS" -w '%{http_code}' "$@") || got="(curl failed)"
  REQUESTS=$((REQUESTS + 1))
  if [ "$got" != "$want" ]; then
    printf '  %s: expected %s, got %s; body: %s\n' "$what" "$want" "$got" \
      "$(head -c 400 "$LAST_BODY" 2>/dev/null)" >&2
    die "unexpected status for: $what"
  fi
}
# expect_cache VALUE: the last response's X-Cache header.
expect_cache() {
  local got
  got=$(tr -d '\r' <"$LAST_HEADERS" | awk -F': *' 'tolower($1) == "x-cache" { print toupper($2) }')
  [ "$got" = "$1" ] || die "expected X-Cache: $1, got '${got:-none}'"
}

API=$JBGW_URL/api/v1/partnerships
READ=(-H "Authorization: Bearer $READ_TOKEN")
WRITE=(-H "Authorization: Bearer $WRITE_TOKEN")
JSON=(-H "Content-Type: application/json")
RUN_TAG=$$-$(date +%s)
BIG_BODY=$WORK/big.json
python3 -c 'import json; print(json.dumps({"name": "x" * 70000, "emails": [{"email": "a@big-body.example.com"}]}))' >"$BIG_BODY"

# drive ROUND: one round of every kind of request (about 6 upstream calls per round: the
# simulator allows 100 per minute per API key).
drive() {
  local r=$1 domain
  domain="jbgw-check-$RUN_TAG-$r.com"
  # Lists: a miss, then a hit for the same query; a bypass; another user's list.
  expect 200 "list (miss)" "${READ[@]}" "$API?view=all&search=round$r"
  expect_cache MISS
  expect 200 "list (hit)" "${READ[@]}" "$API?search=round$r&view=all"
  expect_cache HIT
  expect 200 "list (no-store)" "${READ[@]}" -H "Cache-Control: no-store" "$API?view=all"
  expect_cache BYPASS
  expect 200 "list as the write user" "${WRITE[@]}" "$API?view=referral"
  # Creates: accepted, then the same domain again (upstream 409).
  local body
  body=$(printf '{"name":"Check Partner %s","emails":[{"email":"ops@%s","firstName":"Ops"}],"partnerType":"referral","inactive":true}' "$r" "$domain")
  expect 201 "create" "${WRITE[@]}" "${JSON[@]}" -X POST -d "$body" "$API"
  expect 409 "create, domain already partnered (upstream 409)" "${WRITE[@]}" "${JSON[@]}" -X POST -d "$body" "$API"
  # Authorization: a read user creating, a foreign userId, an unmapped user.
  expect 403 "create as the read user" "${READ[@]}" "${JSON[@]}" -X POST -d "$body" "$API"
  expect 403 "list with another user's userId" "${READ[@]}" "$API?userId=987654321"
  if [ -n "$UNMAPPED_TOKEN" ]; then
    expect 403 "unmapped user" -H "Authorization: Bearer $UNMAPPED_TOKEN" "$API"
  fi
  # Authentication.
  expect 401 "no token" "$API"
  expect 401 "malformed token" -H "Authorization: Bearer not-a-jwt" "$API"
  expect 401 "bad signature" -H "Authorization: Bearer $BAD_SIG_TOKEN" "$API"
  if [ -n "$EXPIRED_TOKEN" ]; then
    expect 401 "expired token" -H "Authorization: Bearer $EXPIRED_TOKEN" "$API"
    expect 401 "wrong issuer" -H "Authorization: Bearer $WRONG_ISS_TOKEN" "$API"
  fi
  # Routing.
  expect 404 "unknown path" "${READ[@]}" "$JBGW_URL/api/v1/countries"
  expect 400 "non-numeric id" "${WRITE[@]}" -X DELETE "$JBGW_URL/api/v1/partnerships/abc"
  expect 405 "unserved method" "${WRITE[@]}" -X DELETE "$API"
  # Validation: bodies and queries refused before any upstream call.
  expect 400 "bad JSON" "${WRITE[@]}" "${JSON[@]}" -X POST -d '{"name": "Broken' "$API"
  expect 400 "not an object" "${WRITE[@]}" "${JSON[@]}" -X POST -d '[]' "$API"
  expect 400 "schema (no name, no emails)" "${WRITE[@]}" "${JSON[@]}" -X POST -d '{}' "$API"
  expect 406 "free-mail domain" "${WRITE[@]}" "${JSON[@]}" -X POST \
    -d '{"name":"Free Mail","emails":[{"email":"someone@gmail.com"}],"partnerType":"referral","inactive":true}' "$API"
  expect 415 "wrong content type" "${WRITE[@]}" -H "Content-Type: text/plain" -X POST -d 'hello' "$API"
  expect 413 "body too large" "${WRITE[@]}" "${JSON[@]}" -X POST --data-binary "@$BIG_BODY" "$API"
  expect 400 "unknown query parameter" "${READ[@]}" "$API?bogus=1"
  expect 400 "bad view" "${READ[@]}" "$API?view=everything"
  # The company-scoped create route (the simulator's company id is 123): a validation
  # rejection, so it is counted without spending a create.
  expect 400 "company create, bad JSON" "${WRITE[@]}" "${JSON[@]}" -X POST -d '{' \
    "$JBGW_URL/api/v1/companies/123/partnerships"
}

log "driving traffic (round 1)"
drive 1

# ------------------------------------------------------------------ 4. /metrics
METRICS=$WORK/metrics.txt
"${CURL[@]}" -f -o "$METRICS" "$JBGW_ADMIN_URL/metrics" || die "cannot fetch $JBGW_ADMIN_URL/metrics"
log "promtool check metrics ($(wc -l <"$METRICS") lines)"
lint_rc=0
promtool check metrics <"$METRICS" >"$WORK/lint.txt" 2>&1 || lint_rc=$?
if [ "$lint_rc" -ne 0 ] || [ -s "$WORK/lint.txt" ]; then
  sed 's/^/  /' "$WORK/lint.txt" >&2
  die "promtool check metrics reported problems (exit $lint_rc)"
fi
# The families the dashboard and the rules are built on must all be there.
for family in requests_total request_duration_seconds requests_in_flight upstream_requests_total \
  upstream_duration_seconds upstream_errors_total auth_failures_total authz_denials_total \
  validation_rejections_total cache_lookups_total cache_entries cache_bytes \
  cache_evictions_total cache_invalidations_total build_info budget_decisions_total \
  cache_stale_served_total cache_served_age_seconds; do
  grep -q "^# TYPE jbgw_$family " "$METRICS" || die "/metrics has no jbgw_$family"
done
grep -q '^# TYPE process_cpu_seconds_total ' "$METRICS" || die "/metrics has no process_* metrics"

# ------------------------------------------------------------------ 5. Prometheus
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# A second replica of the gateway's config whose state backend (Redis) is unreachable (a closed
# loopback port): it must start, serve degraded (/readyz 200, state "degraded"), export
# jbgw_state_backend_up 0, and so put JourneyBeeStateBackendDegraded in pending below. Its
# listeners bind port 0 too (the config is copied as is); its addresses come from its log.
TARGETS="\"$ADMIN_HOSTPORT\""
DEGRADED_ADMIN=''
DEAD_PORT=$(free_port)
DEGRADED_CONFIG=$(dirname "$JBGW_CONFIG_FILE")/degraded-replica.toml
# It also serves HTTPS ([server.tls]) with a self-signed certificate valid for 7 days: it
# exports jbgw_tls_cert_expiry_seconds and puts JourneyBeeTLSCertificateExpiringSoon in pending.
TLS_DIR=$(dirname "$JBGW_CONFIG_FILE")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$TLS_DIR/tls.key" -out "$TLS_DIR/tls.pem" >/dev/null 2>&1 || die "openssl could not make a test certificate"
python3 - "$JBGW_CONFIG_FILE" "$DEGRADED_CONFIG" "$DEAD_PORT" <<'PY'
import sys
src, dst, dead = sys.argv[1:4]
text = open(src).read()
# [server.tls] belongs to [server]: inserted before the next section.
text = text.replace("\n[upstream]\n", '\n[server.tls]\ncert_file = "tls.pem"\nkey_file = "tls.key"\n\n[upstream]\n', 1)
text += f'\n[state]\nbackend = "redis"\nurl = "redis://127.0.0.1:{dead}/0"\nkey_prefix = "check-prometheus"\n'
open(dst, "w").write(text)
PY
log "starting a degraded replica (state backend unreachable)"
env -u RUST_LOG -u JBGW_CONFIG "$GW_BIN" serve --config "$DEGRADED_CONFIG" >"$WORK/degraded.log" 2>&1 &
DEGRADED_PID=$!
wait_until 30 "the degraded replica's \"gateway listening\" log line" stack_listening "$WORK/degraded.log"
DEGRADED_ADMIN=$(stack_listening "$WORK/degraded.log" | cut -d' ' -f2)
case $DEGRADED_ADMIN in
  127.0.0.1:*) ;;
  *) die "refusing a non-loopback admin address of the degraded replica: $DEGRADED_ADMIN" ;;
esac
log "  degraded replica admin http://$DEGRADED_ADMIN (pid $DEGRADED_PID)"
degraded_ready() {
  "${CURL[@]}" -f "http://$DEGRADED_ADMIN/readyz" | python3 -c '
import json, sys
state = json.load(sys.stdin)["state"]
sys.exit(0 if state == {"backend": "redis", "status": "degraded"} else 1)'
}
wait_until 30 "the degraded replica ready and reporting state degraded" degraded_ready
TARGETS="$TARGETS, \"$DEGRADED_ADMIN\""

PROM_PORT=$(free_port)
PROM_URL=http://127.0.0.1:$PROM_PORT
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
scrape_configs:
  - job_name: journeybee-gateway
    metrics_path: /metrics
    static_configs:
      - targets: [$TARGETS]
EOF
promtool check config "$WORK/prometheus.yml" >/dev/null || die "generated prometheus.yml is invalid"
log "starting prometheus on $PROM_URL (scraping $ADMIN_HOSTPORT every 1s)"
prometheus \
  --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/tsdb" \
  --storage.tsdb.retention.time=1h \
  --web.listen-address="127.0.0.1:$PROM_PORT" \
  --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
wait_until 60 "prometheus ready ($PROM_URL/-/ready)" "${CURL[@]}" -f "$PROM_URL/-/ready"

# prom_value QUERY: the first sample's value of an instant query (empty when none).
prom_value() {
  "${CURL[@]}" -f -G "$PROM_URL/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")'
}
scraped_up() { [ "$(prom_value 'min(up{job="journeybee-gateway"})')" = 1 ]; }
scrapes_at_least() {
  local n
  n=$(prom_value 'count_over_time(up{job="journeybee-gateway"}[10m])')
  [ -n "$n" ] && [ "${n%.*}" -ge "$1" ]
}
wait_until 60 "a successful scrape of the gateway" scraped_up

# More traffic between scrapes, so that every rate() has at least two samples to work on.
for r in 2 3 4; do
  log "driving traffic (round $r)"
  drive "$r"
  sleep 1.5
done

# The upstream rate limit (429): the simulator allows 100 calls a minute per API key. Distinct
# list queries as the read user (each a cache miss) until a 429. When JourneyBee answers it,
# the gateway passes it on and counts it as an upstream 4xx on the list route, which is what
# JourneyBeeUpstreamRateLimited watches. A gateway that throttles locally first (its own 429,
# counted in a jbgw_*throttled_total counter) never lets the upstream say 429; that is fine,
# but then the alert's live check is skipped.
log "exhausting the read user's rate limit (expecting a 429)"
got429=''
for i in $(seq 1 250); do
  code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "${READ[@]}" "$API?view=all&search=ratelimit$i") || code=000
  REQUESTS=$((REQUESTS + 1))
  if [ "$code" = 429 ]; then got429=$i; break; fi
  [ "$code" = 200 ] || die "list $i answered $code while exhausting the rate limit"
done
[ -n "$got429" ] || die "no 429 after 250 uncached lists (is the simulator's rate limit off?)"
"${CURL[@]}" -f -o "$WORK/metrics-429.txt" "$JBGW_ADMIN_URL/metrics" || die "cannot fetch /metrics"
upstream_list_4xx=$(awk '/^jbgw_upstream_requests_total\{/ && /route="list"/ && /status_class="4xx"/ { n += $2 } END { print n + 0 }' "$WORK/metrics-429.txt")
throttled=$(awk '/^jbgw_[a-z_]*throttled_total[{ ]/ { n += $NF } END { print n + 0 }' "$WORK/metrics-429.txt")
EXPECT_RATE_LIMIT_ALERT=0
if [ "$upstream_list_4xx" != 0 ]; then
  log "  429 after $got429 lists: JourneyBee's, counted as upstream list 4xx ($upstream_list_4xx)"
  EXPECT_RATE_LIMIT_ALERT=1
elif [ "$throttled" != 0 ]; then
  log "  429 after $got429 lists: the gateway's own throttle ($throttled throttled); JourneyBee never said 429, so JourneyBeeUpstreamRateLimited is not exercised live"
else
  die "a 429 that is neither an upstream list 4xx nor a counted local throttle"
fi

wait_until 60 "at least 10 scrapes" scrapes_at_least 10
# The rules run on live data: an upstream 429 must put JourneyBeeUpstreamRateLimited in pending.
rate_limit_alert_active() {
  "${CURL[@]}" -f "$PROM_URL/api/v1/alerts" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
sys.exit(0 if any(a["labels"].get("alertname") == "JourneyBeeUpstreamRateLimited" for a in alerts) else 1)'
}
if [ "$EXPECT_RATE_LIMIT_ALERT" = 1 ]; then
  wait_until 30 "JourneyBeeUpstreamRateLimited pending after the upstream 429" rate_limit_alert_active
fi
state_alert_active() {
  "${CURL[@]}" -f "$PROM_URL/api/v1/alerts" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
sys.exit(0 if any(a["labels"].get("alertname") == "JourneyBeeStateBackendDegraded" for a in alerts) else 1)'
}
if [ -n "$DEGRADED_ADMIN" ]; then
  wait_until 30 "JourneyBeeStateBackendDegraded pending for the degraded replica" state_alert_active
fi
tls_alert_active() {
  "${CURL[@]}" -f "$PROM_URL/api/v1/alerts" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
sys.exit(0 if any(a["labels"].get("alertname") == "JourneyBeeTLSCertificateExpiringSoon" for a in alerts) else 1)'
}
if [ -n "$DEGRADED_ADMIN" ]; then
  wait_until 30 "JourneyBeeTLSCertificateExpiringSoon pending for the replica with a 7-day certificate" tls_alert_active
fi
sleep 2.5 # two more scrapes and rule evaluations after the last request
log "$REQUESTS requests sent; $(prom_value 'count_over_time(up{job="journeybee-gateway"}[10m])') scrapes"

# Fresh copy of /metrics for the name check (the per-user counter appears on first use), plus
# the degraded replica's (the TLS metrics: only a gateway with [server.tls] has them).
"${CURL[@]}" -f -o "$METRICS" "$JBGW_ADMIN_URL/metrics" || die "cannot fetch $JBGW_ADMIN_URL/metrics"
if [ -n "$DEGRADED_ADMIN" ]; then
  "${CURL[@]}" -f "http://$DEGRADED_ADMIN/metrics" >>"$METRICS" || die "cannot fetch the degraded replica's /metrics"
fi

# ------------------------------------------------------------------ 6. every query, for real
log "evaluating every dashboard query and checking the alert rules against $PROM_URL"
python3 - "$DASHBOARD" "$RULES" "$METRICS" "$PROM_URL" "$EXPECT_RATE_LIMIT_ALERT" <<'PY'
import json, re, sys, urllib.parse, urllib.request

dashboard_path, rules_path, metrics_path, prom, expect_rate_limit_alert = sys.argv[1:6]
with open(dashboard_path) as f:
    dashboard = json.load(f)

# Metric names the gateway exports (sample lines of the exposition format).
exported = set()
with open(metrics_path) as f:
    for line in f:
        if line.strip() and not line.startswith("#"):
            exported.add(re.split(r"[{\s]", line, maxsplit=1)[0])

KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan", "atan2",
}

def metric_names(expr):
    """Metric names referenced by a PromQL expression (a small tokenizer, not a parser)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", "{}", s)
    s = re.sub(r"\[[^\]]*\]", "[]", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if m.group(0).lower() in KEYWORDS:
            continue
        names.add(m.group(0))
    return names

variables = [v["name"] for v in dashboard.get("templating", {}).get("list", [])]

def substitute(expr):
    out = (expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
               .replace("$__range", "5m").replace("${__range}", "5m")
               .replace("$__interval", "15s").replace("${__interval}", "15s"))
    for name in variables:
        for form in ("${%s}" % name, "[[%s]]" % name):
            out = out.replace(form, ".*")
        out = re.sub(r"\$%s\b" % re.escape(name), ".*", out)
    if "$" in out:
        raise ValueError(f"unsubstituted variable in: {out}")
    return out

def query(expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data["resultType"] in ("scalar", "string"):
        return [data["result"]]
    return data["result"]

failures = 0
def fail(msg):
    global failures
    failures += 1
    print(f"  FAIL  {msg}")

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

# Template variables: label_values(metric{...}, label) must find at least one value.
for v in dashboard.get("templating", {}).get("list", []):
    if v.get("type") != "query":
        continue
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", q)
    if not m:
        fail(f"variable {v['name']}: cannot check query {q!r}")
        continue
    missing = metric_names(m.group(1)) - exported
    if missing:
        fail(f"variable {v['name']}: metric(s) not exported by the gateway: {', '.join(sorted(missing))}")
        continue
    try:
        res = query(f"count by ({m.group(2)}) ({substitute(m.group(1))})")
        values = sorted(r["metric"].get(m.group(2), "") for r in res)
        if not values:
            fail(f"variable {v['name']}: no values")
        else:
            print(f"  ok    variable {v['name']}: {', '.join(values)}")
    except ValueError as e:
        fail(f"variable {v['name']}: {e}")

# Every panel query.
panels_checked = 0
for p in walk(dashboard.get("panels", [])):
    if p.get("type") == "row":
        continue
    panels_checked += 1
    title = p.get("title", "?")
    problems, series, nan = [], 0, 0
    for t in p.get("targets", []):
        ref, raw = t.get("refId", "?"), t.get("expr", "")
        missing = metric_names(raw) - exported
        if missing:
            problems.append(f"[{ref}] metric(s) not exported by the gateway: {', '.join(sorted(missing))}")
        try:
            res = query(substitute(raw))
        except ValueError as e:
            problems.append(f"[{ref}] {e}")
            continue
        if not res:
            problems.append(f"[{ref}] empty result: {substitute(raw)}")
        series += len(res)
        nan += sum(1 for r in res if isinstance(r, dict) and r.get("value", [0, ""])[1] == "NaN")
    if problems:
        fail(f"{title}: " + "; ".join(problems))
    else:
        extra = f", {nan} NaN (no traffic on that series)" if nan else ""
        print(f"  ok    {title} ({len(p.get('targets', []))} queries, {series} series{extra})")

# Alert rules: metric names exported (plus Prometheus's own `up`), and each rule evaluated by
# the live Prometheus without error.
with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=20) as resp:
    groups = json.load(resp)["data"]["groups"]
rules = [r for g in groups if g["name"] == "journeybee-gateway" for r in g["rules"]]
if not rules:
    fail("Prometheus did not load the journeybee-gateway rule group")
for r in rules:
    missing = metric_names(r["query"]) - exported - {"up"}
    state = r.get("state", "")
    if missing:
        fail(f"alert {r['name']}: metric(s) not exported by the gateway: {', '.join(sorted(missing))}")
    elif r.get("health") != "ok":
        fail(f"alert {r['name']}: health {r.get('health')!r}: {r.get('lastError')}")
    elif r["name"] == "JourneyBeeGatewayDown" and state != "inactive":
        fail(f"alert {r['name']} is {state} while the gateway is scraped (job name mismatch?)")
    elif r["name"] == "JourneyBeeUpstreamRateLimited" and expect_rate_limit_alert == "1" and state == "inactive":
        # The script provoked an upstream 429 above: the proxy expression must have seen it.
        fail(f"alert {r['name']} is inactive after an upstream 429")
    else:
        print(f"  ok    alert {r['name']} (evaluates cleanly, {state})")

print(f"  {panels_checked} panels, {len(rules)} alert rules checked; {failures} failure(s)")
sys.exit(1 if failures else 0)
PY
