"""ML-DSA (FIPS 204) and trunkkey's EdDSA + ML-DSA-65 composite, on ``cryptography``.

The only module that touches ``cryptography``'s ML-DSA. :mod:`trunkkey.keys`
imports it on the first post-quantum key, never at module level: an Ed25519
car's wake loads neither this module nor OpenSSL.

Two schemes:

* **ML-DSA-44** (COSE ``alg`` -48, draft-ietf-cose-dilithium): token signing
  keys. Public key 1312 bytes, signature 2420 bytes.
* **EdDSA + ML-DSA-65** (private-use ``alg`` :data:`HYBRID_ALG`): the carmaker
  root. One composite key, one composite signature, both halves required:
  public key ``ML-DSA-65 pk (1952) || Ed25519 pk (32)``, signature
  ``ML-DSA-65 sig (3309) || Ed25519 sig (64)`` -- the ML-DSA-first order of
  draft-ietf-lamps-pq-composite-sigs. Both halves sign the same bytes (the
  COSE Sig_structure, whose protected header names the composite ``alg``);
  the ML-DSA half also binds :data:`HYBRID_CONTEXT` as its FIPS 204 context,
  so neither half is a valid signature of any single-algorithm object.

A private key is kept as its seeds only (32 bytes per scheme, FIPS 204
§6.1's ``xi``), which is what COSE_Key ``d`` carries.
"""

from __future__ import annotations

from typing import Any

from ._sodium import ed25519_open, ed25519_point_problem, ed25519_sign

MLDSA44_ALG = -48
#: Private use (RFC 9053 §1.2: below -65536) until a composite value is registered.
HYBRID_ALG = -65601
HYBRID_CONTEXT = b"trunkkey composite EdDSA+ML-DSA-65 v1"

#: alg -> (public key bytes, signature bytes, seed bytes)
SIZES = {MLDSA44_ALG: (1312, 2420, 32), HYBRID_ALG: (1952 + 32, 3309 + 64, 32 + 32)}
_MLDSA65_PUBLIC, _MLDSA65_SIGNATURE = 1952, 3309


def _classes(alg: int) -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.asymmetric import mldsa  # noqa: PLC0415 -- on first use

    if alg == MLDSA44_ALG:
        return mldsa.MLDSA44PublicKey, mldsa.MLDSA44PrivateKey
    return mldsa.MLDSA65PublicKey, mldsa.MLDSA65PrivateKey


def load_public(alg: int, raw: bytes) -> object:
    """The verifier-side object for ``raw``; raise :class:`ValueError` if it is not a key."""
    public_len = SIZES[alg][0]
    if len(raw) != public_len:
        raise ValueError(f"public key must be {public_len} bytes")
    public_class = _classes(alg)[0]
    if alg == MLDSA44_ALG:
        return public_class.from_public_bytes(raw)
    problem = ed25519_point_problem(raw[_MLDSA65_PUBLIC:])
    if problem is not None:
        raise ValueError(problem)
    return public_class.from_public_bytes(raw[:_MLDSA65_PUBLIC])


def verify(alg: int, public: Any, raw: bytes, signature: bytes, message: bytes) -> bool:
    """Does ``signature`` hold over ``message``? For the composite: both halves, or no."""
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 -- loaded with the key

    if len(signature) != SIZES[alg][1]:
        return False
    try:
        if alg == MLDSA44_ALG:
            public.verify(signature, message)
            return True
        public.verify(signature[:_MLDSA65_SIGNATURE], message, HYBRID_CONTEXT)
    except InvalidSignature:
        return False
    # The Ed25519 half is checked once the ML-DSA-65 half held: both must, in this order.
    return ed25519_open(signature[_MLDSA65_SIGNATURE:] + message, raw[_MLDSA65_PUBLIC:])


class Secret:
    """The private seeds of one key; ``repr`` never shows them."""

    __slots__ = ("_ed25519", "_mldsa", "seed")

    def __init__(self, alg: int, seed: bytes) -> None:
        if len(seed) != SIZES[alg][2]:
            raise ValueError(f"seed must be {SIZES[alg][2]} bytes")
        import nacl.bindings  # noqa: PLC0415 -- PyNaCl is loaded already (keys imports it)

        self.seed = seed
        self._mldsa = _classes(alg)[1].from_seed_bytes(seed[:32])
        self._ed25519 = (
            nacl.bindings.crypto_sign_seed_keypair(seed[32:])[1] if alg == HYBRID_ALG else None
        )

    def public_raw(self) -> bytes:
        ml_public: bytes = self._mldsa.public_key().public_bytes_raw()
        if self._ed25519 is None:
            return ml_public
        return ml_public + self._ed25519[32:]

    def sign(self, message: bytes) -> bytes:
        if self._ed25519 is None:
            return bytes(self._mldsa.sign(message))
        return bytes(self._mldsa.sign(message, HYBRID_CONTEXT)) + ed25519_sign(
            message, self._ed25519
        )

    def __repr__(self) -> str:
        return "Secret(...)"

    def __reduce__(self) -> tuple[object, ...]:
        # The SigningKey holding it refuses pickling; so does the secret itself.
        raise TypeError("an ML-DSA secret cannot be pickled: export its key explicitly")
