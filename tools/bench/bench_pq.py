"""Post-quantum benchmark: ML-DSA-44 tokens and hybrid roots (EdDSA + ML-DSA-65, ES256 +
ML-DSA-65), beside today's.

Run from the repository root: ``python -m tools.bench.bench_pq [--quick] [--json OUT]``;
``python -m tools.bench.run`` runs it too and reports it under ``pq``.

Rates (operations per second, best of interleaved rounds, ``tools/bench/_measure.py``):

* ``verify_ed25519_token`` / ``verify_mldsa44_token``: a freshly minted token
  (first use) through :meth:`Verifier.verify`, memory ledger; the cost of
  ML-DSA-44 is their ratio;
* ``mint_mldsa44_token``: the issuer's side;
* ``open_update_ed25519_root`` / ``open_update_hybrid_root`` /
  ``open_update_p256_hybrid_root``: a signed trust update opened by the car
  (``open_root_signed``: header, kid, signature), the part of applying one
  that depends on the root (``hybrid`` is EdDSA + ML-DSA-65, ``p256_hybrid``
  ES256 + ML-DSA-65);
* ``resolve_chain_ed25519_root`` / ``resolve_chain_hybrid_root`` /
  ``resolve_chain_p256_hybrid_root``: a two-link consent chain resolved with
  no grant cache, so the root grant's signature is checked every time (a warm
  cache checks it once);
* ``floor_mldsa44_verify`` / ``floor_mldsa65_ed25519_verify`` /
  ``floor_mldsa65_p256_verify``: a key's signature check alone (ML-DSA-44, and
  each composite's both halves), over a 200-byte message.

Sizes (bytes) of the same objects, and their keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tools.bench._measure import Case, best_of_rounds, consume, repeat
from trunkkey import (
    Algorithm,
    Issuer,
    ManualClock,
    MemoryLedger,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
)
from trunkkey.consent import (
    KeyEntry,
    Role,
    RootKey,
    VehicleAnchors,
    sign_trust_update,
)
from trunkkey.consent.anchors import open_root_signed
from trunkkey.consent.chain import ResolvedChain
from trunkkey.cose import Typ
from trunkkey.testing.consent import VEHICLE, build_world

NOW = 1_800_000_000
ISSUER = "retailer"


def _token_case(algorithm: Algorithm, count: int) -> tuple[Case, int, Case]:
    """Verify (fresh tokens), the token's size, and mint, for one token-key algorithm."""
    clock = ManualClock(NOW)
    key = SigningKey.generate(algorithm)
    issuer = Issuer(key, ISSUER, clock=clock)
    verifier = Verifier(trust_store=TrustStore([TrustedKey.create(key.public_key, ISSUER)]),
                        ledger=MemoryLedger(), clock=clock)

    def mint() -> bytes:
        return issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW,
                           expires=NOW + 3600)

    tokens = iter([mint() for _ in range(count)])
    size = len(mint())

    def verify(token: bytes) -> None:
        decision = verifier.verify(token, vehicle_id=VEHICLE, action="trunk")
        if not decision.allowed:
            raise AssertionError(decision)

    batch = max(1, count // 8)
    return Case(run=consume(tokens, verify), batch=batch), size, Case(run=repeat(mint), batch=batch)


def _update_case(algorithm: Algorithm) -> tuple[Case, int, int]:
    """Open a trust update signed by a root of ``algorithm``; its size, empty and moving keys."""
    root = SigningKey.generate(algorithm)
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=root.public_key)])
    empty = sign_trust_update(root, version=1, issued_at=NOW)
    token_key = SigningKey.generate(Algorithm.MLDSA44)
    moving = sign_trust_update(root, version=1, issued_at=NOW, set_keys=[KeyEntry(
        role=Role.ISSUER, name=ISSUER, key=token_key.public_key, not_before=NOW,
        not_after=NOW + 86400 * 365)])

    def open_update() -> bytes:
        return open_root_signed(moving, anchors, typ=Typ.TRUST_UPDATE, now=NOW)

    return Case(run=repeat(open_update), batch=50), len(empty), len(moving)


def _chain_case(root_algorithm: Algorithm) -> tuple[Case, int, int]:
    w = build_world(start=NOW, cache=False, root_algorithm=root_algorithm)
    chain, consent = w.chain, w.consent

    def resolve() -> object:
        resolved = consent.resolve(chain, now=NOW, vehicle_id=VEHICLE)
        if not isinstance(resolved, ResolvedChain):
            raise AssertionError(resolved)
        return resolved

    return Case(run=repeat(resolve), batch=50), len(w.root_grant), len(chain)


def _floor(algorithm: Algorithm) -> Case:
    key = SigningKey.generate(algorithm)
    message = bytes(200)
    signature = key.sign(message)
    check: Callable[[bytes, bytes], bool] = key.public_key.is_valid_signature
    return Case(run=repeat(lambda: check(signature, message)), batch=100)


def measure(*, quick: bool = False) -> dict[str, dict[str, float]]:
    """Every rate and size named in the module docstring."""
    count, rounds = (64, 2) if quick else (2400, 7)
    ed_verify, ed_size, _ = _token_case(Algorithm.EDDSA, count * rounds)
    ml_verify, ml_size, ml_mint = _token_case(Algorithm.MLDSA44, count * rounds)
    ed_update, ed_update_empty, ed_update_moving = _update_case(Algorithm.EDDSA)
    hy_update, hy_update_empty, hy_update_moving = _update_case(Algorithm.EDDSA_MLDSA65)
    ed_chain, ed_root_grant, ed_chain_size = _chain_case(Algorithm.EDDSA)
    hy_chain, hy_root_grant, hy_chain_size = _chain_case(Algorithm.EDDSA_MLDSA65)
    ph_update, ph_update_empty, ph_update_moving = _update_case(Algorithm.ES256_MLDSA65)
    ph_chain, ph_root_grant, ph_chain_size = _chain_case(Algorithm.ES256_MLDSA65)
    cases = {
        "verify_ed25519_token": ed_verify,
        "verify_mldsa44_token": ml_verify,
        "mint_mldsa44_token": ml_mint,
        "open_update_ed25519_root": ed_update,
        "open_update_hybrid_root": hy_update,
        "open_update_p256_hybrid_root": ph_update,
        "resolve_chain_ed25519_root": ed_chain,
        "resolve_chain_hybrid_root": hy_chain,
        "resolve_chain_p256_hybrid_root": ph_chain,
        "floor_mldsa44_verify": _floor(Algorithm.MLDSA44),
        "floor_mldsa65_ed25519_verify": _floor(Algorithm.EDDSA_MLDSA65),
        "floor_mldsa65_p256_verify": _floor(Algorithm.ES256_MLDSA65),
    }
    rates = best_of_rounds(cases, rounds)
    sizes = {
        "token_ed25519": ed_size,
        "token_mldsa44": ml_size,
        "trust_update_empty_ed25519_root": ed_update_empty,
        "trust_update_empty_hybrid_root": hy_update_empty,
        "trust_update_empty_p256_hybrid_root": ph_update_empty,
        "trust_update_to_mldsa44_ed25519_root": ed_update_moving,
        "trust_update_to_mldsa44_hybrid_root": hy_update_moving,
        "trust_update_to_mldsa44_p256_hybrid_root": ph_update_moving,
        "root_grant_ed25519": ed_root_grant,
        "root_grant_hybrid": hy_root_grant,
        "root_grant_p256_hybrid": ph_root_grant,
        "chain_ed25519_root": ed_chain_size,
        "chain_hybrid_root": hy_chain_size,
        "chain_p256_hybrid_root": ph_chain_size,
        "public_key_mldsa44": len(SigningKey.generate(Algorithm.MLDSA44).public_key.raw),
        "public_key_hybrid": len(SigningKey.generate(Algorithm.EDDSA_MLDSA65).public_key.raw),
        "public_key_p256_hybrid": len(
            SigningKey.generate(Algorithm.ES256_MLDSA65).public_key.raw),
    }
    ratios = {
        "verify mldsa44 / ed25519 token": rates["verify_mldsa44_token"]
        / rates["verify_ed25519_token"],
        "open update hybrid / ed25519 root": rates["open_update_hybrid_root"]
        / rates["open_update_ed25519_root"],
        "resolve chain hybrid / ed25519 root": rates["resolve_chain_hybrid_root"]
        / rates["resolve_chain_ed25519_root"],
        "open update p256 hybrid / hybrid root": rates["open_update_p256_hybrid_root"]
        / rates["open_update_hybrid_root"],
        "resolve chain p256 hybrid / hybrid root": rates["resolve_chain_p256_hybrid_root"]
        / rates["resolve_chain_hybrid_root"],
    }
    return {"rates": rates, "sizes": {k: float(v) for k, v in sizes.items()}, "ratios": ratios}


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [f"{'post-quantum measure':44s} {'per second':>11s} {'µs':>9s}"]
    for name, rate in results["rates"].items():
        lines.append(f"{name:44s} {rate:11,.0f} {1e6 / rate:9.1f}")
    lines += ["", f"{'size':44s} {'bytes':>11s}"]
    lines += [f"{name:44s} {int(v):11d}" for name, v in results["sizes"].items()]
    lines += ["", f"{'ratio':44s} {'value':>11s}"]
    lines += [f"{name:44s} {v:11.3f}" for name, v in results["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: figures are rough")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results = measure(quick=args.quick)
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
