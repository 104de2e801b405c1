"""Proof of possession: the courier's device shows it holds the key in ``cnf``.

The car hands out a fresh random challenge; the device signs it with the key
named in the token's ``cnf`` claim (RFC 8747), bound to *this* token and
*this* vehicle through COSE external AAD. A token sniffed on the way is
useless without the device key, and a proof made for one token, car or
challenge verifies for no other.

Wire form: a strict-profile COSE_Sign1 with ``typ`` = :attr:`Typ.PROOF`, no
``kid`` (the token's ``cnf`` names the key), the challenge as payload, and
external AAD = ``[vehicle_id, SHA-256(token)]`` in deterministic CBOR.

For a token bound to parcels (:mod:`trunkkey.parcels`) the payload is the
scan instead, ``[challenge, [identifiers]]``: the device signs what its
scanner read together with the car's challenge, so a scan cannot be lifted
onto another opening. Which form a proof must have is decided by the token,
never by the proof: a scan proof for a token without parcels answers no
challenge, and a plain proof for a token with parcels carries no scan.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from . import cbor
from .claims import check_name
from .cose import Typ, protected_header, sign1, signature_holds, split_sign1
from .errors import DecodeError, InvalidRequest
from .keys import Algorithm, VerificationKey
from .parcels import (
    MAX_PARCEL_ID_BYTES,
    MAX_PARCELS,
    ParcelRecord,
    Parcels,
    check_parcel_ids,
    encode_scan,
    match_scan,
    read_scan,
)
from .reasons import Reason
from .signing import SigningBackend, signing_backend

MIN_CHALLENGE_BYTES = 16
MAX_CHALLENGE_BYTES = 32
MAX_PROOF_BYTES = 256
#: A scan proof at its longest: 16 identifiers of 64 bytes beside a 32-byte
#: challenge (1 175 bytes), rounded up.
MAX_SCAN_PROOF_BYTES = MAX_PROOF_BYTES + MAX_PARCELS * (2 + MAX_PARCEL_ID_BYTES)


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


def make_proof(
    device_key: SigningBackend, *, token: bytes, vehicle_id: str, challenge: bytes,
    scan: Iterable[str] | None = None,
) -> bytes:
    """The courier device's answer to ``challenge`` for ``token`` at ``vehicle_id``.

    ``scan``: the parcel identifiers the handheld scanned (0 to 16), for a
    token bound to parcels; the car judges them against the token.
    """
    signing_backend(device_key, "device_key")
    # A car checks its own id the same way: a proof for any other never verifies.
    check_name(vehicle_id, "vehicle_id")
    problem = challenge_problem(challenge)
    if problem is not None:
        raise InvalidRequest(problem)
    payload = challenge
    if scan is not None:
        payload = encode_scan(challenge, check_parcel_ids(scan, "the scan", order=False))
    return sign1(
        device_key, payload, typ=Typ.PROOF, include_kid=False,
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


def check_scan_proof(
    proof: bytes, *, key: VerificationKey, token: bytes, vehicle_id: str, challenge: bytes
) -> tuple[str | None, tuple[str, ...] | None]:
    """For a token bound to parcels: ``(problem, None)`` if ``proof`` is not valid,
    ``(None, scan)`` if it is, with ``scan`` ``None`` for a plain proof (no scan).

    The scan is read only once the signature over it has verified: an
    unsigned list of identifiers says nothing about what the courier holds.
    """
    problem = challenge_problem(challenge)
    if problem is not None:
        return problem, None
    if type(proof) is not bytes or len(proof) > MAX_SCAN_PROOF_BYTES:
        return "proof is not bytes of a bounded size", None
    try:
        parts = split_sign1(proof)
    except DecodeError as exc:
        return f"proof is malformed: {exc}", None
    protected, payload, signature, protected_item, payload_item = parts
    if hmac.compare_digest(payload, challenge):
        # A plain proof: the courier holds the device, and scanned nothing.
        return check_proof(
            proof, key=key, token=token, vehicle_id=vehicle_id, challenge=challenge
        ), None
    if not hmac.compare_digest(protected, _PROOF_HEADERS[key.algorithm]):
        return "proof header is not {alg of the cnf key, typ proof}", None
    if not signature_holds(key, signature, protected_item, payload_item,
                           proof_aad(token, vehicle_id)):
        return "proof signature does not verify for this token, vehicle and key", None
    try:
        answered, scan = read_scan(payload)
    except DecodeError as exc:
        return f"scan is malformed: {exc}", None
    if not hmac.compare_digest(answered, challenge):
        return "proof answers another challenge", None
    return None, scan


def judge_scan(
    parcels: Parcels, key: VerificationKey, *, proof: bytes, token: bytes, vehicle_id: str,
    challenge: bytes,
) -> ParcelRecord | tuple[Reason, str]:
    """Step 10b: the device signed a scan with the challenge, and every parcel
    it scanned is one of the order's; the record of the scan, or the refusal."""
    problem, scan = check_scan_proof(
        proof, key=key, token=token, vehicle_id=vehicle_id, challenge=challenge
    )
    if problem is not None:
        return Reason.PROOF_INVALID, problem
    return match_scan(parcels, scan)
