"""What a backend should do about each reason: an HTTP status, and retry, re-mint or alarm.

One table, :data:`ADVICE`, with an entry for every :class:`~trunkkey.Reason`
(a test fails when a reason is added without one), so that every service
built on trunkkey answers a denial the same way and every client knows
whether to try the same token again, get a new one, or call a human.

The remedies:

* ``retry`` -- the same token may still succeed: later (its window has not
  started, today's limit is used up), after something transient clears (the
  ledger did not answer, the unit was busy), or with a request completed
  (the proof or position that was missing);
* ``re-mint`` -- this token can never succeed, but a new one from its issuer
  can (it expired, was superseded, names another action);
* ``alarm`` -- nothing the courier can do fixes it, and someone should look:
  a forged or tampered token, a replay, a revoked consent, a car that moved,
  a car log that forks.

The statuses follow RFC 9110: 400 for bytes that are not a token, 413 for
one over the size cap, 403 for an authentic request that policy refuses,
409 for a conflict with recorded state (the token is spent), 429 for a
daily limit, 503 (or 502 for the car's own actuator) for a fault that may
clear. A successful decision is 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from .reasons import Reason


class Remedy(StrEnum):
    """What the presenter (or its backend) should do next."""

    #: Nothing: access was allowed.
    NONE = "none"
    #: Try the same token again (later, or with the request completed).
    RETRY = "retry"
    #: This token cannot succeed; ask its issuer for a new one.
    REMINT = "re-mint"
    #: Stop and raise an alarm: an attack, a misconfiguration or a fault to look at.
    ALARM = "alarm"


@dataclass(frozen=True, slots=True, kw_only=True)
class Advice:
    """How a backend answers one reason over HTTP, and what its client does next."""

    status: int
    remedy: Remedy
    #: A short, fixed summary of the reason (an RFC 9457 problem's ``title``).
    title: str


def _a(status: int, remedy: Remedy, title: str) -> Advice:
    return Advice(status=status, remedy=remedy, title=title)


_OK, _BAD, _BIG, _NO, _STATE, _LIMIT, _GATEWAY, _DOWN = 200, 400, 413, 403, 409, 429, 502, 503
_R, _M, _A = Remedy.RETRY, Remedy.REMINT, Remedy.ALARM

#: Every reason's advice. Read it with :func:`advice_for`.
ADVICE: Mapping[Reason, Advice] = MappingProxyType({
    Reason.ALLOWED: _a(_OK, Remedy.NONE, "Access allowed"),
    # The bytes: an honest issuer never makes these, so someone should look.
    Reason.TOO_LARGE: _a(_BIG, _A, "Token too large"),
    Reason.MALFORMED: _a(_BAD, _A, "Token malformed"),
    Reason.WRONG_TYPE: _a(_BAD, _A, "Not a token"),
    Reason.UNSUPPORTED_HEADER: _a(_BAD, _A, "Unsupported token header"),
    # Sealed to another car's key (or one it rotated away): mint and seal anew.
    Reason.CANNOT_OPEN: _a(_NO, _M, "Sealed token does not open for this car"),
    # The signer.
    Reason.UNKNOWN_KEY: _a(_NO, _A, "Unknown signing key"),
    Reason.KEY_NOT_VALID: _a(_NO, _M, "Signing key outside its validity period"),
    Reason.ALG_MISMATCH: _a(_NO, _A, "Algorithm does not match the key"),
    Reason.BAD_SIGNATURE: _a(_NO, _A, "Bad signature"),
    Reason.WRONG_ISSUER: _a(_NO, _A, "Issuer does not match the key"),
    # What the token is for.
    Reason.WRONG_VEHICLE: _a(_NO, _A, "Token is for another vehicle"),
    Reason.WRONG_ACTION: _a(_NO, _M, "Token is for another action"),
    Reason.WRONG_PURPOSE: _a(_NO, _M, "Token is for another purpose"),
    # When.
    Reason.LIFETIME_TOO_LONG: _a(_NO, _M, "Token window longer than policy allows"),
    Reason.NOT_YET_VALID: _a(_NO, _R, "Token window has not started"),
    Reason.EXPIRED: _a(_NO, _M, "Token window has ended"),
    Reason.CLOCK_UNTRUSTED: _a(_DOWN, _R, "Vehicle clock not trusted"),
    # Where.
    Reason.LOCATION_UNKNOWN: _a(_NO, _R, "Vehicle position unknown"),
    Reason.OUTSIDE_GEOFENCE: _a(_NO, _A, "Vehicle outside the token's geofence"),
    # Who holds it.
    Reason.PROOF_MISSING: _a(_NO, _R, "Proof of possession missing"),
    Reason.PROOF_INVALID: _a(_NO, _A, "Proof of possession invalid"),
    # What the courier carries: the token stays unspent, so scanning the
    # order's parcels and presenting again is the honest courier's way out.
    Reason.PARCEL_MISSING: _a(_NO, _R, "No parcel scan for a parcel-bound token"),
    Reason.WRONG_PARCEL: _a(_NO, _R, "A scanned parcel is not in the order"),
    # Single use.
    Reason.ALREADY_USED: _a(_STATE, _A, "Token already used"),
    Reason.LEDGER_UNAVAILABLE: _a(_DOWN, _R, "Replay ledger unavailable"),
    Reason.ISSUED_BEFORE_LEDGER: _a(_STATE, _M, "Token issued before the ledger started"),
    # The vehicle unit.
    Reason.CHALLENGE_UNKNOWN: _a(_NO, _R, "Challenge unknown"),
    Reason.CHALLENGE_EXPIRED: _a(_NO, _R, "Challenge expired"),
    Reason.CAR_MOVED: _a(_STATE, _A, "Vehicle moved"),
    Reason.UNIT_BUSY: _a(_DOWN, _R, "Vehicle unit busy"),
    Reason.ACTUATOR_FAILED: _a(_GATEWAY, _A, "Vehicle actuator failed"),
    # Consent chains.
    Reason.CHAIN_INVALID: _a(_NO, _A, "Consent chain invalid"),
    Reason.SCOPE_WIDENED: _a(_NO, _A, "Outside the owner's consent"),
    Reason.GRANT_NOT_YET_VALID: _a(_NO, _R, "Consent not yet valid"),
    Reason.GRANT_EXPIRED: _a(_NO, _M, "Consent expired"),
    Reason.DAILY_LIMIT_REACHED: _a(_LIMIT, _R, "Daily limit reached"),
    # Revocation.
    Reason.GRANT_REVOKED: _a(_NO, _A, "Consent revoked"),
    Reason.KEY_REVOKED: _a(_NO, _A, "Key revoked"),
    Reason.TOKEN_REVOKED: _a(_NO, _M, "Token revoked"),
    Reason.SUPERSEDED: _a(_NO, _M, "Token superseded by a newer one"),
    Reason.REVOCATIONS_STALE: _a(_DOWN, _R, "Revocation list too old"),
    Reason.ROLLBACK: _a(_STATE, _A, "Update not newer than the one held"),
    # The car's access log, as the backend judges it.
    Reason.CHECKPOINT_INVALID: _a(_BAD, _A, "Log checkpoint invalid"),
    Reason.LOG_FORK: _a(_STATE, _A, "Vehicle log forked"),
    Reason.LOG_ROLLBACK: _a(_STATE, _A, "Vehicle log rolled back"),
    Reason.LOG_GAP: _a(_STATE, _A, "Vehicle log has a gap"),
})


def advice_for(reason: Reason) -> Advice:
    """The advice for ``reason``; a ``KeyError`` names a reason the table lacks."""
    return ADVICE[Reason(reason)]
