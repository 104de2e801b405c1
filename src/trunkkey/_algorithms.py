"""The algorithms trunkkey signs and verifies with, and the one form of their signatures.

A key is made for exactly one :class:`Algorithm`; its value is the COSE
``alg`` identifier (IANA COSE Algorithms; ML-DSA-44 from
draft-ietf-cose-dilithium; the EdDSA + ML-DSA-65 and ES256 + ML-DSA-65
composites are private use).
"""

from __future__ import annotations

from enum import IntEnum

from . import _mldsa
from .errors import SignatureError

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_ORDER = _P256_ORDER // 2


class Algorithm(IntEnum):
    """COSE algorithm identifiers trunkkey signs and verifies with."""

    EDDSA = -8  #: EdDSA with Ed25519 (the default)
    ES256 = -7  #: ECDSA P-256 with SHA-256, signature as raw r || s
    MLDSA44 = _mldsa.MLDSA44_ALG  #: ML-DSA-44 (FIPS 204), for token keys
    #: EdDSA *and* ML-DSA-65 in one composite key, both required: carmaker roots.
    EDDSA_MLDSA65 = _mldsa.HYBRID_ALG
    #: ECDSA P-256 *and* ML-DSA-65, both required: roots whose classical half an HSM holds.
    ES256_MLDSA65 = _mldsa.ES256_HYBRID_ALG

    @property
    def cose_name(self) -> str:
        return _NAMES[self]

    @property
    def post_quantum(self) -> bool:
        """An ML-DSA key (alone or in the composite): a COSE_Key of type AKP, no PEM."""
        return self.value in _mldsa.SIZES

    @property
    def hybrid(self) -> bool:
        """A composite of a classical algorithm and ML-DSA-65: what a hybrid car's roots are."""
        return self.value in _mldsa.COMPOSITES

    @property
    def signature_length(self) -> int:
        return _mldsa.SIZES[self.value][1] if self.post_quantum else 64


_NAMES = {Algorithm.EDDSA: "EdDSA", Algorithm.ES256: "ES256", Algorithm.MLDSA44: "ML-DSA-44",
          Algorithm.EDDSA_MLDSA65: "EdDSA+ML-DSA-65", Algorithm.ES256_MLDSA65: "ES256+ML-DSA-65"}
#: The algorithms whose signature ends in a P-256 r || s: ES256 and its composite.
_P256_TAILED = frozenset({Algorithm.ES256, Algorithm.ES256_MLDSA65})


def unique_signature(algorithm: Algorithm, signature: bytes) -> bytes:
    """``signature`` in the one form trunkkey emits and accepts: for P-256, s in the low half.

    ECDSA is malleable (s and n - s both verify): every signature trunkkey makes passes here.
    The ES256 + ML-DSA-65 composite ends in a P-256 signature, which gets the same rule.
    """
    if type(signature) is not bytes or len(signature) != algorithm.signature_length:
        raise SignatureError(
            f"a {algorithm.cose_name} signature is {algorithm.signature_length} bytes"
        )
    s = int.from_bytes(signature[-32:], "big")
    if algorithm not in _P256_TAILED or s <= _P256_HALF_ORDER:
        return signature
    return signature[:-32] + (_P256_ORDER - s).to_bytes(32, "big")


def algorithm_of_raw_key(raw: bytes) -> Algorithm:
    """The algorithm whose raw public keys are ``len(raw)`` bytes: each has its own length.

    32 Ed25519, 64 P-256 (x || y), 1312 ML-DSA-44, 1984 the EdDSA + ML-DSA-65
    composite, 2016 the ES256 + ML-DSA-65 one. Raises :class:`ValueError` for any
    other length.
    """
    for algorithm, length in _RAW_LENGTHS.items():
        if len(raw) == length:
            return algorithm
    raise ValueError(f"no algorithm has {len(raw)}-byte public keys")


_RAW_LENGTHS = {Algorithm.EDDSA: 32, Algorithm.ES256: 64,
                **{Algorithm(alg): sizes[0] for alg, sizes in _mldsa.SIZES.items()}}
# A trust update names a key's algorithm by its length alone: two with one length
# would let an update's bytes mean either.
if len(set(_RAW_LENGTHS.values())) != len(Algorithm):
    raise AssertionError("two algorithms have public keys of one length")
