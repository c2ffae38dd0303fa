#!/usr/bin/env python3
"""Jangar on PostgreSQL, one replica and three, against Jangar on SQLite, in one run.

    python3 bench/replicas.py [--duration 10s] [--no-build]

It builds Jangar in release mode and starts a PostgreSQL of its own (Debian's
server binaries, initdb into bench/work/replicas/pg, fsync and synchronous
commit on, as shipped) on a free loopback port. For each setup:
  - sqlite:   one Jangar on SQLite;
  - pg-1:     one Jangar on PostgreSQL;
  - pg-3:     three Jangar replicas on the same database;
  (these three with the query cache off, --query-cache-entries 0, so lists measure the storage path
  on both storages)
  - pg-1c:    one Jangar on PostgreSQL with the query cache as shipped;
it seeds 100 sessions x 100 messages, then runs bench/run.py's workloads with wrk:
(b) list the 50 newest messages of a random session, then (a) append a message,
64 connections in all (spread over the replicas), and checks that every append
was stored. Then it measures cross-replica update latency with
target/release/examples/replica_latency: commit on replica A, update seen by a
WebSocket subscriber on replica B (and on A itself, for reference).
Each setup's write path is read from /jangar/stats over the append run: mutations,
storage statements and round trips per group commit, and the commit lock's hold
(p50/p99 of the last 1,024 groups). Last, the storage bounds: the same rows an
append writes, committed through Jangar's own storage code with no function, no
read and no HTTP (target/release/examples/sqlite_bound and postgres_bound), at
the group size Jangar reached on that storage.
Everything shares the machine's cores; compare ratios within one run.
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  (bench/run.py: processes, HTTP client, wrk)

WORK = base.WORK / "replicas"
base.RUN = WORK  # run.py's helpers write their logs and wrk output there


def postgres_bin():
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        sys.exit("PostgreSQL's server binaries are missing: apt-get install -y postgresql")
    return found[-1].parent


def start_postgres():
    bin_dir, data = postgres_bin(), WORK / "pg"
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data.mkdir(parents=True)
    if as_postgres:
        subprocess.run(["chown", "-R", "postgres:postgres", str(WORK)], check=True)
    subprocess.run(as_postgres + [str(bin_dir / "initdb"), "-D", str(data), "-U", "jangar", "--auth=trust",
                                  "-E", "UTF8"], check=True, capture_output=True)
    port = base.free_port()
    base.start_server("postgres", as_postgres + [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                                                  "-k", str(WORK), "-c", "listen_addresses=127.0.0.1",
                                                  "-c", "max_connections=200"], WORK)
    deadline = time.time() + 30
    while subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode:
        if time.time() > deadline:
            sys.exit("PostgreSQL did not start (see bench/work/replicas/postgres.log)")
        time.sleep(0.2)
    return port


class Setup(base.Jangar):
    """One or more Jangar processes; `ports` are all of them, `port` the first."""

    def __init__(self, binary, name, label, args_for):
        super().__init__(binary)
        self.name, self.label, self.args_for, self.procs = name, label, args_for, []

    def start(self):
        self.ports = []
        for i, extra in enumerate(self.args_for()):
            port = base.free_port()
            data = WORK / f"{self.name}-{i}-data"
            data.mkdir()
            proc = base.start_server(f"{self.name}-{i}", [str(self.binary), "serve", "--listen", f"127.0.0.1:{port}",
                                                          "--data-dir", str(data)]
                                     + extra, base.ROOT)
            base.wait_ready(f"{self.name}-{i}", proc, base.Client(port), "/ready")
            self.procs.append(proc)
            self.ports.append(port)
        self.port = self.ports[0]
        self.http = base.Client(self.port)
        self.version = f"{len(self.ports)} process(es)"


def wrk_all(setup, op, sessions_file, secs):
    """wrk on every replica at once, the 64 connections split between them; summed rates, worst latencies."""
    n = len(setup.ports)
    cmds = [["wrk", f"-t{1 if n > 1 else base.THREADS}", f"-c{base.CONNS // n}", f"-d{secs}s", "--timeout", "5s",
             "--latency", "-s", str(base.LUA), f"http://127.0.0.1:{port}", "--", "jangar", op, str(sessions_file)]
            for port in setup.ports]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    total = {}
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=secs + 60)
        (WORK / f"wrk-{setup.name}-{op}-{i}.txt").write_text(out + err)
        line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
        if p.returncode or not line:
            sys.exit(f"wrk failed ({p.returncode}):\n{out}\n{err}")
        r = {k: int(float(v)) for k, v in (kv.split("=") for kv in line.split()[1:])}
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        for k, v in r.items():
            total[k] = max(total.get(k, 0), v) if k in ("p50_us", "p99_us", "duration_us") else total.get(k, 0) + v
    return total


def bench(setup, secs):
    base.log(f"== {setup.label}")
    setup.start()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        sids = list(pool.map(setup.create_session, range(base.SESSIONS)))
        list(pool.map(lambda s: [setup.append(s, k) for k in range(base.PER_SESSION)], sids))
    seeded = setup.count(sids, 0)
    if seeded != base.SESSIONS * base.PER_SESSION:
        sys.exit(f"{setup.label}: seeding check failed ({seeded})")
    sessions_file = WORK / f"sessions-{setup.name}.txt"
    sessions_file.write_text("\n".join(sids) + "\n")
    res = {"list": wrk_all(setup, "list", sessions_file, secs)}
    before = [base.Client(port).request("GET", "/jangar/stats")[1] for port in setup.ports]
    res["append"] = wrk_all(setup, "append", sessions_file, secs)
    time.sleep(1)
    after = [base.Client(port).request("GET", "/jangar/stats")[1] for port in setup.ports]
    res["write_path"] = write_path(before, after)
    stored = setup.count(sids, 0) - seeded
    a = res["append"]
    res["count_ok"] = a["requests"] <= stored <= a["requests"] + base.CONNS + a["timeout"]
    res["stored"] = stored
    return res


def write_path(before, after):
    """Per group commit over the append run, summed over the replicas; the worst replica's lock hold."""
    delta = lambda key: sum(a[key] - b[key] for a, b in zip(after, before))
    groups = delta("commitGroups")
    per = lambda key: delta(key) / groups if groups else 0.0
    return {"groups": groups, "mutations": per("mutationsCommitted"), "statements": per("commitStatements"),
            "round_trips": per("commitRoundTrips"), "hold_p50": max(a["lockHoldMs"]["p50"] for a in after),
            "hold_p99": max(a["lockHoldMs"]["p99"] for a in after)}


def bound(example, args, group, secs):
    """appends/s, statements and round trips per group of a storage bound, at `group` appends per commit."""
    exe = base.ROOT / "target/release/examples" / example
    run = base.sh([str(exe), *args, "--group", str(group), "--seconds", str(secs)], timeout=secs + 120)
    figures = dict(re.findall(r"^(\w+)=([0-9.]+)$", run.stdout, re.M))
    if run.returncode or "inserts_per_sec" not in figures:
        sys.exit(f"{example} failed ({run.returncode}): {run.stdout}{run.stderr}")
    return {k: float(v) for k, v in figures.items()}


def latency(setup, count):
    exe = base.ROOT / "target/release/examples/replica_latency"
    a, b = (f"http://127.0.0.1:{p}" for p in setup.ports[:2])
    out = {}
    for name, watch in (("same replica", a), ("other replica", b)):
        run = base.sh([str(exe), "--write", a, "--watch", watch, "--count", str(count)], timeout=300)
        if run.returncode:
            sys.exit(f"replica_latency failed: {run.stdout}{run.stderr}")
        out[name] = run.stdout.strip()
    return out


LABELS = (("sqlite", "SQLite (no query cache)"), ("pg-1", "PostgreSQL, 1 replica"),
          ("pg-3", "PostgreSQL, 3 replicas"), ("pg-1c", "PostgreSQL, 1, query cache"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=base.parse_duration, default=10, help="per wrk run (default 10s)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--latency-count", type=int, default=300)
    args = ap.parse_args()
    base.ensure_wrk()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "jangar", "--example", "replica_latency",
                        "--example", "sqlite_bound", "--example", "postgres_bound"], cwd=base.ROOT, check=True)
    binary = base.ROOT / "target/release/jangar"
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    results, lat = {}, {}
    try:
        pg_port = start_postgres()
        databases = iter(range(1, 100))

        def database():
            name = f"bench_{next(databases)}"
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "jangar", "-d", "postgres",
                            "-qc", f"CREATE DATABASE {name}"], check=True)
            return f"postgresql://jangar@127.0.0.1:{pg_port}/{name}"

        setups = [
            Setup(binary, "sqlite", "SQLite (no query cache)", lambda: [["--query-cache-entries", "0"]]),
            Setup(binary, "pg-1", "PostgreSQL, 1 replica", lambda: [["--db", database(), "--query-cache-entries", "0"]]),
        ]
        db3 = None

        def three():
            nonlocal db3
            db3 = database()
            return [["--db", db3, "--query-cache-entries", "0"]] * 3
        setups.append(Setup(binary, "pg-3", "PostgreSQL, 3 replicas", three))
        setups.append(Setup(binary, "pg-1c", "PostgreSQL, 1, query cache", lambda: [["--db", database()]]))
        for setup in setups:
            results[setup.name] = bench(setup, args.duration)
            if setup.name == "pg-3":
                lat = latency(setup, args.latency_count)
            for proc in setup.procs:
                base.stop(proc)
        group = lambda name: max(1, round(results[name]["write_path"]["mutations"]))
        base.log("== the storage bounds")
        bounds = {
            "sqlite": bound("sqlite_bound", ["--dir", str(WORK / "sqlite-bound")], group("sqlite"), args.duration),
            "pg-1": bound("postgres_bound", ["--url", database()], group("pg-1"), args.duration),
        }
    finally:
        base.stop_all()

    print(f"\nmachine: {base.machine()}")
    print(f"wrk: 64 connections in all, {args.duration}s per run; 100 sessions x 100 seeded messages\n")
    ref = results["sqlite"]
    print(f"{'setup':<26}{'append req/s':>14}{'vs SQLite':>11}{'p99 ms':>9}{'list req/s':>13}{'vs SQLite':>11}{'p99 ms':>9}  stored")
    for name, label in LABELS:
        r = results[name]
        a, l = r["append"], r["list"]
        print(f"{label:<26}{a['rps']:>14,.0f}{a['rps'] / ref['append']['rps']:>10.2f}x{a['p99_us'] / 1000:>9.1f}"
              f"{l['rps']:>13,.0f}{l['rps'] / ref['list']['rps']:>10.2f}x{l['p99_us'] / 1000:>9.1f}  "
              f"{'OK' if r['count_ok'] else 'MISMATCH'} ({r['stored']} of {a['requests']}; "
              f"non-2xx {a['non2xx'] + l['non2xx']}, errors {a['badbody'] + l['badbody']})")
    print("\nwrite path over the append run, per group commit (lock hold: p50/p99 of the last 1,024 groups):")
    print(f"{'setup':<26}{'mutations':>10}{'statements':>11}{'round trips':>12}{'hold p50 ms':>12}{'hold p99 ms':>12}")
    for name, label in LABELS:
        w = results[name]["write_path"]
        print(f"{label:<26}{w['mutations']:>10.1f}{w['statements']:>11.1f}{w['round_trips']:>12.1f}"
              f"{w['hold_p50']:>12.2f}{w['hold_p99']:>12.2f}")
    print("\nstorage bounds: an append's rows through Jangar's storage, no function, no read, at Jangar's group size:")
    print(f"{'storage':<26}{'group':>6}{'appends/s':>11}{'Jangar':>9}{'statements':>11}{'round trips':>12}")
    for name, label in (("sqlite", "SQLite"), ("pg-1", "PostgreSQL")):
        b = bounds[name]
        jangar = results[name]["append"]["rps"] / b["inserts_per_sec"]
        print(f"{label:<26}{group(name):>6}{b['inserts_per_sec']:>11,.0f}{jangar:>8.2f}x"
              f"{b['statements_per_group']:>11.1f}{b['round_trips_per_group']:>12.1f}")
    print("\ncross-replica update latency (3 replicas; an append on A, one at a time, seen by a subscriber):")
    for name, text in lat.items():
        for line in text.splitlines():
            print(f"  watching the {name}: {line}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        base.stop_all()
        sys.exit("interrupted; servers stopped")
