"""The claims a trunkkey token carries, and their CWT encoding.

Registered CWT claims (RFC 8392) keep their labels; trunkkey's own profile
claims use labels from the CWT "Private Use" range (below -65536), so they can
never collide with a registered claim. The set is closed: a token with any
other claim is malformed, because a claim a verifier ignores is a restriction
an issuer thought it imposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from . import cbor
from ._fastpath import slot_filler, usual_claim_values, usual_claims_bytes
from .errors import DecodeError, InvalidRequest
from .geo import Geofence
from .keys import VerificationKey
from .parcels import Parcels, read_parcels

# Registered CWT claim labels (RFC 8392 §4, RFC 8747 §3.1).
ISS, AUD, EXP, NBF, IAT, CTI, CNF = 1, 3, 4, 5, 6, 7, 8
# trunkkey profile claims (Private Use range).
ACCESS = -65537  #: access bits: one action bit | one purpose bit
GEOFENCE = -65538  #: [lat_e7, lon_e7, radius_m]
ORDER = -65539  #: opaque order reference, bstr
PARCELS = -65540  #: [salt, [commitments]]: the parcels of the order (trunkkey.parcels)
#: cnf member carrying a COSE_Key (RFC 8747 §3.2).
CNF_COSE_KEY = 1

TOKEN_ID_LENGTH = 16  #: 128 random bits
MAX_NAME_BYTES = 64  #: issuer names and vehicle ids, UTF-8
MAX_ORDER_BYTES = 64
MAX_TIME = 2**40  #: year 36812: any larger NumericDate is nonsense
#: The longest claims set the closed profile allows is about 660 bytes (every
#: member at its longest, a P-256 ``cnf`` key, 16 parcels: 296 of them);
#: anything larger is refused unread.
MAX_CLAIMS_BYTES = 768


class Action(StrEnum):
    """What a token opens. Nothing else exists: no token can start or drive a car."""

    TRUNK = "trunk"  #: the trunk only; the cabin stays locked
    UNLOCK_RELOCK = "unlock-relock"  #: doors unlocked once, then relocked

    @property
    def bit(self) -> int:
        return _ACTION_BITS[self]


class Purpose(StrEnum):
    """Why the token was issued; carried into the delivery receipt."""

    DELIVERY = "delivery"
    RETURN_PICKUP = "return-pickup"

    @property
    def bit(self) -> int:
        return _PURPOSE_BITS[self]


# The access claim is a bit set: bits 0-1 name actions, bits 2-3 purposes,
# every other bit is reserved and must be zero. A token sets exactly one bit
# of each kind (values 5, 6, 9, 10 — one byte on the wire); a consent grant
# (a later profile) sets any non-empty subset, and narrowing is a subset test.
_ACTION_BITS = {Action.TRUNK: 0x01, Action.UNLOCK_RELOCK: 0x02}
_PURPOSE_BITS = {Purpose.DELIVERY: 0x04, Purpose.RETURN_PICKUP: 0x08}
ACTION_MASK = 0x03
PURPOSE_MASK = 0x0C
_BIT_TO_ACTION = {v: k for k, v in _ACTION_BITS.items()}
_BIT_TO_PURPOSE = {v: k for k, v in _PURPOSE_BITS.items()}


def access_bits(action: Action, purpose: Purpose) -> int:
    return _ACTION_BITS[action] | _PURPOSE_BITS[purpose]


def check_name(value: object, what: str) -> str:
    """Validate an issuer name or vehicle id supplied by a caller."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{what} must be a non-empty string")
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidRequest(f"{what} must be at most {MAX_NAME_BYTES} bytes of UTF-8")
    if not value.isprintable():
        raise InvalidRequest(f"{what} must not contain control characters")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    """The content of a trunkkey token.

    A ``TokenClaims`` on its own proves nothing: only a
    :class:`~trunkkey.Decision` from a :class:`~trunkkey.Verifier` says that a
    signature over it was checked.
    """

    issuer: str
    vehicle_id: str
    not_before: int
    expires: int
    issued_at: int
    token_id: bytes
    action: Action
    purpose: Purpose
    geofence: Geofence | None = None
    courier_key: VerificationKey | None = None
    order_ref: bytes | None = None
    #: The parcels of the order, committed to (never their identifiers).
    parcels: Parcels | None = None

    @property
    def lifetime(self) -> int:
        return self.expires - self.not_before


def encode_claims(claims: TokenClaims) -> bytes:
    """The deterministic CWT claims set for ``claims``."""
    return encode_claim_fields(
        issuer=claims.issuer,
        vehicle_id=claims.vehicle_id,
        expires=claims.expires,
        not_before=claims.not_before,
        issued_at=claims.issued_at,
        token_id=claims.token_id,
        access=access_bits(claims.action, claims.purpose),
        courier_key=claims.courier_key,
        geofence=claims.geofence,
        order_ref=claims.order_ref,
        parcels=claims.parcels,
    )


def encode_claim_fields(
    *,
    issuer: str,
    vehicle_id: str,
    expires: int,
    not_before: int,
    issued_at: int,
    token_id: bytes,
    access: int,
    courier_key: VerificationKey | None,
    geofence: Geofence | None,
    order_ref: bytes | None,
    parcels: Parcels | None = None,
) -> bytes:
    """The one claims encoder, from the fields themselves: minting needs no
    :class:`TokenClaims`, whose construction would cost it about 7 %. The
    commonest token is written by :func:`trunkkey._fastpath.usual_claims_bytes`.

    The claims are concatenated in the order RFC 8949 §4.2.1 sorts their
    labels (1, 3, 4, 5, 6, 7, 8, then -65537 to -65540), without building
    a map; a test holds this equal to ``cbor.encode`` of the same map.
    """
    iss = issuer.encode("utf-8")
    aud = vehicle_id.encode("utf-8")
    if courier_key is None and geofence is None and order_ref is None and parcels is None:
        usual = usual_claims_bytes(iss, aud, expires, not_before, issued_at, token_id, access)
        if usual is not None:
            return usual
    head = cbor.head
    count = (7 + (courier_key is not None) + (geofence is not None) + (order_ref is not None)
             + (parcels is not None))
    return b"".join((
        head(5, count),
        b"\x01", head(3, len(iss)), iss,
        b"\x03", head(3, len(aud)), aud,
        b"\x04", head(0, expires),
        b"\x05", head(0, not_before),
        b"\x06", head(0, issued_at),
        b"\x07", head(2, len(token_id)), token_id,
        b"" if courier_key is None
        else _LABELS[6] + cbor.encode({CNF_COSE_KEY: courier_key.cose_key_map()}),
        _LABELS[7], head(0, access),
        b"" if geofence is None
        else _LABELS[8] + cbor.encode([geofence.lat_e7, geofence.lon_e7, geofence.radius_m]),
        b"" if order_ref is None else _LABELS[9] + head(2, len(order_ref)) + order_ref,
        b"" if parcels is None else _LABELS[10] + cbor.encode(parcels.to_cbor()),
    ))


#: TokenClaims(...), positionally in field order, for the decoder's checked values.
_fill_claims = slot_filler(TokenClaims, tuple(TokenClaims.__dataclass_fields__))

#: Every claim label, encoded, in the order deterministic CBOR puts them.
_LABELS = tuple(cbor.encode(label) for label in (ISS, AUD, EXP, NBF, IAT, CTI, CNF, ACCESS,
                                                 GEOFENCE, ORDER, PARCELS))


def _text(value: Any, what: str) -> str:
    if type(value) is not str or not value or len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise DecodeError(f"{what} must be a text string of 1 to {MAX_NAME_BYTES} bytes")
    return value


def _time(value: Any, what: str) -> int:
    if type(value) is not int or not (0 <= value < MAX_TIME):
        raise DecodeError(f"{what} must be an unsigned integer NumericDate")
    return value


def decode_claims(payload: bytes) -> TokenClaims:
    """Strictly decode a claims set; raise :class:`DecodeError` on anything off-profile.

    Refuses anything but ``bytes`` of at most :data:`MAX_CLAIMS_BYTES` before parsing.
    """
    # Inline for the hot path; the helper only words the refusal.
    if type(payload) is not bytes or len(payload) > MAX_CLAIMS_BYTES:
        cbor.refuse_oversized(payload, MAX_CLAIMS_BYTES, "claims set")
    values = usual_claim_values(payload)
    if values is None:
        values = cbor.decode_map(
            payload, _LABELS, not_a_map="claims set must be a map", unknown="unknown claims: {}"
        )
    iss, aud, exp, nbf, iat, token_id, cnf, access, fence, order_ref, parcels = values
    if None in (iss, aud, exp, nbf, iat, token_id, access):
        present = dict(zip((ISS, AUD, EXP, NBF, IAT, CTI, ACCESS),
                           (iss, aud, exp, nbf, iat, token_id, access), strict=True))
        raise DecodeError(f"missing claims: {sorted(k for k, v in present.items() if v is None)}")
    if type(token_id) is not bytes or len(token_id) != TOKEN_ID_LENGTH:
        raise DecodeError(f"cti must be {TOKEN_ID_LENGTH} bytes")
    if type(access) is not int or access & ~(ACTION_MASK | PURPOSE_MASK):
        raise DecodeError("access must be an unsigned integer with no reserved bits set")
    action = _BIT_TO_ACTION.get(access & ACTION_MASK)
    purpose = _BIT_TO_PURPOSE.get(access & PURPOSE_MASK)
    if action is None:
        raise DecodeError("access must name exactly one action")
    if purpose is None:
        raise DecodeError("access must name exactly one purpose")
    geofence = None if fence is None else _geofence(fence)
    courier_key = None if cnf is None else _courier_key(cnf)
    if order_ref is not None and (
        type(order_ref) is not bytes or not (0 < len(order_ref) <= MAX_ORDER_BYTES)
    ):
        raise DecodeError(f"order reference must be 1 to {MAX_ORDER_BYTES} bytes")
    if parcels is not None:
        if courier_key is None:
            # The scan is signed by the device key: without one, nothing could be checked.
            raise DecodeError("parcels need a cnf key to sign the scan")
        parcels = read_parcels(parcels)
    return _fill_claims(_text(iss, "iss"), _text(aud, "aud"), _time(nbf, "nbf"),
                        _time(exp, "exp"), _time(iat, "iat"), token_id, action, purpose,
                        geofence, courier_key, order_ref, parcels)


def _geofence(value: Any) -> Geofence:
    if type(value) is not list or len(value) != 3 or any(type(v) is not int for v in value):
        raise DecodeError("geofence must be [lat_e7, lon_e7, radius_m]")
    try:
        return Geofence(lat_e7=value[0], lon_e7=value[1], radius_m=value[2])
    except InvalidRequest as exc:
        raise DecodeError(f"geofence out of range: {exc}") from None


def _courier_key(cnf: Any) -> VerificationKey:
    if type(cnf) is not dict or set(cnf) != {CNF_COSE_KEY}:
        raise DecodeError("cnf must hold exactly one COSE_Key")
    if type(cnf[CNF_COSE_KEY]) is not dict:
        # RFC 8747 §3.2: the COSE_Key itself, a map; from_cose_key would also
        # read one wrapped in a byte string, a second encoding of one claim.
        raise DecodeError("cnf COSE_Key must be a map")
    return VerificationKey.from_cose_key(cnf[CNF_COSE_KEY])
