"""The async verifier's rate beside the sync one, on Redis and PostgreSQL.

Run from the repo root, after ``eval "$(bash tools/start-services.sh)"``:

    python -m tools.bench.bench_async [--n 4000] [--rounds 3] [--concurrency 100]

Each figure is full verifications per second (signature, claims, the ledger's
atomic spend) of fresh tokens, in one process: the sync ``Verifier`` calling
its ledger one verification after another (``verifier 1p``, as in
``bench_ledgers``), and the ``AsyncVerifier`` on one event loop with
``--concurrency`` verifications in flight at once (``async verifier 1p x100``).
Both ledgers write to the same server at the same durability. The best of
``--rounds`` rounds, sync and async interleaved so a noisy neighbour slows both.
``python -m tools.bench.bench_ledgers`` reports the same two figures per server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from tools.bench.bench_ledgers import VEHICLE, Span, rate
from tools.faults.ledgers import (
    drop_namespace,
    new_namespace,
    open_async_ledger,
    open_ledger,
    server_problem,
)

CONCURRENCY = 100


def async_verifier_workload(kind: str, namespace: str, n: int, concurrency: int) -> Span:
    """``n`` fresh tokens verified by one AsyncVerifier, ``concurrency`` at a time."""
    from trunkkey import AsyncVerifier, Issuer, ManualClock, SigningKey, TrustedKey, TrustStore

    key = SigningKey.generate()
    now = int(time.time())
    clock = ManualClock(now)
    issuer = Issuer(key, "retailer", clock=clock)
    tokens = [
        issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=now, expires=now + 3600)
        for _ in range(n)
    ]
    store = TrustStore([TrustedKey.create(key.public_key, "retailer")])

    async def run() -> Span:
        ledger = await open_async_ledger(
            kind + "_async", namespace=namespace,
            # A throughput benchmark, not a deadline test: 100 connections opened
            # and judged at once on a busy 2-core machine can take over a second.
            timeout_s=10.0,
            # Enough connections for the verifications in flight (the pool's ceiling).
            **({"pool_size": min(concurrency, 50)} if kind == "postgres" else {}),
        )
        try:
            verifier = AsyncVerifier(trust_store=store, ledger=ledger, clock=clock)

            async def worker(part: int) -> None:
                for token in tokens[part::concurrency]:
                    decision = await verifier.verify(token, vehicle_id=VEHICLE, action="trunk")
                    if not decision.allowed:
                        raise RuntimeError(f"benchmark token denied: {decision.reason}")

            # Warm the pool: connections are opened (and judged) before the clock starts.
            await asyncio.gather(*(
                ledger.consume(VEHICLE, b"warm" + i.to_bytes(4, "big") + key.kid[:16], now + 60)
                for i in range(concurrency)
            ))
            started = time.perf_counter()
            await asyncio.gather(*(worker(p) for p in range(concurrency)))
            span = (started, time.perf_counter())
        finally:
            # Closed on failure too: a run that raises leaves no socket behind.
            await ledger.close()
        return span

    return asyncio.run(run())


def async_rate(kind: str, namespace: str, n: int, concurrency: int = CONCURRENCY) -> float:
    start, end = async_verifier_workload(kind, namespace, n, concurrency)
    return n / (end - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="verifications per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--kinds", default="redis,postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    kinds = [k for k in args.kinds.split(",") if k and not server_problem(k)]
    namespace = new_namespace()
    for kind in kinds:
        open_ledger(kind, namespace=namespace).close()  # the schema, before any clock starts
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
        for kind in kinds:
            measured = {
                f"{kind} verifier 1p": rate("verifier", kind, namespace, "", args.n, procs=1),
                f"{kind} async verifier 1p x{args.concurrency}": async_rate(
                    kind, namespace, args.n, args.concurrency
                ),
            }
            for name, value in measured.items():
                results[name] = max(results.get(name, 0.0), value)
    for kind in kinds:
        drop_namespace(kind, namespace)
    width = max(map(len, results), default=10)
    print(f"{'measurement':<{width}}  verifications/s")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:>10,.0f}")
    for kind in kinds:
        sync = results.get(f"{kind} verifier 1p")
        other = results.get(f"{kind} async verifier 1p x{args.concurrency}")
        if sync and other:
            print(f"{kind}: async / sync = {other / sync:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"verifications_per_s": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
