"""The race harnesses against the replicated topologies.

    python -m tools.faults.race_replicated [--races 10000] [--rounds 1000] [--procs 2] [--threads 4]

Uses the topologies ``tools/start-services.sh --replicated`` started (their
addresses in ``TRUNKKEY_POSTGRES_PAIR_DSN``, ``TRUNKKEY_REDIS_CLUSTER_URL``),
or else starts throwaway ones: a PostgreSQL primary with a synchronous standby
and a Redis Cluster of three primaries with one replica each
(tools/faults/replicated.py). It points
the ``postgres_pair`` and ``redis_cluster`` ledger kinds at them, and runs the
token race (exactly one winner per token) and the daily-limit race (at most
one first use per round) of :mod:`tools.faults.race` on each, ``--procs``
processes of ``--threads`` threads. One JSON line per run; non-zero exit on
any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

from .ledgers import REPLICATED_ENV
from .race import LimitRaceResult, RaceResult, run_limit_race, run_race
from .replicated import PostgresStandbyPair, RedisClusterServers


@contextmanager
def topology(kind: str) -> Iterator[None]:
    """Start the servers for ``kind`` and publish their address where the ledgers look,
    unless the address is already there (``tools/start-services.sh --replicated``).

    The variable is removed again with the servers, so nothing run later in
    the same process (a test session) finds an address where nothing listens.
    """
    name = REPLICATED_ENV[kind]
    before = os.environ.get(name)
    if before:  # the script's topology (tools/start-services.sh --replicated): use it
        yield
        return
    try:
        if kind == "postgres_pair":
            with PostgresStandbyPair() as pair:
                os.environ[name] = pair.dsn()
                yield
        else:
            with RedisClusterServers() as cluster:
                os.environ[name] = cluster.urls[0]
                yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def race_topology(
    kind: str, *, races: int, rounds: int, procs: int, threads: int
) -> list[RaceResult | LimitRaceResult]:
    with topology(kind):
        results: list[RaceResult | LimitRaceResult] = [
            run_race(kind, races=races, procs=procs, threads=threads)
        ]
        if rounds:
            results.append(run_limit_race(kind, rounds=rounds, procs=procs, threads=threads))
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", choices=(*REPLICATED_ENV, "both"), default="both")
    parser.add_argument("--races", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1_000, help="daily-limit rounds (0: none)")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    kinds = list(REPLICATED_ENV) if args.topology == "both" else [args.topology]
    ok = True
    for kind in kinds:
        for result in race_topology(
            kind, races=args.races, rounds=args.rounds, procs=args.procs, threads=args.threads
        ):
            print(json.dumps(asdict(result) | {"ok": result.ok}), flush=True)
            ok = ok and result.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
