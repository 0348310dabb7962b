#!/usr/bin/env python3
"""Counts what one request costs in Redis with the Redis state backend: sends a fixed number
of requests of one scenario to a running gateway (one keep-alive connection, one at a time)
and counts, on the bench's redis-server, between two markers:

- round trips: the commands the gateway's connections sent (MONITOR lines from a client
  address, not from `lua`), by operation: an EVALSHA is one round trip whatever its script
  does; the store's only pipeline (a refund's ZREMs, not expected here) would show as one
  line per command;
- commands executed: `INFO commandstats` calls and `INFO stats` total_commands_processed
  before and after. Redis 7 counts the commands a script runs (`redis.call`) there too, so
  an EVALSHA of a script that runs 5 commands adds 6.

Stdlib only (a minimal RESP client). Appends one JSON object per scenario to --out.

  roundtrips.py --redis-port P --gateway http://127.0.0.1:G --token T --scenario hit \
      --requests 2000 --out roundtrips.jsonl [--tag TAG]

Scenarios: hit (the same list, cache on, primed), miss_cache_off (cache off), miss_cache_on
(a new query each request, cache on), l2_hit (the queries miss_cache_on used with the same
--tag, asked of a restarted gateway: its local cache is empty, Redis's L2 has them), create
(no Idempotency-Key), create_idem (a new Idempotency-Key each request). A few uncounted
requests (--warmup) go first.
"""

import argparse
import http.client
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

# What the design says one request of each scenario costs, in round trips at most (issue 21:
# a create at most 2, 3 with an Idempotency-Key); bench/report.py says why beside the measured
# figure. Compared without PINGs (the generation watch's heartbeat, on a timer: not per
# request) and with a little room for the rare extra read (a generation read while the watch
# resubscribes).
EXPECTED_MAX = {
    "hit": 0,
    "miss_cache_off": 1,
    "miss_cache_on": 3,
    "l2_hit": 1,
    "create": 2,
    "create_idem": 3,
}
SLACK = 0.01

LIST_PATH = "/api/v1/partnerships?view=referral&search=tech"
CREATE_PATH = "/api/v1/partnerships"


class Resp:
    """A minimal RESP2 client: enough for INFO, ECHO, PING and MONITOR."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
        self.sock.sendall(b"".join(out))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            if kind == b"-":
                raise RuntimeError(rest.decode())
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.send(*args)
        return self.reply()


def info(r, section):
    out = {}
    for line in r.call("INFO", section).splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def cmdstats(r):
    """{command: (calls, usec)} from INFO commandstats."""
    out = {}
    for k, v in info(r, "commandstats").items():
        m = re.search(r"calls=(\d+),usec=(\d+)", v)
        if k.startswith("cmdstat_") and m:
            out[k[len("cmdstat_") :]] = (int(m.group(1)), int(m.group(2)))
    return out


ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def is_gen(key):
    return key.endswith(":gen") or ":gen:" in key


def classify(args, inner):
    """The store operation behind one top-level command (see src/state/redis/), from its
    first key and, for a script, the commands it ran (`inner`, upper case)."""
    name = args[0].lower()
    if name in ("evalsha", "eval"):
        nkeys = int(args[2]) if len(args) > 2 else 0
        keys = args[3 : 3 + nkeys]
        argv = args[3 + nkeys :]
        k0 = keys[0] if keys else ""
        if k0.endswith(":log"):
            return "admit (EVALSHA)" if nkeys >= 3 else "remaining (EVALSHA)"
        if k0.endswith(":pause"):
            return "pause (EVALSHA)"
        if ":idem:" in k0:
            if nkeys > 1:
                # An accepted keyed write: the record and the generations, one script.
                return "settle + bump generation (EVALSHA)"
            return "settle (EVALSHA)" if argv and argv[0] in ("done", "unknown", "release") else "claim (EVALSHA)"
        if is_gen(k0):
            if "INCR" in inner:
                return "bump generation (EVALSHA)"
            return "generations (EVALSHA)" if nkeys > 1 else "generation (EVALSHA)"
        if ":l2:" in k0 or ":l2v2:" in k0:
            return "L2 lookup + lock (EVALSHA)" if "HMGET" in inner else "L2 put + unlock (EVALSHA)"
        return f"{name} (other script)"
    if name == "get" and len(args) > 1 and is_gen(args[1]):
        return "generation (GET)"
    if name == "zrem":
        return "refund (ZREM, pipelined)"
    return name.upper()


class Monitor(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.r = Resp(port)
        self.r.sock.settimeout(None)
        self.lines = []
        self.lock = threading.Lock()
        assert self.r.call("MONITOR") == "OK"

    def run(self):
        try:
            while True:
                # Each MONITOR line comes as a RESP simple string: "+<time> [db who] args".
                line = self.r._line().decode("utf-8", "replace").removeprefix("+")
                with self.lock:
                    self.lines.append(line)
        except (EOFError, OSError):
            pass

    def wait_for(self, marker, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if any(marker in l for l in self.lines):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"MONITOR never showed {marker}")


def requests_for(scenario, n, tag):
    """(method, path, extra headers, body) for request i."""
    for i in range(n):
        if scenario in ("hit", "miss_cache_off"):
            yield "GET", LIST_PATH, {}, None
        elif scenario in ("miss_cache_on", "l2_hit"):
            yield "GET", f"/api/v1/partnerships?view=referral&search=rt{tag}x{i}", {}, None
        elif scenario == "create":
            yield "POST", CREATE_PATH, {"Content-Type": "application/json"}, None
        elif scenario == "create_idem":
            yield "POST", CREATE_PATH, {
                "Content-Type": "application/json",
                "Idempotency-Key": f"bench-{tag}-{i}",
            }, None
        else:
            raise SystemExit(f"unknown scenario {scenario}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--body", default="")
    ap.add_argument("--tag", default="0")
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="uncounted requests first (own queries and keys): a script's first use in a "
        "server's life costs a NOSCRIPT answer and a SCRIPT LOAD once",
    )
    a = ap.parse_args()

    u = urlsplit(a.gateway)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    ctl = Resp(a.redis_port)
    mon = Monitor(a.redis_port)
    mon.start()
    def send(method, path, headers):
        h = {"Authorization": f"Bearer {a.token}", **headers}
        conn.request(method, path, body=a.body.encode() if method == "POST" else None, headers=h)
        resp = conn.getresponse()
        resp.read()
        return resp

    # l2_hit's queries were put in the L2 by miss_cache_on: a warm-up would need others.
    if a.scenario != "l2_hit":
        for method, path, headers, _ in requests_for(a.scenario, a.warmup, f"{a.tag}warm"):
            resp = send(method, path, headers)
            if resp.status >= 300:
                raise SystemExit(f"{a.scenario}: warm-up answered {resp.status}")

    start_marker = f"jbgw-bench-start-{a.scenario}-{time.time_ns()}"
    end_marker = f"jbgw-bench-end-{a.scenario}-{time.time_ns()}"

    ctl.call("ECHO", start_marker)
    mon.wait_for(start_marker)
    s0 = info(ctl, "stats")  # not counting itself
    c0 = cmdstats(ctl)
    ours = 1  # the commandstats INFO above (this INFO stats is not in its own figure)

    statuses, xcache = Counter(), Counter()
    t0 = time.perf_counter()
    for method, path, headers, _ in requests_for(a.scenario, a.requests, a.tag):
        resp = send(method, path, headers)
        statuses[resp.status] += 1
        xcache[resp.getheader("x-cache") or "-"] += 1
    elapsed = time.perf_counter() - t0

    time.sleep(0.2)  # commands the last answers caused after they were sent (none expected)
    s1 = info(ctl, "stats")
    ours += 1  # the INFO stats above counts the first two INFOs but not itself: 2 in all
    c1 = cmdstats(ctl)
    ctl.call("ECHO", end_marker)
    mon.wait_for(end_marker)
    with mon.lock:
        lines = list(mon.lines)
    mon.r.sock.close()

    inside = False
    top, lua = Counter(), Counter()
    sent = []  # (args, commands its script ran) per top-level command
    for line in lines:
        if start_marker in line:
            inside = True
            continue
        if end_marker in line:
            break
        if not inside:
            continue
        m = re.match(r"^[0-9.]+ \[\d+ ([^\]]+)\] (.*)$", line)
        if not m:
            continue
        who, rest = m.groups()
        args = ARG.findall(rest)  # escapes left as they are: keys and names have none
        if not args:
            continue
        if who == "lua":
            # A script is atomic: its commands follow its EVALSHA line.
            lua[args[0].upper()] += 1
            if sent:
                sent[-1][1].add(args[0].upper())
            continue
        if args[0].lower() in ("info", "echo"):
            continue  # this script's own
        sent.append((args, set()))
    for args, inner in sent:
        top[classify(args, inner)] += 1

    total = int(s1["total_commands_processed"]) - int(s0["total_commands_processed"]) - ours
    stats = {
        k: [c1.get(k, (0, 0))[0] - c0.get(k, (0, 0))[0], c1.get(k, (0, 0))[1] - c0.get(k, (0, 0))[1]]
        for k in set(c0) | set(c1)
    }
    # {command: [calls, usec]}; Redis's usec of an EVALSHA includes its script's commands.
    stats = {k: v for k, v in stats.items() if v[0] and k not in ("info", "echo")}
    n = a.requests
    per_request = (sum(top.values()) - top.get("PING", 0)) / n
    expected = EXPECTED_MAX.get(a.scenario)
    rec = {
        "scenario": a.scenario,
        "requests": n,
        "statuses": dict(statuses),
        "x_cache": dict(xcache),
        "elapsed_s": round(elapsed, 3),
        "round_trips": sum(top.values()),
        "round_trips_per_request": sum(top.values()) / n,
        "round_trips_by_op": dict(top),
        "round_trips_per_request_without_pings": per_request,
        "expected_max": expected,
        "as_expected": None if expected is None else per_request <= expected + SLACK,
        "lua_commands": dict(lua),
        "commands_total": total,
        "commands_per_request": total / n,
        "commandstats": stats,
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(
        f"{a.scenario}: {n} requests {dict(statuses)} x-cache {dict(xcache)}: "
        f"{rec['round_trips_per_request']:.3f} round trips/request {dict(top)}; "
        f"{rec['commands_per_request']:.3f} commands/request",
        file=sys.stderr,
    )
    if rec["as_expected"] is False:
        print(
            f"{a.scenario}: {per_request:.3f} round trips/request without PINGs, "
            f"more than the {expected} expected",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
