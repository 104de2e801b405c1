"""CPU time of a parcel-bound verification beside a plain one (issue 19).

``python -m tools.bench.run`` reports both as rates in one interleaved run;
on a shared machine wall-clock rates can be too noisy to rank them, so this
counts process CPU time instead, best of interleaved rounds::

    python -m tools.bench.bench_parcels
"""

from __future__ import annotations

import time

from tools.bench._setups import Direct, checker
from trunkkey import MemoryLedger


def main(count: int = 400, rounds: int = 8) -> dict[str, float]:
    """µs of CPU per verification: plain proof, 3 parcels, 16 parcels."""
    direct = Direct.create()
    pools = {
        "proof": lambda: direct.with_proof(count),
        "parcels3": lambda: direct.with_parcels(count),
        "parcels16": lambda: direct.with_parcels(count, 16),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, make in pools.items():
            items, check = make(), checker(direct.verifier(MemoryLedger()))
            started = time.process_time()
            for item in items:
                check(item)
            spent = (time.process_time() - started) / count * 1e6
            best[name] = min(best.get(name, spent), spent)
    for name, us in best.items():
        print(f"{name:10s} {us:7.1f} µs CPU per verification")
    for name in ("parcels3", "parcels16"):
        print(f"{name}: +{best[name] - best['proof']:.1f} µs over a plain proof, "
              f"rate ratio {best['proof'] / best[name]:.3f}")
    return best


if __name__ == "__main__":
    main()
