#!/usr/bin/env python3
"""Turns one bench/run.sh work dir (measurements.tsv, meta.txt, raw wrk outputs) into the
Markdown report: medians over rounds, every gateway figure as a ratio to nginx from the same
run, and the targets with PASS/FAIL."""

import csv
import json
import re
import statistics
import sys
from pathlib import Path

UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}

# name -> (label, throughput/latency peer, direct baseline for added latency)
ROWS = [
    ("direct_get", "direct: upstream nginx alone, GET", None, None),
    ("nginx_plain_get", "nginx proxy_pass, GET", None, "direct_get"),
    ("nginx_cache_get", "nginx proxy_cache, GET (hit)", None, "direct_get"),
    ("gw_miss_hs256", "gateway miss (cache off), GET, HS256", "nginx_plain_get", "direct_get"),
    ("gw_miss_es256", "gateway miss (cache off), GET, ES256", "nginx_plain_get", "direct_get"),
    ("gw_hit_hs256", "gateway hit (cache on), GET, HS256", "nginx_cache_get", "direct_get"),
    ("gw_hit_es256", "gateway hit (cache on), GET, ES256", "nginx_cache_get", "direct_get"),
    ("direct_post", "direct: upstream nginx alone, POST", None, None),
    ("nginx_plain_post", "nginx proxy_pass, POST", None, "direct_post"),
    ("gw_create_hs256", "gateway create, POST, HS256", "nginx_plain_post", "direct_post"),
    ("gw_create_es256", "gateway create, POST, ES256", "nginx_plain_post", "direct_post"),
    ("gw_create_nocache_es256", "gateway create, cache off, POST, ES256", "nginx_plain_post", "direct_post"),
    ("gw_redis_miss_hs256", "gateway + Redis miss (cache off), GET, HS256", "nginx_plain_get", "direct_get"),
    ("gw_redis_miss_es256", "gateway + Redis miss (cache off), GET, ES256", "nginx_plain_get", "direct_get"),
    ("gw_redis_hit_hs256", "gateway + Redis hit (cache on), GET, HS256", "nginx_cache_get", "direct_get"),
    ("gw_redis_hit_es256", "gateway + Redis hit (cache on), GET, ES256", "nginx_cache_get", "direct_get"),
    ("gw_redis_create_hs256", "gateway + Redis create, POST, HS256", "nginx_plain_post", "direct_post"),
    ("gw_redis_create_es256", "gateway + Redis create, POST, ES256", "nginx_plain_post", "direct_post"),
]

# Round-trip scenarios (roundtrips.py): label and what the design says one request costs.
RT_ROWS = [
    ("hit", "hit (cache on, local entry)", "0: the generation is known from the bump channel"),
    ("miss_cache_off", "miss, cache off", "1: the budget admit script"),
    ("miss_cache_on", "miss, cache on (a new query each time)", "~3: L2 lookup + lock, admit, L2 put"),
    ("l2_hit", "L2 hit (restarted gateway, list in Redis)", "1: L2 lookup (+1 generation while the watch subscribes)"),
    ("create", "create, no Idempotency-Key", "2: admit, bump (its acknowledgement is this replica's own message: no round trip)"),
    ("create_idem", "create, new Idempotency-Key each time", "3: claim, admit, settle + bump (one script)"),
]


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"latency {text!r}")
    return float(m.group(1)) * UNITS_US[m.group(2)]


def parse_cmdstats(path):
    """{command: (calls, usec)} from a saved `INFO commandstats`."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line.strip())
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def redis_us_per_call(work, row, command):
    """Redis's own µs per call of `command` over one run (commandstats after minus before)."""
    f0, f1 = work / (row["file"] + ".cmdstats0"), work / (row["file"] + ".cmdstats1")
    if not (f0.exists() and f1.exists()):
        return None
    a, b = parse_cmdstats(f0), parse_cmdstats(f1)
    calls = b.get(command, (0, 0))[0] - a.get(command, (0, 0))[0]
    usec = b.get(command, (0, 0))[1] - a.get(command, (0, 0))[1]
    return usec / calls if calls > 0 else None


def parse_wrk(path):
    t = path.read_text()
    out = {"rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", t).group(1))}
    m = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", t)
    out["requests"] = int(m.group(1))
    out["elapsed_s"] = to_us(m.group(2) + m.group(3)) / 1e6
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", t, re.M)
        out[f"p{pct}"] = to_us(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    out["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    out["sockerr"] = sum(int(x) for x in m.groups()) if m else 0
    return out


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_us(us):
    if us is None:
        return "—"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def redis_section(say, data, m, conns, rps, p50_1, added, work, meta):
    """The Redis state backend against the memory backend and nginx, and its round trips."""
    pairs = [
        (n, n.replace("gw_redis_", "gw_"), label, peer, base)
        for n, label, peer, base in ROWS
        if n.startswith("gw_redis_") and data.get((n, conns))
    ]
    rt_file = work / "roundtrips.jsonl"
    rts = {}
    if rt_file.exists():
        for line in rt_file.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rts[r["scenario"]] = r
    if not pairs and not rts:
        return
    say(f"## Redis state backend (`[state] backend = \"redis\"`, redis-server {meta.get('redis', '?')} on the server core)")
    say("")
    if pairs:
        say(
            f"| path | memory req/s @{conns} | Redis req/s @{conns} | × memory | × nginx "
            f"| p50 @1 memory | p50 @1 Redis | **Redis − memory p50 @1** | added p50 @1 (Redis, vs direct) "
            f"| nginx's added p50 @1 | × nginx added | p99 @1 Redis | gateway CPU µs/req memory → Redis "
            f"| redis-server CPU µs/req | Redis µs per call: EVALSHA, GET | Redis used_memory after @{conns} |"
        )
        say("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for name, mem, label, peer, base in pairs:
            r_rps, m_rps, p_rps = rps.get(name), rps.get(mem), rps.get(peer)
            diff = (
                p50_1[name] - p50_1[mem]
                if p50_1.get(name) is not None and p50_1.get(mem) is not None
                else None
            )
            add, peer_add = added(name, base), added(peer, base)
            mems = [w["redis_kib"] for w in data[(name, conns)] if w["redis_kib"]]
            say(
                "| "
                + " | ".join(
                    [
                        label.replace("gateway + Redis ", ""),
                        f"{m_rps:,.0f}" if m_rps else "—",
                        f"{r_rps:,.0f}",
                        fmt_ratio(r_rps / m_rps if m_rps else None),
                        fmt_ratio(r_rps / p_rps if p_rps else None),
                        fmt_us(p50_1.get(mem)),
                        fmt_us(p50_1.get(name)),
                        "—" if diff is None else f"{diff:+.0f} µs",
                        fmt_us(add),
                        fmt_us(peer_add),
                        fmt_ratio(add / peer_add if add is not None and peer_add and peer_add > 0 else None),
                        fmt_us(m(name, "1", "p99")),
                        f"{m(mem, conns, 'server_us_per_req') or 0:.1f} → {m(name, conns, 'server_us_per_req'):.1f}",
                        f"{m(name, conns, 'redis_us_per_req'):.1f}",
                        ", ".join(
                            "—" if v is None else f"{v:.1f}"
                            for v in (m(name, conns, "evalsha_us"), m(name, conns, "get_us"))
                        ),
                        f"{max(mems) / 1024:.0f} MiB" if mems else "—",
                    ]
                )
                + " |"
            )
        say("")
        say(
            "× memory: the Redis backend's throughput over the memory backend's, same scenario, "
            "same run. × nginx: as in the table above. Redis − memory p50 @1: what the backend "
            "adds to one request at one connection (medians over rounds). Added p50 @1 (vs "
            "direct) and × nginx added: as in the table above (the peer is nginx proxy_pass for "
            "miss and create, nginx proxy_cache for the hit, whose added p50 is about zero: no "
            "ratio). "
            "redis-server CPU: its utime+stime over the run divided by the gateway's requests "
            "(on the server core, counted in CPU busy). Redis µs per call: `INFO commandstats` usec / calls over the throughput run, Redis's own time to execute one command (an EVALSHA's includes its script's commands; GET counts the generation reads, and on the create path none). used_memory: `INFO memory` after the "
            "throughput run (max over rounds), Redis flushed before each gateway."
        )
        say("")
    if rts:
        n = next(iter(rts.values()))["requests"]
        say(
            f"**Redis per request**, measured: {n} requests per scenario, one at a time on one "
            f"keep-alive connection (ES256), counted on the server between two markers."
        )
        say("")
        say(
            "| scenario | expected by design | **round trips / request** | round trips by operation (per request) "
            "| commands executed / request | answers |"
        )
        say("|---|---|--:|---|--:|---|")
        for key, label, expected in RT_ROWS:
            r = rts.get(key)
            if not r:
                continue
            req = r["requests"]
            ops = ", ".join(
                f"{op} {c / req:.3g}"
                for op, c in sorted(r["round_trips_by_op"].items(), key=lambda kv: -kv[1])
            ) or "none"
            answers = ", ".join(f"{k}×{v}" for k, v in sorted(r["statuses"].items()))
            xc = {k: v for k, v in r.get("x_cache", {}).items() if k != "-"}
            if xc:
                answers += " (X-Cache " + ", ".join(f"{k}×{v}" for k, v in sorted(xc.items())) + ")"
            # roundtrips.py's check against its EXPECTED_MAX (PINGs left out).
            over = " **over**" if r.get("as_expected") is False else ""
            say(
                f"| {label} | {expected} | {r['round_trips_per_request']:.3f}{over} | {ops} "
                f"| {r['commands_per_request']:.2f} | {answers} |"
            )
        say("")
        say(
            "Round trips: the commands the gateway's connection sent (`MONITOR` lines from a "
            "client address): one `EVALSHA` is one round trip whatever its script runs; the "
            "store's only pipeline (a refund's `ZREM`s) would count one line per command, and "
            "none occurred. Commands executed: `INFO stats` total_commands_processed after "
            "minus before (this script's own INFOs taken off); Redis 7 counts every "
            "`redis.call` a script makes there too, so it is the server-side work, not the "
            "round trips. (Redis's time per command is taken from the throughput runs above, "
            "not here: MONITOR, on during these counts, slows every command it echoes.)"
        )
        say("")


def main():
    work = Path(sys.argv[1])
    meta = dict(
        line.split("=", 1) for line in (work / "meta.txt").read_text().splitlines() if "=" in line
    )
    clk = float(meta.get("clk_tck", "100"))
    conns = meta.get("conns", "64")
    data = {}  # (scenario, conns) -> list of dicts
    with open(work / "measurements.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            w = parse_wrk(work / row["file"])
            req = max(w["requests"], 1)
            w["server_us_per_req"] = int(row["server_ticks"]) * 1e6 / clk / req
            w["upstream_us_per_req"] = int(row["upstream_ticks"]) * 1e6 / clk / req
            redis_ticks = int(row.get("redis_ticks") or 0)
            w["redis_us_per_req"] = redis_ticks * 1e6 / clk / req
            w["redis_kib"] = int(row["redis_kib"]) if row.get("redis_kib") else None
            # The servers under test: the proxy, the upstream and (idle but for the Redis
            # scenarios) the redis-server, all on the server core.
            ours = int(row["server_ticks"]) + (
                0 if row["scenario"].startswith("direct") else int(row["upstream_ticks"]) + redis_ticks
            )
            wall = clk * w["elapsed_s"]
            w["core_busy"] = ours / wall
            w["server_other"] = max(int(row["score_busy"]) - ours, 0) / wall
            w["server_steal"] = int(row["score_steal"]) / wall
            w["client_busy"] = int(row["client_ticks"] or 0) / wall
            w["client_other"] = max(int(row["ccore_busy"]) - int(row["client_ticks"] or 0), 0) / wall
            w["hwm_kib"] = int(row["hwm_kib"]) if row["hwm_kib"] else None
            w["threads"] = int(row["threads"]) if row["threads"] else None
            w["evalsha_us"] = redis_us_per_call(work, row, "evalsha")
            w["get_us"] = redis_us_per_call(work, row, "get")
            data.setdefault((row["scenario"], row["conns"]), []).append(w)

    def m(name, c, key):
        return med([w[key] for w in data.get((name, c), [])])

    rps = {n: m(n, conns, "rps") for n, *_ in ROWS}
    p50_1 = {n: m(n, "1", "p50") for n, *_ in ROWS}

    def added(name, base):
        if base is None or p50_1.get(name) is None or p50_1.get(base) is None:
            return None
        return p50_1[name] - p50_1[base]

    out = []
    say = out.append
    say("# journeybee-gateway benchmark")
    say("")
    say(f"Date: {meta.get('date')}  ")
    say(
        f"Machine: {meta.get('nproc')} CPUs (`nproc`), {meta.get('cpu')}, {meta.get('kernel')}  "
    )
    say(
        f"Software: gateway `{meta.get('gateway')}` (binary built "
        f"{meta.get('gateway_built', '?')}; release, {meta.get('gateway_threads')} tokio "
        f"worker thread), {meta.get('nginx')} (upstream and peer, 1 process each), wrk {meta.get('wrk')}; "
        f"servers and wrk at nice {meta.get('nice')}, each in its own session (autogroup: `{meta.get('autogroup')}`)  "
    )
    say(
        f"Setup: loopback; servers pinned to CPU {meta.get('server_cpu')} (upstream + the proxy "
        f"under test share it), wrk `-t1` pinned to CPU {meta.get('client_cpu')}; throughput "
        f"`-c{conns} -d{meta.get('duration')}`, latency `-c1`/`-c8 -d{meta.get('lat_duration')}`, "
        f"warm-up {meta.get('warmup')}; medians of {meta.get('runs')} round(s), scenarios "
        f"interleaved round-robin. Upstream answer: {meta.get('body_bytes')}-byte JSON list (GET), "
        f"201 JSON (POST)."
    )
    say("")
    say(
        f"| scenario | req/s @{conns} | × nginx | p50 @1 | p99 @1 | p50 @8 | p99 @8 | added p50 @1 "
        f"| × nginx added | proxy CPU µs/req | upstream CPU µs/req | CPU {meta.get('server_cpu')} busy | peak RSS | errors |"
    )
    say("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name, label, peer, base in ROWS:
        if not data.get((name, conns)):
            continue
        lat_peer = peer
        ratio = rps[name] / rps[peer] if peer and rps.get(peer) else None
        add = added(name, base)
        peer_add = added(lat_peer, base) if lat_peer else None
        add_ratio = add / peer_add if (add is not None and peer_add and peer_add > 0) else None
        if peer is None and not name.startswith("direct"):
            ratio, add_ratio = 1.0, 1.0
        direct = name.startswith("direct")
        cpu_s = m(name, conns, "server_us_per_req")
        cpu_u = None if direct else m(name, conns, "upstream_us_per_req")
        busy = m(name, conns, "core_busy")
        hwm = [w["hwm_kib"] for w in data[(name, conns)] if w["hwm_kib"]]
        errors = sum(w["non2xx"] + w["sockerr"] for k, ws in data.items() if k[0] == name for w in ws)
        say(
            "| "
            + " | ".join(
                [
                    label,
                    f"{rps[name]:,.0f}",
                    fmt_ratio(ratio),
                    fmt_us(p50_1[name]),
                    fmt_us(m(name, "1", "p99")),
                    fmt_us(m(name, "8", "p50")),
                    fmt_us(m(name, "8", "p99")),
                    "—" if add is None else fmt_us(add),
                    fmt_ratio(add_ratio),
                    "—" if cpu_s is None else f"{cpu_s:.1f}",
                    "—" if cpu_u is None else f"{cpu_u:.1f}",
                    "—" if busy is None else f"{busy * 100:.0f}%",
                    f"{max(hwm) / 1024:.1f} MiB" if hwm else "—",
                    str(errors),
                ]
            )
            + " |"
        )
    say("")
    say(
        "× nginx: throughput over nginx proxy_pass (miss, create: same method) or nginx "
        "proxy_cache (hit), measured in the same run. Added p50 @1: p50 at one connection minus "
        "the direct (upstream alone) p50 for the same method; × nginx added divides it by the "
        "peer's added p50 (lower is better). CPU µs/req: utime+stime from /proc/<pid>/stat over "
        f"the @{conns} run divided by requests completed (clock tick {1e3 / clk:.0f} ms). "
        f"CPU busy: proxy + upstream CPU seconds per wall second on the server core (100% = the "
        f"core is the bottleneck). Peak RSS: the gateway's VmHWM, reset before, read after the "
        f"@{conns} run (max over rounds). Errors: non-2xx responses + socket errors, all runs."
    )
    say("")

    redis_section(say, data, m, conns, rps, p50_1, added, work, meta)

    say("## Targets")
    say("")

    def verdict(ok):
        return "—" if ok is None else ("PASS" if ok else "FAIL")

    def tratio(a, b):
        return rps[a] / rps[b] if rps.get(a) and rps.get(b) else None

    # Issue 13's targets, with the access log on for both (production settings).
    targets = []
    r = tratio("gw_hit_es256", "nginx_cache_get")
    targets.append(("hit path (ES256) throughput ≥ 1.0× nginx proxy_cache", fmt_ratio(r), verdict(r and r >= 1.0)))
    r = tratio("gw_miss_es256", "nginx_plain_get")
    targets.append(("miss path (ES256) throughput ≥ 0.75× nginx proxy_pass", fmt_ratio(r), verdict(r and r >= 0.75)))
    for alg in ("es256", "hs256"):
        r = tratio(f"gw_create_{alg}", "nginx_plain_post")
        targets.append((f"create ({alg.upper()}) throughput ≥ 0.75× nginx proxy_pass, same POST", fmt_ratio(r), verdict(r and r >= 0.75)))
    for name, base, what in (
        ("gw_miss_es256", "direct_get", "miss (ES256)"),
        ("gw_create_es256", "direct_post", "create (ES256)"),
        ("gw_hit_es256", "direct_get", "hit (ES256)"),
    ):
        a = added(name, base)
        ok = None if a is None else a <= 25
        targets.append((f"added p50 @1, {what} ≤ 25 µs", fmt_us(a), verdict(ok)))
    hwm = [w["hwm_kib"] for n in ("gw_hit_es256", "gw_hit_hs256") for w in data.get((n, conns), []) if w["hwm_kib"]]
    peak = max(hwm) / 1024 if hwm else None
    targets.append(
        (f"peak RSS in the @{conns} hit run ≤ 64 MiB", "—" if peak is None else f"{peak:.1f} MiB", verdict(None if peak is None else peak <= 64))
    )
    say("| target | measured | |")
    say("|---|--:|---|")
    for t in targets:
        say(f"| {t[0]} | {t[1]} | {t[2]} |")
    say("")

    say(f"## Throughput per round (req/s @{conns})")
    say("")
    say("| scenario | " + " | ".join(f"round {i + 1}" for i in range(int(meta.get("runs", 1)))) + " |")
    say("|---|" + "--:|" * int(meta.get("runs", 1)))
    for name, label, *_ in ROWS:
        ws = data.get((name, conns), [])
        if ws:
            say(f"| {label} | " + " | ".join(f"{w['rps']:,.0f}" for w in ws) + " |")
    say("")
    say("## Diagnostics (medians of the throughput runs)")
    say("")
    say(
        "CPU time per wall second on each core: the servers under test (proxy + upstream) and "
        "everything else on the server core, wrk and everything else on the client core. A "
        "throughput figure is a per-core capacity only when the server core is ~100% busy with "
        "the servers under test."
    )
    say("")
    say(f"| scenario | server core: ours | server core: other | steal | client core: wrk | client core: other |")
    say("|---|--:|--:|--:|--:|--:|")
    notes = []
    for name, label, *_ in ROWS:
        for i, w in enumerate(data.get((name, conns), [])):
            if w["core_busy"] >= 0.9:
                continue
            if w["client_busy"] >= 0.9:
                notes.append(f"{name} round {i + 1}: wrk's core was the limit (server core {w['core_busy'] * 100:.0f}% busy): the figure is a lower bound")
            else:
                notes.append(f"{name} round {i + 1}: neither core saturated (server {w['core_busy'] * 100:.0f}%, wrk {w['client_busy'] * 100:.0f}%, other on the server core {w['server_other'] * 100:.0f}%): interference or a stall")
    for name, label, *_ in ROWS:
        ws = data.get((name, conns), [])
        if not ws:
            continue
        pc = lambda k: f"{m(name, conns, k) * 100:.0f}%"
        say(f"| {label} | {pc('core_busy')} | {pc('server_other')} | {pc('server_steal')} | {pc('client_busy')} | {pc('client_other')} |")
    say("")
    if notes:
        say("**Throughput runs where the server core was not the limit:**")
        say("")
        for n in notes:
            say(f"- {n}")
    else:
        say(f"Every @{conns} run kept the server core at least 90% busy with the servers under test: the throughput figures are per-core capacities.")
    say("")
    say("(\"other\" in the @1 and @8 runs is just other work filling idle time; servers and wrk run at a higher priority.)")
    threads = sorted({w["threads"] for n, *_ in ROWS if n.startswith("gw_") for w in data.get((n, conns), []) if w["threads"]})
    say("")
    say(f"Gateway threads (from /proc/<pid>/status): {', '.join(map(str, threads)) or '—'}.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
