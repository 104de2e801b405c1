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
    # Single use.
    ALREADY_USED = "already_used"
    LEDGER_UNAVAILABLE = "ledger_unavailable"

    @property
    def allowed(self) -> bool:
        return self is Reason.ALLOWED
