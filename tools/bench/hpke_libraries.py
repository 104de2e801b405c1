"""What opening one sealed token costs in each HPKE library a Python car could use.

Run: ``python -m tools.bench.hpke_libraries [--count N] [--rounds R]``

The sealed-token target (open + verify at least half the plain verify rate)
is bounded by the HPKE open, so this measures that open alone, for HPKE-4
(DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode)
on a 192-byte plaintext, in CPU µs (best of ``R`` rounds of ``N``):

* ``cryptography``'s private ``hpke._decrypt_with_aad`` binding, with the
  Enc_structure as AAD — what trunkkey opens with when the binding is there
  and passes its known answer (:func:`trunkkey._hpke4.compiled_open`);
* ``pyhpke`` with the Enc_structure as AAD — trunkkey's fallback;
* ``cryptography``'s public HPKE — its one-shot API takes no AAD, which
  COSE-HPKE integrated encryption needs, so it cannot open a draft-conformant
  token; shown as the reference for what the compiled key schedule costs;
* ``hybrid-pke`` (Rust bindings with AAD), when installed
  (``pip install hybrid-pke``); not a trunkkey dependency;
* the bare X25519 exchange (OpenSSL and libsodium): the floor under all three;
* one plain verification's Ed25519 check (libsodium), for scale.

No figure is a pass/fail target; ``docs/performance.md`` quotes them.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

import nacl.bindings
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from trunkkey._hpke4 import AAD, compiled_open, pyhpke_suite
from trunkkey.cose import split_encrypt0
from trunkkey.sealed import CarKemKey, seal

PLAINTEXT = bytes(191) + b"\x80"


def _best(run: Callable[[], object], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            run()
        best = min(best, (time.process_time() - started) / count * 1e6)
    return best


def measure(count: int, rounds: int) -> dict[str, float]:
    """CPU µs per open for each library present, and the floors."""
    car = CarKemKey.generate()
    _, enc, ciphertext = split_encrypt0(seal(bytes(150), car.public_key))
    suite = pyhpke_suite()
    out = {"pyhpke (trunkkey's fallback)": _best(
        lambda: suite.create_recipient_context(enc, car._hpke()).open(ciphertext, aad=AAD),
        count, rounds)}
    compiled = compiled_open()
    if compiled is not None:
        private_key = X25519PrivateKey.from_private_bytes(car.private_bytes())
        out["cryptography, private AAD binding (trunkkey)"] = _best(
            lambda: compiled(enc + ciphertext, private_key), count, rounds)
    rust = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    private = X25519PrivateKey.from_private_bytes(car.private_bytes())
    sealed_rust = rust.encrypt(PLAINTEXT, private.public_key())
    out["cryptography (no AAD)"] = _best(lambda: rust.decrypt(sealed_rust, private), count, rounds)
    try:
        import hybrid_pke  # type: ignore[import-not-found]  # optional: not a dependency
    except ImportError:
        pass
    else:
        other = hybrid_pke.default()
        secret, public = other.generate_key_pair()
        other_enc, other_ct = other.seal(public, b"", AAD, PLAINTEXT)
        out["hybrid-pke (AAD)"] = _best(
            lambda: other.open(other_enc, secret, b"", AAD, other_ct), count, rounds)
    out["floor: X25519, OpenSSL"] = _best(
        lambda: private.exchange(X25519PublicKey.from_public_bytes(enc)), count, rounds)
    raw = car.private_bytes()
    out["floor: X25519, libsodium"] = _best(
        lambda: nacl.bindings.crypto_scalarmult(raw, enc), count, rounds)
    seed = os.urandom(32)
    public_key, secret_key = nacl.bindings.crypto_sign_seed_keypair(seed)
    signed = nacl.bindings.crypto_sign(os.urandom(150), secret_key)
    out["scale: Ed25519 verify, libsodium"] = _best(
        lambda: nacl.bindings.crypto_sign_open(signed, public_key), count, rounds)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    result = measure(args.count, args.rounds)
    for name, micros in result.items():
        print(f"{name:<36} {micros:8.1f} µs")
    return result


if __name__ == "__main__":
    main()
