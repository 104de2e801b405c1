"""Sealed tokens beside plain ones: sizes, and open + verify against verify (issue 15).

One run measures, interleaved so a noisy neighbour costs every figure alike:

* ``plain``: verify a fresh Ed25519 trunk token (memory ledger);
* ``sealed``: open the same kind of token sealed to the car (HPKE-4), then verify it;
* ``sealed_rotating``: as ``sealed``, for a car that holds two KEM keys (a
  rotation) and whose token is sealed to the second, so it tries both;
* the same two with a courier's proof (geofence and device binding);
* ``sealed_pq``: the post-quantum suite (ML-KEM-768 + X25519, ``cryptography``'s HPKE);
* ``sealed_pyhpke``: as ``sealed``, every open through pyhpke (trunkkey's
  fallback where ``cryptography`` lacks the AAD binding it opens with);

and prints each size and rate with the issue's verdicts: a sealed Ed25519
trunk token is at most 256 bytes, and open + verify runs at least half as
fast as a plain verify. Rates are CPU time (``time.process_time``), best of
interleaved rounds, as ``bench_parcels`` does::

    python -m tools.bench.bench_sealed            # writes tools/bench/results/sealed.json
    python -m tools.bench.bench_sealed --quick

``python -m tools.bench.run`` reports the same figures and verdicts in its one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator

from tools import ROOT
from tools.bench._setups import HOME, VEHICLE, WINDOW, Direct, Presentation, checker
from trunkkey import (
    Action,
    CarHybridKemKey,
    CarKemKey,
    CarKeyring,
    MemoryLedger,
    SigningKey,
    Verifier,
    _hpke4,
    seal,
)
from trunkkey.clock import ManualClock
from trunkkey.proof import make_proof

RESULT = ROOT / "tools" / "bench" / "results" / "sealed.json"
#: The issue's targets.
MAX_SEALED_TRUNK_BYTES = 256
MIN_RATE_RATIO = 0.5


def _sealed_pools(
    direct: Direct, car: CarKemKey, hybrid: CarHybridKemKey
) -> dict[str, Callable[[int], list[Presentation]]]:
    def sealed_plain(count: int) -> list[Presentation]:
        return [(seal(direct.mint(), car.public_key), None, None, None) for _ in range(count)]

    def sealed_pq(count: int) -> list[Presentation]:
        return [(seal(direct.mint(), hybrid.public_key), None, None, None)
                for _ in range(count)]

    def sealed_proof(count: int) -> list[Presentation]:
        out: list[Presentation] = []
        for _ in range(count):
            courier = SigningKey.generate()
            token = seal(direct.issuer.mint(
                vehicle_id=VEHICLE, action=Action.TRUNK, not_before=direct.clock.now(),
                expires=direct.clock.now() + WINDOW, geofence=HOME,
                courier_key=courier.public_key,
            ), car.public_key)
            challenge = os.urandom(16)
            proof = make_proof(courier, token=token, vehicle_id=VEHICLE, challenge=challenge)
            out.append((token, proof, challenge, None))
        return out

    return {
        "plain": direct.plain, "sealed": sealed_plain, "sealed_rotating": sealed_plain,
        "proof": direct.with_proof, "sealed_proof": sealed_proof, "sealed_pq": sealed_pq,
        "sealed_pyhpke": sealed_plain,
    }


@contextlib.contextmanager
def _opening_with(name: str) -> Iterator[None]:
    """For ``sealed_pyhpke``: every open through pyhpke, as on a ``cryptography``
    without the AAD binding (:func:`trunkkey._hpke4.compiled_open` says None)."""
    if name != "sealed_pyhpke":
        yield
        return
    real = _hpke4.compiled_open
    _hpke4.compiled_open = lambda: None  # type: ignore[assignment]
    try:
        yield
    finally:
        _hpke4.compiled_open = real


def _verifier(direct: Direct, ring: CarKeyring | None) -> Verifier:
    return Verifier(trust_store=direct.store, ledger=MemoryLedger(),
                    clock=ManualClock(direct.clock.now()), car_keys=ring)


def measure(count: int, rounds: int) -> dict[str, float]:
    """µs of CPU per decision for each case: the best of ``rounds`` interleaved rounds."""
    direct, car, hybrid = Direct.create(), CarKemKey.generate(), CarHybridKemKey.generate()
    rings = {
        "plain": None, "proof": None, "sealed": CarKeyring([car]),
        "sealed_proof": CarKeyring([car]),
        "sealed_rotating": CarKeyring([CarKemKey.generate(), car]),
        "sealed_pq": CarKeyring([hybrid]), "sealed_pyhpke": CarKeyring([car]),
    }
    pools = _sealed_pools(direct, car, hybrid)
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, make in pools.items():
            items, check = make(count), checker(_verifier(direct, rings[name]))
            with _opening_with(name):
                started = time.process_time()
                for item in items:
                    check(item)
                spent = (time.process_time() - started) / count * 1e6
            best[name] = min(best.get(name, spent), spent)
    return best


def sizes() -> dict[str, int]:
    direct, car = Direct.create(), CarKemKey.generate()
    trunk = direct.mint()
    bound = direct.issuer.mint(
        vehicle_id=VEHICLE, action=Action.TRUNK, not_before=direct.clock.now(),
        expires=direct.clock.now() + WINDOW, geofence=HOME,
        courier_key=SigningKey.generate().public_key, order_ref=b"112-4408817",
    )
    return {
        "plain_trunk": len(trunk), "sealed_trunk": len(seal(trunk, car.public_key)),
        "sealed_trunk_pq": len(seal(trunk, CarHybridKemKey.generate().public_key)),
        "plain_delivery": len(bound), "sealed_delivery": len(seal(bound, car.public_key)),
    }


def report(*, quick: bool = False) -> dict[str, object]:
    """Sizes, rates, the open + verify ratio and the issue's two verdicts, in one dict
    (what ``main`` writes, and what ``tools.bench.run`` reports in its one run)."""
    count, rounds = (50, 2) if quick else (400, 8)
    us = measure(count, rounds)
    size = sizes()
    rate = {name: 1e6 / value for name, value in us.items()}
    ratio = rate["sealed"] / rate["plain"]
    verdicts = {
        "sealed_trunk_at_most_256_bytes": size["sealed_trunk"] <= MAX_SEALED_TRUNK_BYTES,
        "open_verify_at_least_half_plain_rate": ratio >= MIN_RATE_RATIO,
    }
    opened_by = ("cryptography (private AAD binding)" if _hpke4.compiled_open()
                 else "pyhpke")
    return {"sizes": size, "us_cpu": us, "rates": rate, "ratio": ratio, "verdicts": verdicts,
            "hpke_open": opened_by, "ratio_pyhpke": rate["sealed_pyhpke"] / rate["plain"]}


def table(result: dict[str, object]) -> str:
    """The report as lines: sizes, rates, ratios, then MET or MISSED per verdict."""
    size: dict[str, int] = result["sizes"]  # type: ignore[assignment]
    us: dict[str, float] = result["us_cpu"]  # type: ignore[assignment]
    rate: dict[str, float] = result["rates"]  # type: ignore[assignment]
    verdicts: dict[str, bool] = result["verdicts"]  # type: ignore[assignment]
    lines = [f"size {name:16s} {bytes_:5d} bytes" for name, bytes_ in size.items()]
    lines += [f"rate {name:16s} {rate[name]:8.0f} /s  ({value:6.1f} µs CPU)"
              for name, value in us.items()]
    lines.append(f"HPKE-4 opened by {result['hpke_open']}; "
                 f"through pyhpke alone: {result['ratio_pyhpke']:.2f}")
    lines.append(f"open + verify / plain verify: {result['ratio']:.2f} "
                 f"(with a proof: {rate['sealed_proof'] / rate['proof']:.2f}; "
                 f"two keys: {rate['sealed_rotating'] / rate['plain']:.2f}; "
                 f"ML-KEM-768 + X25519: {rate['sealed_pq'] / rate['plain']:.2f})")
    lines += [f"{'MET ' if met else 'MISSED'} {name}" for name, met in verdicts.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; rough figures")
    parser.add_argument("--json", default=str(RESULT), help="where to write the results")
    args = parser.parse_args(argv)
    result = report(quick=args.quick)
    print(table(result))
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    return result


if __name__ == "__main__":
    main()
