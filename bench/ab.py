#!/usr/bin/env python3
"""Two Jangar binaries against each other: the cold list and the append of bench/run.py.

    python3 bench/ab.py BEFORE AFTER [--rounds 3] [--duration 8s] [--postgres [--replicas N]]

For measuring one change: build the binary before it and after it (release), then run this on a
quiet machine. Both start from the same seeded data (100 sessions x 100 messages, seeded once by
BEFORE, then copied for every run: a SQLite data directory, or with --postgres a database of a
PostgreSQL this script starts, as bench/replicas.py does, copied as a template), with the query
cache off (`--query-cache-entries 0`, so every list reads and serialises) and otherwise the
shipped defaults. With --replicas N, N processes of the binary share the database and wrk's 64
connections. The rounds interleave the binaries, alternating which goes first, so a slow spell of
this shared machine falls on both. Each run lists (wrk, the 50 newest messages of a random
session) and then appends, as bench/run.py does. Prints each run, then the median of each binary
and AFTER's ratio to BEFORE; each run's line also has, over its append run, the mutations and
storage round trips per group commit and the commit lock's hold p50 (`/jangar/stats`).
"""
import argparse
import concurrent.futures
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402
import replicas  # noqa: E402  (PostgreSQL, and wrk over several processes)

base.RUN = replicas.WORK = base.WORK / "ab"


class Binary(base.Jangar):
    """`replicas` processes of one binary on a SQLite data directory (one) or a PostgreSQL database."""

    def __init__(self, binary, name, data=None, db=None, replicas=1):
        super().__init__(binary)
        self.name, self.label, self.data, self.db, self.replicas = name, name, data, db, replicas
        self.procs = []

    def start(self):
        self.ports = []
        for i in range(self.replicas):
            port = base.free_port()
            data = self.data or base.RUN / f"{self.name}-{i}-data"
            data.mkdir(exist_ok=True)
            args = ["serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data), "--query-cache-entries", "0"]
            args += ["--db", self.db] if self.db else []
            proc = base.start_server(f"{self.name}-{i}", [str(self.binary)] + args, base.ROOT)
            base.wait_ready(f"{self.name}-{i}", proc, base.Client(port), "/ready")
            self.procs.append(proc)
            self.ports.append(port)
        self.port = self.ports[0]
        self.http = base.Client(self.port)

    def stop(self):
        for proc in self.procs:
            base.stop(proc)
        self.procs = []

    def all_stats(self):
        return [base.Client(port).request("GET", "/jangar/stats")[1] for port in self.ports]


def seed(system):
    system.start()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        sids = list(pool.map(system.create_session, range(base.SESSIONS)))
        list(pool.map(lambda s: [system.append(s, k) for k in range(base.PER_SESSION)], sids))
    system.stop()
    return sids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=base.parse_duration, default=8)
    ap.add_argument("--postgres", action="store_true", help="on PostgreSQL instead of SQLite")
    ap.add_argument("--replicas", type=int, default=1, help="processes per run (with --postgres)")
    args = ap.parse_args()
    if args.replicas != 1 and not args.postgres:
        sys.exit("--replicas needs --postgres: processes share a PostgreSQL database, not a SQLite file")
    base.ensure_wrk()
    shutil.rmtree(base.RUN, ignore_errors=True)
    base.RUN.mkdir(parents=True)
    sessions_file = base.RUN / "sessions.txt"
    figures = {"before": {"list": [], "append": []}, "after": {"list": [], "append": []}}
    try:
        if args.postgres:
            pg_port = replicas.start_postgres()
            url = lambda name: f"postgresql://jangar@127.0.0.1:{pg_port}/{name}"

            def create_database(name, template=None):
                sql = f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
                subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "jangar", "-d", "postgres",
                                "-qc", sql], check=True)
                return url(name)
            sids = seed(Binary(args.before, "seed", db=create_database("seeded")))
        else:
            seeded = base.RUN / "seeded"
            sids = seed(Binary(args.before, "seed", data=seeded))
        sessions_file.write_text("\n".join(sids) + "\n")
        for round_ in range(args.rounds):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for which in order:
                run_name = f"{which}_{round_}"
                if args.postgres:
                    system = Binary(getattr(args, which), which, db=create_database(run_name, "seeded"),
                                    replicas=args.replicas)
                else:
                    data = base.RUN / f"data-{run_name}"
                    shutil.copytree(seeded, data)
                    system = Binary(getattr(args, which), which, data=data)
                system.start()
                listed = replicas.wrk_all(system, "list", sessions_file, args.duration)
                before = system.all_stats()
                appended = replicas.wrk_all(system, "append", sessions_file, args.duration)
                path = replicas.write_path(before, system.all_stats())
                system.stop()
                if system.data:
                    shutil.rmtree(system.data)
                figures[which]["list"].append(listed["rps"])
                figures[which]["append"].append(appended["rps"])
                print(f"round {round_ + 1} {which:>6}: list {listed['rps']:8,.0f}/s "
                      f"(p99 {listed['p99_us'] / 1000:.1f} ms)  append {appended['rps']:8,.0f}/s "
                      f"(p99 {appended['p99_us'] / 1000:.1f} ms, {path['mutations']:.1f} per group, "
                      f"{path['round_trips']:.1f} round trips, held p50 {path['hold_p50']:.2f} ms)", flush=True)
    finally:
        base.stop_all()
    for op in ("list", "append"):
        before, after = (statistics.median(figures[w][op]) for w in ("before", "after"))
        print(f"{op:>6}: before {before:8,.0f}/s  after {after:8,.0f}/s  after/before {after / before:.2f}x")


if __name__ == "__main__":
    main()
