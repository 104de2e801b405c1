"""Ledger benchmark: consumes/s per ledger beside its store's own baseline, 1 and 2 processes.

Run from the repo root, after ``eval "$(bash tools/start-services.sh)"``:

    python -m tools.bench.bench_ledgers [--n 4000] [--rounds 3] [--json OUT]

Baselines are measured in the same run, at the same durability, with the same
one-request-per-operation pattern a verifier has:

* Redis: a raw redis-py ``SET k v NX PXAT t`` loop, and ``redis-benchmark -c 1``
  (and ``-c 2``) running ``SET key:__rand_int__ v NX``;
* PostgreSQL: a plain single-row ``INSERT`` per autocommit transaction;
* SQLite: a plain single-row ``INSERT`` per transaction, WAL, synchronous=FULL.

Also: group commit (threads of one process sharing fsyncs) against the plain
SQLite ledger, and the fleet verifier (full ``Verifier.verify``) from 1 to 2
processes on Redis and PostgreSQL, with the ``AsyncVerifier`` beside it (one
process, one event loop, 100 verifications in flight; ``bench_async``).
Each figure is the best of ``--rounds`` rounds, with ledger and baseline
rounds interleaved so a noisy neighbour slows both alike. The machine has 2
cores shared with other work: treat the 2-process figures as a floor.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tools.faults.ledgers import (
    SERVER_ENV,
    drop_namespace,
    new_namespace,
    open_ledger,
    server_problem,
)

KEEP_UNTIL = int(time.time()) + 86_400
#: (start, end) of the timed part, on the system-wide monotonic clock that
#: perf_counter reads on Linux, so spans of different processes compare.
Span = tuple[float, float]
Ready = Callable[[], None]
VEHICLE = "1HGCM82633A004352"

# ---------------------------------------------------------------- workloads
# Each workload runs ``n`` operations in the calling process and returns the
# seconds they took; ``tag`` keeps processes and rounds on distinct keys.


def ledger_workload(  # noqa: PLR0917 -- one signature for every workload, called by name
    kind: str, namespace: str, path: str, n: int, tag: str, threads: int, ready: Ready
) -> Span:
    ledger = open_ledger(kind, namespace=namespace, path=Path(path))
    prefix = tag.encode()

    def run(part: int) -> None:
        for i in range(part, n, threads):
            ledger.consume(VEHICLE, prefix + i.to_bytes(4, "big"), KEEP_UNTIL)

    ready()
    started = time.perf_counter()
    _in_threads(run, threads)
    span = (started, time.perf_counter())
    ledger.close()
    return span


def baseline_workload(  # noqa: PLR0917 -- one signature for every workload
    kind: str, namespace: str, path: str, n: int, tag: str, threads: int, ready: Ready
) -> Span:
    """The store doing the same single write with no trunkkey code around it."""
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(os.environ[SERVER_ENV["redis"]])
        key = namespace.encode() + b":raw:" + tag.encode()
        ms = KEEP_UNTIL * 1000

        def run(part: int) -> None:
            for i in range(part, n, threads):
                client.set(key + i.to_bytes(4, "big"), b"1", nx=True, pxat=ms)

        ready()
        started = time.perf_counter()
        _in_threads(run, threads)
        span = (started, time.perf_counter())
        client.close()
        return span
    if kind == "postgres":
        import psycopg

        conns = [
            psycopg.connect(os.environ[SERVER_ENV["postgres"]], autocommit=True)
            for _ in range(threads)
        ]
        table = namespace + "_raw"

        def run(part: int) -> None:
            conn = conns[part]
            for i in range(part, n, threads):
                conn.execute(
                    f"INSERT INTO {table} (k) VALUES (%s)",  # noqa: S608 -- our own identifier
                    (tag.encode() + i.to_bytes(4, "big"),),
                )

        ready()
        started = time.perf_counter()
        _in_threads(run, threads)
        span = (started, time.perf_counter())
        for c in conns:
            c.close()
        return span
    if kind in {"sqlite", "sqlite_group"}:
        conns = [_sqlite_raw(path + ".raw") for _ in range(threads)]

        def run(part: int) -> None:
            conn = conns[part]
            for i in range(part, n, threads):
                conn.execute(
                    "INSERT INTO plain (k) VALUES (?)", (tag.encode() + i.to_bytes(4, "big"),)
                )

        ready()
        started = time.perf_counter()
        _in_threads(run, threads)
        span = (started, time.perf_counter())
        for c in conns:
            c.close()
        return span
    if kind == "memory":
        lock = threading.Lock()
        spent: dict[bytes, int] = {}

        def run(part: int) -> None:
            for i in range(part, n, threads):
                with lock:
                    spent.setdefault(tag.encode() + i.to_bytes(4, "big"), KEEP_UNTIL)

        ready()
        started = time.perf_counter()
        _in_threads(run, threads)
        return (started, time.perf_counter())
    raise ValueError(kind)


def _sqlite_raw(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS plain (k BLOB PRIMARY KEY) WITHOUT ROWID")
    return conn


def _in_threads(run: Callable[[int], None], threads: int) -> None:
    if threads == 1:
        run(0)
        return
    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def verifier_workload(  # noqa: PLR0917 -- one signature for every workload
    kind: str, namespace: str, path: str, n: int, tag: str, threads: int, ready: Ready  # noqa: ARG001
) -> Span:
    """Full verification (signature, claims, ledger) of n fresh tokens."""
    from trunkkey import Issuer, ManualClock, SigningKey, TrustedKey, TrustStore, Verifier

    key = SigningKey.generate()  # each process its own issuer; the ledger is what they share
    now = int(time.time())
    clock = ManualClock(now)
    issuer = Issuer(key, "retailer", clock=clock)
    tokens = [
        issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=now, expires=now + 3600)
        for _ in range(n)
    ]
    ledger = open_ledger(kind, namespace=namespace, path=Path(path))
    verifier = Verifier(
        trust_store=TrustStore([TrustedKey.create(key.public_key, "retailer")]),
        ledger=ledger,
        clock=clock,
    )
    ready()
    started = time.perf_counter()
    for token in tokens:
        decision = verifier.verify(token, vehicle_id=VEHICLE, action="trunk")
        if not decision.allowed:
            raise RuntimeError(f"benchmark token denied: {decision.reason}")
    span = (started, time.perf_counter())
    ledger.close()
    return span


WORKLOADS = {
    "ledger": ledger_workload,
    "baseline": baseline_workload,
    "verifier": verifier_workload,
}

# ------------------------------------------------------------ process runner


def _proc(barrier: object, out: object, what: str, args: tuple[object, ...]) -> None:
    # Set-up (imports, connections, minting) happens before the barrier; only
    # the operations themselves are timed, and all processes start together.
    out.put(WORKLOADS[what](*args, ready=barrier.wait))  # type: ignore[attr-defined,operator]


def rate(
    what: str, kind: str, namespace: str, path: str, n: int, *, procs: int, threads: int = 1
) -> float:
    """Operations per second over ``procs`` processes doing ``n`` operations in total."""
    tag = secrets.token_hex(4)
    if procs == 1:
        start, end = WORKLOADS[what](kind, namespace, path, n, tag, threads, ready=lambda: None)
        return n / (end - start)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    out = ctx.SimpleQueue()
    share = n // procs
    children = [
        ctx.Process(
            target=_proc,
            args=(barrier, out, what, (kind, namespace, path, share, f"{tag}{p}", threads)),
        )
        for p in range(procs)
    ]
    for c in children:
        c.start()
    spans = [out.get() for _ in children]
    for c in children:
        c.join()
    return share * procs / (max(e for _, e in spans) - min(s for s, _ in spans))


def redis_benchmark(n: int, clients: int) -> float | None:
    exe = shutil.which("redis-benchmark")
    url = os.environ.get(SERVER_ENV["redis"], "")
    port = re.search(r":(\d+)", url.split("//", 1)[-1])
    if exe is None or port is None:
        return None
    out = subprocess.run(  # noqa: S603 -- a fixed local tool and arguments
        [exe, "-p", port.group(1), "-n", str(n), "-c", str(clients), "-r", "100000000", "-q",
         "SET", "tkbench:__rand_int__", "v", "NX", "PXAT", str(KEEP_UNTIL * 1000)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    found = re.findall(r"([\d.]+) requests per second", out)
    return float(found[-1]) if found else None


# ----------------------------------------------------------------- the table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="consumes per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="memory,sqlite,redis,postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, float | None] = {}

    def best(name: str, measure: Callable[..., float | None], *margs: object, **kw: object) -> None:
        value = measure(*margs, **kw)
        if value is not None:
            results[name] = max(results.get(name) or 0.0, value)

    kinds = [k for k in args.kinds.split(",") if k]
    for kind in list(kinds):
        problem = server_problem(kind)
        if problem:
            print(f"skipping {kind}: {problem}", file=sys.stderr)
            kinds.remove(kind)
    with tempfile.TemporaryDirectory() as tmp:
        namespace = new_namespace()
        path = str(Path(tmp) / "bench.db")
        for kind in kinds:
            if kind != "memory":
                open_ledger(kind, namespace=namespace, path=Path(path)).close()
            if kind == "postgres":
                import psycopg

                with psycopg.connect(os.environ[SERVER_ENV["postgres"]], autocommit=True) as c:
                    c.execute(f"CREATE TABLE {namespace}_raw (k bytea PRIMARY KEY)")
        if "sqlite" in kinds:
            _sqlite_raw(path + ".raw").close()
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            for kind in kinds:
                n = args.n * 25 if kind == "memory" else args.n
                where = (namespace, path, n)
                for procs in (1, 2) if kind != "memory" else (1,):
                    best(f"{kind} ledger {procs}p", rate, "ledger", kind, *where, procs=procs)
                    best(f"{kind} baseline {procs}p", rate, "baseline", kind, *where, procs=procs)
                if kind == "sqlite":
                    for threads in (1, 8):
                        for variant in ("sqlite", "sqlite_group"):
                            best(f"{variant} ledger 1p x{threads}t", rate, "ledger", variant,
                                 *where, procs=1, threads=threads)
                    best("sqlite baseline 1p x8t", rate, "baseline", "sqlite", *where,
                         procs=1, threads=8)
                    for variant in ("sqlite", "sqlite_group"):
                        best(f"{variant} ledger 2p x4t", rate, "ledger", variant, *where,
                             procs=2, threads=4)
                if kind == "redis":
                    for c in (1, 2):
                        best(f"redis-benchmark SET NX -c {c}", redis_benchmark, args.n * 5, c)
                if kind in {"redis", "postgres"}:
                    for procs in (1, 2):
                        best(f"{kind} verifier {procs}p", rate, "verifier", kind, namespace, path,
                             args.n, procs=procs)
                    # The AsyncVerifier beside it: one event loop, 100 verifications in flight.
                    from tools.bench.bench_async import CONCURRENCY, async_rate

                    best(f"{kind} async verifier 1p x{CONCURRENCY}", async_rate, kind,
                         namespace, args.n, CONCURRENCY)
        for kind in kinds:
            if kind in SERVER_ENV:
                drop_namespace(kind, namespace)
            if kind == "postgres":
                import psycopg

                with psycopg.connect(os.environ[SERVER_ENV["postgres"]], autocommit=True) as c:
                    c.execute(f"DROP TABLE IF EXISTS {namespace}_raw")
            if kind == "redis":
                import redis

                client = redis.Redis.from_url(os.environ[SERVER_ENV["redis"]])
                for key in client.scan_iter(match=b"tkbench:*", count=5000):
                    client.delete(key)
                client.close()

    ratios: dict[str, float] = {}

    def ratio(name: str, num: str, den: str) -> None:
        if results.get(num) and results.get(den):
            ratios[name] = results[num] / results[den]  # type: ignore[operator]

    for kind in kinds:
        ratio(f"{kind} ledger / baseline, 1 process", f"{kind} ledger 1p", f"{kind} baseline 1p")
        ratio(f"{kind} ledger / baseline, 2 processes", f"{kind} ledger 2p", f"{kind} baseline 2p")
        ratio(f"{kind} ledger 2p / 1p", f"{kind} ledger 2p", f"{kind} ledger 1p")
        ratio(f"{kind} baseline 2p / 1p", f"{kind} baseline 2p", f"{kind} baseline 1p")
        ratio(f"{kind} verifier 2p / 1p", f"{kind} verifier 2p", f"{kind} verifier 1p")
        ratio(f"{kind} async verifier x100 / verifier 1p", f"{kind} async verifier 1p x100",
              f"{kind} verifier 1p")
    for name, num, den in [
        ("redis ledger 1p / redis-benchmark -c 1", "redis ledger 1p",
         "redis-benchmark SET NX -c 1"),
        ("sqlite group / plain, 1p x8t", "sqlite_group ledger 1p x8t", "sqlite ledger 1p x8t"),
        ("sqlite group / plain, 2p x4t", "sqlite_group ledger 2p x4t", "sqlite ledger 2p x4t"),
        ("sqlite group / raw insert, 1p x8t", "sqlite_group ledger 1p x8t",
         "sqlite baseline 1p x8t"),
    ]:
        ratio(name, num, den)

    width = max(map(len, [*results, *ratios]), default=10)
    print(f"{'measurement':<{width}}  ops/s")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:>10,.0f}")
    print(f"\n{'ratio':<{width}}  value")
    for name, value in ratios.items():
        print(f"{name:<{width}}  {value:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps({"ops_per_s": results, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
