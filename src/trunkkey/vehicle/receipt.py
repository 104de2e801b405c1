"""Signed delivery receipts: the car's own evidence of what happened.

After relocking, the unit signs a receipt with its vehicle key (``typ`` =
:attr:`Typ.RECEIPT`, so it can never pass as a token, a proof or a time-sync
message). The retailer verifies it with the vehicle's public key, learned
from the carmaker at enrolment, as proof of delivery or of a return pickup.

For a token bound to parcels the receipt names the parcels the courier's
device scanned at the opening, by their commitments (member 11); the
retailer, who minted the token and knows the order, reads them back into
identifiers with :func:`parcels_in_receipt`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from .. import cbor
from ..checkpoint import MAX_PROOF_BYTES, LogEvidence, read_evidence
from ..claims import Action, Purpose, check_name
from ..cose import Typ, open_sign1, sign1
from ..errors import DecodeError, InvalidRequest
from ..inspect import inspect_unverified
from ..keys import VerificationKey
from ..logentry import EntryKind, decode_entry
from ..parcels import MAX_RECORD_BYTES, ParcelRecord, check_parcel_ids, committer, read_record
from ..signing import SigningBackend, signing_backend

#: A receipt with its log evidence: the checkpoint, the entry and a proof of
#: at most 64 hashes fit, with the receipt's own members, in this; and the
#: record of the parcels scanned (member 11) at its longest, 275 bytes.
MAX_RECEIPT_BYTES = 768 + 1 + MAX_RECORD_BYTES + MAX_PROOF_BYTES
(_VEHICLE, _TOKEN, _ACTION, _PURPOSE, _OPENED, _CLOSED, _RELOCKED, _CAUSE, _ORDER,
 _LOG, _PARCELS) = range(1, 12)
_REQUIRED = frozenset({_VEHICLE, _TOKEN, _ACTION, _PURPOSE, _OPENED, _RELOCKED, _CAUSE})
_KNOWN = _REQUIRED | {_CLOSED, _ORDER, _LOG, _PARCELS}
RELOCK_CAUSES = ("closed", "timeout", "clock_untrusted")


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What the car says happened during one opening.

    ``closed_at`` is ``None`` when nobody closed the lid and the car relocked
    by itself (``relock_cause`` = ``"timeout"``): a delivery the retailer
    should look at, not one to count as clean. ``log``: the car's checkpoint
    at the relock and the proof that the opening's entry is in it (member 10;
    absent from receipts of units without an access log). ``parcels``:
    which of the order's parcels were scanned at the opening (member 11;
    only for a token bound to parcels).
    """

    vehicle_id: str
    token_id: bytes
    action: Action
    purpose: Purpose
    opened_at: int
    closed_at: int | None
    relocked_at: int
    relock_cause: str
    order_ref: bytes | None = None
    log: LogEvidence | None = None
    parcels: ParcelRecord | None = None

    def __post_init__(self) -> None:
        if self.relock_cause not in RELOCK_CAUSES:
            raise InvalidRequest(f"relock_cause must be one of {RELOCK_CAUSES}")
        if not (self.opened_at <= self.relocked_at):
            raise InvalidRequest("relocked before opened")

    def encode(self) -> bytes:
        members: dict[int, object] = {
            _VEHICLE: self.vehicle_id,
            _TOKEN: self.token_id,
            _ACTION: self.action.value,
            _PURPOSE: self.purpose.value,
            _OPENED: self.opened_at,
            _RELOCKED: self.relocked_at,
            _CAUSE: self.relock_cause,
        }
        if self.closed_at is not None:
            members[_CLOSED] = self.closed_at
        if self.order_ref is not None:
            members[_ORDER] = self.order_ref
        if self.log is not None:
            members[_LOG] = self.log.to_cbor()
        if self.parcels is not None:
            members[_PARCELS] = self.parcels.to_cbor()
        return cbor.encode(members)


def sign_receipt(vehicle_key: SigningBackend, receipt: Receipt) -> bytes:
    signing_backend(vehicle_key, "vehicle_key")
    check_name(receipt.vehicle_id, "vehicle_id")
    return sign1(vehicle_key, receipt.encode(), typ=Typ.RECEIPT)


def _int(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise DecodeError(f"receipt {what} must be an unsigned int")
    return value


def verify_receipt(
    data: bytes,
    vehicle_key: VerificationKey,
    *,
    vehicle_id: str | None = None,
    token_id: bytes | None = None,
) -> Receipt:
    """Verify a receipt under the vehicle's public key and return its content.

    Raise :class:`SignatureError` if the vehicle did not sign it, and
    :class:`DecodeError` if it is malformed or names another vehicle or token
    than the ones given.
    """
    if type(data) is not bytes or len(data) > MAX_RECEIPT_BYTES:
        raise DecodeError("receipt is not bytes of a bounded size")
    body = cbor.decode(open_sign1(data, vehicle_key, typ=Typ.RECEIPT, kid=vehicle_key.kid).payload)
    if type(body) is not dict or not (_REQUIRED <= body.keys() <= _KNOWN):
        raise DecodeError("receipt has the wrong members")
    try:
        receipt = Receipt(
            vehicle_id=body[_VEHICLE] if type(body[_VEHICLE]) is str else "",
            token_id=body[_TOKEN] if type(body[_TOKEN]) is bytes else b"",
            action=Action(body[_ACTION]),
            purpose=Purpose(body[_PURPOSE]),
            opened_at=_int(body[_OPENED], "opened"),
            closed_at=None if _CLOSED not in body else _int(body[_CLOSED], "closed"),
            relocked_at=_int(body[_RELOCKED], "relocked"),
            relock_cause=body[_CAUSE] if type(body[_CAUSE]) is str else "",
            order_ref=body.get(_ORDER) if type(body.get(_ORDER)) is bytes else None,
            log=None if _LOG not in body else read_evidence(body[_LOG]),
            parcels=None if _PARCELS not in body else read_record(body[_PARCELS]),
        )
    except ValueError as exc:  # InvalidRequest and the enums' ValueError
        raise DecodeError(f"receipt content invalid: {exc}") from None
    if not receipt.vehicle_id or not receipt.token_id:
        raise DecodeError("receipt names no vehicle or token")
    if vehicle_id is not None and receipt.vehicle_id != vehicle_id:
        raise DecodeError("receipt is for another vehicle")
    if token_id is not None and not hmac.compare_digest(receipt.token_id, token_id):
        raise DecodeError("receipt is for another token")
    if receipt.log is not None:
        _check_log(receipt, receipt.log, vehicle_key)
    return receipt


def _check_log(receipt: Receipt, evidence: LogEvidence, vehicle_key: VerificationKey) -> None:
    """The evidence is the car's own checkpoint, and it proves this opening's entry."""
    evidence.check(vehicle_key, vehicle_id=receipt.vehicle_id)
    entry = decode_entry(evidence.entry)
    if entry.kind is not EntryKind.TOKEN_ALLOWED or entry.token_id != receipt.token_id:
        raise DecodeError("the receipt's log entry is not this opening's")


def parcels_in_receipt(
    receipt: Receipt, *, token: bytes, parcels: Iterable[str]
) -> tuple[str, ...]:
    """The retailer's check: which parcels of the order the car says were scanned.

    ``receipt`` is one :func:`verify_receipt` returned; ``token`` the token
    the retailer minted for the order and ``parcels`` the order's
    identifiers, as given to :meth:`~trunkkey.Issuer.mint`. Returns the
    identifiers scanned, in the order's order (fewer than the order's: a
    partial delivery or pickup). Raises :class:`DecodeError` if the receipt
    is for another token, records no parcels, or records a parcel that is
    not the order's, or if ``parcels`` is not the order the token commits to.
    """
    if not isinstance(receipt, Receipt):
        raise InvalidRequest("receipt must be a verified trunkkey Receipt")
    order = check_parcel_ids(parcels, "the order", order=True)
    # The retailer's own token, kept since it minted it: nothing here decides access.
    claims = inspect_unverified(token).claims
    committed = claims.parcels
    if not hmac.compare_digest(claims.token_id, receipt.token_id):
        raise DecodeError("receipt is for another token")
    if committed is None or receipt.parcels is None:
        raise DecodeError("the token or the receipt names no parcels")
    commit = committer(committed.salt)
    mine = tuple(commit(identifier) for identifier in order)
    if mine != committed.commitments:
        raise DecodeError("these identifiers are not the order the token commits to")
    record = receipt.parcels
    if record.of != len(mine) or not set(record.scanned) <= set(mine):
        raise DecodeError("the receipt records parcels that are not the order's")
    return tuple(i for i, c in zip(order, mine, strict=True) if c in record.scanned)
