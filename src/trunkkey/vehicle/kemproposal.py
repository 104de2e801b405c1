"""A car's KEM key proposal: the public half of a key it made, signed by the car.

The car makes its KEM keys itself (:class:`~trunkkey.vehicle.kemkeys.CarKemKeys`),
so the private half never leaves it. What leaves is a proposal: a strict
COSE_Sign1 (``typ`` = :attr:`Typ.KEM_PROPOSAL`) signed by the car's vehicle
key — the key the carmaker registered at enrolment and the retailer checks
receipts with — whose payload is

    {1: vehicle_id, 2: suite, 3: raw KEM public key, 4: created_at}

``suite`` is the sealed-token suite's COSE ``alg`` (42, HPKE-4 on X25519;
-65610, ML-KEM-768 + X25519), and the raw key must have that suite's length.
The carmaker verifies it with :func:`verify_kem_proposal` and endorses the
key in a trust update bound to the car; the backend learns the key from that
signed chain, never from whoever claims to be the car.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import cbor
from ..claims import MAX_TIME, check_name
from ..cose import Typ, open_sign1, sign1
from ..errors import DecodeError, InvalidRequest
from ..keys import VerificationKey
from ..sealed import HPKE_4, CarPublicKey, kem_public_key
from ..sealed_pq import HPKE_PQ, CarHybridPublicKey
from ..signing import SigningBackend, signing_backend

_VEHICLE, _SUITE, _KEY, _CREATED = 1, 2, 3, 4
#: Suite names (as ``CarKemKeys.propose`` takes them) and their COSE ``alg``.
SUITES = {"x25519": HPKE_4, "mlkem768-x25519": HPKE_PQ}
#: A hybrid key (1216 bytes), the longest vehicle id, the header and the longest
#: signature a vehicle key makes (an ML-DSA-65 composite's, 3373) fit: 4,708 bytes.
MAX_PROPOSAL_BYTES = 5 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class KemProposal:
    """What a car says when it proposes a KEM key: which car, which key, when."""

    vehicle_id: str
    key: CarPublicKey | CarHybridPublicKey
    created_at: int

    def __post_init__(self) -> None:
        check_name(self.vehicle_id, "vehicle_id")
        if not isinstance(self.key, CarPublicKey | CarHybridPublicKey):
            raise InvalidRequest("a proposal's key is a CarPublicKey or CarHybridPublicKey")
        if type(self.created_at) is not int or not (0 <= self.created_at < MAX_TIME):
            raise InvalidRequest("created_at must be Unix seconds")

    @property
    def suite(self) -> str:
        return "x25519" if isinstance(self.key, CarPublicKey) else "mlkem768-x25519"


def sign_kem_proposal(vehicle_key: SigningBackend, proposal: KemProposal) -> bytes:
    """The car's side: its proposal, signed by its vehicle key (with ``kid``)."""
    signing_backend(vehicle_key, "vehicle_key")
    payload = cbor.encode({
        _VEHICLE: proposal.vehicle_id, _SUITE: SUITES[proposal.suite],
        _KEY: proposal.key.raw, _CREATED: proposal.created_at,
    })
    return sign1(vehicle_key, payload, typ=Typ.KEM_PROPOSAL, include_kid=True)


def read_kem_proposal(
    signed: bytes, vehicle_public_key: VerificationKey, *, vehicle_id: str,
    newer_than: int | None = None,
) -> KemProposal:
    """The proposal ``signed`` holds, verified as this vehicle's.

    Opened by :func:`trunkkey.cose.open_sign1` (the strict profile, the exact
    header ``{alg, kid, typ}`` of the vehicle key, the unique signature) and
    decoded strictly. Raises :class:`SignatureError` if the vehicle did not
    sign it, :class:`DecodeError` if it is off the profile, for another
    vehicle, or not made after ``newer_than``: pass the ``created_at`` of the
    last proposal endorsed for this car, so that a recorded older proposal —
    of a key since dropped, perhaps because it leaked — is not endorsed again.
    """
    if not isinstance(vehicle_public_key, VerificationKey):
        raise InvalidRequest("vehicle_public_key must be a trunkkey.VerificationKey")
    if newer_than is not None and (type(newer_than) is not int or newer_than < 0):
        raise InvalidRequest("newer_than must be Unix seconds")
    if type(signed) is not bytes or len(signed) > MAX_PROPOSAL_BYTES:
        raise DecodeError("a KEM proposal is bytes of a bounded size")
    opened = open_sign1(
        signed, vehicle_public_key, typ=Typ.KEM_PROPOSAL, kid=vehicle_public_key.kid
    )
    body = cbor.decode(opened.payload)
    if type(body) is not dict or set(body) != {_VEHICLE, _SUITE, _KEY, _CREATED}:
        raise DecodeError("a KEM proposal has exactly members 1 to 4")
    suite, raw, created = body[_SUITE], body[_KEY], body[_CREATED]
    if type(body[_VEHICLE]) is not str or suite not in SUITES.values():
        raise DecodeError("a KEM proposal names a vehicle and a known suite")
    key = kem_public_key(raw)
    if SUITES["x25519" if isinstance(key, CarPublicKey) else "mlkem768-x25519"] != suite:
        raise DecodeError("the key's length is not its suite's")
    try:
        proposal = KemProposal(vehicle_id=body[_VEHICLE], key=key, created_at=created)
    except InvalidRequest as exc:
        raise DecodeError(f"KEM proposal content invalid: {exc}") from None
    if proposal.vehicle_id != vehicle_id:
        raise DecodeError("the KEM proposal is for another vehicle")
    if newer_than is not None and proposal.created_at <= newer_than:
        raise DecodeError(
            f"the KEM proposal was made at {proposal.created_at}, not after {newer_than} "
            "(an older proposal replayed?)"
        )
    return proposal


def verify_kem_proposal(
    signed: bytes, vehicle_public_key: VerificationKey, *, vehicle_id: str,
    newer_than: int | None = None,
) -> CarPublicKey | CarHybridPublicKey:
    """The carmaker's side: the KEM public key this vehicle proposed, once verified
    (:func:`read_kem_proposal`, also for ``newer_than``); endorse it with
    ``sign_trust_update(..., vehicle=, kem_keys=[KemKeyEntry(...)])``."""
    return read_kem_proposal(
        signed, vehicle_public_key, vehicle_id=vehicle_id, newer_than=newer_than
    ).key
