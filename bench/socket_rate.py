#!/usr/bin/env python3
"""One socket's mutation rate next to the HTTP append rate, in one run.

    python3 bench/socket_rate.py [--in-flight 10000,500] [--rounds 3] [--duration 10s] [--no-build]

On 127.0.0.1, with the shipped defaults and a fresh data dir: start Jangar (release build), create a
session, then for each in-flight count run bench/socket_mutations.mjs `--rounds` times: one npm
ConvexClient sends that many chatMessages:append at once on one socket and waits for every answer
(the median round is reported). Then wrk appends over HTTP for `--duration` (64 connections, as in
bench/run.py). Needs the npm client in tests/js/node_modules (scripts/test installs it) and wrk.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import run  # bench/run.py: server processes, HTTP client, wrk
from run import ROOT, Jangar, log, machine, stop_all


def socket_round(system, session, in_flight):
    out = subprocess.run(["node", str(run.BENCH / "socket_mutations.mjs"), f"http://127.0.0.1:{system.port}",
                          session, str(in_flight)], capture_output=True, text=True, timeout=600)
    if out.returncode:
        sys.exit(f"socket_mutations.mjs failed:\n{out.stdout}\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["answered"] != in_flight:
        sys.exit(f"{in_flight} sent, {result['answered']} distinct answers")
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in-flight", default="10000,500", help="comma list of in-flight counts (default 10000,500)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=run.parse_duration, default=10, help="the HTTP run, 1s..5m (default 10s)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--jangar-bin", default=str(ROOT / "target/release/jangar"))
    args = ap.parse_args()
    counts = [int(n) for n in args.in_flight.split(",")]
    run.ensure_wrk()
    if not args.no_build:
        run.build_jangar()
    run.shutil.rmtree(run.RUN, ignore_errors=True)
    run.RUN.mkdir(parents=True)
    system = Jangar(run.Path(args.jangar_bin))
    socket_results = {}
    try:
        system.start()
        session = system.create_session(0)
        for n in counts:
            rounds = []
            for r in range(args.rounds):
                rounds.append(socket_round(system, session, n))
                log(f"   socket, {n} in flight, round {r + 1}: {rounds[-1]['rate']:.0f} mutations/s")
            socket_results[n] = rounds
        sessions_file = run.RUN / "sessions.txt"
        sessions_file.write_text("\n".join(system.create_session(i) for i in range(1, 101)) + "\n")
        log(f"   HTTP append, {args.duration}s")
        http = run.wrk(system, "append", sessions_file, args.duration)
        time.sleep(1)
    finally:
        stop_all()
    print(f"\nmachine: {machine()}\njangar:  {system.version}")
    print(f"{'workload':<52}{'mutations/s':>12}{'vs HTTP':>9}")
    print("-" * 73)
    for n, rounds in socket_results.items():
        rate = statistics.median(r["rate"] for r in rounds)
        reconnects = max(r["connectionCount"] for r in rounds) - 1
        title = f"one socket (npm ConvexClient), {n:,} in flight"
        print(f"{title:<52}{rate:>12,.0f}{rate / http['rps']:>8.2f}x   reconnects: {reconnects}")
    title = f"HTTP append (wrk, {run.CONNS} connections, {args.duration}s)"
    print(f"{title:<52}{http['rps']:>12,.0f}{1:>8.2f}x   non-2xx: {http['non2xx']}")
    print(f"(socket: median of {args.rounds} rounds, each timed from the first send to the last answer)")


if __name__ == "__main__":
    main()
