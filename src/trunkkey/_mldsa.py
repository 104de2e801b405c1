"""ML-DSA (FIPS 204) and trunkkey's two ML-DSA-65 composites, on ``cryptography``.

The only module that touches ``cryptography``'s ML-DSA. :mod:`trunkkey.keys`
imports it on the first post-quantum key, never at module level: an Ed25519
car's wake loads neither this module nor OpenSSL.

Three schemes:

* **ML-DSA-44** (COSE ``alg`` -48, draft-ietf-cose-dilithium): token signing
  keys. Public key 1312 bytes, signature 2420 bytes.
* **EdDSA + ML-DSA-65** (private-use ``alg`` :data:`HYBRID_ALG`) and
  **ES256 + ML-DSA-65** (private-use ``alg`` :data:`ES256_HYBRID_ALG`): the
  carmaker root. One composite key, one composite signature, both halves
  required: public key ``ML-DSA-65 pk (1952) || classical pk`` (Ed25519: 32
  bytes; P-256: x || y, 64), signature ``ML-DSA-65 sig (3309) || classical
  sig (64)`` (P-256: r || s, low s) -- the ML-DSA-first order of
  draft-ietf-lamps-pq-composite-sigs. Both halves sign the same bytes (the
  COSE Sig_structure, whose protected header names the composite ``alg``);
  the ML-DSA half also binds its composite's own :attr:`Composite.context`
  as its FIPS 204 context, so neither half is a valid signature of any
  single-algorithm object, nor of the other composite.

The two composites differ only in their classical half, which this module
never computes itself: :mod:`trunkkey.keys` hands it in (a key of the
classical algorithm, checked and signed by the one code every Ed25519 or
P-256 key uses), and :class:`Public` and :class:`Secret` are the one
composite verify and sign, whichever half it is.

A private key is kept as its seeds only (FIPS 204 §6.1's ``xi``, 32 bytes;
for a composite, followed by the classical half's 32-byte private part: the
Ed25519 seed or the P-256 scalar), which is what COSE_Key ``priv`` carries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

MLDSA44_ALG = -48
#: Private use (RFC 9053 §1.2: below -65536) until composite values are registered.
HYBRID_ALG = -65601
#: The ES256 + ML-DSA-65 composite: the next private-use value.
ES256_HYBRID_ALG = -65602
HYBRID_CONTEXT = b"trunkkey composite EdDSA+ML-DSA-65 v1"
ES256_HYBRID_CONTEXT = b"trunkkey composite ES256+ML-DSA-65 v1"
_EDDSA, _ES256 = -8, -7


@dataclass(frozen=True, slots=True)
class Composite:
    """One ML-DSA-65 composite: its classical half's algorithm and length, its context."""

    classical_alg: int
    classical_public: int
    context: bytes


#: alg -> the composite's parameters.
COMPOSITES = {
    HYBRID_ALG: Composite(_EDDSA, 32, HYBRID_CONTEXT),
    ES256_HYBRID_ALG: Composite(_ES256, 64, ES256_HYBRID_CONTEXT),
}
_MLDSA65_PUBLIC, _MLDSA65_SIGNATURE, _SEED = 1952, 3309, 32
#: alg -> (public key bytes, signature bytes, seed bytes)
SIZES = {
    MLDSA44_ALG: (1312, 2420, _SEED),
    **{alg: (_MLDSA65_PUBLIC + c.classical_public, _MLDSA65_SIGNATURE + 64, _SEED + 32)
       for alg, c in COMPOSITES.items()},
}


_Q = 8_380_417  #: ML-DSA's modulus
#: FIPS 204's t1 is k rows of 256 10-bit coefficients, after the 32-byte rho.
_RHO, _ROW_BYTES = 32, 320
#: Below this a row of t1 is weak: a genuine key's row, pseudo-random, sums to
#: about 537 million (standard deviation about 20 million, none of 90 keys
#: tried under 480 million); a forger needs a row that sums to under about
#: 80 * gamma2 (under 21 million), so c * t1 * 2^13 moves few high bits.
_WEAK_ROW = 8 * _Q


def weak_key_problem(ml_raw: bytes) -> str | None:
    """Why the ML-DSA public key ``ml_raw`` (rho || t1) is one anyone can sign for, or ``None``.

    The ML-DSA analogue of an Ed25519 key of small order: when every
    coefficient of some row of t1 * 2^13 is near zero mod q (t1 all zero, say),
    the verifier's w' = A z - c t1 2^13 barely depends on the challenge c, so a
    forger takes z = 0 and one hash, for any message. No key made from a seed
    is near this; a key built from placeholder bytes is. Refused when built.
    """
    for start in range(_RHO, len(ml_raw), _ROW_BYTES):
        row = int.from_bytes(ml_raw[start : start + _ROW_BYTES], "little")
        total = 0
        for _ in range(256):
            scaled = (row & 0x3FF) << 13  # below q for every 10-bit value
            total += min(scaled, _Q - scaled)
            row >>= 10
        if total < _WEAK_ROW:
            return "a weak ML-DSA key: some row of t1 is near zero, and anyone can sign for it"
    return None


class ClassicalPublic(Protocol):
    """The classical half of a composite public key (a :class:`~trunkkey.VerificationKey`)."""

    @property
    def raw(self) -> bytes: ...

    def is_valid_unique_signature(self, signature: bytes, message: bytes) -> bool: ...


class ClassicalSigner(Protocol):
    """The classical half of a composite private key (a :class:`~trunkkey.SigningKey`)."""

    @property
    def public_key(self) -> ClassicalPublic: ...

    def sign(self, message: bytes) -> bytes: ...


def _classes(alg: int) -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.asymmetric import mldsa  # noqa: PLC0415 -- on first use

    if alg == MLDSA44_ALG:
        return mldsa.MLDSA44PublicKey, mldsa.MLDSA44PrivateKey
    return mldsa.MLDSA65PublicKey, mldsa.MLDSA65PrivateKey


class Public:
    """The verifier's side of an ML-DSA-44 or composite key."""

    __slots__ = ("_alg", "_classical", "_mldsa")

    def __init__(
        self, alg: int, raw: bytes, classical: Callable[[int, bytes], ClassicalPublic],
    ) -> None:
        """Raise :class:`ValueError` if ``raw`` is not a key of ``alg``.

        ``classical(alg, raw)`` builds a composite's classical half, and raises
        if its bytes are no key of that algorithm.
        """
        public_len = SIZES[alg][0]
        if len(raw) != public_len:
            raise ValueError(f"public key must be {public_len} bytes")
        composite = COMPOSITES.get(alg)
        self._alg = alg
        self._classical = (None if composite is None
                           else classical(composite.classical_alg, raw[_MLDSA65_PUBLIC:]))
        ml_raw = raw if composite is None else raw[:_MLDSA65_PUBLIC]
        problem = weak_key_problem(ml_raw)
        if problem is not None:
            raise ValueError(problem)
        self._mldsa: Any = _classes(alg)[0].from_public_bytes(ml_raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Does ``signature`` hold over ``message``? For a composite: both halves, or no."""
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 -- loaded already

        if len(signature) != SIZES[self._alg][1]:
            return False
        try:
            if self._classical is None:
                self._mldsa.verify(signature, message)
                return True
            self._mldsa.verify(signature[:_MLDSA65_SIGNATURE], message,
                               COMPOSITES[self._alg].context)
        except InvalidSignature:
            return False
        # The classical half is checked once the ML-DSA-65 half held: both must, in this
        # order, and in trunkkey's one form (a P-256 half with high s is refused).
        return self._classical.is_valid_unique_signature(signature[_MLDSA65_SIGNATURE:], message)


class Secret:
    """The private seeds of one key; ``repr`` never shows them."""

    __slots__ = ("_alg", "_classical", "_mldsa", "seed")

    def __init__(self, alg: int, seed: bytes, classical: ClassicalSigner | None) -> None:
        """``seed`` begins with the ML-DSA seed and is what the key exports (a composite
        in memory: followed by its classical half's 32 bytes); a composite's
        ``classical`` half is built by the caller, and may be a key it cannot export."""
        if (classical is None) != (alg not in COMPOSITES) or len(seed) < _SEED:
            raise ValueError("an ML-DSA seed, and a classical half for a composite only")
        self._alg = alg
        self.seed = seed
        self._mldsa: Any = _classes(alg)[1].from_seed_bytes(seed[:_SEED])
        self._classical = classical

    def public_raw(self) -> bytes:
        ml_public: bytes = self._mldsa.public_key().public_bytes_raw()
        if self._classical is None:
            return ml_public
        return ml_public + self._classical.public_key.raw

    def sign(self, message: bytes) -> bytes:
        if self._classical is None:
            return bytes(self._mldsa.sign(message))
        return (bytes(self._mldsa.sign(message, COMPOSITES[self._alg].context))
                + self._classical.sign(message))

    def __repr__(self) -> str:
        return "Secret(...)"

    def __reduce__(self) -> tuple[object, ...]:
        # The SigningKey holding it refuses pickling; so does the secret itself.
        raise TypeError("an ML-DSA secret cannot be pickled: export its key explicitly")
