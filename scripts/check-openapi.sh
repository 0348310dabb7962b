#!/usr/bin/env bash
# Checks the gateway's OpenAPI document with real tools from PyPI, against a running gateway:
#
#   1. creates (or reuses) a Python venv with the pinned packages of
#      scripts/openapi-requirements.txt (openapi-spec-validator, schemathesis);
#   2. starts the production shape on loopback (scripts/lib.sh start_stack): the simulator as its
#      own process (`journeybee-sim`) and the gateway binary (built like the image, without the
#      `demo` feature) running `serve --config` on the demo's config (users alice and bob);
#   3. fetches GET /openapi.json WITHOUT a token (it must be public) and validates it with
#      openapi-spec-validator (OpenAPI 3.1, JSON Schema 2020-12);
#   4. fuzzes every operation of the document with schemathesis (positive and negative cases
#      generated from the schema) as the WRITE user (alice), checking only that nothing answers
#      5xx. Bounded: a few examples per operation, a fixed seed, a hard timeout.
#
# The upstream is the simulator with JourneyBee's 100 requests/min limit: once the budget
# is spent the gateway answers 429 itself, which is a correct answer, not a failure. A 404 the
# simulator gives for an id it does not know is passed through: also fine. Any 5xx is a failure
# (and is listed with the request that caused it).
#
# Usage: scripts/check-openapi.sh [path/to/journeybee-gateway [path/to/journeybee-sim]]
#        (default target/release/journeybee-gateway, else target/debug/journeybee-gateway; the
#        simulator next to it. Build both with `cargo build --release --no-default-features`
#        and `cargo build --release -p journeybee-sim`, as scripts/test.sh does.)
#
# Environment:
#   OPENAPI_VENV        venv directory (default: a per-requirements-hash directory under
#                       ${XDG_CACHE_HOME:-~/.cache}/journeybee-gateway, reused across runs)
#   OPENAPI_MAX_EXAMPLES  examples per operation and phase (default 10)
#   OPENAPI_FUZZ_TIMEOUT  hard limit for the fuzzer, in seconds (default 100)
#   KEEP_WORK=1         keep the temporary directory (document, reports, logs, config)
#
# Figures (operations, requests, failures, statuses) are printed at the end and saved in
# target/openapi-check/summary.txt (with the fuzzer's JSON report next to it).
set -euo pipefail

CHECK_NAME=check-openapi
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# ------------------------------------------------------------------ arguments and paths
stack_binaries "${1:-}" "${2:-}" # GW_BIN, SIM_BIN
cd "$(dirname "$0")/.."
ROOT=$(pwd)
REQUIREMENTS=$ROOT/scripts/openapi-requirements.txt
[ -f "$REQUIREMENTS" ] || die "missing $REQUIREMENTS"
MAX_EXAMPLES=${OPENAPI_MAX_EXAMPLES:-10}
FUZZ_TIMEOUT=${OPENAPI_FUZZ_TIMEOUT:-100}
OUT=$ROOT/target/openapi-check

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jbgw-check-openapi.XXXXXX")
SIM_PID=
GW_PID=


cleanup() {
  local rc=$?
  set +e
  stop_stack
  if [ "$rc" -ne 0 ]; then
    tail_logs "$WORK" 40 sim.log gateway.log
  fi
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    printf 'check-openapi: work directory kept: %s\n' "$WORK" >&2
  else
    rm -rf "$WORK"
  fi
  if [ "$rc" -eq 0 ]; then
    printf 'check-openapi: OK\n'
  else
    printf 'check-openapi: FAILED (exit %s)\n' "$rc" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ------------------------------------------------------------------ tools
# python3 with a working venv module (Debian splits it into python3-venv), and curl.
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
if command -v python3 >/dev/null 2>&1; then
  python3 -m venv --without-pip "$WORK/venv-probe" >/dev/null 2>&1 \
    && python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  rm -rf "$WORK/venv-probe"
else
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "need ${missing[*]}: run as root (apt-get) or install them first"
  command -v apt-get >/dev/null 2>&1 || die "need ${missing[*]} and there is no apt-get"
  log "installing ${missing[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -q
  timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for t in python3 curl; do
  command -v "$t" >/dev/null 2>&1 || die "$t is still missing"
done
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
  || die "python3 >= 3.9 is needed (found $(python3 --version 2>&1))"

# ------------------------------------------------------------------ 1. the venv
REQ_HASH=$( (python3 --version; cat "$REQUIREMENTS") | sha256sum | cut -c1-16)
VENV=${OPENAPI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/journeybee-gateway/venv-openapi-$REQ_HASH}
if [ ! -f "$VENV/.installed" ] || [ "$(cat "$VENV/.installed")" != "$REQ_HASH" ]; then
  log "creating the venv $VENV (pinned packages of scripts/openapi-requirements.txt)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  timeout 600 "$VENV/bin/python" -m pip install -q --disable-pip-version-check --prefer-binary \
    --no-input -r "$REQUIREMENTS" || die "pip install -r $REQUIREMENTS failed"
  printf '%s' "$REQ_HASH" >"$VENV/.installed"
else
  log "reusing the venv $VENV"
fi
PY=$VENV/bin/python
ST=$VENV/bin/schemathesis
[ -x "$ST" ] || die "no schemathesis in $VENV"
log "$("$PY" -c 'import importlib.metadata as m; print("openapi-spec-validator", m.version("openapi-spec-validator"), "/ schemathesis", m.version("schemathesis"))')"

CURL=(curl -sS --noproxy '*' --connect-timeout 5 --max-time 20)

# ------------------------------------------------------------------ 2. simulator and gateway
start_stack "$WORK" "$WORK/stack.env"

JBGW_URL='' JBGW_ADMIN_URL='' WRITE_TOKEN=''
while IFS='=' read -r key value; do
  case $key in
    JBGW_URL) JBGW_URL=$value ;;
    JBGW_ADMIN_URL) JBGW_ADMIN_URL=$value ;;
    WRITE_TOKEN) WRITE_TOKEN=$value ;;
  esac
done <"$WORK/stack.env"
for v in JBGW_URL JBGW_ADMIN_URL WRITE_TOKEN; do
  [ -n "${!v}" ] || die "the stack's env file has no $v"
done
for u in "$JBGW_URL" "$JBGW_ADMIN_URL"; do
  case $u in
    http://127.0.0.1:*) ;;
    *) die "refusing a non-loopback gateway address: $u" ;;
  esac
done
wait_until 30 "gateway readiness ($JBGW_ADMIN_URL/readyz)" "${CURL[@]}" -f "$JBGW_ADMIN_URL/readyz"
log "gateway $JBGW_URL, admin $JBGW_ADMIN_URL"

# ------------------------------------------------------------------ 3. fetch and validate
DOC=$WORK/openapi.json
code=$("${CURL[@]}" -o "$DOC" -D "$WORK/openapi.headers" -w '%{http_code}' "$JBGW_URL/openapi.json") \
  || die "cannot fetch $JBGW_URL/openapi.json"
[ "$code" = 200 ] || die "GET /openapi.json without a token answered $code (it must be public): $(head -c 300 "$DOC")"
tr -d '\r' <"$WORK/openapi.headers" | grep -qi '^content-type: application/json' \
  || die "GET /openapi.json is not served as application/json"
# Served twice identically (the document is generated once, deterministically).
"${CURL[@]}" -o "$WORK/openapi-again.json" "$JBGW_URL/openapi.json" || die "second fetch failed"
cmp -s "$DOC" "$WORK/openapi-again.json" || die "/openapi.json differs between two fetches"

log "validating /openapi.json with openapi-spec-validator"
"$PY" - "$DOC" <<'PY' || die "openapi-spec-validator rejected the document"
import json, sys
from openapi_spec_validator import validate
from openapi_spec_validator import OpenAPIV31SpecValidator

with open(sys.argv[1]) as f:
    doc = json.load(f)
if doc.get("openapi", "").split(".")[:2] != ["3", "1"]:
    sys.exit(f"not an OpenAPI 3.1 document: openapi = {doc.get('openapi')!r}")
errors = list(OpenAPIV31SpecValidator(doc).iter_errors())
for e in errors[:20]:
    where = "/".join(str(p) for p in getattr(e, "absolute_path", []) or [])
    print(f"  {where}: {e.message}", file=sys.stderr)
if errors:
    sys.exit(f"{len(errors)} error(s)")
validate(doc)  # the library's own entry point, for good measure (raises on any error)
ops = sum(1 for item in doc["paths"].values() for m in item
          if m in ("get", "put", "post", "patch", "delete", "head", "options", "trace"))
schemes = doc.get("components", {}).get("securitySchemes", {})
bearer = schemes.get("bearer", {})
if bearer.get("type") != "http" or bearer.get("scheme") != "bearer":
    sys.exit("no http bearer security scheme named `bearer`")
if doc.get("security") != [{"bearer": []}]:
    sys.exit("the bearer scheme is not applied globally")
print(f"  valid OpenAPI {doc['openapi']}: {len(doc['paths'])} paths, {ops} operations, "
      f"{len(doc.get('components', {}).get('schemas', {}))} schemas")
PY

# ------------------------------------------------------------------ 4. fuzz
log "fuzzing $JBGW_URL with schemathesis as the write user (≤$MAX_EXAMPLES examples per operation and phase, ≤${FUZZ_TIMEOUT}s)"
REPORT_DIR=$WORK/report
mkdir -p "$REPORT_DIR"
# The generated Idempotency-Key values repeat across different bodies (the same few boundary
# values for every case), so most writes would be answered 422 "key reused with a different
# body" and never reach body validation. This hook makes a valid key specific to the request
# (the generated value plus a digest of method, path, query and body): an identical request
# still replays, a different one gets its own key. Invalid keys are left invalid (400).
cat >"$WORK/hooks.py" <<'HOOKS'
import hashlib

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        value = headers[name]
        if not isinstance(value, str) or not (1 <= len(value) <= 255):
            continue
        if not all(0x21 <= ord(c) <= 0x7E for c in value):
            continue
        digest = hashlib.sha256(
            repr((case.method, case.formatted_path, case.query, case.body)).encode()
        ).hexdigest()[:16]
        headers[name] = f"{value[:200]}-{digest}"
HOOKS
export SCHEMATHESIS_HOOKS=$WORK/hooks.py
set +e
# The document's server is relative ("/"), so the base URL is given explicitly.
# `--workers 1`: two cores, and requests in order make the 429s easy to read.
timeout --kill-after=10 "$FUZZ_TIMEOUT" "$ST" run "$DOC" \
  --url "$JBGW_URL" \
  --header "Authorization: Bearer $WRITE_TOKEN" \
  --checks not_a_server_error \
  --max-examples "$MAX_EXAMPLES" \
  --seed 20261130 \
  --workers 1 \
  --no-shrink \
  --request-timeout 15 \
  --suppress-health-check all \
  --report junit,ndjson \
  --report-dir "$REPORT_DIR" \
  --report-junit-path "$REPORT_DIR/junit.xml" \
  --report-ndjson-path "$REPORT_DIR/events.ndjson" \
  --output-truncate true \
  >"$WORK/schemathesis.out" 2>&1
ST_RC=$?
set -e
sed 's/^/  | /' "$WORK/schemathesis.out" | tail -n 60
[ "$ST_RC" -ne 124 ] && [ "$ST_RC" -ne 137 ] || die "schemathesis did not finish within ${FUZZ_TIMEOUT}s"

# Figures from the fuzzer's own event log (every request it sent, every answer, every check).
mkdir -p "$OUT"
set +e
"$PY" - "$REPORT_DIR/events.ndjson" "$OUT/summary.txt" "$ST_RC" <<'PY'
import base64, collections, json, sys

path, summary_path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
statuses = collections.Counter()
phases = collections.Counter()
operations = set()
server_errors = []  # (method, uri, status, body)
failed_checks = collections.Counter()
errors = 0
requests = 0
with open(path) as f:
    for line in f:
        if not line.strip():
            continue
        event = json.loads(line)
        kind = next(iter(event))
        body = event[kind]
        if kind in ("NonFatalError", "FatalError"):
            errors += 1
            continue
        if kind != "ScenarioFinished":
            continue
        rec = body.get("recorder") or {}
        interactions = rec.get("interactions") or {}
        label = rec.get("label", "")
        if interactions and label.split(" ", 1)[0] in ("GET", "POST", "PATCH", "DELETE", "PUT"):
            operations.add(label)
        for inter in interactions.values():
            req, resp = inter.get("request") or {}, inter.get("response")
            requests += 1
            phases[body.get("phase")] += 1
            status = resp.get("status_code") if resp else "no response"
            statuses[status] += 1
            if isinstance(status, int) and status >= 500:
                content = (resp.get("content") or {}).get("$base64", "")
                try:
                    text = base64.b64decode(content).decode("utf-8", "replace")[:200]
                except Exception:
                    text = "?"
                server_errors.append((req.get("method"), req.get("uri"), status, text))
        for checks in (rec.get("checks") or {}).values():
            for c in checks:
                if c.get("status") != "success":
                    failed_checks[f"{c.get('name')} ({c.get('status')})"] += 1

lines = [
    f"operations: {len(operations)}",
    f"requests: {requests} ({', '.join(f'{k} {v}' for k, v in sorted(phases.items()))})",
    "statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))),
    f"5xx answers: {len(server_errors)}",
    f"failures (failed checks): {sum(failed_checks.values())}"
    + (f" ({', '.join(f'{k}: {v}' for k, v in failed_checks.items())})" if failed_checks else ""),
    f"fuzzer errors: {errors}",
    f"schemathesis exit code: {rc}",
]
for method, uri, status, text in server_errors[:20]:
    lines.append(f"  {status}: {method} {uri} -> {text}")
text = "\n".join(lines)
print("\n".join("  " + l for l in lines))
with open(summary_path, "w") as f:
    f.write(text + "\n")
sys.exit(1 if server_errors or failed_checks or requests == 0 else 0)
PY
SUMMARY_RC=$?
set -e
cp "$WORK/schemathesis.out" "$OUT/schemathesis.out" 2>/dev/null || true
cp "$REPORT_DIR"/* "$OUT/" 2>/dev/null || true
cp "$DOC" "$OUT/openapi.json" 2>/dev/null || true
log "figures saved in ${OUT#"$ROOT"/}/summary.txt"
[ "$SUMMARY_RC" -eq 0 ] || die "the fuzzer found 5xx answers (see above)"
[ "$ST_RC" -eq 0 ] || die "schemathesis exited $ST_RC (see its output above)"
