"""Proof of possession: the courier's device shows it holds the key in ``cnf``.

The car hands out a fresh random challenge; the device signs it with the key
named in the token's ``cnf`` claim (RFC 8747), bound to *this* token and
*this* vehicle through COSE external AAD. A token sniffed on the way is
useless without the device key, and a proof made for one token, car or
challenge verifies for no other.

Wire form: a strict-profile COSE_Sign1 with ``typ`` = :attr:`Typ.PROOF`, no
``kid`` (the token's ``cnf`` names the key), the challenge as payload, and
external AAD = ``[vehicle_id, SHA-256(token)]`` in deterministic CBOR.
"""

from __future__ import annotations

import hashlib
import hmac

from . import cbor
from .cose import Typ, protected_header, sign1, signature_holds, split_sign1
from .errors import DecodeError, InvalidRequest
from .keys import Algorithm, SigningKey, VerificationKey

MIN_CHALLENGE_BYTES = 16
MAX_CHALLENGE_BYTES = 32
MAX_PROOF_BYTES = 256


_PROOF_HEADERS = {alg: protected_header(alg, Typ.PROOF, None) for alg in Algorithm}


def proof_aad(token: bytes, vehicle_id: str) -> bytes:
    """``[vehicle_id, SHA-256(token)]`` in deterministic CBOR (built by hand: hot path)."""
    vid = vehicle_id.encode("utf-8")
    vid_head = bytes((0x60 + len(vid),)) if len(vid) < 24 else cbor.head(3, len(vid))
    return b"\x82" + vid_head + vid + b"\x58\x20" + hashlib.sha256(token).digest()


def challenge_problem(challenge: object) -> str | None:
    """Why ``challenge`` is not one a car may issue (16 to 32 bytes), or ``None``.

    The one statement of the rule: the unit's challenge book, the courier's
    :func:`make_proof` and the verifier's :func:`check_proof` all ask here.
    """
    if type(challenge) is not bytes or not (
        MIN_CHALLENGE_BYTES <= len(challenge) <= MAX_CHALLENGE_BYTES
    ):
        return f"challenge must be {MIN_CHALLENGE_BYTES} to {MAX_CHALLENGE_BYTES} bytes"
    return None


def make_proof(device_key: SigningKey, *, token: bytes, vehicle_id: str, challenge: bytes) -> bytes:
    """The courier device's answer to ``challenge`` for ``token`` at ``vehicle_id``."""
    if not isinstance(device_key, SigningKey):
        raise InvalidRequest("device_key must be a trunkkey.SigningKey")
    problem = challenge_problem(challenge)
    if problem is not None:
        raise InvalidRequest(problem)
    return sign1(
        device_key, challenge, typ=Typ.PROOF, include_kid=False,
        external_aad=proof_aad(token, vehicle_id),
    )


def check_proof(
    proof: bytes, *, key: VerificationKey, token: bytes, vehicle_id: str, challenge: bytes
) -> str | None:
    """Return ``None`` if ``proof`` is valid, else a short description of what is wrong."""
    problem = challenge_problem(challenge)
    if problem is not None:
        # A proof over an empty or oversized challenge proves nothing fresh.
        return problem
    if type(proof) is not bytes or len(proof) > MAX_PROOF_BYTES:
        return "proof is not bytes of a bounded size"
    try:
        protected, payload, signature, protected_item, payload_item = split_sign1(proof)
    except DecodeError as exc:
        return f"proof is malformed: {exc}"
    if not hmac.compare_digest(protected, _PROOF_HEADERS[key.algorithm]):
        return "proof header is not {alg of the cnf key, typ proof}"
    # The challenge is not secret, but comparing in constant time costs nothing
    # and keeps the rule simple: every comparison of security values is.
    if not hmac.compare_digest(payload, challenge):
        return "proof answers another challenge"
    aad = proof_aad(token, vehicle_id)
    if not signature_holds(key, signature, protected_item, payload_item, aad):
        return "proof signature does not verify for this token, vehicle and key"
    return None
