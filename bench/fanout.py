#!/usr/bin/env python3
"""Realtime fanout: Jangar (Convex sync over WebSocket) vs PocketBase (realtime over SSE).

    python3 bench/fanout.py [--subscribers 1000,10000] [--sessions 100] [--rate 20] [--duration 20]
                            [--systems jangar,pocketbase] [--no-build]

For each N and each system, on 127.0.0.1 and a fresh data dir: start the server, create M sessions
over HTTP, then run target/release/examples/fanout, which opens N subscribers spread round-robin over
the M sessions (Jangar: chatMessages:listBySession {sessionId, limit: 20}; PocketBase: the messages
of one session, via a filtered realtime topic), appends messages at a fixed rate over HTTP, and
measures delivery latency, completeness, server RSS and CPU. Servers and data are set up with
bench/run.py's helpers; logs are kept in bench/work/fanout/<system>-<N>/. Set CARGO_TARGET_DIR to
build elsewhere than target/. Raises RLIMIT_NOFILE to its hard limit (inherited by every child).
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: server processes, HTTP client, PocketBase setup)
from run import ROOT, Jangar, PocketBase, ensure_pocketbase, log, machine, stop, stop_all  # noqa: E402

OUT = run.WORK / "fanout"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
TARGETS = {"held": 10_000, "p99_ms": 100, "kib_per_sub": 64}


def raise_nofile(needed):
    """Soft RLIMIT_NOFILE up to the hard limit; inherited by the servers and the fanout client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        log(f"warning: RLIMIT_NOFILE hard limit {hard} < {needed}; the largest runs may fail to connect")


def build():
    log(f"cargo build --release --bin jangar --example fanout (target dir {TARGET})")
    if subprocess.run(["cargo", "build", "--release", "--bin", "jangar", "--example", "fanout"], cwd=ROOT,
                      env=dict(os.environ, CARGO_TARGET_DIR=str(TARGET))).returncode:
        sys.exit("cargo build failed (see above); use --no-build to run the binaries already built")


def run_case(system, n, args, fanout):
    run.RUN = OUT / f"{system.name}-{n}"  # run.py's servers put their data and logs in run.RUN
    run.RUN.mkdir(parents=True)
    log(f"== {system.label}, {n} subscribers")
    system.start()
    sessions = [system.create_session(i) for i in range(args.sessions)]
    sessions_file = run.RUN / "sessions.txt"
    sessions_file.write_text("\n".join(sessions) + "\n")
    cmd = [str(fanout), "--system", system.protocol, "--port", str(system.port), "--pid", str(system.proc.pid),
           "--sessions", str(sessions_file), "--subscribers", str(n), "--rate", str(args.rate),
           "--duration", str(args.duration), "--drain", str(args.drain),
           "--clk-tck", str(os.sysconf("SC_CLK_TCK"))]
    try:
        out = subprocess.run(cmd, text=True, capture_output=True, timeout=args.duration + args.drain + 300)
    except subprocess.TimeoutExpired:
        sys.exit(f"fanout did not finish in time ({system.label}, N={n}); servers stopped")
    finally:
        alive = system.proc.poll() is None
        stop(system.proc)
    (run.RUN / "fanout.log").write_text(out.stderr + out.stdout)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if not line:
        sys.exit(f"fanout failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(line[len("RESULT "):])
    result["server_alive"] = alive
    server_log = re.sub(r"\x1b\[[0-9;]*m", "", (run.RUN / f"{system.name}.log").read_text(errors="replace"))
    result["server_log_problems"] = [l for l in server_log.splitlines() if re.search(r"\b(WARN|ERROR)\b|panic", l)]
    for data in (p for p in run.RUN.iterdir() if p.is_dir()):  # keep the logs, drop the data dirs
        shutil.rmtree(data, ignore_errors=True)
    return result


def derived(r):
    n = r["subscribers"]
    r["kib_per_sub"] = (r["rss_idle_kib"] - r["rss_before_kib"]) / n
    r["per_write"] = r["queries_run"] / r["writes_ok"] if r.get("queries_run") is not None and r["writes_ok"] else None
    return r


ROWS = [  # label, key, format, show the Jangar / PocketBase ratio
    ("subscribers held (end)", "held_end", "{:,.0f}", True),
    ("connect + init time, s", "connect_secs", "{:.1f}", True),
    ("SYNs dropped (accept queue)", "listen_overflows", "{:,.0f}", False),
    ("latency p50, ms", "p50_ms", "{:.1f}", True),
    ("latency p99, ms", "p99_ms", "{:.1f}", True),
    ("latency max, ms", "max_ms", "{:.1f}", True),
    ("writes ok/failed/unanswered", None, None, False),
    ("messages stored", "stored", "{:,.0f}", True),
    ("updates received", "received", "{:,.0f}", True),
    ("updates expected", "expected", "{:,.0f}", True),
    ("write round trip p50, ms", "write_p50_ms", "{:.1f}", True),
    ("write round trip p99, ms", "write_p99_ms", "{:.1f}", True),
    ("Transition violations", "violations", "{:.0f}", False),
    ("queries re-run per write", "per_write", "{:.2f}", False),
    ("server RSS before, MiB", "rss_before_kib", "kib", True),
    ("server RSS idle, MiB", "rss_idle_kib", "kib", True),
    ("server RSS end, MiB", "rss_end_kib", "kib", True),
    ("KiB per idle subscriber", "kib_per_sub", "{:.1f}", True),
    ("server CPU s, write phase", "server_cpu_s", "{:.2f}", True),
    ("client CPU s, write phase", "client_cpu_s", "{:.2f}", False),
    ("other CPU s on the machine", "other_cpu_s", "{:.2f}", False),
]


def cell(r, key, f):
    if r is None:
        return "-"
    if key is None:
        return f"{r['writes_ok']}/{r['writes_failed']}/{r['writes_unanswered']}"
    v = r.get(key)
    if v is None:
        return "-"
    return f"{v / 1024:,.1f}" if f == "kib" else f.format(v)


def report(results, ns, args, versions):
    print(f"\nmachine:     {machine()}")
    for name, v in versions.items():
        print(f"{name + ':':<12} {v}")
    print(f"workload:    {args.sessions} sessions; writer {args.rate:g} msg/s for {args.duration:g}s, round-robin; "
          f"drain up to {args.drain:g}s")
    print("subscribers: Jangar: 1 WebSocket each, chatMessages:listBySession {sessionId, limit: 20};\n"
          "             PocketBase: 1 SSE stream each, topic messages/*?options={\"query\":{\"filter\":\"session='<id>'\"}}\n")
    head = f"{'metric':<27}" + "".join(f"{'Jangar N=' + format(n, ','):>17}{'PB N=' + format(n, ','):>15}{'J/PB':>7}"
                                       for n in ns)
    print(head)
    print("-" * len(head))
    for label, key, f, show_ratio in ROWS:
        line = f"{label:<27}"
        for n in ns:
            j, p = results.get(("jangar", n)), results.get(("pocketbase", n))
            ratio = "-"
            if show_ratio and j and p and isinstance(j.get(key), (int, float)) and p.get(key):
                ratio = f"{j[key] / p[key]:.2f}"
            line += f"{cell(j, key, f):>17}{cell(p, key, f):>15}{ratio:>7}"
        print(line)
    print("(J/PB = Jangar / PocketBase; KiB per idle subscriber = (RSS idle - RSS before) / N; latency and write\n"
          " round trip count from the writer's scheduled send time, open loop: they include queueing when the\n"
          " server falls behind; updates expected = messages stored x subscribers of their session; SYNs dropped =\n"
          " machine-wide TcpExt ListenOverflows while connecting; other CPU = the rest of the machine, i.e. noise)")
    print("\ntargets (Jangar, largest N):")
    j = results.get(("jangar", max(ns)))
    if j:
        for label, ok in (
                (f"subscribers held >= {TARGETS['held']:,}: {j['held_end']:,}", j["held_end"] >= TARGETS["held"]),
                (f"p99 < {TARGETS['p99_ms']} ms: {cell(j, 'p99_ms', '{:.1f}')} ms",
                 j["p99_ms"] is not None and j["p99_ms"] < TARGETS["p99_ms"]),
                (f"<= {TARGETS['kib_per_sub']} KiB per idle subscriber: {j['kib_per_sub']:.1f} KiB",
                 j["kib_per_sub"] <= TARGETS["kib_per_sub"]),
                ("0 Transition version violations", all(r["violations"] == 0 for (s, _), r in results.items()
                                                        if s == "jangar")),
                ("1 query re-run per write", all(r["per_write"] == 1 for (s, _), r in results.items() if s == "jangar"))):
            print(f"  [{'ok' if ok else 'MISSED'}] {label}")
    print("\nproblems:")
    quiet = True
    for (name, n), r in sorted(results.items()):
        issues = []
        if not r["server_alive"]:
            issues.append("SERVER EXITED during the run")
        for k in ("failed", "dropped", "server_errors", "writes_failed", "writes_unanswered"):
            if r[k]:
                issues.append(f"{k} {r[k]}")
        if r["stored"] < r["writes_ok"]:
            issues.append(f"only {r['stored']} messages stored for {r['writes_ok']} acknowledged writes")
        if r["received"] != r["expected"]:
            issues.append(f"received {r['received']} of {r['expected']} expected updates "
                          f"(messages stored x subscribers of their session)")
        issues += [f"client saw: {e}" for e in r["errors"][:5]]
        issues += [f"server log: {l[:200]}" for l in r["server_log_problems"][:5]]
        if issues:
            quiet = False
            print(f"  {name} N={n}:\n    " + "\n    ".join(issues))
    if quiet:
        print("  none (no failed or dropped subscribers, errors, missing updates or server warnings)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", default="1000,10000", help="comma list of N (default 1000,10000)")
    ap.add_argument("--sessions", type=int, default=100, help="M sessions (default 100)")
    ap.add_argument("--rate", type=float, default=20, help="writes per second (default 20)")
    ap.add_argument("--duration", type=float, default=20, help="seconds of writes (default 20)")
    ap.add_argument("--drain", type=float, default=10, help="max seconds to wait for deliveries after writes")
    ap.add_argument("--systems", default="jangar,pocketbase", help="comma list (default both)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build")
    args = ap.parse_args()
    ns = [int(x) for x in args.subscribers.split(",") if x.strip()]
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not ns or set(names) - {"jangar", "pocketbase"} or not names:
        ap.error("bad --subscribers or --systems")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    raise_nofile(max(ns) + 1024)
    if not args.no_build:
        build()
    fanout, jangar_bin = TARGET / "release/examples/fanout", TARGET / "release/jangar"
    makers = {"jangar": lambda: Jangar(jangar_bin)}
    if "pocketbase" in names:
        pb = ensure_pocketbase()
        makers["pocketbase"] = lambda: PocketBase(pb, request_logs=False)
    shutil.rmtree(OUT, ignore_errors=True)
    results, versions = {}, {}
    try:
        for n in ns:
            for name in names:
                system = makers[name]()
                results[(name, n)] = derived(run_case(system, n, args, fanout))
                versions[system.label] = system.version
        if "jangar" in names:
            commit = run.sh(["git", "describe", "--always", "--dirty"]).stdout.strip()
            built = "prebuilt, --no-build" if args.no_build else f"built from {commit}"
            versions["Jangar"] = f"{versions.get('Jangar', '-')} ({jangar_bin}, {built})"
    finally:
        stop_all()
    report(results, ns, args, versions)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit("interrupted; servers stopped")
