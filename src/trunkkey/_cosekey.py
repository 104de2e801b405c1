"""The members of a COSE_Key (RFC 9052 §7) trunkkey reads, checked before any key is built.

Three key types: OKP (Ed25519), EC2 (P-256) and AKP (draft-ietf-cose-dilithium:
ML-DSA-44 and trunkkey's EdDSA + ML-DSA-65 and ES256 + ML-DSA-65 composites,
whose ``priv`` is the seed, for a composite followed by its classical half's
Ed25519 seed or P-256 scalar). :mod:`trunkkey.keys` builds the key from what this returns and checks
that the key id and the private part belong to it.
"""

from __future__ import annotations

from typing import Any

from . import _mldsa
from .errors import DecodeError

# COSE_Key labels and values (RFC 9052 §7, RFC 9053 §7; AKP: pub -1, priv -2).
KTY, KID, ALG, CRV, X, Y, D = 1, 2, 3, -1, -2, -3, -4
PUB, PRIV = -1, -2
KTY_OKP, KTY_EC2, KTY_AKP = 1, 2, 7
CRV_P256, CRV_ED25519 = 1, 6
EDDSA, ES256 = -8, -7


def key_parts(members: Any, *, private: bool) -> tuple[int, bytes, Any]:
    """``(alg, raw public key, private part or None)`` of a COSE_Key map, or DecodeError."""
    if type(members) is not dict:
        raise DecodeError("a COSE_Key is a map")
    if KID in members and type(members[KID]) is not bytes:
        raise DecodeError("COSE_Key kid must be a byte string")
    if members.get(KTY) == KTY_AKP:
        return _akp_parts(members, private=private)
    kty, crv, alg = members.get(KTY), members.get(CRV), members.get(ALG)
    if not set(members) <= {KTY, KID, ALG, CRV, X, Y, D}:
        raise DecodeError("COSE_Key has parameters trunkkey does not use")
    if (D in members) != private:
        raise DecodeError("expected a private key" if private else "expected a public key")
    if kty == KTY_OKP and crv == CRV_ED25519 and Y not in members:
        algorithm = EDDSA
    elif kty == KTY_EC2 and crv == CRV_P256:
        algorithm = ES256
    else:
        raise DecodeError("unsupported COSE_Key type or curve")
    if alg is not None and alg != algorithm:
        raise DecodeError("COSE_Key alg does not match its key type")
    x = members.get(X)
    if type(x) is not bytes or len(x) != 32:
        raise DecodeError("COSE_Key x must be 32 bytes")
    raw = x
    if algorithm == ES256:
        y = members.get(Y)
        if type(y) is not bytes or len(y) != 32:
            raise DecodeError("COSE_Key y must be 32 bytes")
        raw = x + y
    return algorithm, raw, members.get(D)


def _akp_parts(members: dict[Any, Any], *, private: bool) -> tuple[int, bytes, Any]:
    alg, pub = members.get(ALG), members.get(PUB)
    if not set(members) <= {KTY, KID, ALG, PUB, PRIV}:
        raise DecodeError("an AKP COSE_Key holds only kty, kid, alg, pub and priv")
    if (PRIV in members) != private:
        raise DecodeError("expected a private key" if private else "expected a public key")
    if type(alg) is not int or alg not in _mldsa.SIZES:
        raise DecodeError("unsupported AKP COSE_Key alg")
    if type(pub) is not bytes:
        raise DecodeError("AKP COSE_Key pub must be a byte string")
    return alg, pub, members.get(PRIV)
