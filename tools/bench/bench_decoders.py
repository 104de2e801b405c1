"""Public decoders on hostile input: 10 MiB refused, and the worst input at each cap.

Run: ``python -m tools.bench.bench_decoders [--rounds N]``

Four tables, each figure the best of ``N`` rounds:

* every public decoder on 10 MiB of four shapes (flat array, map, deep
  nesting, a run of empty maps): the size cap refuses them before parsing,
  so each should take microseconds;
* every decoder on the same shapes cut to exactly its cap: the slowest input
  it must actually parse;
* ``cbor.decode`` on 1, 2, 4 and 8 MiB of each shape, in microseconds per
  input byte: flat across sizes if parsing is linear;
* the Ed25519 point check every key passes when built, against one libsodium
  verification (a key seen before is answered from a cache).

No figure here is a pass/fail target; ``docs/resource-bounds.md`` quotes them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import struct
import time
from collections.abc import Callable

import nacl.bindings

from trunkkey import Algorithm, SigningKey, VerificationKey, _sodium, cbor, inspect_unverified
from trunkkey.claims import MAX_CLAIMS_BYTES, decode_claims
from trunkkey.consent.anchors import MAX_UPDATE_BYTES
from trunkkey.consent.grant import MAX_GRANT_BYTES, decode_grant
from trunkkey.consent.revocation import decode_revocations
from trunkkey.consent.rotation import decode_update
from trunkkey.inspect import MAX_INSPECT_BYTES
from trunkkey.keys import MAX_COSE_KEY_BYTES, MAX_PEM_BYTES

TEN_MIB = 10 * 1024 * 1024

DECODERS: list[tuple[str, Callable[[bytes], object], int]] = [
    ("decode_claims", decode_claims, MAX_CLAIMS_BYTES),
    ("decode_grant", decode_grant, MAX_GRANT_BYTES),
    ("decode_revocations", decode_revocations, MAX_UPDATE_BYTES),
    ("decode_update", decode_update, MAX_UPDATE_BYTES),
    ("VerificationKey.from_cose_key", VerificationKey.from_cose_key, MAX_COSE_KEY_BYTES),
    ("SigningKey.from_cose_key", SigningKey.from_cose_key, MAX_COSE_KEY_BYTES),
    ("VerificationKey.from_pem", VerificationKey.from_pem, MAX_PEM_BYTES),
    ("SigningKey.from_pem", SigningKey.from_pem, MAX_PEM_BYTES),
    ("inspect_unverified", inspect_unverified, MAX_INSPECT_BYTES),
]


def shapes(size: int) -> dict[str, bytes]:
    """Four hostile inputs of ``size`` bytes (give or take a few)."""
    pairs = (size - 5) // 6  # distinct ascending 4-byte keys, each with value 0
    return {
        "flat array": cbor.head(4, size - 5) + bytes(size - 5),
        "map": cbor.head(5, pairs) + b"".join(
            struct.pack(">BIB", 0x1A, 0x10000 + i, 0) for i in range(pairs)
        ),
        "deep nesting": b"\x81" * (size - 1) + b"\x00",
        "run of empty maps": cbor.head(4, size - 5) + b"\xa0" * (size - 5),
    }


def best(fn: Callable[[bytes], object], data: bytes, rounds: int) -> float:
    fastest = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        with contextlib.suppress(Exception):  # every refusal is an outcome here
            fn(data)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def point_check(rounds: int) -> None:
    signer = SigningKey.generate()
    message = os.urandom(150)
    signed = signer.sign(message) + message
    seen = signer.public_key.raw
    fresh = [SigningKey.generate().public_key.raw for _ in range(2000)]
    cases: dict[str, Callable[[int], object]] = {
        "libsodium verify (trunkkey's call)": lambda _: _sodium.ed25519_open(signed, seen),
        "build a key not seen before": lambda i: VerificationKey(Algorithm.EDDSA, fresh[i]),
        "build a key seen before": lambda _: VerificationKey(Algorithm.EDDSA, seen),
        "crypto_core_ed25519_is_valid_point": lambda i: (
            nacl.bindings.crypto_core_ed25519_is_valid_point(fresh[i])
        ),
    }
    fastest = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, fn in cases.items():  # interleaved: a noisy neighbour slows all alike
            _sodium._is_ed25519_point.cache_clear()
            start = time.perf_counter()
            for i in range(len(fresh)):
                fn(i)
            fastest[name] = min(fastest[name], (time.perf_counter() - start) / len(fresh))
    floor = fastest["libsodium verify (trunkkey's call)"]
    for name, seconds in fastest.items():
        print(f"  {name:36} {seconds * 1e6:8.2f} us  {seconds / floor:6.3f} x verify")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    print("10 MiB, refused before parsing:")
    for shape, data in shapes(TEN_MIB).items():
        for name, fn, _ in DECODERS:
            print(f"  {name:30} {shape:18} {best(fn, data, rounds) * 1e6:10.1f} us")
    print("at each cap, the slowest shape:")
    for name, fn, cap in DECODERS:
        seconds, shape = max((best(fn, d, rounds), s) for s, d in shapes(cap).items())
        print(f"  {name:30} cap {cap:6d} B  {seconds * 1e3:8.2f} ms  ({shape})")
    print("cbor.decode, us per input byte at 1, 2, 4 and 8 MiB:")
    for shape in shapes(64):
        row = [best(cbor.decode, d, 1) / len(d) * 1e6
               for d in (shapes(mib << 20)[shape] for mib in (1, 2, 4, 8))]
        print(f"  {shape:18} " + "  ".join(f"{v:6.3f}" for v in row))
    print("Ed25519 point check, per key:")
    point_check(rounds)


if __name__ == "__main__":
    main()
