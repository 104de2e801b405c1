"""Consume rates on the replicated topologies, each as a ratio of its store's own baseline.

    python -m tools.bench.bench_replicated [--n 2000] [--threads 4] [--rounds 3]

Starts throwaway servers (tools/faults/replicated.py) and measures, with the
same ledger object shared by ``--threads`` threads of one process:

* PostgreSQL, one primary with a standby that is *not* synchronous (the
  baseline: a commit flushes the primary's WAL only), then the same pair with
  ``synchronous_standby_names = '*'`` (each commit also waits for the standby's
  flush): the cost of the second copy;
* Redis, one server with the cluster nodes' settings (``appendfsync always``,
  no ``WAIT``: the baseline), then the cluster of three primaries with one
  replica each, without ``WAIT`` and with ``WAIT 1`` after every consume.

All servers share the machine's cores with the benchmark: the ratios say what
replication costs here, not what separate hosts would give.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trunkkey.ledger.base import Ledger

from ..faults.faults import RedisServer
from ..faults.replicated import PostgresStandbyPair, RedisClusterServers

KEEP = 1_800_000_000 + 4 * 3600


def consumes_per_s(ledger: Ledger, n: int, threads: int) -> float:
    """``n`` fresh consumes spread over ``threads`` threads and 64 vehicles."""
    tokens = [secrets.token_bytes(16) for _ in range(n)]
    start = threading.Barrier(threads + 1)
    failures: list[BaseException] = []

    def work(share: list[bytes], offset: int) -> None:
        start.wait()
        try:
            for i, token in enumerate(share):
                if not ledger.consume(f"BENCHCAR{(offset + i) % 64:04d}", token, KEEP):
                    raise AssertionError("a fresh token was refused")
        except BaseException as exc:  # noqa: BLE001 -- reported after the run
            failures.append(exc)

    workers = [
        threading.Thread(target=work, args=(tokens[t::threads], t)) for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    return n / elapsed


def best(rounds: int, measure: Callable[[], float]) -> float:
    return max(measure() for _ in range(rounds))


def bench_postgres(n: int, threads: int, rounds: int) -> dict[str, float]:
    from trunkkey.ledger.postgres import PostgresLedger

    pair = PostgresStandbyPair()
    try:
        pair.start()
        dsn = pair.dsn()
        out: dict[str, float] = {}
        with PostgresLedger(dsn, pool_size=threads) as ledger:
            for _ in range(rounds):  # interleaved, so a noisy neighbour slows both alike
                for name, names in (("postgres_one_server", ""), ("postgres_sync_standby", "*")):
                    pair.primary.sql(
                        f"ALTER SYSTEM SET synchronous_standby_names = '{names}'",
                        "SELECT pg_reload_conf()",
                    )
                    if names:
                        pair.wait_synchronous()
                    rate = consumes_per_s(ledger, n, threads)
                    out[name] = max(out.get(name, 0.0), rate)
        return out
    finally:
        pair.destroy()


def bench_redis(n: int, threads: int, rounds: int, directory: Path) -> dict[str, float]:
    from trunkkey.ledger.redis import RedisLedger
    from trunkkey.ledger.redis_cluster import RedisClusterLedger

    out: dict[str, float] = {}
    with RedisServer(
        directory / "one", "--appendonly", "yes", "--appendfsync", "always", "--save", ""
    ) as one, RedisLedger(one.url) as ledger:
        out["redis_one_server"] = best(rounds, lambda: consumes_per_s(ledger, n, threads))
    cluster = RedisClusterServers()
    try:
        cluster.start()
        for name, replicas in (("redis_cluster_no_wait", 0), ("redis_cluster_wait_1", 1)):
            with RedisClusterLedger(cluster.urls, min_replicas=replicas) as ledger:
                out[name] = best(rounds, lambda ledger=ledger: consumes_per_s(ledger, n, threads))
    finally:
        cluster.destroy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="trunkkey-bench-") as tmp:
        rates = bench_postgres(args.n, args.threads, args.rounds)
        rates |= bench_redis(args.n, args.threads, args.rounds, Path(tmp))
    ratios = {
        "postgres sync standby / one server": rates["postgres_sync_standby"]
        / rates["postgres_one_server"],
        "redis cluster, no WAIT / one server": rates["redis_cluster_no_wait"]
        / rates["redis_one_server"],
        "redis cluster, WAIT 1 / one server": rates["redis_cluster_wait_1"]
        / rates["redis_one_server"],
    }
    print(f"{os.cpu_count()} cores, {args.threads} threads, n={args.n}, best of {args.rounds}")
    for name, rate in rates.items():
        print(f"{name:<40} {rate:>10,.0f} consumes/s")
    for name, ratio in ratios.items():
        print(f"{name:<40} {ratio:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
