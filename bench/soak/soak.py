#!/usr/bin/env python3
"""The soak driver behind bench/soak.sh (python3 stdlib only).

Given a running gateway in front of a running `journeybee-sim` (the env file bench/soak.sh
writes, the gateway's pid and optionally the simulator's), it:
  - checks the simulator's control endpoint (`/__sim/...`, on unless --no-control);
  - warms up, idles, samples the gateway process (VmRSS, open fds);
  - drives mixed traffic for --duration seconds with --workers threads at about --rps requests/s
    in total (each worker keeps one keep-alive connection to the gateway), while a scheduler
    switches the simulator's faults every --period seconds;
  - idles, samples again, reads /metrics and the simulator's stats;
  - classifies every response and writes the markdown report; exits 1 when anything
    unexpected happened or fds leaked, 2 on a harness problem.

Every loop is bounded in time; every request has a socket timeout.
"""

import argparse
import collections
import http.client
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse

FAULTS = [  # the schedule cycles through these, with "none" between two faults
    ("status 500", {"mode": "status", "status": 500}),
    ("reset", {"mode": "reset"}),
    ("rate_limited", {"mode": "rate_limited", "retry_after_secs": 2}),
    ("status 503", {"mode": "status", "status": 503}),
    ("slow 300 ms", {"mode": "slow", "ms": 300}),
]
NONE = ("none", {"mode": "none"})
# Upstream error responses are passed through with their status (JourneyBee's own 500 stays
# a 500, as the gateway's contract says); the gateway's own are 502, 503 and 504.
ERROR_5XX_OK_DURING_FAULT = {500, 502, 503, 504}
RUN = f"{int(time.time()) % 100000:05d}{random.randrange(1000):03d}"

# kind -> statuses accepted below 500 (5xx are judged by the fault timeline)
ALLOWED = {
    "list": {200, 429},
    "list_write_user": {200, 429},
    "list_foreign_user": {403},
    "list_bad_query": {400},
    "create": {201, 429},
    "create_keyed": {201, 429},
    "create_replay": {201, 409, 429},
    "create_repeat_nokey": {201, 409, 429},
    "create_invalid": {400},
    "create_own_domain": {406},
    "create_read_user": {403},
    "missing_token": {401},
    "bad_token": {401},
    "unknown_path": {404},
    "wrong_method": {405},
}


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_env(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    for k in ("JBGW_URL", "JBGW_ADMIN_URL", "SIM_URL", "READ_TOKEN", "WRITE_TOKEN"):
        if not env.get(k):
            print(f"soak: the env file has no {k}", file=sys.stderr)
            sys.exit(2)
    for k in ("JBGW_URL", "JBGW_ADMIN_URL", "SIM_URL"):
        if not env[k].startswith("http://127.0.0.1:"):
            print(f"soak: refusing a non-loopback address {k}={env[k]}", file=sys.stderr)
            sys.exit(2)
    return env


def hostport(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port


def one_shot(url, method="GET", body=None, headers=None, timeout=10):
    """A request on a fresh connection: (status, headers dict, body bytes)."""
    host, port = hostport(url)
    u = urllib.parse.urlsplit(url)
    path = u.path + (("?" + u.query) if u.query else "")
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path or "/", body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


# ----------------------------------------------------------------------------- process sampling


def proc_sample(pid):
    s = {"t": time.monotonic()}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    s[k] = int(v.split()[0])  # kB for Vm*, count for Threads
        fds = os.listdir(f"/proc/{pid}/fd")
        s["fds"] = len(fds)
        kinds = collections.Counter()
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            kinds["socket" if target.startswith("socket:") else "other"] += 1
        s["sockets"] = kinds["socket"]
        s["other_fds"] = kinds["other"]
    except OSError as e:
        s["error"] = str(e)
    return s


# ----------------------------------------------------------------------------- traffic


class Traffic:
    """Builds the mixed requests; thread-safe."""

    HOT = [
        "view=all",
        "view=all&search=tech",
        "view=referral",
        "view=reseller&sort=%5B%7B%22type%22%3A%22tier%22%2C%22asc%22%3Atrue%7D%5D",
        "search=global",
        "view=all&assigned=1",
        "view=referral&search=data",
        "",
    ]
    WORDS = ["tech", "data", "global", "cloud", "labs", "group", "systems", "digital", "net",
             "partners", "solutions", "soft", "media", "health", "retail"]
    KINDS = [  # (kind, weight)
        ("list", 40),
        ("list_write_user", 8),
        ("list_foreign_user", 3),
        ("list_bad_query", 4),
        ("create", 4),
        ("create_keyed", 4),
        ("create_replay", 3),
        ("create_repeat_nokey", 2),
        ("create_invalid", 8),
        ("create_own_domain", 3),
        ("create_read_user", 6),
        ("missing_token", 6),
        ("bad_token", 3),
        ("unknown_path", 4),
        ("wrong_method", 2),
    ]

    def __init__(self, env, foreign_user_id):
        self.read = env["READ_TOKEN"]
        self.write = env["WRITE_TOKEN"]
        self.foreign = foreign_user_id
        self.lock = threading.Lock()
        self.n = 0
        self.keyed = []  # (key, body) of keyed creates sent
        self.sent_bodies = []  # bodies of creates sent
        self.kinds = [k for k, _ in self.KINDS]
        self.weights = [w for _, w in self.KINDS]

    def next_n(self):
        with self.lock:
            self.n += 1
            return self.n

    def create_body(self):
        n = self.next_n()
        return json.dumps({
            "name": f"Soak Partner {RUN}-{n}",
            "emails": [{"email": f"ops@soak{RUN}-{n}.example-corp.com", "firstName": "Ops"}],
            "partnerType": random.choice(["referral", "reseller"]),
            "inactive": True,
        })

    def list_query(self, rng):
        if rng.random() < 0.7:
            return rng.choice(self.HOT)
        # the long tail: mostly misses
        q = {"search": rng.choice(self.WORDS) + str(rng.randrange(50))}
        if rng.random() < 0.5:
            q["view"] = rng.choice(["all", "assigned", "referral", "reseller"])
        if rng.random() < 0.3:
            q["sort"] = json.dumps([{"type": rng.choice(["stage", "category", "tier"]),
                                     "asc": rng.random() < 0.5}], separators=(",", ":"))
        return urllib.parse.urlencode(q)

    def make(self, rng):
        """(kind, method, path, headers, body)"""
        kind = rng.choices(self.kinds, self.weights)[0]
        auth_r = {"Authorization": f"Bearer {self.read}"}
        auth_w = {"Authorization": f"Bearer {self.write}"}
        json_ct = {"Content-Type": "application/json"}
        lp = "/api/v1/partnerships"
        if kind in ("list", "list_write_user"):
            q = self.list_query(rng)
            return kind, "GET", lp + ("?" + q if q else ""), dict(
                auth_r if kind == "list" else auth_w), None
        if kind == "list_foreign_user":
            return kind, "GET", f"{lp}?userId={self.foreign}", dict(auth_r), None
        if kind == "list_bad_query":
            q = rng.choice(["view=everything", "sort=price", "bogus=1", "assigned=1&unassigned=1",
                            "stages=a,b", "sort=%5B%7B%22type%22%3A%22price%22%7D%5D"])
            return kind, "GET", f"{lp}?{q}", dict(auth_r), None
        if kind == "create":
            body = self.create_body()
            with self.lock:
                self.sent_bodies.append(body)
            return kind, "POST", lp, {**auth_w, **json_ct}, body
        if kind == "create_keyed" or (kind == "create_replay" and not self.keyed):
            body = self.create_body()
            key = f"soak-{RUN}-{self.next_n()}"
            with self.lock:
                self.keyed.append((key, body))
                self.sent_bodies.append(body)
            return "create_keyed", "POST", lp, {**auth_w, **json_ct, "Idempotency-Key": key}, body
        if kind == "create_replay":
            with self.lock:
                key, body = rng.choice(self.keyed[-20:])
            return kind, "POST", lp, {**auth_w, **json_ct, "Idempotency-Key": key}, body
        if kind == "create_repeat_nokey":
            with self.lock:
                body = rng.choice(self.sent_bodies[-20:]) if self.sent_bodies else None
            if body is None:
                body = self.create_body()
                with self.lock:
                    self.sent_bodies.append(body)
                return "create", "POST", lp, {**auth_w, **json_ct}, body
            return kind, "POST", lp, {**auth_w, **json_ct}, body
        if kind == "create_invalid":
            body = rng.choice([
                '{"name":"No emails","partnerType":"referral"}',
                '{"name":"Bad","emails":[{"email":"not-an-email"}],"partnerType":"referral"}',
                '{"name":"X","emails":[{"email":"a@b-corp.com"}],"partnerType":"friend"}',
                '{"name":',
                '[1,2,3]',
                '{"name":"","emails":[{"email":"a@c-corp.com"}],"partnerType":"referral"}',
            ])
            return kind, "POST", lp, {**auth_w, **json_ct}, body
        if kind == "create_own_domain":
            body = json.dumps({"name": "Ourselves", "partnerType": "referral",
                               "emails": [{"email": "me@acme-partners.io"}]})
            return kind, "POST", lp, {**auth_w, **json_ct}, body
        if kind == "create_read_user":
            return kind, "POST", lp, {**auth_r, **json_ct}, self.create_body()
        if kind == "missing_token":
            if rng.random() < 0.5:
                return kind, "GET", lp + "?view=all", {}, None
            return kind, "POST", lp, dict(json_ct), self.create_body()
        if kind == "bad_token":
            return kind, "GET", lp, {"Authorization": "Bearer " + self.read[:-4] + "AAAA"}, None
        if kind == "unknown_path":
            p = rng.choice(["/api/v1/partners", "/api/v2/partnerships", "/admin", "/metrics",
                            "/api/v1/partnerships/123/notes", "/__sim/fault"])
            return kind, "GET", p, dict(auth_w), None
        if kind == "wrong_method":
            # /api/v1/partnerships/{id} is a route (PATCH and DELETE): a GET on it is a 405.
            if rng.random() < 0.5:
                return kind, "GET", "/api/v1/partnerships/123", dict(auth_w), None
            return kind, "DELETE", lp, dict(auth_w), None
        raise AssertionError(kind)


class Worker(threading.Thread):
    def __init__(self, idx, gw, traffic, interval, deadline, records, timeout):
        super().__init__(name=f"worker-{idx}", daemon=True)
        self.host, self.port = gw
        self.traffic = traffic
        self.interval = interval
        self.deadline = deadline
        self.records = records
        self.timeout = timeout
        self.rng = random.Random(idx * 7919 + int(time.time()))
        self.idx = idx
        self.conn = None
        self.reused = False
        self.conn_no = 0  # connections opened by this worker
        self.on_conn = 0  # requests sent on the current connection
        self.prev = None  # (kind, method, path, status, t1) of the previous exchange on it

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self):
        next_t = time.monotonic() + self.rng.random() * self.interval
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                break
            if next_t > now:
                time.sleep(min(next_t - now, self.deadline - now))
                continue
            next_t = max(next_t + self.interval, now)
            self.records.append(self.one())
        self.close()

    def one(self):
        kind, method, path, headers, body = self.traffic.make(self.rng)
        rec = {"kind": kind, "method": method, "path": path, "req_headers": headers,
               "req_body": body, "t0": time.monotonic(), "reused": False}
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.reused = False
            self.conn_no += 1
            self.on_conn = 0
            self.prev = None
        self.on_conn += 1
        rec["reused"] = self.reused
        rec["conn"] = f"worker {self.idx} connection {self.conn_no} request {self.on_conn}"
        rec["prev"] = self.prev
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read()
            rec["status"] = r.status
            rec["headers"] = {k.lower(): v for k, v in r.getheaders()}
            rec["body"] = data
            self.reused = True
            self.prev = (kind, method, path, r.status, rec["headers"].get("connection"),
                         time.monotonic())
            if r.will_close:
                self.close()
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            rec["error"] = f"{type(e).__name__}: {e}"
            self.close()
        rec["t1"] = time.monotonic()
        return rec


class FaultScheduler(threading.Thread):
    def __init__(self, sim_url, t_start, baseline, period, deadline, timeline, problems):
        super().__init__(name="faults", daemon=True)
        self.sim_url = sim_url
        self.t_start = t_start
        self.baseline = baseline
        self.period = period
        self.deadline = deadline
        self.timeline = timeline
        self.problems = problems
        self.stop = threading.Event()

    def switch(self, name, body):
        try:
            st, _, data = one_shot(self.sim_url + "/__sim/fault", "PUT", json.dumps(body),
                                   {"Content-Type": "application/json"}, timeout=5)
        except OSError as e:
            self.problems.append(f"fault switch to {name}: {e}")
            return
        t = time.monotonic()
        if st != 204:
            self.problems.append(f"fault switch to {name}: HTTP {st} {data[:200]!r}")
            return
        self.timeline.append((t, name))
        log(f"fault -> {name}")

    def run(self):
        t = self.t_start + self.baseline
        i = 0
        while not self.stop.is_set():
            if t >= self.deadline:
                break
            if self.stop.wait(max(0.0, t - time.monotonic())):
                break
            if i % 2 == 0:
                self.switch(*FAULTS[(i // 2) % len(FAULTS)])
            else:
                self.switch(*NONE)
            i += 1
            t += self.period


class Sampler(threading.Thread):
    """Samples the process every `every` s and, every tenth sample, what holds memory by
    design: the list cache (its weighed bytes and entries, from /metrics) and the simulator's
    partnerships (it stores every create, like the real API). Growth of RSS beyond those is
    what a leak would look like."""

    def __init__(self, pid, every, deadline, samples, admin_url, sim_url):
        super().__init__(name="sampler", daemon=True)
        self.pid, self.every, self.deadline, self.samples = pid, every, deadline, samples
        self.admin_url, self.sim_url = admin_url, sim_url
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            s = proc_sample(self.pid)
            if n % 10 == 0:
                try:
                    m = read_metrics(self.admin_url) or {}
                    s["cache_bytes"] = m.get("jbgw_cache_bytes")
                    s["cache_entries"] = m.get("jbgw_cache_entries")
                    st, _, body = one_shot(self.sim_url + "/__sim/stats", timeout=5)
                    if st == 200:
                        s["sim_partnerships"] = json.loads(body).get("partnerships")
                except (OSError, ValueError):
                    pass
            self.samples.append(s)
            n += 1
            self.stop.wait(self.every)


# ----------------------------------------------------------------------------- classification


def fault_windows(timeline, t_end, grace):
    """[(on, off, off + grace, name)] for every non-none phase."""
    wins = []
    for i, (t, name) in enumerate(timeline):
        if name == "none":
            continue
        off = timeline[i + 1][0] if i + 1 < len(timeline) else t_end
        wins.append((t, off, off + grace, name))
    return wins


def check_shape(rec):
    """Problems with the response's form, whatever the status."""
    st, h, body = rec["status"], rec["headers"], rec["body"]
    probs = []
    ct = h.get("content-type", "")
    if not ct.lower().startswith("application/json"):
        probs.append(f"content-type {ct!r} is not application/json")
    try:
        doc = json.loads(body)
    except ValueError:
        probs.append("body is not JSON")
        return probs
    if 200 <= st < 300:
        if rec["method"] == "GET":
            if not isinstance(doc, list) or not all(isinstance(x, dict) for x in doc):
                probs.append("list body is not a JSON array of objects")
            if h.get("x-cache") not in ("HIT", "MISS", "STALE", "BYPASS"):
                probs.append(f"list 2xx without a valid X-Cache ({h.get('x-cache')!r})")
        elif not (isinstance(doc, dict) and isinstance(doc.get("status"), str)):
            probs.append("create body is not {\"status\": ..., ...}")
    else:
        if not (isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"]):
            probs.append("error body is not {\"error\": \"...\"}")
        elif "details" in doc and not (
                isinstance(doc["details"], list)
                and all(isinstance(d, dict) and "field" in d and "message" in d
                        for d in doc["details"])):
            probs.append("error details are not [{field, message}]")
        if st == 429 and not re.fullmatch(r"\d+", h.get("retry-after", "")):
            probs.append(f"429 without a numeric Retry-After ({h.get('retry-after')!r})")
        if st == 401 and not h.get("www-authenticate"):
            probs.append("401 without WWW-Authenticate")
        if st == 405 and not h.get("allow"):
            probs.append("405 without Allow")
    return probs


def classify(rec, wins, max_latency):
    """Fills rec['unexpected'] (list of reasons) and rec['phase']."""
    reasons = []
    t0, t1 = rec["t0"], rec["t1"]
    on = [w for w in wins if t0 < w[1] and t1 > w[0]]  # overlaps a fault phase
    tolerant = [w for w in wins if t0 < w[2] and t1 > w[0]]  # ... or its grace
    rec["phase"] = on[0][3] if on else ("grace" if tolerant else "none")
    if t1 - t0 > max_latency:
        reasons.append(f"took {t1 - t0:.1f} s (> {max_latency:g} s)")
    if "error" in rec:
        prev = rec.get("prev")
        if rec["reused"] and prev:
            reasons.append(f"connection error to the gateway on a reused keep-alive connection "
                           f"after {prev[1]} → {prev[3]} on it: {rec['error']}")
        else:
            reasons.append(f"connection error to the gateway: {rec['error']}")
        rec["unexpected"] = reasons
        return
    st = rec["status"]
    if st >= 500:
        if not tolerant:
            reasons.append(f"{st} with no fault on (outside the grace period)")
        elif st not in ERROR_5XX_OK_DURING_FAULT:
            passthrough = rec["body"].strip() == b'{"error":"simulated failure"}'
            reasons.append(f"{st} during fault '{rec['phase']}' (only 502/503/504 are expected)"
                           + ("; it is the simulator's own 500 body passed through"
                              if passthrough else ""))
    elif st not in ALLOWED[rec["kind"]]:
        reasons.append(f"status {st} for a {rec['kind']} request "
                       f"(expected {sorted(ALLOWED[rec['kind']])} or a fault-time 5xx)")
    reasons += check_shape(rec)
    rec["unexpected"] = reasons


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


# ----------------------------------------------------------------------------- metrics

METRICS_OF_INTEREST = [
    "jbgw_throttled_total",
    "jbgw_upstream_retries_total",
    "jbgw_idempotent_replays_total",
    "jbgw_circuit_breaker_state",
    "jbgw_cache_lookups_total",
]


def read_metrics(admin_url):
    st, _, body = one_shot(admin_url + "/metrics", timeout=10)
    if st != 200:
        return None
    out = collections.OrderedDict()
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def metric_lines(metrics, names):
    rows = []
    for series, value in metrics.items():
        base = series.split("{", 1)[0]
        if base in names:
            rows.append((series, value))
    return rows


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the gateway's pid (sampled)")
    ap.add_argument("--sim-pid", type=int, default=0,
                    help="the simulator's pid (RSS reported, not part of the verdict)")
    ap.add_argument("--duration", type=float, default=180)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--rps", type=float, default=20)
    ap.add_argument("--period", type=float, default=15)
    ap.add_argument("--baseline", type=float, default=5)
    ap.add_argument("--grace", type=float, default=12)
    ap.add_argument("--idle", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--max-latency", type=float, default=35)
    ap.add_argument("--timeout", type=float, default=40)
    ap.add_argument("--fd-margin", type=int, default=-1)
    ap.add_argument("--report", required=True)
    ap.add_argument("--machine", default="")
    ap.add_argument("--software", default="")
    ap.add_argument("--unexpected-log", default="")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    fd_margin = a.fd_margin if a.fd_margin >= 0 else 2 * a.workers + 4

    env = read_env(a.env)
    gw = hostport(env["JBGW_URL"])
    harness = []  # harness problems (exit 2)

    # The control endpoint is required.
    try:
        st, _, body = one_shot(env["SIM_URL"] + "/__sim/stats", timeout=5)
        sim0 = json.loads(body) if st == 200 else None
    except (OSError, ValueError):
        st, sim0 = None, None
    if not isinstance(sim0, dict) or "requests" not in sim0:
        print(f"soak: the simulator has no control endpoint (GET /__sim/stats -> {st}).\n"
              "      journeybee-sim must run without --no-control.", file=sys.stderr)
        return 2
    one_shot(env["SIM_URL"] + "/__sim/fault", "PUT", '{"mode":"none"}',
             {"Content-Type": "application/json"}, timeout=5)

    # Another valid user id for the foreign-list case: any id but bob's works, the gateway
    # refuses a userId other than the caller's own before looking it up.
    foreign = 999999
    traffic = Traffic(env, foreign)
    interval = a.workers / a.rps

    cold = proc_sample(a.pid)
    # Warm-up: fill the cache and the upstream pool at full concurrency, then settle.
    log(f"warm-up {a.warmup:g}s")
    warm_records = []
    deadline = time.monotonic() + a.warmup
    ws = [Worker(i, gw, traffic, interval, deadline, warm_records, a.timeout)
          for i in range(a.workers)]
    for w in ws:
        w.start()
    for w in ws:
        w.join(a.warmup + a.timeout + 5)
    time.sleep(a.idle)
    start = proc_sample(a.pid)

    log(f"soak {a.duration:g}s: {a.workers} workers, ~{a.rps:g} req/s, faults every {a.period:g}s")
    records, timeline, samples = [], [], []
    t_start = time.monotonic()
    deadline = t_start + a.duration
    timeline.append((t_start, "none"))
    sched = FaultScheduler(env["SIM_URL"], t_start, a.baseline, a.period, deadline, timeline,
                           harness)
    sampler = Sampler(a.pid, 2.0, deadline + a.timeout + 30, samples, env["JBGW_ADMIN_URL"],
                      env["SIM_URL"])
    ws = [Worker(i, gw, traffic, interval, deadline, records, a.timeout)
          for i in range(a.workers)]
    sched.start()
    sampler.start()
    for w in ws:
        w.start()
    for w in ws:
        w.join(max(0.0, deadline - time.monotonic()) + a.timeout + 5)
    stuck = [w.name for w in ws if w.is_alive()]
    if stuck:
        harness.append(f"workers still running after the deadline: {stuck}")
    sched.stop.set()
    sched.join(10)
    t_end = time.monotonic()
    fault_at_end = timeline[-1][1]
    if fault_at_end != "none":
        sched.switch(*NONE)
    # Settle: keep-alive connections closed by the workers, in-flight work finished.
    time.sleep(a.idle)
    sampler.stop.set()
    sampler.join(5)
    end = proc_sample(a.pid)
    sim_end = proc_sample(a.sim_pid) if a.sim_pid else None
    try:
        metrics = read_metrics(env["JBGW_ADMIN_URL"])
    except OSError as e:
        metrics = None
        harness.append(f"/metrics: {e}")
    try:
        st, _, body = one_shot(env["SIM_URL"] + "/__sim/stats", timeout=5)
        sim1 = json.loads(body)
    except (OSError, ValueError) as e:
        sim1 = None
        harness.append(f"/__sim/stats at the end: {e}")

    # ----- classify
    wins = fault_windows(timeline, t_end, a.grace)
    everything = warm_records + records
    for r in warm_records:
        r["warmup"] = True
    for r in everything:
        classify(r, wins, a.max_latency)
    unexpected = [r for r in everything if r["unexpected"]]

    by_outcome = collections.Counter()
    by_kind = collections.defaultdict(collections.Counter)
    by_phase = collections.defaultdict(collections.Counter)
    lat = collections.defaultdict(list)
    for r in everything:
        if "error" in r:
            key = ("conn-error", "-")
        else:
            key = (str(r["status"]), r["headers"].get("x-cache", "-")
                   + (" (replayed)" if r["headers"].get("idempotent-replayed") else ""))
        by_outcome[key] += 1
        by_kind[r["kind"]][key[0]] += 1
        by_phase[r["phase"]][key[0]] += 1
        lat[r["kind"]].append(r["t1"] - r["t0"])

    # Create accounting: each create is sent upstream at most once.
    fresh_201 = sum(1 for r in everything if r.get("status") == 201
                    and not r["headers"].get("idempotent-replayed"))
    unknown_504 = sum(1 for r in everything if r["method"] == "POST" and r.get("status") == 504)
    created = (sim1["partnerships"] - sim0["partnerships"]) if sim1 else None
    accounting = None
    if created is not None:
        ok = fresh_201 <= created <= fresh_201 + unknown_504
        accounting = (created, fresh_201, unknown_504, ok)
        if not ok:
            harness_note = (f"created upstream {created}, fresh 201s {fresh_201}, "
                            f"504 unknown-outcome creates {unknown_504}")
            unexpected.append({"kind": "create-accounting", "unexpected": [
                "partnerships created upstream outside [fresh 201s, fresh 201s + create 504s]: "
                + harness_note], "method": "-", "path": "-", "req_headers": {}, "req_body": None,
                "t0": t_end, "t1": t_end, "phase": "-"})

    fd_growth = end.get("fds", 0) - start.get("fds", 0)
    other_growth = end.get("other_fds", 0) - start.get("other_fds", 0)
    fd_leak = fd_growth > fd_margin or other_growth > 2
    peak_rss = max([s.get("VmRSS", 0) for s in samples + [cold, start, end]])
    max_fds = max([s.get("fds", 0) for s in samples + [start, end]])

    # ----- report
    L = []
    w = L.append
    verdict = "PASS" if not unexpected and not fd_leak and not harness else "FAIL"
    w("# journeybee-gateway soak\n")
    w(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ")
    w(f"Machine: {a.machine}  ")
    w(f"Software: {a.software}  ")
    if a.note:
        w(f"Note: {a.note}  ")
    w(f"Setup: `journeybee-gateway serve` (built without the demo feature, the demo's config) "
      f"in front of `journeybee-sim`, two processes on loopback "
      f"(simulator 100 req/min per key, mirrored by the gateway; list cache 30 s); "
      f"{a.duration:g} s of traffic after a {a.warmup:g} s warm-up, {a.workers} workers "
      f"(one keep-alive connection each), ~{a.rps:g} req/s in total; a fault every "
      f"{2 * a.period:g} s, on for {a.period:g} s (first after {a.baseline:g} s); 5xx tolerated "
      f"during a fault and {a.grace:g} s after it (breaker cooldown is 10 s); latency bound "
      f"{a.max_latency:g} s.\n")
    w(f"**Result: {verdict}** — {len(everything)} requests, **{len(unexpected)} unexpected**, "
      f"fds {start.get('fds')} → {end.get('fds')} "
      f"({'LEAK' if fd_leak else 'no leak'}; margin {fd_margin}), "
      f"peak RSS {peak_rss / 1024:.1f} MiB.\n")
    if harness:
        w("Harness problems:\n")
        for p in harness:
            w(f"- {p}")
        w("")

    w("## Fault schedule\n")
    w("| t (s) | simulator fault |")
    w("|--:|---|")
    for t, name in timeline:
        w(f"| {t - t_start:.1f} | {name} |")
    w("")

    w("## Requests by outcome (status × X-Cache)\n")
    w("| status | X-Cache | requests |")
    w("|--:|---|--:|")
    for (st, xc), n in sorted(by_outcome.items()):
        w(f"| {st} | {xc} | {n} |")
    w("")
    w("## Requests by kind\n")
    w("| kind | requests | statuses | p50 | p99 | max |")
    w("|---|--:|---|--:|--:|--:|")
    for kind in sorted(by_kind):
        c = by_kind[kind]
        sts = ", ".join(f"{s}×{n}" for s, n in sorted(c.items()))
        v = lat[kind]
        w(f"| {kind} | {sum(c.values())} | {sts} | {pct(v, 50) * 1000:.1f} ms | "
          f"{pct(v, 99) * 1000:.1f} ms | {max(v) * 1000:.1f} ms |")
    w("")
    w("## Statuses by fault phase\n")
    w("| phase | statuses |")
    w("|---|---|")
    for ph in sorted(by_phase):
        w(f"| {ph} | " + ", ".join(f"{s}×{n}" for s, n in sorted(by_phase[ph].items())) + " |")
    w("")

    w(f"## Unexpected outcomes: {len(unexpected)}\n")
    if unexpected:
        reasons = collections.Counter(re.sub(r"\s*\([^)]*\)", "", x) for r in unexpected
                                      for x in r["unexpected"])
        for reason, n in reasons.most_common():
            w(f"- {n} × {reason}")
        w("\nExamples, the first three of each kind (exact request and response):\n")
        seen = collections.Counter()
        examples = []
        for r in unexpected:
            key = re.sub(r"\s*\([^)]*\)", "", r["unexpected"][0])
            seen[key] += 1
            if seen[key] <= 3:
                examples.append(r)
        for r in examples[:15]:
            w("```")
            w(f"t={r['t0'] - t_start:+.2f}s phase={r.get('phase')} kind={r['kind']} "
              f"took={r['t1'] - r['t0']:.3f}s")
            if r.get("conn"):
                w(r["conn"] + ("" if not r.get("prev") else
                               "; previous exchange on it: {} {} -> {} (Connection: {}) {:.3f}s "
                               "before".format(r["prev"][1], r["prev"][2], r["prev"][3],
                                               r["prev"][4], r["t0"] - r["prev"][5])))
            w(f"{r['method']} {r['path']}")
            for k, v in r["req_headers"].items():
                w(f"{k}: {'Bearer <token>' if k == 'Authorization' else v}")
            if r["req_body"]:
                w(f"\n{r['req_body']}")
            w("->")
            if "error" in r:
                w(r["error"])
            elif "status" in r:
                w(f"HTTP {r['status']}")
                for k, v in r["headers"].items():
                    w(f"{k}: {v}")
                w("\n" + r["body"][:1000].decode("utf-8", "replace"))
            w("reasons: " + "; ".join(r["unexpected"]))
            w("```")
    else:
        w("None.")
    w("")

    w("## Gateway process\n")
    w("| sample | VmRSS | fds | sockets | other fds | threads |")
    w("|---|--:|--:|--:|--:|--:|")
    for label, s in (("cold (before any traffic)", cold), ("start (after warm-up and idle)",
                                                             start),
                     ("end (after idle)", end)):
        w(f"| {label} | {s.get('VmRSS', 0) / 1024:.1f} MiB | {s.get('fds')} | "
          f"{s.get('sockets')} | {s.get('other_fds')} | {s.get('Threads')} |")
    w("")
    w(f"Peak RSS: {peak_rss / 1024:.1f} MiB sampled every 2 s, VmHWM at the end "
      f"{end.get('VmHWM', 0) / 1024:.1f} MiB. Most fds during the run: {max_fds}. "
      f"fd growth start → end: {fd_growth:+d} (other than sockets: {other_growth:+d}); "
      f"leak when > {fd_margin} (client and upstream connections are sockets of this process) "
      f"or non-socket fds grow by > 2: **{'LEAK' if fd_leak else 'no leak'}**.\n")
    if sim_end and "error" not in sim_end:
        w(f"The simulator runs in a process of its own (not part of the verdict; it keeps every "
          f"create, as the real API does): VmRSS {sim_end.get('VmRSS', 0) / 1024:.1f} MiB, "
          f"VmHWM {sim_end.get('VmHWM', 0) / 1024:.1f} MiB, {sim_end.get('fds')} fds at the "
          f"end.\n")
    if samples:
        w("Over the run, every ~20 s: RSS, open fds, the list cache's weighed size and entries "
          "(capacity-bounded; entries live for the TTL plus the stale-if-error window), and "
          "the simulator's partnerships (it keeps every create, as the real API does).\n")
        w("| t | VmRSS | fds | cache | cache entries | sim partnerships |")
        w("|--:|--:|--:|--:|--:|--:|")

        def mib(v):
            return "—" if v is None else f"{v / 1048576:.1f} MiB"

        def count(v):
            return "—" if v is None else f"{int(v):,}"

        for s in samples[::10]:
            w(f"| {s['t'] - t_start:.0f}s | {s.get('VmRSS', 0) / 1024:.1f} MiB | {s.get('fds')} "
              f"| {mib(s.get('cache_bytes'))} | {count(s.get('cache_entries'))} "
              f"| {count(s.get('sim_partnerships'))} |")
        w("")

    w("## Gateway metrics at the end\n")
    if metrics is None:
        w("(could not read /metrics)")
    else:
        w("| series | value |")
        w("|---|--:|")
        for series, value in metric_lines(metrics, METRICS_OF_INTEREST):
            w(f"| `{series}` | {value:g} |")
    w("")
    w("## Simulator\n")
    if sim1:
        w(f"API requests received: {sim1['requests'] - sim0['requests']} during warm-up and soak "
          f"({sim1['requests']} in all); partnerships {sim0['partnerships']} → "
          f"{sim1['partnerships']}.")
    if accounting:
        created, f201, u504, ok = accounting
        w(f"Create accounting: {created} created upstream; the gateway answered {f201} fresh "
          f"201s and {u504} create 504s (outcome unknown): "
          f"{'consistent' if ok else 'INCONSISTENT'} (each create sent at most once).")
    w("")
    text = "\n".join(L) + "\n"
    with open(a.report, "w", encoding="utf-8") as f:
        f.write(text)
    if a.unexpected_log and unexpected:
        with open(a.unexpected_log, "w", encoding="utf-8") as f:
            for r in unexpected:
                f.write(json.dumps({k: (v.decode("utf-8", "replace") if isinstance(v, bytes)
                                        else v) for k, v in r.items()}, default=str) + "\n")
    log(f"{verdict}: {len(everything)} requests, {len(unexpected)} unexpected, "
        f"fds {start.get('fds')} -> {end.get('fds')}, peak RSS {peak_rss / 1024:.1f} MiB")
    if harness:
        return 2
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - a harness bug is exit 2, not "unexpected outcomes"
        import traceback
        traceback.print_exc()
        sys.exit(2)
