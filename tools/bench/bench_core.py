"""Core benchmark: mint/s, verify/s (memory and SQLite ledgers), token size, and the floors.

Run: ``python -m tools.bench.bench_core [--seconds S] [--json OUT]``

Each figure is the best of several short rounds, and the rounds of all
measurements are interleaved, so that a noisy neighbour slows every figure
alike instead of skewing one ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nacl.bindings
import nacl.signing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trunkkey import (
    Action,
    Algorithm,
    Issuer,
    ManualClock,
    MemoryLedger,
    SigningKey,
    SqliteLedger,
    TrustedKey,
    TrustStore,
    Verifier,
)

VEHICLE = "1HGCM82633A004352"  # a 17-character VIN
ISSUER = "amazon"
NOW = 1_800_000_000
MESSAGE = os.urandom(150)  # about the size of a token's Sig_structure


def _rate(fn: Callable[[], object], batch: int) -> float:
    start = time.perf_counter()
    for _ in range(batch):
        fn()
    return batch / (time.perf_counter() - start)


def _tokens(issuer: Issuer, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, not_before=NOW,
                          expires=NOW + 4 * 3600)


def run(seconds: float) -> dict[str, object]:
    clock = ManualClock(NOW)
    key = SigningKey.generate(Algorithm.EDDSA)
    issuer = Issuer(key, ISSUER, clock=clock)
    store = TrustStore([TrustedKey.create(key.public_key, ISSUER)])
    memory = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock)
    tmp = tempfile.TemporaryDirectory()
    sqlite_ledger = SqliteLedger(Path(tmp.name) / "ledger.db")
    sqlite = Verifier(trust_store=store, ledger=sqlite_ledger, clock=clock)

    p256 = SigningKey.generate(Algorithm.ES256)
    p256_issuer = Issuer(p256, ISSUER, clock=clock)
    p256_store = TrustStore([TrustedKey.create(p256.public_key, ISSUER)])
    p256_verifier = Verifier(trust_store=p256_store, ledger=MemoryLedger(), clock=clock)

    nacl_key = nacl.signing.SigningKey.generate()
    nacl_sig = nacl_key.sign(MESSAGE).signature
    nacl_vk = nacl_key.verify_key
    nacl_pk = bytes(nacl_vk)
    nacl_sk = nacl_key._signing_key
    ossl_key = ed25519.Ed25519PrivateKey.generate()
    ossl_pub = ossl_key.public_key()
    ossl_sig = ossl_key.sign(MESSAGE)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pub = ec_key.public_key()
    ec_sig = ec_key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))

    batch = 2000
    # Pre-mint fresh tokens for every verification so each one is a first use.
    rounds = max(3, int(seconds / 0.6))
    pool = list(_tokens(issuer, batch * rounds * 2))
    p256_pool = [
        p256_issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, not_before=NOW,
                         expires=NOW + 4 * 3600)
        for _ in range(batch * rounds)
    ]
    tokens = iter(pool)
    p256_tokens = iter(p256_pool)

    def verify_memory() -> None:
        d = memory.verify(next(tokens), vehicle_id=VEHICLE, action=Action.TRUNK)
        if not d.allowed:
            raise SystemExit(f"benchmark token denied: {d.reason}")

    def verify_sqlite() -> None:
        if not sqlite.verify(next(tokens), vehicle_id=VEHICLE, action=Action.TRUNK).allowed:
            raise SystemExit("benchmark token denied")

    def verify_p256() -> None:
        if not p256_verifier.verify(next(p256_tokens), vehicle_id=VEHICLE,
                                    action=Action.TRUNK).allowed:
            raise SystemExit("benchmark token denied")

    def mint() -> None:
        issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, not_before=NOW,
                    expires=NOW + 4 * 3600)

    cases: dict[str, tuple[Callable[[], object], int]] = {
        "mint": (mint, batch),
        "verify_memory": (verify_memory, batch),
        "verify_sqlite": (verify_sqlite, batch // 10),
        "verify_p256_memory": (verify_p256, batch // 2),
        "floor_ed25519_sign_libsodium": (
            lambda: nacl.bindings.crypto_sign(MESSAGE, nacl_sk), batch),
        "floor_ed25519_verify_libsodium": (
            lambda: nacl.bindings.crypto_sign_open(nacl_sig + MESSAGE, nacl_pk), batch),
        "floor_ed25519_verify_pynacl_api": (lambda: nacl_vk.verify(MESSAGE, nacl_sig), batch),
        "floor_ed25519_sign_openssl": (lambda: ossl_key.sign(MESSAGE), batch),
        "floor_ed25519_verify_openssl": (lambda: ossl_pub.verify(ossl_sig, MESSAGE), batch),
        "floor_p256_sign_openssl": (
            lambda: ec_key.sign(MESSAGE, ec.ECDSA(hashes.SHA256())), batch // 2),
        "floor_p256_verify_openssl": (
            lambda: ec_pub.verify(ec_sig, MESSAGE, ec.ECDSA(hashes.SHA256())), batch // 2),
    }
    best = dict.fromkeys(cases, 0.0)
    for _ in range(rounds):
        for name, (fn, size) in cases.items():
            best[name] = max(best[name], _rate(fn, size))
    sqlite_ledger.close()
    tmp.cleanup()

    token = next(_tokens(issuer, 1))
    results: dict[str, object] = {name: round(rate) for name, rate in best.items()}
    results["token_bytes"] = len(token)
    results["ratios"] = {
        "verify_memory / libsodium verify": best["verify_memory"]
        / best["floor_ed25519_verify_libsodium"],
        "mint / libsodium sign": best["mint"] / best["floor_ed25519_sign_libsodium"],
        "verify_sqlite / verify_memory": best["verify_sqlite"] / best["verify_memory"],
        "libsodium / openssl Ed25519 verify": best["floor_ed25519_verify_libsodium"]
        / best["floor_ed25519_verify_openssl"],
        "libsodium / openssl Ed25519 sign": best["floor_ed25519_sign_libsodium"]
        / best["floor_ed25519_sign_openssl"],
        "verify_p256 / openssl P-256 verify": best["verify_p256_memory"]
        / best["floor_p256_verify_openssl"],
    }
    results["targets"] = {
        "verify_memory >= 0.85 x libsodium verify": best["verify_memory"]
        >= 0.85 * best["floor_ed25519_verify_libsodium"],
        "mint >= 0.85 x libsodium sign": best["mint"]
        >= 0.85 * best["floor_ed25519_sign_libsodium"],
        "trunk token <= 160 bytes": len(token) <= 160,
    }
    results["token_example"] = {"vehicle_id": VEHICLE, "issuer": ISSUER, "hex": token.hex()}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="rough total run time")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = run(args.seconds)
    print(f"{'measure':42s} {'per second':>12s}")
    for name, value in results.items():
        if isinstance(value, int) and name != "token_bytes":
            print(f"{name:42s} {value:12,d}")
    print(f"{'token size (bytes, VIN + 6-char issuer)':42s} {results['token_bytes']:12d}")
    print()
    for name, ratio in results["ratios"].items():  # type: ignore[attr-defined]
        print(f"{name:42s} {ratio:12.3f}")
    print()
    for name, met in results["targets"].items():  # type: ignore[attr-defined]
        print(f"target {name:35s} {'met' if met else 'NOT met':>12s}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
