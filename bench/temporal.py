#!/usr/bin/env python3
"""Work orders through Temporal: submit N orders to Jangar, let its bridge start one workflow each.

    tests/python/.venv/bin/python bench/temporal.py [--orders 1000] [--threads 8] [--timeout 600] [--no-build]

Everything runs on 127.0.0.1, on free ports, and is stopped at exit:
  1. the Temporal dev server (tests/python/.venv/bin/temporal server start-dev, in memory, UI off),
  2. tests/temporal/worker.py on task queue `jangar` (workflow JangarEcho), with the venv's Python,
  3. target/release/jangar serve on a fresh data dir, in open development mode, with
     --temporal-url pointing at the dev server's HTTP API.
Then it creates one chat session, submits N work orders (workOrders:create, workflowType JangarEcho,
workflowArgs {"mode": "succeed", "i": i}) from a pool of threads, noting when each submit was
acknowledged, and waits until every order is `succeeded`. Temporal's List API gives each execution's
startTime and the executions per workflow id (`jangar-wo-<workOrderId>`, the id the bridge uses).
Then, as the reference in the same run, it sends the same N starts straight to Temporal's HTTP API
from as many threads as Jangar's dispatcher sends at once, and prints both start rates and their ratio.
It prints figures only: wall time, submit -> workflow started (Temporal's startTime minus the submit
acknowledgement), submit -> succeeded (the order's updatedAt, set by the bridge's last status change,
minus the acknowledgement), executions per order, orders/s. Every clock read is on this machine.
Logs are kept in bench/work/temporal/. `scripts/test` installs the Temporal CLI and SDK into the venv.
"""
import argparse
import base64
import calendar
import concurrent.futures
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import json
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, WORK, Client, free_port, log, machine, stop  # noqa: E402  (bench/run.py)

OUT = WORK / "temporal"
VENV = ROOT / "tests/python/.venv"
TEMPORAL = VENV / "bin/temporal"
PYTHON = VENV / "bin/python"
WORKER = ROOT / "tests/temporal/worker.py"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
TASK_QUEUE = "jangar"
WORKFLOW_PREFIX = "jangar-wo-"
DIRECT_PREFIX = "bench-direct-"
DISPATCHER_CONCURRENCY = 64  # the requests Jangar's dispatcher claims and sends at once

procs = []  # every process started here, stopped at exit


def start(name, cmd):
    """Starts cmd in its own process group, stdout and stderr to OUT/<name>.log."""
    logf = open(OUT / f"{name}.log", "w")
    p = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    p.name = name
    procs.append(p)
    return p


def wait_until(p, what, check, timeout):
    """Polls check() until it returns a true value; gives up if p exits or after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.poll() is not None:
            tail = (OUT / f"{p.name}.log").read_text(errors="replace")[-2000:]
            sys.exit(f"{p.name} exited with {p.returncode} before {what}:\n{tail}")
        try:
            got = check()
            if got:
                return got
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{p.name}: not {what} after {timeout}s (see {OUT / (p.name + '.log')})")


# ---------------------------------------------------------------- Temporal

def parse_time(text):
    """RFC 3339 in UTC as Temporal writes it (2026-01-02T03:04:05.123456789Z) -> Unix seconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", text)
    if not m:
        raise ValueError(f"unexpected timestamp {text!r}")
    return calendar.timegm(time.strptime(m[1], "%Y-%m-%dT%H:%M:%S")) + float(m[2] or 0)


def list_executions(http, query, page_size=500):
    """Every execution matching a visibility query, following nextPageToken."""
    executions, token = [], None
    while True:
        params = {"query": query, "pageSize": page_size}
        if token:
            params["nextPageToken"] = token
        status, body = http.request("GET", "/namespaces/default/workflows?" + urllib.parse.urlencode(params))
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"List {query!r} -> {status}: {str(body)[:300]}")
        executions += body.get("executions", [])
        token = body.get("nextPageToken")
        if not token:
            return executions


def start_temporal():
    grpc, http_port, metrics = free_port(), free_port(), free_port()
    p = start("temporal", [TEMPORAL, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                           "--port", grpc, "--http-port", http_port, "--metrics-port", metrics])
    http = Client(http_port)
    wait_until(p, "ready", lambda: http.request("GET", "/namespaces/default/workflows?pageSize=1")[0] == 200, 60)
    return p, grpc, http_port, http


def start_worker(grpc):
    p = start("worker", [PYTHON, WORKER, "--address", f"127.0.0.1:{grpc}", "--task-queue", TASK_QUEUE])
    log_path = OUT / "worker.log"
    wait_until(p, "ready", lambda: "ready" in log_path.read_text().split(), 60)
    return p


def direct_starts(http, n, threads):
    """The reference: n starts of the same workflow sent straight to Temporal's HTTP API from
    `threads` threads (as many as Jangar's dispatcher sends at once), the same body Jangar sends.
    Returns (began, per-request latencies)."""
    def body(i):
        arg = base64.b64encode(json.dumps({"mode": "succeed", "i": i}).encode()).decode()
        return {"workflowType": {"name": "JangarEcho"}, "taskQueue": {"name": TASK_QUEUE},
                "input": {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": arg}]},
                "requestId": f"direct-start-{i}", "identity": "bench",
                "workflowIdReusePolicy": "WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE",
                "workflowIdConflictPolicy": "WORKFLOW_ID_CONFLICT_POLICY_FAIL"}

    latencies = []

    def start_one(i):
        sent = time.time()
        status, out = http.request("POST", f"/namespaces/default/workflows/{DIRECT_PREFIX}{i}", body(i))
        if status != 200:
            raise RuntimeError(f"direct start {i} -> {status}: {str(out)[:300]}")
        latencies.append(time.time() - sent)

    began = time.time()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for f in concurrent.futures.as_completed([pool.submit(start_one, i) for i in range(n)]):
            f.result()
    return began, latencies


def listed_start_times(http, prefix, expected):
    """Every execution's startTime under a workflow id prefix, waiting (up to 10 s) for visibility
    to list `expected` of them."""
    deadline = time.time() + 10
    while True:
        executions = list_executions(http, f"WorkflowId STARTS_WITH '{prefix}'")
        if len(executions) >= expected or time.time() > deadline:
            return executions
        time.sleep(0.2)


# ---------------------------------------------------------------- Jangar

class Jangar:
    def __init__(self, binary, temporal_http_port, data_dir):
        self.port = free_port()
        self.proc = start("jangar", [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data_dir,
                                     "--temporal-url", f"http://127.0.0.1:{temporal_http_port}",
                                     "--temporal-task-queue", TASK_QUEUE])
        self.http = Client(self.port)
        wait_until(self.proc, "ready", lambda: self.http.request("GET", "/version")[0] == 200, 60)

    def call(self, kind, path, args):
        out = self.http.ok("POST", f"/api/{kind}", {"path": path, "args": args, "format": "json"})
        if not isinstance(out, dict) or out.get("status") != "success":
            raise RuntimeError(f"{path} failed: {str(out)[:300]}")
        return out["value"]

    def by_status(self, status):
        """Every work order in one status, as {id: doc}."""
        docs, cursor = {}, None
        while True:
            page = self.call("query", "workOrders:listByStatus",
                             {"status": status, "paginationOpts": {"numItems": 1000, "cursor": cursor}})
            docs.update((d["_id"], d) for d in page["page"])
            if page["isDone"]:
                return docs
            cursor = page["continueCursor"]


# ---------------------------------------------------------------- the run

def pct(values, q):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds):
    return f"{seconds * 1000:,.1f} ms"


def bench(args):
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    data_dir = tempfile.mkdtemp(prefix="jangar-bench-temporal-")
    try:
        t0 = time.time()
        _, grpc, http_port, temporal_http = start_temporal()
        log(f"Temporal dev server ready in {time.time() - t0:.2f}s (gRPC {grpc}, HTTP {http_port})")
        t0 = time.time()
        start_worker(grpc)
        log(f"worker ready in {time.time() - t0:.2f}s")
        jangar = Jangar(args.jangar_bin, http_port, data_dir)
        log(f"Jangar ready on {jangar.port}")
        session = jangar.call("mutation", "chatSessions:create", {"userId": "bench", "title": "temporal bench"})

        acks = {}  # work order id -> (i, submit sent, submit acknowledged)
        lock = threading.Lock()

        def submit(i):
            sent = time.time()
            oid = jangar.call("mutation", "workOrders:create",
                              {"sessionId": session, "title": f"order {i}", "workflowType": "JangarEcho",
                               "workflowArgs": {"mode": "succeed", "i": i}})
            acked = time.time()
            with lock:
                acks[oid] = (i, sent, acked)

        log(f"submitting {args.orders} work orders from {args.threads} threads")
        began = time.time()
        pool = concurrent.futures.ThreadPoolExecutor(args.threads)
        try:
            for f in concurrent.futures.as_completed([pool.submit(submit, i) for i in range(args.orders)]):
                f.result()
        finally:
            pool.shutdown(cancel_futures=True)  # on an error or a signal, drop the submits not yet begun
        submitted = time.time()
        log(f"submitted in {submitted - began:.2f}s; waiting for every order to succeed")

        done, stuck, last_report = {}, {}, 0.0
        deadline = began + args.timeout
        while len(done) + len(stuck) < len(acks) and time.time() < deadline:
            done = {k: v for k, v in jangar.by_status("succeeded").items() if k in acks}
            stuck = {k: v for s in ("failed", "canceled") for k, v in jangar.by_status(s).items() if k in acks}
            if time.time() - last_report > 5:
                log(f"  {len(done)} succeeded, {len(stuck)} failed or canceled, of {len(acks)}")
                last_report = time.time()
            time.sleep(0.25)
        finished = time.time()
        if len(done) + len(stuck) < len(acks):
            log(f"timed out after {args.timeout}s with {len(acks) - len(done) - len(stuck)} orders still open")

        # Visibility is eventually consistent: list until every order's workflow shows up, for a while.
        query = f"WorkflowId STARTS_WITH '{WORKFLOW_PREFIX}'"
        listed_by = time.time() + 10
        while True:
            executions = list_executions(temporal_http, query)
            ids = {e["execution"]["workflowId"] for e in executions}
            if all(WORKFLOW_PREFIX + k in ids for k in acks) or time.time() > listed_by:
                break
            time.sleep(0.2)
        runs = {}
        for e in executions:
            runs.setdefault(e["execution"]["workflowId"], []).append(e)

        # Figures.
        started_lat, succeeded_lat, per_order, wrong_id = [], [], [], 0
        for oid, (i, sent, acked) in acks.items():
            wid = WORKFLOW_PREFIX + oid
            mine = runs.get(wid, [])
            per_order.append(len(mine))
            if mine:
                started_lat.append(min(parse_time(e["startTime"]) for e in mine) - acked)
            doc = done.get(oid) or stuck.get(oid)
            if doc is not None and doc.get("workflowId") != wid:
                wrong_id += 1
            if oid in done:
                succeeded_lat.append(done[oid]["updatedAt"] / 1000 - acked)
        statuses = {}
        for e in executions:
            statuses[e.get("status", "?")] = statuses.get(e.get("status", "?"), 0) + 1

        # The reference, in the same invocation: the same starts without Jangar.
        log(f"reference: {args.orders} starts straight to Temporal from {DISPATCHER_CONCURRENCY} threads")
        direct_began, direct_latencies = direct_starts(temporal_http, args.orders, DISPATCHER_CONCURRENCY)
        direct = listed_start_times(temporal_http, DIRECT_PREFIX, args.orders)
        direct_span = max(parse_time(e["startTime"]) for e in direct) - direct_began
        bridged_span = max(parse_time(e["startTime"]) for e in executions) - began

        wall = finished - began
        print(f"\nmachine: {machine()}")
        print(f"Temporal: {subprocess.run([TEMPORAL, '--version'], capture_output=True, text=True).stdout.strip()}")
        print(f"orders:                          {len(acks)} ({args.threads} submit threads)")
        print(f"succeeded:                       {len(done)}; failed or canceled: {len(stuck)}; "
              f"still open: {len(acks) - len(done) - len(stuck)}")
        print(f"total wall time:                 {wall:.2f} s (submitting took {submitted - began:.2f} s)")
        print(f"orders/s:                        {len(done) / wall:,.1f} succeeded per second of wall time")
        if started_lat:
            print(f"submit -> workflow started:      p50 {ms(pct(started_lat, 50))}, p99 {ms(pct(started_lat, 99))}, "
                  f"max {ms(max(started_lat))}, min {ms(min(started_lat))}  ({len(started_lat)} orders)")
        if succeeded_lat:
            print(f"submit -> succeeded:             p50 {ms(pct(succeeded_lat, 50))}, "
                  f"p99 {ms(pct(succeeded_lat, 99))}, max {ms(max(succeeded_lat))}  ({len(succeeded_lat)} orders)")
        print(f"executions per order:            min {min(per_order)} / max {max(per_order)}  "
              f"({len(executions)} listed with {WORKFLOW_PREFIX}*: "
              + ", ".join(f"{n} {s.removeprefix('WORKFLOW_EXECUTION_STATUS_')}" for s, n in sorted(statuses.items()))
              + ")")
        print(f"starts/s, through Jangar:        {len(executions) / bridged_span:,.1f} (first submit to last "
              f"workflow started: {bridged_span:.2f} s)")
        print(f"starts/s, straight to Temporal:  {len(direct) / direct_span:,.1f} ({direct_span:.2f} s; "
              f"a start's round trip p50 {ms(pct(direct_latencies, 50))}, p99 {ms(pct(direct_latencies, 99))})")
        print(f"ratio, Jangar / reference:       {(len(executions) / bridged_span) / (len(direct) / direct_span):.2f}")
        if wrong_id:
            print(f"orders whose workflowId is not {WORKFLOW_PREFIX}<id>: {wrong_id}")
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(data_dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=8, help="submitting threads (default 8)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for every order (default 600)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release --bin jangar")
    ap.add_argument("--jangar-bin", default=str(TARGET / "release/jangar"))
    args = ap.parse_args()
    if args.orders < 1:
        sys.exit("--orders must be at least 1")
    for path, hint in ((TEMPORAL, "run scripts/test once, or pip install -r tests/temporal/requirements.txt"),
                       (PYTHON, "run scripts/test once")):
        if not path.exists():
            sys.exit(f"{path} not found ({hint})")
    if not args.no_build:
        log("cargo build --release --bin jangar")
        if subprocess.run(["cargo", "build", "--release", "--bin", "jangar"], cwd=ROOT).returncode:
            sys.exit("cargo build failed (see above); use --no-build to run the binary already built")
    if not Path(args.jangar_bin).exists():
        sys.exit(f"{args.jangar_bin} not found")
    # A SIGTERM unwinds like Ctrl-C, so the finally above stops every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bench(args)
    except KeyboardInterrupt:
        sys.exit("interrupted; processes stopped")


if __name__ == "__main__":
    main()
