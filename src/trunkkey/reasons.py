"""Stable reason codes for access decisions.

The string values are part of the public contract: they appear in logs, in
``docs/test-vectors.json`` and in other implementations' test suites, so they
never change meaning once published.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a token was allowed or denied."""

    ALLOWED = "allowed"
    # The bytes: size, structure, encoding.
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    WRONG_TYPE = "wrong_type"
    UNSUPPORTED_HEADER = "unsupported_header"
    #: A sealed token that none of this car's KEM keys opens: sealed to
    #: another car, or altered on the way. Decided before anything inside is read.
    CANNOT_OPEN = "cannot_open"
    # The signer.
    UNKNOWN_KEY = "unknown_key"
    KEY_NOT_VALID = "key_not_valid"
    ALG_MISMATCH = "alg_mismatch"
    BAD_SIGNATURE = "bad_signature"
    WRONG_ISSUER = "wrong_issuer"
    # What the token is for.
    WRONG_VEHICLE = "wrong_vehicle"
    WRONG_ACTION = "wrong_action"
    WRONG_PURPOSE = "wrong_purpose"
    # When.
    LIFETIME_TOO_LONG = "lifetime_too_long"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    CLOCK_UNTRUSTED = "clock_untrusted"
    # Where.
    LOCATION_UNKNOWN = "location_unknown"
    OUTSIDE_GEOFENCE = "outside_geofence"
    # Who holds it.
    PROOF_MISSING = "proof_missing"
    PROOF_INVALID = "proof_invalid"
    # What they carry: the parcels a token is bound to (trunkkey.parcels).
    #: The token is bound to parcels and the proof carries no scan (or an empty one).
    PARCEL_MISSING = "parcel_missing"
    #: A scanned identifier is not one of the order's, or one parcel was scanned twice.
    WRONG_PARCEL = "wrong_parcel"
    # Single use.
    ALREADY_USED = "already_used"
    LEDGER_UNAVAILABLE = "ledger_unavailable"
    #: The ledger was started afresh after a loss, after this token was issued:
    #: whether it was spent is unknowable, so it never opens.
    ISSUED_BEFORE_LEDGER = "issued_before_ledger"
    # The vehicle unit (trunkkey.vehicle): checked before or after the verifier.
    CHALLENGE_UNKNOWN = "challenge_unknown"
    CHALLENGE_EXPIRED = "challenge_expired"
    CAR_MOVED = "car_moved"
    UNIT_BUSY = "unit_busy"
    ACTUATOR_FAILED = "actuator_failed"
    # Consent chains (trunkkey.consent): the grants a token hangs from.
    CHAIN_INVALID = "chain_invalid"
    SCOPE_WIDENED = "scope_widened"
    GRANT_NOT_YET_VALID = "grant_not_yet_valid"
    GRANT_EXPIRED = "grant_expired"
    DAILY_LIMIT_REACHED = "daily_limit_reached"
    # Revocation (trunkkey.consent): signed lists from the carmaker.
    GRANT_REVOKED = "grant_revoked"
    KEY_REVOKED = "key_revoked"
    TOKEN_REVOKED = "token_revoked"
    SUPERSEDED = "superseded"
    #: The car's revocation list is older than its policy allows (``max_list_age``).
    REVOCATIONS_STALE = "revocations_stale"
    #: A signed update (revocation list, trust update) no newer than the one held.
    ROLLBACK = "rollback"
    # The car's access log (trunkkey.history), as the backend judges its checkpoints.
    #: A checkpoint that is malformed, unsigned, or not signed by the car's key.
    CHECKPOINT_INVALID = "checkpoint_invalid"
    #: Two checkpoints of the car's log that no append-only history joins.
    LOG_FORK = "log_fork"
    #: A checkpoint of a smaller log than one already seen from the car.
    LOG_ROLLBACK = "log_rollback"
    #: Entries the car's checkpoint says exist, but that nobody has delivered or can prove.
    LOG_GAP = "log_gap"

    @property
    def allowed(self) -> bool:
        return self is Reason.ALLOWED
