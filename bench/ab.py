#!/usr/bin/env python3
"""Two Jangar binaries against each other: the cold list and the append of bench/run.py.

    python3 bench/ab.py BEFORE AFTER [--rounds 3] [--duration 8s]

For measuring one change: build the binary before it and after it (release), then run this on a
quiet machine. Both start from the same seeded SQLite data directory (100 sessions x 100
messages, seeded once by BEFORE, then copied for every run), with the query cache off
(`--query-cache-entries 0`, so every list reads and serialises) and otherwise the shipped
defaults. The rounds interleave the binaries, alternating which goes first, so a slow spell of
this shared machine falls on both. Each run lists (wrk, 64 connections, the 50 newest messages
of a random session) and then appends, as bench/run.py does. Prints each run, then the median
of each binary and AFTER's ratio to BEFORE; each run's line also has the mutations per group
commit and the p50 of a group's time from its start to its durable commit (`/jangar/stats`).
"""
import argparse
import concurrent.futures
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402


class Binary(base.Jangar):
    extra_args = ["--query-cache-entries", "0"]

    def __init__(self, binary, name, data):
        super().__init__(binary)
        self.name, self.label, self.data = name, name, data

    def start(self):
        self.port = base.free_port()
        self.proc = base.start_server(self.name, [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}",
                                                  "--data-dir", str(self.data)] + self.extra_args, base.ROOT)
        self.http = base.Client(self.port)
        base.wait_ready(self.name, self.proc, self.http, "/version")


def seed(binary, data):
    system = Binary(binary, "seed", data)
    system.start()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        sids = list(pool.map(system.create_session, range(base.SESSIONS)))
        list(pool.map(lambda s: [system.append(s, k) for k in range(base.PER_SESSION)], sids))
    base.stop(system.proc)
    return sids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=base.parse_duration, default=8)
    args = ap.parse_args()
    base.ensure_wrk()
    shutil.rmtree(base.RUN, ignore_errors=True)
    base.RUN.mkdir(parents=True)
    seeded = base.RUN / "seeded"
    sessions_file = base.RUN / "sessions.txt"
    sessions_file.write_text("\n".join(seed(args.before, seeded)) + "\n")
    figures = {"before": {"list": [], "append": []}, "after": {"list": [], "append": []}}
    try:
        for round_ in range(args.rounds):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for which in order:
                data = base.RUN / f"data-{which}-{round_}"
                shutil.copytree(seeded, data)
                system = Binary(getattr(args, which), which, data)
                system.start()
                ran = {op: base.wrk(system, op, sessions_file, args.duration) for op in ("list", "append")}
                stats = system.stats() or {}
                base.stop(system.proc)
                shutil.rmtree(data)
                for op, r in ran.items():
                    figures[which][op].append(r["rps"])
                print(f"round {round_ + 1} {which:>6}: list {ran['list']['rps']:8,.0f}/s "
                      f"(p99 {ran['list']['p99_us'] / 1000:.1f} ms)  append {ran['append']['rps']:8,.0f}/s "
                      f"(p99 {ran['append']['p99_us'] / 1000:.1f} ms, {stats.get('mutationsPerGroup', 0):.1f} "
                      f"per group, held p50 {stats.get('lockHoldMs', {}).get('p50', 0):.2f} ms)", flush=True)
    finally:
        base.stop_all()
    for op in ("list", "append"):
        before, after = (statistics.median(figures[w][op]) for w in ("before", "after"))
        print(f"{op:>6}: before {before:8,.0f}/s  after {after:8,.0f}/s  after/before {after / before:.2f}x")


if __name__ == "__main__":
    main()
