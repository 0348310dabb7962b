#!/usr/bin/env python3
"""The economy harness: how a gateway fleet spends one key's 100 upstream requests a minute.

    economy.py --gateway BIN --sim BIN [--replicas N] [--state memory|redis] [--duration S]
               [--seed N] [--balance random|round-robin] [--extra-config FILE] [--out FILE.json]

Starts a `redis-server` (free loopback port, `--save '' --appendonly no`) when the state is
Redis, the simulator (`--rate-limit 100 --rate-limit-mode sliding`: an exact sliding 100 per
60 s per key) and N gateway replicas (`serve --config`, one config each, all on the same Redis
and key prefix; one replica on the memory backend unless `--state redis`). Then it runs a mix
of internal apps against the replicas, each request sent to a replica picked like a load
balancer would (at random, or round-robin), for `--duration` seconds:

- 12 dashboards, each polling 2-3 partnership list views every ~10 s (jittered), the views
  drawn from their user's own pool, so that dashboards of the same user share some;
- a CRM sync polling its list every ~10 s and creating a partnership every ~20 s (a unique
  company domain each time), listing again right after each create: read-your-writes;
- 2 people browsing: searches, next pages by cursor, a filter added, think time 3-9 s;
- a reporting script fetching the same 30 distinct lists each minute, one every 2 s.

Every user is its own JWT subject mapped to its own JourneyBee userId, so a (user, list) pair
is one cache key. The schedule (who asks what, when, and which replica) follows from `--seed`;
cursors follow from the answers. Standard library only: http.client with keep-alive, threads.

The report (JSON to --out, a table on stdout) is described in bench/README.md ("The economy").
"""

import argparse
import base64
import bisect
import hashlib
import hmac
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ISSUER = "journeybee-economy"
AUDIENCE = "journeybee-gateway"
PARTNERSHIPS = "/api/v1/partnerships"
LEADS = "/api/v1/leads"
DEALS = "/api/v1/lead-deals"
# Lists whose cache key carries the caller's userId (forced by the gateway); a deals list has
# no userId, so one copy serves every user of the key.
PER_USER = (PARTNERSHIPS, LEADS)
# What an accepted partnership create makes stale (the gateway's invalidation groups: the
# partnerships and the contacts; leads and deals lists stay valid).
INVALIDATED_BY_CREATE = (PARTNERSHIPS, "/api/v1/contacts")
KEY_PREFIX = "jbgw-economy"

# ------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout, procs):
    deadline = time.monotonic() + timeout
    while True:
        for name, p in procs:
            if p.poll() is not None:
                raise SystemExit(f"economy: {name} exited (status {p.returncode}) while waiting for {what}")
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"economy: timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def redis_ping(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


def http_get(url, timeout=5):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("GET", u.path or "/")
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Stack:
    """The processes of one run; stop() ends them (the gateways first), each by its pid."""

    def __init__(self, work):
        self.work = work
        self.procs = []  # (name, Popen)

    def spawn(self, name, argv, log):
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "JBGW_CONFIG", "SIM_LISTEN")}
        f = open(os.path.join(self.work, log), "wb")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        f.close()
        self.procs.append((name, p))
        return p

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"economy: {name} (pid {p.pid}) ignored SIGTERM; killing it", file=sys.stderr)
                p.kill()
                p.wait()


def start_redis(stack):
    for _ in range(5):
        port = free_port()
        p = stack.spawn(
            "redis-server",
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            "redis.log",
        )
        try:
            wait_for("redis-server", lambda: redis_ping(port), 10, [])
            return port
        except SystemExit:
            if p.poll() is None:
                raise
            stack.procs.pop()  # the port was taken meanwhile: another one
    raise SystemExit("economy: could not start redis-server")


def start_sim(stack, sim_bin):
    env_file = os.path.join(stack.work, "sim.env")
    p = stack.spawn(
        "journeybee-sim",
        [sim_bin, "--listen", "127.0.0.1:0", "--rate-limit", "100", "--rate-limit-mode", "sliding",
         "--record-limit", "200000", "--env-file", env_file],
        "sim.log",
    )
    wait_for("the simulator's env file", lambda: os.path.exists(env_file), 30, [("journeybee-sim", p)])
    env = {}
    with open(env_file) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            env[k] = v
    for k in ("SIM_URL", "SIM_WRITE_KEY", "SIM_USER_IDS", "SIM_COMPANY_DOMAINS"):
        if not env.get(k):
            raise SystemExit(f"economy: the simulator's env file lacks {k}")
    if not env["SIM_URL"].startswith("http://127.0.0.1:"):
        raise SystemExit(f"economy: refusing a non-loopback simulator address {env['SIM_URL']}")
    return env


def read_extra(path):
    """TOML lines by section ([cache], [rate_limit], [state]), appended to the generated ones."""
    extra = {}
    section = None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line.strip("[]").strip()
                if section not in ("cache", "rate_limit", "state"):
                    raise SystemExit(f"economy: --extra-config: section [{section}] is not one of "
                                     "[cache], [rate_limit], [state]")
                continue
            if section is None:
                raise SystemExit("economy: --extra-config: a line before any [section]")
            extra.setdefault(section, []).append(line)
    return extra


def gateway_config(sim_env, users, redis_port, replicas, ttl, extra):
    own = ", ".join(json.dumps(d) for d in sim_env["SIM_COMPANY_DOMAINS"].split(","))
    lines = [
        "# Written by bench/economy/economy.py: one company key (read and write), every user on it.",
        "[server]", 'listen = "127.0.0.1:0"', 'admin_listen = "127.0.0.1:0"', 'shutdown_grace = "5s"',
        "[log]", 'level = "info"', 'format = "json"',
        "[upstream]", f'base_url = "{sim_env["SIM_URL"]}"',
        "[upstream.keys.company]", 'secret_file = "company.key"', "read = true", "write = true",
        "[auth]", 'algorithms = ["HS256"]', f'issuer = "{ISSUER}"', f'audience = "{AUDIENCE}"',
        "[[auth.keys]]", 'hmac_secret_file = "jwt.secret"',
    ]
    for u in users:
        lines += ["[[users]]", f'subject = "{u["subject"]}"', f'name = "{u["name"]}"',
                  'upstream_key = "company"', f'user_id = {u["user_id"]}', f'access = "{u["access"]}"']
    lines += ["[validation]", f"own_domains = [{own}]",
              "[metrics]", "per_user = true",
              "[cache]", f'ttl = "{ttl}"'] + extra.get("cache", [])
    lines += ["[rate_limit]"] + extra.get("rate_limit", [])
    if redis_port is not None:
        lines += ["[state]", 'backend = "redis"', f'url = "redis://127.0.0.1:{redis_port}/0"',
                  f'key_prefix = "{KEY_PREFIX}"', f"max_replicas = {max(replicas, 1)}"] + extra.get("state", [])
    elif extra.get("state"):
        lines += ["[state]"] + extra["state"]
    return "\n".join(lines) + "\n"


def listening(log_path):
    with open(log_path, errors="replace") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("message") == "gateway listening":
                return event["addr"], event["admin_addr"]
    return None


def start_gateways(stack, gw_bin, config_text, sim_env, jwt_secret, replicas):
    out = []
    for i in range(replicas):
        d = os.path.join(stack.work, f"gw{i}")
        os.makedirs(d, mode=0o700, exist_ok=True)
        old = os.umask(0o077)
        try:
            with open(os.path.join(d, "company.key"), "w") as f:
                f.write(sim_env["SIM_WRITE_KEY"])
            with open(os.path.join(d, "jwt.secret"), "wb") as f:
                f.write(jwt_secret)
        finally:
            os.umask(old)
        cfg = os.path.join(d, "gateway.toml")
        with open(cfg, "w") as f:
            f.write(config_text)
        chk = subprocess.run([gw_bin, "check-config", cfg], capture_output=True, text=True)
        if chk.returncode != 0:
            raise SystemExit(f"economy: the gateway refuses the generated config {cfg}:\n{chk.stdout}{chk.stderr}")
        log = os.path.join(d, "gateway.log")
        p = stack.spawn(f"gateway {i}", [gw_bin, "serve", "--config", cfg], f"gw{i}/gateway.log")
        addr, admin = wait_for(f"gateway {i}'s \"gateway listening\" line", lambda: listening(log), 60,
                               [(f"gateway {i}", p)])
        for a in (addr, admin):
            if not a.startswith("127.0.0.1:"):
                raise SystemExit(f"economy: refusing a non-loopback gateway address {a}")
        wait_for(f"gateway {i} ready", lambda: http_get(f"http://{admin}/readyz")[0] == 200, 60,
                 [(f"gateway {i}", p)])
        out.append({"addr": addr, "admin": admin, "pid": p.pid})
    return out


def mint(secret, subject):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 4 * 3600}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


# ------------------------------------------------------------------------------ the mix

# Who uses the gateway. Each is its own subject and JourneyBee userId (the simulator's active
# users, in order; reused round-robin if there are fewer).
USERS = [
    ("sales-emea", "read"),
    ("sales-americas", "read"),
    ("partner-ops", "read"),
    ("exec", "read"),
    ("channel-lead", "read"),  # also browses
    ("crm-sync", "write"),
    ("report-script", "read"),
    ("analyst", "read"),  # browses
]
DASHBOARD_OWNERS = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]  # 12 dashboards over 5 users
BROWSERS = [4, 7]
CRM = 5
SCRIPT = 6

SORT_STAGE_DESC = json.dumps([{"type": "stage", "asc": False}], separators=(",", ":"))
SORT_TIER = json.dumps([{"type": "tier", "asc": True}], separators=(",", ":"))
SEARCH_TERMS = ["tech", "soft", "data", "cloud", "group", "labs", "global", "net", "digital",
                "systems", "partners", "solutions", "media", "consult"]


def q(path=PARTNERSHIPS, **params):
    """A request target, its query in a fixed order (the one a given app always sends)."""
    query = urllib.parse.urlencode(list(params.items()))
    return f"{path}?{query}" if query else path


def dashboard_candidates():
    """What dashboards show: partnership lists, the leads pipeline and the deals pipeline."""
    c = [q(view="all"), q(view="assigned"), q(view="referral"), q(view="reseller"),
         q(unassigned="1"), q(view="all", sort=SORT_STAGE_DESC), q(view="all", sort=SORT_TIER),
         q(stages="4"), q(stages="5"), q(tiers="3,4"), q(tags="10"), q(categories="3")]
    c += [q(LEADS), q(LEADS, view="received"), q(LEADS, view="sent"), q(LEADS, status="new"),
          q(LEADS, status="contacted,qualified"), q(LEADS, view="received", status="new"),
          q(LEADS, assigned="1"), q(LEADS, view="reseller"), q(LEADS, status="converted"),
          q(LEADS, unassigned="1")]
    c += [q(DEALS), q(DEALS, view="received"), q(DEALS, view="sent"), q(DEALS, view="reseller"),
          q(DEALS, phases="negotiation"), q(DEALS, phases="discovery,negotiation"),
          q(DEALS, phases="closed_won"), q(DEALS, assigned="1")]
    return c


def script_lists():
    """A report walking the same 30 lists every minute."""
    out = [q(stages=str(s), tiers=t) for s in range(1, 6) for t in ("1,2", "3,4")]
    out += [q(LEADS, view=v, status=st) for v in ("received", "sent")
            for st in ("new", "contacted", "qualified", "converted", "lost")]
    out += [q(DEALS, view=v, phases=ph) for v in ("reseller", "sent")
            for ph in ("discovery", "negotiation", "closed_won", "closed_lost")]
    out += [q(DEALS, phases="closed_won,closed_lost"), q(DEALS, phases="discovery,negotiation")]
    assert len(out) == 30 and len(set(out)) == 30
    return out


def pair_of(user, target):
    """The (user, list) pair of a request: its cache key's parts (user, or "*" when shared)."""
    path = target.split("?", 1)[0]
    return (user if path in PER_USER else "*", target)


def invalidated_by_create(target):
    return target.split("?", 1)[0] in INVALIDATED_BY_CREATE


def build_plan(seed):
    """Each dashboard's views: 2-3 from its user's pool, the next dashboard of the same user
    sometimes sharing one with the previous (distinct queries, some shared)."""
    rng = random.Random(seed)
    cands = dashboard_candidates()
    sizes = [rng.choice((2, 3)) for _ in DASHBOARD_OWNERS]
    shares = [i > 0 and DASHBOARD_OWNERS[i - 1] == o and rng.random() < 0.5
              for i, o in enumerate(DASHBOARD_OWNERS)]
    pools = {}
    for owner in sorted(set(DASHBOARD_OWNERS)):
        mine = [i for i, o in enumerate(DASHBOARD_OWNERS) if o == owner]
        pools[owner] = rng.sample(cands, sum(sizes[i] for i in mine) - sum(shares[i] for i in mine))
    dashboards, taken = [], {}
    for i, owner in enumerate(DASHBOARD_OWNERS):
        at = taken.get(owner, 0) - (1 if shares[i] else 0)
        views = pools[owner][at:at + sizes[i]]
        taken[owner] = at + sizes[i]
        dashboards.append({"owner": owner, "views": views})
    return {"dashboards": dashboards}


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.events = []

    def add(self, ev):
        with self.lock:
            self.events.append(ev)


class Fleet:
    """Picks a replica per request, as a load balancer would."""

    def __init__(self, gateways, balance):
        self.gateways = gateways
        self.balance = balance
        self.rr = 0
        self.lock = threading.Lock()

    def pick(self, rng):
        if self.balance == "round-robin":
            with self.lock:
                i = self.rr % len(self.gateways)
                self.rr += 1
            return i
        return rng.randrange(len(self.gateways))


class Client:
    """One app's keep-alive connections, one per replica."""

    def __init__(self, fleet, token, rec, t0, actor, subject, rng):
        self.fleet, self.token, self.rec, self.t0 = fleet, token, rec, t0
        self.actor, self.subject, self.rng = actor, subject, rng
        self.conns = {}

    def _conn(self, i):
        c = self.conns.get(i)
        if c is None:
            host, port = self.fleet.gateways[i]["addr"].rsplit(":", 1)
            c = http.client.HTTPConnection(host, int(port), timeout=30)
            self.conns[i] = c
        return c

    def _drop(self, i):
        c = self.conns.pop(i, None)
        if c is not None:
            c.close()

    def close(self):
        for i in list(self.conns):
            self._drop(i)

    def exchange(self, method, target, body=None):
        i = self.fleet.pick(self.rng)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            # A create goes on a new connection: never resent, never on one the server may
            # have closed meanwhile.
            self._drop(i)
        t_send = time.monotonic() - self.t0
        for attempt in (0, 1):
            c = self._conn(i)
            reused = c.sock is not None
            try:
                c.request(method, target, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self._drop(i)
                # A list on a kept-alive connection the server had closed: once more, fresh.
                if method == "GET" and reused and attempt == 0:
                    continue
                return i, t_send, time.monotonic() - self.t0, None, {}, repr(e)
            except OSError as e:
                self._drop(i)
                return i, t_send, time.monotonic() - self.t0, None, {}, repr(e)
        t_recv = time.monotonic() - self.t0
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if hdrs.get("connection", "").lower() == "close":
            self._drop(i)
        return i, t_send, t_recv, r.status, hdrs, data

    def list(self, target, why):
        i, t_send, t_recv, status, hdrs, data = self.exchange("GET", target)
        ev = {"kind": "list", "actor": self.actor, "user": self.subject, "query": target, "why": why,
              "replica": i, "t_send": round(t_send, 4), "t_recv": round(t_recv, 4), "status": status}
        if status is None:
            ev["error"] = data
        else:
            ev["x_cache"] = hdrs.get("x-cache")
            ev["cache_status"] = hdrs.get("cache-status")
            if "age" in hdrs:
                try:
                    ev["age"] = int(hdrs["age"])
                except ValueError:
                    ev["age_raw"] = hdrs["age"]
            if "retry-after" in hdrs:
                ev["retry_after"] = hdrs["retry-after"]
            items = None
            if status not in (200, 429):
                ev["body"] = data[:300].decode("utf-8", "replace")
            if status == 200:
                try:
                    items = json.loads(data)
                except ValueError:
                    ev["bad_json"] = True
                if isinstance(items, list):
                    ev["n"] = len(items)
                    if items and isinstance(items[0], dict):
                        first, last = items[0], items[-1]
                        ev["total"] = first.get("total")
                        ev["first_name"] = (first.get("partner") or {}).get("name")
                        ev["names"] = [(it.get("partner") or {}).get("name") for it in items]
                        ev["last_created"] = (last.get("partnership") or {}).get("created_at")
        self.rec.add(ev)
        return ev

    def create(self, body):
        i, t_send, t_recv, status, hdrs, data = self.exchange("POST", PARTNERSHIPS, json.dumps(body).encode())
        ev = {"kind": "create", "actor": self.actor, "user": self.subject, "replica": i,
              "t_send": round(t_send, 4), "t_recv": round(t_recv, 4), "status": status,
              "name": body["name"]}
        if status is None:
            ev["error"] = data
        elif status != 201:
            ev["body"] = data[:300].decode("utf-8", "replace")
        self.rec.add(ev)
        return ev


def sleep_until(t0, at, stop):
    delay = t0 + at - time.monotonic()
    if delay > 0:
        stop.wait(delay)
    return not stop.is_set()


def run_dashboard(cl, rng, t0, end, stop, views):
    at = rng.uniform(0, 10)
    while at < end and sleep_until(t0, at, stop):
        for v in views:
            cl.list(v, "dashboard")
        at += rng.uniform(8.5, 11.5)


def run_crm(cl, rng, t0, end, stop, seed):
    view = q(view="all")
    next_poll = rng.uniform(0, 10)
    next_create = rng.uniform(5, 20)
    n = 0
    while True:
        at = min(next_poll, next_create)
        if at >= end or not sleep_until(t0, at, stop):
            return
        if next_create <= next_poll:
            n += 1
            domain = f"econ{seed}-sync{n:03d}.com"
            body = {"name": f"Economy Sync {seed}-{n:03d} Ltd",
                    "emails": [{"email": f"jane.doe@{domain}", "firstName": "Jane", "lastName": "Doe"}],
                    "partnerType": "referral", "tierId": 2, "categoryId": 3}
            created = cl.create(body)
            after = cl.list(view, "after-create")
            after["after_create"] = {"status": created["status"], "name": body["name"]}
            next_create += rng.uniform(18, 22)
        else:
            cl.list(view, "crm-poll")
            next_poll += rng.uniform(8.5, 11.5)


def run_browser(cl, rng, t0, end, stop):
    at = rng.uniform(0, 8)
    while at < end and sleep_until(t0, at, stop):
        term = rng.choice(SEARCH_TERMS)
        base = q(search=term)
        ev = cl.list(base, "browse-search")
        # Read on: next pages by cursor, or narrow the search by a stage.
        for _ in range(rng.choice((0, 1, 1, 2))):
            at += rng.uniform(3, 9)
            if at >= end or not sleep_until(t0, at, stop):
                return
            if ev.get("status") == 200 and ev.get("n") and ev.get("last_created") and rng.random() < 0.7:
                ev = cl.list(q(search=term, cursor=ev["last_created"]), "browse-page")
            else:
                ev = cl.list(q(search=term, stages=str(rng.randint(1, 5))), "browse-filter")
        at += rng.uniform(3, 9)


def run_script(cl, rng, t0, end, stop):
    lists = script_lists()
    at = rng.uniform(0, 2)
    i = 0
    while at < end and sleep_until(t0, at, stop):
        cl.list(lists[i % len(lists)], "script")
        i += 1
        at += 2.0


class SimPoller(threading.Thread):
    """Samples GET /__sim/stats every second (the upstream's own counters)."""

    def __init__(self, sim_url, t0, stop):
        super().__init__(daemon=True)
        self.sim_url, self.t0, self.stop = sim_url, t0, stop
        self.samples = []

    def sample(self):
        try:
            status, body = http_get(self.sim_url + "/__sim/stats", timeout=5)
            if status == 200:
                s = json.loads(body)
                s["t"] = round(time.monotonic() - self.t0, 3)
                self.samples.append(s)
                return s
        except (OSError, ValueError):
            pass
        return None

    def run(self):
        while not self.stop.wait(1.0):
            self.sample()


# ------------------------------------------------------------------------------ analysis


def pct(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def sampled_peak(samples, window):
    """A lower bound of the requests in any window, from the 1-s samples of the count."""
    peak = 0
    for i, s in enumerate(samples):
        for j in range(i, -1, -1):
            if s["t"] - samples[j]["t"] > window:
                break
            peak = max(peak, s["requests"] - samples[j]["requests"])
    return peak


def analyse(events, max_stale, base_partnerships):
    lists = [e for e in events if e["kind"] == "list"]
    creates = sorted((e for e in events if e["kind"] == "create"), key=lambda e: e["t_recv"])
    ok = [e for e in lists if e["status"] == 200]
    by_cache = {}
    for e in ok:
        by_cache[e.get("x_cache") or "none"] = by_cache.get(e.get("x_cache") or "none", 0) + 1
    no_upstream = [e for e in ok if e.get("x_cache") in ("HIT", "STALE")]
    statuses = {}
    for e in lists:
        k = str(e["status"]) if e["status"] is not None else "error"
        statuses[k] = statuses.get(k, 0) + 1

    # The accepted writes (201s): every partnership list of the key is invalid from then on.
    write_times = [e["t_recv"] for e in creates if e["status"] == 201]

    def last_write_before(t):
        # At or before: the CRM lists right after its 201, often within the same 0.1 ms
        # (the timestamps' resolution), and that write precedes the list.
        i = bisect.bisect_right(write_times, t)
        return write_times[i - 1] if i else None

    # Every copy some replica answered 200, per (user, list): when it was answered and the
    # bounds of its origin (answer time minus Age: Age is whole seconds, truncated).
    copies = {}
    for e in ok:
        age = e.get("age", 0)
        if "age" in e:
            # A copy (HIT, STALE, or any answer that says its age): the gateway measured the
            # age between t_send and t_recv, and Age drops the fraction.
            lo, hi = e["t_send"] - age - 1, e["t_recv"] - age
        else:
            # A fetch: made upstream between sending and receiving.
            lo, hi = e["t_send"], e["t_recv"]
        copies.setdefault(pair_of(e["user"], e["query"]), []).append((e["t_recv"], lo, hi, e["replica"]))

    refused = [e for e in lists if e["status"] == 429]
    with_copy = []
    first_ask = 0
    for e in refused:
        if not any(answered < e["t_send"] for answered, _, _, _ in copies.get(pair_of(e["user"], e["query"]), [])):
            first_ask += 1
        # Writes surely seen by the gateway when it decided: answered before the request left.
        w = last_write_before(e["t_send"]) if invalidated_by_create(e["query"]) else None
        best = None
        for answered, lo, hi, replica in copies.get(pair_of(e["user"], e["query"]), []):
            # Answered before this request was sent, surely after the last write, surely
            # younger than max_stale when the request arrived.
            if answered >= e["t_send"]:
                continue
            if w is not None and lo <= w:
                continue
            if e["t_send"] - lo >= max_stale:
                continue
            if best is None or hi > best[1]:
                best = (answered, hi, replica)
        if best is not None:
            with_copy.append({"t": e["t_send"], "user": e["user"], "query": e["query"],
                              "replica": e["replica"], "copy_from_replica": best[2],
                              "copy_age_s": round(e["t_send"] - best[1], 1)})

    ages = [e.get("age", 0) for e in ok]

    # Read-your-writes (1): the CRM's list right after its own 201 names the partnership it
    # created first (the list is sorted newest first).
    ryw = {"checked": 0, "violations": 0, "unchecked": 0, "details": []}
    for e in lists:
        ac = e.get("after_create")
        if not ac or ac["status"] != 201:
            continue
        if e["status"] != 200:
            ryw["unchecked"] += 1
            continue
        ryw["checked"] += 1
        if ac["name"] not in (e.get("names") or []):
            ryw["violations"] += 1
            ryw["details"].append({"t": e["t_send"], "replica": e["replica"], "x_cache": e.get("x_cache"),
                                   "age": e.get("age"), "first": e.get("first_name"), "want": ac["name"]})
    # (2) Any user's unfiltered newest-first list (`view=all`) sent after a 201 came back:
    # its total counts every partnership acknowledged by then.
    cross = {"checked": 0, "violations": 0, "details": []}
    if base_partnerships is not None:
        for e in ok:
            if e["query"] != q(view="all") or e.get("total") is None:
                continue
            acked = bisect.bisect_left(write_times, e["t_send"])
            if acked == 0:
                continue
            cross["checked"] += 1
            if e["total"] < base_partnerships + acked:
                cross["violations"] += 1
                cross["details"].append({"t": e["t_send"], "user": e["user"], "replica": e["replica"],
                                         "x_cache": e.get("x_cache"), "age": e.get("age"),
                                         "total": e["total"], "want_at_least": base_partnerships + acked})

    pairs = {pair_of(e["user"], e["query"]) for e in lists}
    cache_status_seen = sum(1 for e in ok if e.get("cache_status"))
    # Why stale copies were served: the `detail` of their Cache-Status (RFC 9211), if any.
    stale_details = {}
    for e in ok:
        if e.get("x_cache") == "STALE":
            detail = "none"
            for param in (e.get("cache_status") or "").split(";")[1:]:
                k, _, v = param.strip().partition("=")
                if k == "detail":
                    detail = v.strip('"') or "none"
            stale_details[detail] = stale_details.get(detail, 0) + 1
    return {
        "lists_asked": len(lists),
        "lists_200": len(ok),
        "lists_200_pct": round(100 * len(ok) / len(lists), 1) if lists else None,
        "lists_without_upstream": len(no_upstream),
        "lists_without_upstream_pct": round(100 * len(no_upstream) / len(lists), 1) if lists else None,
        "distinct_pairs": len(pairs),
        "best_possible_without_upstream_pct": round(100 * (len(lists) - len(pairs)) / len(lists), 1) if lists else None,
        "x_cache_of_200": by_cache,
        "cache_status_on_200": cache_status_seen,
        "stale_by_detail": stale_details,
        "list_statuses": statuses,
        "client_429_lists": len(refused),
        "client_429_with_copy": len(with_copy),
        "client_429_with_copy_details": with_copy,
        # The rest: answered 200 before, but every copy is from before a write (or too old).
        "client_429_with_only_an_outdated_copy": len(refused) - len(with_copy) - first_ask,
        "client_429_never_answered_before": first_ask,
        "client_429_with_retry_after": sum(1 for e in refused if e.get("retry_after")),
        "age_p50_s": pct(ages, 50),
        "age_p95_s": pct(ages, 95),
        "age_max_s": max(ages) if ages else None,
        "creates": len(creates),
        "creates_201": len(write_times),
        "create_statuses": {str(s): sum(1 for e in creates if e["status"] == s)
                            for s in sorted({e["status"] for e in creates}, key=str)},
        "read_your_writes": ryw,
        "read_your_writes_any_user": cross,
    }


def prom_sum(text, name):
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
                seen = True
            except ValueError:
                pass
    return total if seen else None


# ------------------------------------------------------------------------------ main


def table(r):
    a, u = r["results"], r["upstream"]
    rows = [
        ("lists asked", a["lists_asked"]),
        ("lists answered 200", f'{a["lists_200"]} ({a["lists_200_pct"]} %)'),
        ("... without an upstream call of their own (HIT/STALE)",
         f'{a["lists_without_upstream"]} ({a["lists_without_upstream_pct"]} %)'),
        ("distinct (user, list) pairs; best possible without upstream",
         f'{a["distinct_pairs"]}; {a["best_possible_without_upstream_pct"]} %'),
        ("X-Cache of the 200s", ", ".join(f"{k} {v}" for k, v in sorted(a["x_cache_of_200"].items()))),
        ("Cache-Status on the 200s; STALE by its detail",
         f'{a["cache_status_on_200"]}; ' + (", ".join(f"{k} {v}" for k, v in sorted(a["stale_by_detail"].items())) or "-")),
        ("client 429s on lists", a["client_429_lists"]),
        ("... of which a copy existed somewhere", a["client_429_with_copy"]),
        ("... of which only a copy from before a write (or too old)", a["client_429_with_only_an_outdated_copy"]),
        ("... of which the pair had never been answered 200", a["client_429_never_answered_before"]),
        ("list statuses", ", ".join(f"{k}: {v}" for k, v in sorted(a["list_statuses"].items()))),
        ("Age p50 / p95 / max of the 200s (s)", f'{a["age_p50_s"]} / {a["age_p95_s"]} / {a["age_max_s"]}'),
        ("upstream requests (all)", u.get("requests")),
        ("upstream peak per 60 s", f'{u.get("peak_per_window")}{" (sampled)" if u.get("peak_sampled") else ""}'),
        ("upstream 429s", u.get("rate_limited")),
        ("creates: 201 / sent", f'{a["creates_201"]} / {a["creates"]}'),
        ("read-your-writes after a create: violations / checked",
         f'{a["read_your_writes"]["violations"]} / {a["read_your_writes"]["checked"]}'
         f' ({a["read_your_writes"]["unchecked"]} lists after a 201 not answered 200)'),
        ("any user's view=all after a 201: violations / checked",
         f'{a["read_your_writes_any_user"]["violations"]} / {a["read_your_writes_any_user"]["checked"]}'),
    ]
    w = max(len(k) for k, _ in rows)
    head = (f'economy: {r["setup"]["replicas"]} replica(s), state {r["setup"]["state"]}, '
            f'{r["setup"]["duration_s"]} s, seed {r["setup"]["seed"]}, balance {r["setup"]["balance"]}')
    return "\n".join([head] + [f"  {k.ljust(w)}  {v}" for k, v in rows])


def reanalyse(report_path, events_path, max_stale, out):
    with open(report_path) as f:
        report = json.load(f)
    with open(events_path) as f:
        events = sorted((json.loads(line) for line in f if line.strip()), key=lambda e: e["t_send"])
    # 300: the simulator's default, for a report written before the count was kept.
    base = report["setup"].get("sim_partnerships_at_start", 300)
    report["setup"]["max_stale_s"] = max_stale
    report["results"] = analyse(events, max_stale, base)
    with open(out or report_path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(table(report))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", help="the journeybee-gateway binary")
    p.add_argument("--sim", help="the journeybee-sim binary")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--state", choices=("memory", "redis"), default=None,
                   help="state backend; default memory for one replica, redis for more")
    p.add_argument("--duration", type=float, default=150)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--balance", choices=("random", "round-robin"), default="random")
    p.add_argument("--ttl", default="30s", help="[cache] ttl")
    p.add_argument("--extra-config",
                   help="TOML lines under [cache], [rate_limit] or [state] headers, added to every replica's config")
    p.add_argument("--max-stale", type=float, default=300,
                   help="how old (s) a copy may be to count as 'a copy somewhere' for a 429")
    p.add_argument("--out", help="JSON report")
    p.add_argument("--events", help="also write every request and answer as JSON lines")
    p.add_argument("--work", help="directory for configs and logs (default: a temporary one, removed)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--reanalyse", metavar="REPORT.json",
                   help="run nothing: recompute REPORT.json's results from --events (e.g. with another --max-stale)")
    a = p.parse_args()
    if a.reanalyse:
        if not a.events:
            p.error("--reanalyse needs the run's --events file")
        return reanalyse(a.reanalyse, a.events, a.max_stale, a.out)
    if not a.gateway or not a.sim:
        p.error("--gateway and --sim are required")
    if a.replicas < 1:
        p.error("--replicas must be at least 1")
    state = a.state or ("redis" if a.replicas > 1 else "memory")
    if a.replicas > 1 and state != "redis":
        p.error("several replicas share their state through Redis: --state redis")
    for b in (a.gateway, a.sim):
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            p.error(f"{b} is not an executable file")
    if state == "redis" and not shutil.which("redis-server"):
        p.error("redis-server is not installed (apt-get install redis-server)")
    extra = read_extra(a.extra_config) if a.extra_config else {}

    work = a.work or tempfile.mkdtemp(prefix="economy-")
    os.makedirs(work, exist_ok=True)
    stack = Stack(work)
    stop = threading.Event()
    try:
        redis_port = start_redis(stack) if state == "redis" else None
        sim_env = start_sim(stack, os.path.abspath(a.sim))
        ids = [int(x) for x in sim_env["SIM_USER_IDS"].split(",") if x]
        users = [{"subject": f"{name}@corp.test", "name": name, "access": access,
                  "user_id": ids[i % len(ids)]} for i, (name, access) in enumerate(USERS)]
        secret = os.urandom(32).hex().encode()
        cfg = gateway_config(sim_env, users, redis_port, a.replicas, a.ttl, extra)
        gateways = start_gateways(stack, os.path.abspath(a.gateway), cfg, sim_env, secret, a.replicas)
        sim_url = sim_env["SIM_URL"]
        status, body = http_get(sim_url + "/__sim/stats")
        if status != 200:
            raise SystemExit(f"economy: the simulator has no control endpoint (GET /__sim/stats -> {status})")
        start_stats = json.loads(body)
        print(f"economy: {a.replicas} gateway(s) ({state}) at {', '.join(g['addr'] for g in gateways)}; "
              f"simulator {sim_url}; {a.duration:g} s; work {work}", file=sys.stderr)

        plan = build_plan(a.seed)
        fleet = Fleet(gateways, a.balance)
        rec = Recorder()
        tokens = {u["subject"]: mint(secret, u["subject"]) for u in users}
        t0 = time.monotonic() + 0.5
        end = a.duration
        threads, clients = [], []

        def actor(name, user_index, fn, *extra_args):
            u = users[user_index]
            rng = random.Random(f"{a.seed}/{name}")
            cl = Client(fleet, tokens[u["subject"]], rec, t0, name, u["subject"],
                        random.Random(f"{a.seed}/{name}/lb"))
            clients.append(cl)
            threads.append(threading.Thread(target=fn, args=(cl, rng, t0, end, stop, *extra_args),
                                            name=name, daemon=True))

        for d, dash in enumerate(plan["dashboards"]):
            actor(f"dashboard-{d:02d}", dash["owner"], run_dashboard, dash["views"])
        actor("crm-sync", CRM, run_crm, a.seed)
        for b, owner in enumerate(BROWSERS):
            actor(f"browser-{b}", owner, run_browser)
        actor("report-script", SCRIPT, run_script)

        poller = SimPoller(sim_url, t0, stop)
        poller.start()
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=1)
        except KeyboardInterrupt:
            stop.set()
            raise
        stop.set()
        for cl in clients:
            cl.close()
        final = poller.sample() or {}
        metrics = {}
        for i, g in enumerate(gateways):
            try:
                status, body = http_get(f"http://{g['admin']}/metrics")
                text = body.decode("utf-8", "replace")
                with open(os.path.join(work, f"gw{i}", "metrics.txt"), "w") as f:
                    f.write(text)
                metrics[i] = text
            except OSError:
                pass
    finally:
        stop.set()
        stack.stop()

    window_s = final.get("window_ms", 60000) / 1000
    upstream = {
        "requests": final.get("requests", 0) - start_stats.get("requests", 0),
        "rate_limited": final.get("rate_limited"),
        "peak_per_window": final.get("peak_per_window"),
        "window_s": window_s,
        "recorded": final.get("recorded"),
        "peak_sampled": False,
    }
    if upstream["peak_per_window"] is None or (final.get("recorded") or 0) < final.get("requests", 0):
        # An older simulator (no peak in its stats) or a recorder that dropped requests: the
        # peak from the 1-s samples of the count, a lower bound.
        upstream["peak_per_window"] = sampled_peak(poller.samples, window_s)
        upstream["peak_sampled"] = True
    def fleet_sum(name):
        values = [v for v in (prom_sum(t, name) for t in metrics.values()) if v is not None]
        return sum(values) if values else None

    # The gateways' own view, a cross-check of the simulator's.
    upstream["gateway_metrics"] = {
        "upstream_rate_limited_total": fleet_sum("jbgw_upstream_rate_limited_total"),
        "upstream_requests_total": fleet_sum("jbgw_upstream_requests_total"),
    }
    upstream["per_second_requests"] = [
        s2["requests"] - s1["requests"] for s1, s2 in zip(poller.samples, poller.samples[1:])
    ]

    events = sorted(rec.events, key=lambda e: e["t_send"])
    results = analyse(events, a.max_stale, start_stats.get("partnerships"))
    report = {
        "setup": {
            "replicas": a.replicas, "state": state, "duration_s": a.duration, "seed": a.seed,
            "balance": a.balance, "ttl": a.ttl, "max_stale_s": a.max_stale,
            "extra_config": extra, "gateway": os.path.abspath(a.gateway), "sim": os.path.abspath(a.sim),
            "command": " ".join(sys.argv),
            "dashboards": [{"user": users[d["owner"]]["name"], "views": d["views"]} for d in plan["dashboards"]],
            "users": {u["name"]: u["user_id"] for u in users},
            "sim_partnerships_at_start": start_stats.get("partnerships"),
        },
        "results": results,
        "upstream": upstream,
    }
    if a.events:
        with open(a.events, "w") as f:
            for e in events:
                f.write(json.dumps(e) + "\n")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    print(table(report))
    if not a.keep and not a.work:
        shutil.rmtree(work, ignore_errors=True)
    elif a.keep:
        print(f"economy: configs and logs kept in {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
