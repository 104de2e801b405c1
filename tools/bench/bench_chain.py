"""Consent-chain benchmark: presentation size, and chain verification rate with and without
the grant cache.

Run: ``python -m tools.bench.bench_chain [--seconds S] [--json OUT]``

Two rates are measured for each cache setting:

* ``resolve``: the chain alone (carmaker root -> retailer -> carrier), as the
  car checks it before the token;
* ``verify``: the whole presentation — chain, token, proof of possession and
  the replay ledger — through :meth:`Verifier.verify_at`.

Each figure is the best of several short rounds, interleaved so that a noisy
neighbour slows all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

from trunkkey import Action, Algorithm, Purpose, make_proof
from trunkkey.testing.consent import (
    HOME,
    VEHICLE,
    ConsentWorld,
    build_world,
    minimal_presentation_size,
)


def _rate(fn: Callable[[], object], batch: int) -> float:
    start = time.perf_counter()
    for _ in range(batch):
        fn()
    return batch / (time.perf_counter() - start)


def _presentations(w: ConsentWorld, count: int) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for _ in range(count):
        token = w.token()
        challenge = os.urandom(16)
        proof = make_proof(w.courier, token=token, vehicle_id=VEHICLE, challenge=challenge)
        out.append((token, proof, challenge))
    return out


def _measure(w: ConsentWorld, batch: int, pool: list[tuple[bytes, bytes, bytes]]) -> tuple[
    float, float
]:
    consent, verifier, chain, now = w.consent, w.verifier, w.chain, w.clock.now()
    items = iter(pool)

    def resolve() -> object:
        return consent.resolve(chain, now=now, vehicle_id=VEHICLE)

    def verify() -> None:
        token, proof, challenge = next(items)
        decision = verifier.verify_at(
            token, now=now, vehicle_id=VEHICLE, action=Action.TRUNK, purpose=Purpose.DELIVERY,
            location=HOME.centre, proof=proof, challenge=challenge, chain=chain,
        )
        if not decision.allowed:
            raise AssertionError(decision)

    return _rate(resolve, batch), _rate(verify, batch)


def run(seconds: float, algorithm: Algorithm) -> dict[str, object]:
    # No daily limit in this consent: a benchmark opens the trunk thousands of times.
    worlds = {
        "cached": build_world(algorithm=algorithm, daily_limit=None),
        "uncached": build_world(algorithm=algorithm, daily_limit=None, cache=False),
    }
    rounds, batch = 5, 200
    pools = {name: _presentations(w, batch * rounds) for name, w in worlds.items()}
    best: dict[str, float] = {}
    deadline = time.perf_counter() + seconds
    for round_ in range(rounds):
        for name, w in worlds.items():
            pool = pools[name][round_ * batch : (round_ + 1) * batch]
            resolve_rate, verify_rate = _measure(w, batch, pool)
            best[f"resolve_{name}"] = max(best.get(f"resolve_{name}", 0.0), resolve_rate)
            best[f"verify_{name}"] = max(best.get(f"verify_{name}", 0.0), verify_rate)
        if time.perf_counter() > deadline:
            break
    return {
        "algorithm": algorithm.cose_name,
        "size_minimal": minimal_presentation_size(build_world(algorithm=algorithm)),
        "size_story": build_world(algorithm=algorithm).presentation_size(),
        "per_second": {k: round(v) for k, v in sorted(best.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget per algorithm")
    parser.add_argument("--json", help="write the results to this file too")
    args = parser.parse_args(argv)
    report = [run(args.seconds, alg) for alg in (Algorithm.EDDSA, Algorithm.ES256)]
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
