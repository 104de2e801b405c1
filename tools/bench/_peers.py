"""The peers: python-cwt and PyJWT on a token equivalent to trunkkey's trunk token.

Same claims (issuer, the vehicle as audience, expiry, not-before, issued-at,
a 16-byte random token id, the access bits), same algorithm (Ed25519), and
the same checks after the signature (issuer, audience, window, access).
Neither peer has a replay ledger: their figures include no ledger write,
which flatters them slightly against trunkkey's.

Both libraries read the wall clock themselves, so their tokens are minted
around real time, not the fixed instant trunkkey's benchmark uses.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

#: CWT claim labels (RFC 8392) and trunkkey's private access label.
ISS, AUD, EXP, NBF, IAT, CTI = 1, 3, 4, 5, 6, 7
ACCESS = -65537
ACCESS_TRUNK_DELIVERY = 0b101


class PeerMissing(RuntimeError):
    """A peer library is not installed (``pip install 'trunkkey[bench]'``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """One peer: mint a fresh token, and verify one (raising on any refusal)."""

    name: str
    mint: Callable[[], bytes]
    verify: Callable[[bytes], None]
    version: str


def python_cwt(vehicle: str, issuer: str) -> Peer:
    try:
        import cwt
        from cwt import COSEKey
    except ImportError as exc:
        raise PeerMissing("python-cwt is not installed") from exc
    from trunkkey import Algorithm, SigningKey

    key = SigningKey.generate(Algorithm.EDDSA)
    private = COSEKey.from_bytes(key.private_cose_key())
    public = COSEKey.from_bytes(key.public_key.to_cose_key())

    def mint() -> bytes:
        now = int(time.time())
        claims = {ISS: issuer, AUD: vehicle, EXP: now + 4 * 3600, NBF: now, IAT: now,
                  CTI: secrets.token_bytes(16), ACCESS: ACCESS_TRUNK_DELIVERY}
        return bytes(cwt.encode(claims, private, tagged=True))

    def verify(token: bytes) -> None:
        # cwt.decode checks the signature, exp and nbf against the wall clock.
        claims = cwt.decode(token, public)
        if (claims[ISS] != issuer or claims[AUD] != vehicle
                or claims[ACCESS] != ACCESS_TRUNK_DELIVERY
                or len(bytes(claims[CTI])) != 16):
            raise AssertionError("python-cwt peer: claims differ")

    return Peer(name="python-cwt", mint=mint, verify=verify, version=cwt.__version__)


def pyjwt(vehicle: str, issuer: str) -> Peer:
    try:
        import jwt
    except ImportError as exc:
        raise PeerMissing("PyJWT is not installed") from exc
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key()
    required = ["iss", "aud", "exp", "nbf", "iat", "jti"]

    def mint() -> bytes:
        now = int(time.time())
        claims = {"iss": issuer, "aud": vehicle, "exp": now + 4 * 3600, "nbf": now, "iat": now,
                  "jti": secrets.token_urlsafe(16), "acc": ACCESS_TRUNK_DELIVERY}
        return jwt.encode(claims, private, algorithm="EdDSA").encode()

    def verify(token: bytes) -> None:
        claims = jwt.decode(token, public, algorithms=["EdDSA"], audience=vehicle,
                            issuer=issuer, options={"require": required})
        if claims["acc"] != ACCESS_TRUNK_DELIVERY:
            raise AssertionError("PyJWT peer: claims differ")

    return Peer(name="pyjwt", mint=mint, verify=verify, version=jwt.__version__)
