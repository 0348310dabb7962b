#!/usr/bin/env bash
# Where the gateway's time goes: the same setup as bench/run.sh (static nginx upstream, the
# gateway pinned to one core with one tokio worker, wrk -c64 on the other core, ES256 token),
# sampled with `perf record` (software clock: hardware counters are often missing in VMs) on
# the miss path (cache off), the hit path and the create path, plus syscalls per request from
# `strace -c` (slow while tracing, but the counts per request are exact) for the gateway and,
# for comparison, nginx proxy_pass. Writes bench/results/profile.md; perf data goes to
# bench/work/<timestamp>/.
#
# Environment: BENCH_PROFILE_DURATION (10s), BENCH_SKIP_BUILD, BENCH_SERVER_CPU, BENCH_CLIENT_CPU,
# BENCH_NICE, BENCH_PROFILE_OUT (bench/results/profile.md).
# `bench/profile.sh --report-only bench/work/profile-<timestamp>` rewrites the report from
# existing perf data without measuring again.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

DUR=${BENCH_PROFILE_DURATION:-10s}
OUT=${BENCH_PROFILE_OUT:-$BENCH_DIR/results/profile.md}
TOP=${BENCH_PROFILE_TOP:-25}

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

REPORT_ONLY=""
if [ "${1:-}" = --report-only ]; then
    REPORT_ONLY=${2:?usage: profile.sh --report-only bench/work/profile-<timestamp>}
fi

# load <seconds-string> <method> <url>: wrk -c64 against url with the ES256 token.
load() {
    local dur=$1 method=$2 url=$3 args=()
    if [ "$method" = POST ]; then args=(-s "$BENCH_DIR/post.lua"); else args=(-H "Authorization: Bearer $TOKEN_ES256"); fi
    BENCH_TOKEN=$TOKEN_ES256 BENCH_BODY=$CREATE_BODY pin "$CLIENT_CPU" \
        wrk -t1 -c64 -d"$dur" --timeout 5s "${args[@]}" "$url"
}

# perf report lines: samples only, without the padding and the empty trailing columns.
tidy() {
    grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' | cut -c1-170
}

# perf_texts <name>: the text summaries of $WORK/<name>.perf.data.
perf_texts() {
    local name=$1
    perf report -i "$WORK/$name.perf.data" --no-children --sort symbol --stdio \
        --percent-limit 0.7 -g none 2>/dev/null | tidy | head -"$TOP" >"$WORK/$name.self.txt" || true
    # Callee-inclusive view, limited to named (not inlined, not generic-wrapper) frames of the
    # gateway, hyper and the libraries it calls.
    perf report -i "$WORK/$name.perf.data" --children --sort symbol --stdio \
        --percent-limit 2 -g none 2>/dev/null | tidy | grep -v '(inlined)' \
        | grep -vE '\[.\] [a-z_0-9]+(<|\{|$)' | grep -v '{async_block' \
        | grep -E 'journeybee_gateway|hyper|jsonwebtoken|serde_json|moka|prometheus|tracing' \
        | head -40 >"$WORK/$name.children.txt" || true
    perf report -i "$WORK/$name.perf.data" --no-children --sort dso --stdio -g none \
        2>/dev/null | tidy | head -12 >"$WORK/$name.dso.txt" || true
    perf report -i "$WORK/$name.perf.data" --no-children --sort dso,symbol --stdio -g none \
        --percent-limit 0 2>/dev/null | tidy >"$WORK/$name.all.txt" || true
    # Who pays the kernel's top symbol (on loopback: waking the peer after a send, mostly).
    perf report -i "$WORK/$name.perf.data" --no-children --sort symbol --stdio \
        --symbols _raw_spin_unlock_irqrestore -g caller,0.5,callee,function,percent --percent-limit 2 \
        2>/dev/null | grep -E -- '--[0-9.]+%--' | sed -E 's/^[ |]*//; s/[[:space:]]+$//' | head -8 \
        >"$WORK/$name.irqrestore.txt" || true
}

# profile <name> <pid> <method> <url>: perf samples of pid during a wrk run.
profile() {
    local name=$1 pid=$2 method=$3 url=$4 secs
    secs=${DUR%s}
    log "perf: $name"
    load 2s "$method" "$url" >/dev/null
    perf record -q -F 999 -e cpu-clock -g --call-graph dwarf,16384 -p "$pid" \
        -o "$WORK/$name.perf.data" -- sleep "$((secs + 1))" >"$WORK/$name.perf.log" 2>&1 &
    local perf_pid=$!
    BENCH_PIDS+=("$perf_pid")
    sleep 0.5
    load "$DUR" "$method" "$url" >"$WORK/$name.wrk.txt"
    wait "$perf_pid" || true
    perf_texts "$name"
}

# syscalls <name> <pid> <method> <url>: strace -c of pid over a short run; per request.
syscalls() {
    local name=$1 pid=$2 method=$3 url=$4 reqs
    log "strace: $name"
    timeout 30 strace -c -f -q -o "$WORK/$name.strace.txt" -p "$pid" &
    local st=$!
    BENCH_PIDS+=("$st")
    sleep 1
    load 3s "$method" "$url" >"$WORK/$name.strace-wrk.txt"
    sleep 0.3
    kill -INT "$st" 2>/dev/null || true
    wait "$st" 2>/dev/null || true
    reqs=$(awk '/requests in/{print $1}' "$WORK/$name.strace-wrk.txt")
    echo "$reqs" >"$WORK/$name.strace-reqs.txt"
}

if [ -z "$REPORT_ONLY" ]; then
    bench_install_deps
    command -v perf >/dev/null || die "perf not found (Debian: apt-get install linux-perf)"
    command -v strace >/dev/null || die "strace not found (apt-get install strace)"
    perf stat -e task-clock true >/dev/null 2>&1 || die "perf cannot sample here (perf_event_paranoid?)"
    bench_check_cpus
    bench_build
    bench_prepare

    STAMP=$(date -u +%Y%m%dT%H%M%SZ)
    WORK="$BENCH_DIR/work/profile-$STAMP"
    mkdir -p "$WORK"
    start_upstream
    start_proxy
    UP="http://127.0.0.1:$UPSTREAM_PORT"
    GW="http://127.0.0.1:$GW_PORT"
    PLAIN="http://127.0.0.1:$PLAIN_PORT"

    start_gateway false
    check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256"
    profile miss "$GW_PID" GET "$GW$LIST_PATH"
    syscalls miss "$GW_PID" GET "$GW$LIST_PATH"
    stop_pid "$GW_PID"

    start_gateway true
    check 200 GET "$GW$LIST_PATH" "$TOKEN_ES256"
    profile hit "$GW_PID" GET "$GW$LIST_PATH"
    syscalls hit "$GW_PID" GET "$GW$LIST_PATH"
    profile create "$GW_PID" POST "$GW/api/v1/partnerships"
    syscalls create "$GW_PID" POST "$GW/api/v1/partnerships"
    stop_pid "$GW_PID"

    syscalls nginx_plain "$PROXY_PID" GET "$PLAIN$LIST_PATH"
    syscalls nginx_cache "$PROXY_PID" GET "http://127.0.0.1:$CACHE_PORT$LIST_PATH"
    syscalls upstream "$UPSTREAM_PID" GET "$UP$LIST_PATH"
else
    WORK=$(cd "$REPORT_ONLY" && pwd)
    for name in miss hit create; do
        [ -f "$WORK/$name.perf.data" ] && perf_texts "$name"
    done
fi

python3 - "$WORK" "$DUR" >"$OUT" <<'EOF'
import re, sys
from pathlib import Path
work, dur = Path(sys.argv[1]), sys.argv[2]
AREAS = [
    ("kernel: scheduler, context switches", lambda d, k, s: k == "k" and re.search(r"sched|task_switch|__switch_to|pick_next|enqueue|dequeue|update_curr|_raw_spin_unlock_irq$", s)),
    ("kernel: wake-ups (sock_def_readable path, irq-restore)", lambda d, k, s: k == "k" and re.search(r"irqrestore|try_to_wake|ttwu|wake_up", s)),
    ("kernel: TCP/IP, loopback, syscalls, epoll", lambda d, k, s: k == "k"),
    # glibc's and mimalloc's (linked into the binary, symbols mi_* / _mi_*) entry points.
    ("allocator (malloc/free/realloc)", lambda d, k, s: (re.search(r"malloc|free|realloc|unlink_chunk|consolidate|tcache|__libc_calloc", s) and "libc" in d) or re.match(r"_?mi_|mimalloc", s)),
    ("memcpy/memmove/memcmp", lambda d, k, s: re.search(r"mem(move|cpy|cmp|set)|__memcmp", s)),
    ("other libc / vdso (clock_gettime, syscall wrappers)", lambda d, k, s: "libc" in d or "vdso" in d or "libm" in d),
    ("JWT (jsonwebtoken, aws-lc, base64)", lambda d, k, s: re.search(r"jsonwebtoken|aws_lc|base64|ecdsa|hmac|sha2|EVP_|ec_|bn_", s)),
    ("JSON (serde_json)", lambda d, k, s: re.search(r"serde_json|serde::", s)),
    ("metrics (prometheus)", lambda d, k, s: re.search(r"prometheus", s)),
    ("logging (tracing)", lambda d, k, s: re.search(r"tracing", s)),
    ("cache (moka)", lambda d, k, s: re.search(r"moka|crossbeam|quanta", s)),
    ("hyper client (pool, send_request, Client clone)", lambda d, k, s: re.search(r"hyper_util::client|hyper::client|role::Client|pool::", s)),
    ("hyper server / h1 parse+encode", lambda d, k, s: re.search(r"hyper|httparse", s)),
    ("http types (Uri, HeaderMap, PathAndQuery)", lambda d, k, s: re.search(r"^<?http::|http::header|http::uri|HeaderMap|HeaderValue", s)),
    ("tokio runtime / mio", lambda d, k, s: re.search(r"tokio|mio::", s)),
    ("gateway code (journeybee_gateway::*)", lambda d, k, s: re.search(r"journeybee_gateway", s)),
    ("other (bytes, fmt, std, drop glue, ...)", lambda d, k, s: True),
]


def categorize(dso, kind, sym):
    for name, test in AREAS:
        if test(dso, kind, sym):
            return name
    return "other"


out = []
say = out.append
say("# journeybee-gateway profile")
say("")
say(f"Generated by `bench/profile.sh` (raw data: `bench/work/{work.name}/`). Gateway: release build,")
say("one tokio worker, pinned to one core with the static nginx upstream; wrk -t1 -c64 on the other")
say(f"core, ES256 token; `perf record -e cpu-clock -F 999 --call-graph dwarf` for {dur} per path.")
say("Self time is the share of the gateway's samples in the symbol itself; \"children\" adds")
say("everything it calls (entries ≥ 2%, named gateway/hyper/library frames only).")
for name, title in (("miss", "Miss path (cache off, GET)"), ("hit", "Hit path (cache on, GET)"), ("create", "Create path (POST)")):
    say("")
    say(f"## {title}")
    wrk = (work / f"{name}.wrk.txt")
    if wrk.exists():
        m = re.search(r"Requests/sec:\s+([0-9.]+)", wrk.read_text())
        if m:
            say("")
            say(f"Throughput while sampled: {float(m.group(1)):,.0f} req/s.")
    allf = work / f"{name}.all.txt"
    if allf.exists():
        cats = {}
        for line in allf.read_text().splitlines():
            mm = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
            if not mm:
                continue
            pct, dso, kind, sym = float(mm.group(1)), mm.group(2), mm.group(3), mm.group(4)
            cats[categorize(dso, kind, sym)] = cats.get(categorize(dso, kind, sym), 0.0) + pct
        say("")
        say("### Self time by area")
        say("")
        say("| area | share |")
        say("|---|--:|")
        for c, v in sorted(cats.items(), key=lambda kv: -kv[1]):
            if v >= 0.5:
                say(f"| {c} | {v:.1f}% |")
    for kind, head in (("dso", "By object"), ("self", "Top symbols, self time"), ("children", "Gateway, hyper and library frames, with callees (async: layers overlap)"), ("irqrestore", "Callers of _raw_spin_unlock_irqrestore")):
        f = work / f"{name}.{kind}.txt"
        say("")
        say(f"### {head}")
        say("")
        say("```")
        say(f.read_text().rstrip() if f.exists() and f.read_text().strip() else "(no samples)")
        say("```")
say("")
say("## Syscalls per request (strace -c -f over a 3 s wrk -c64 run)")
say("")
names = ["miss", "hit", "create", "nginx_plain", "nginx_cache", "upstream"]
tables = {}
for n in names:
    f, r = work / f"{n}.strace.txt", work / f"{n}.strace-reqs.txt"
    if not f.exists() or not r.exists() or not r.read_text().strip():
        continue
    reqs = int(r.read_text().strip())
    calls = {}
    for line in f.read_text().splitlines():
        p = line.split()
        if len(p) >= 5 and p[0][0].isdigit() and p[-1] != "total":
            try:
                calls[p[-1]] = int(p[3])
            except ValueError:
                pass
    tables[n] = (reqs, calls)
allsys = sorted({s for _, c in tables.values() for s in c}, key=lambda s: -max(c.get(s, 0) / max(r, 1) for r, c in tables.values()))
labels = {"miss": "gateway miss", "hit": "gateway hit", "create": "gateway create", "nginx_plain": "nginx proxy_pass", "nginx_cache": "nginx proxy_cache", "upstream": "upstream nginx"}
say("| syscall | " + " | ".join(labels[n] for n in tables) + " |")
say("|---|" + "--:|" * len(tables))
for s in allsys[:14]:
    say(f"| {s} | " + " | ".join(f"{c.get(s, 0) / max(r, 1):.2f}" for r, c in tables.values()) + " |")
say("| **total** | " + " | ".join(f"{sum(c.values()) / max(r, 1):.2f}" for r, c in tables.values()) + " |")
print("\n".join(out))
EOF
log "written: $OUT (raw: $WORK)"
