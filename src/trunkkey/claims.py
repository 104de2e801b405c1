"""The claims a trunkkey token carries, and their CWT encoding.

Registered CWT claims (RFC 8392) keep their labels; trunkkey's own profile
claims use labels from the CWT "Private Use" range (below -65536), so they can
never collide with a registered claim. The set is closed: a token with any
other claim is malformed, because a claim a verifier ignores is a restriction
an issuer thought it imposed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from . import cbor
from .errors import DecodeError, InvalidRequest
from .geo import E7, MAX_RADIUS_M, MIN_RADIUS_M, Geofence
from .keys import VerificationKey

# Registered CWT claim labels (RFC 8392 §4, RFC 8747 §3.1).
ISS, AUD, EXP, NBF, IAT, CTI, CNF = 1, 3, 4, 5, 6, 7, 8
# trunkkey profile claims (Private Use range).
ACCESS = -65537  #: access bits: one action bit | one purpose bit
GEOFENCE = -65538  #: [lat_e7, lon_e7, radius_m]
ORDER = -65539  #: opaque order reference, bstr
#: cnf member carrying a COSE_Key (RFC 8747 §3.2).
CNF_COSE_KEY = 1

TOKEN_ID_LENGTH = 16  #: 128 random bits
MAX_NAME_BYTES = 64  #: issuer names and vehicle ids, UTF-8
MAX_ORDER_BYTES = 64
MAX_TIME = 2**40  #: year 36812: any larger NumericDate is nonsense
#: The longest claims set the closed profile allows is about 360 bytes (every
#: member at its longest, a P-256 ``cnf`` key); anything larger is refused unread.
MAX_CLAIMS_BYTES = 512
_REQUIRED = frozenset({ISS, AUD, EXP, NBF, IAT, CTI, ACCESS})
_KNOWN = _REQUIRED | {CNF, GEOFENCE, ORDER}


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
) -> bytes:
    """Concatenate the claims in deterministic order, without building a map.

    The labels are written in the order RFC 8949 §4.2.1 sorts them (1, 3, 4,
    5, 6, 7, 8, then -65537, -65538, -65539); a test holds this equal to
    ``cbor.encode`` of the same map.
    """
    head = cbor.head
    iss = issuer.encode("utf-8")
    aud = vehicle_id.encode("utf-8")
    if (
        courier_key is None
        and geofence is None
        and order_ref is None
        and len(iss) < 24
        and len(aud) < 24
        and min(expires, not_before, issued_at) >= 0x10000
        and max(expires, not_before, issued_at) <= 0xFFFFFFFF
        and access < 24
        and len(token_id) == TOKEN_ID_LENGTH
    ):
        # The commonest token, the mirror of _decode_common_shape: one struct
        # pack for everything after aud.
        return b"".join((
            b"\xa7\x01", bytes((0x60 + len(iss),)), iss,
            b"\x03", bytes((0x60 + len(aud),)), aud,
            _TAIL.pack(b"\x04\x1a", expires, b"\x05\x1a", not_before, b"\x06\x1a", issued_at,
                       b"\x07\x50", token_id, _ACCESS_LABEL, access),
        ))
    count = 7 + (courier_key is not None) + (geofence is not None) + (order_ref is not None)
    out = [
        head(5, count),
        b"\x01", head(3, len(iss)), iss,
        b"\x03", head(3, len(aud)), aud,
        b"\x04", head(0, expires),
        b"\x05", head(0, not_before),
        b"\x06", head(0, issued_at),
        b"\x07", head(2, len(token_id)), token_id,
    ]
    if courier_key is not None:
        out += (b"\x08", cbor.encode({CNF_COSE_KEY: courier_key.cose_key_map()}))
    out += (_ACCESS_LABEL, head(0, access))
    if geofence is not None:
        out += (_GEOFENCE_LABEL, cbor.encode([geofence.lat_e7, geofence.lon_e7, geofence.radius_m]))
    if order_ref is not None:
        out += (_ORDER_LABEL, head(2, len(order_ref)), order_ref)
    return b"".join(out)


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
    fast = _decode_common_shape(payload)
    if fast is not None:
        return fast
    return _decode_claims_generic(payload)


# The bytes between aud and the end of the most common token: exp, nbf, iat as
# 4-byte NumericDates, a 16-byte cti and the access claim (label, 1-byte value).
_TAIL = struct.Struct(">2sI2sI2sI2s16s5sB")
_TIMES = struct.Struct(">2sI2sI2sI2s16s")
# cnf label, {1: {1: OKP, -1: Ed25519, -2: x (32 bytes)}}
_CNF_ED25519_PREFIX = bytes.fromhex("08a101a3010120062158 20".replace(" ", ""))
_CNF_PREFIX_LEN = len(_CNF_ED25519_PREFIX)
_new = object.__new__


def slot_setters(cls: type, names: str) -> list[Callable[[Any, Any], None]]:
    """The slot descriptors' setters of a frozen, slotted dataclass, by field name.

    The hot paths fill instances they have already validated field by field,
    as the dataclass's own ``__init__`` would; a slot's setter is the cheapest
    way that frozen classes allow.
    """
    return [getattr(cls, name).__set__ for name in names.split()]


(_set_issuer, _set_vehicle_id, _set_not_before, _set_expires, _set_issued_at, _set_token_id,
 _set_action, _set_purpose, _set_geofence, _set_courier_key, _set_order_ref) = slot_setters(
    TokenClaims, "issuer vehicle_id not_before expires issued_at token_id action purpose "
    "geofence courier_key order_ref")
_set_lat, _set_lon, _set_radius = slot_setters(Geofence, "lat_e7 lon_e7 radius_m")
_ACCESS_LABEL = cbor.encode(ACCESS)
_GEOFENCE_LABEL = cbor.encode(GEOFENCE)
_ORDER_LABEL = cbor.encode(ORDER)


def _longer_text(p: bytes, pos: int) -> tuple[str, int] | None:
    """A name of 24 to 64 bytes (1-byte length) at ``pos``; shorter ones are read in place."""
    if p[pos] == 0x78:
        length = p[pos + 1]
        if length < 24 or length > MAX_NAME_BYTES:
            return None
        end = pos + 2 + length
        return p[pos + 2 : end].decode("utf-8"), end
    return None


# A geofence whose coordinates need 4 bytes each: [lat, lon, radius] with the
# heads of both coordinates (0x1a positive, 0x3a negative) and their values.
_FENCE = struct.Struct(">BBIBI")
_LAT_LIMIT, _LON_LIMIT = 90 * E7, 180 * E7


def fence_at(p: bytes, pos: int) -> tuple[Geofence | None, int]:
    """The geofence at ``pos`` in its usual encoding, range-checked, and the position
    after it; ``None`` for anything else, which the caller's generic path decides."""
    array, lat_head, lat, lon_head, lon = _FENCE.unpack_from(p, pos)
    pos += _FENCE.size
    head = p[pos]
    if head == 0x18:
        radius, pos = p[pos + 1], pos + 2
        shortest = radius >= 24
    elif head == 0x19:
        radius, pos = int.from_bytes(p[pos + 1 : pos + 3], "big"), pos + 3
        shortest = radius >= 0x100
    else:
        return None, pos
    if lat_head == 0x3A:
        lat = -1 - lat
    if lon_head == 0x3A:
        lon = -1 - lon
    if not (
        array == 0x83
        and lat_head in (0x1A, 0x3A)
        and lon_head in (0x1A, 0x3A)
        # Under 0x10000 the 4-byte form is not the shortest.
        and not -0x10000 <= lat < 0x10000
        and not -0x10000 <= lon < 0x10000
        and shortest
        and -_LAT_LIMIT <= lat <= _LAT_LIMIT
        and -_LON_LIMIT <= lon <= _LON_LIMIT
        and MIN_RADIUS_M <= radius <= MAX_RADIUS_M
    ):
        return None, pos
    # Every check of Geofence.__post_init__ has just been made.
    fence: Geofence = _new(Geofence)
    _set_lat(fence, lat)
    _set_lon(fence, lon)
    _set_radius(fence, radius)
    return fence, pos


def _decode_common_shape(p: bytes) -> TokenClaims | None:
    """Decode the usual token layouts without the generic decoder, or return None.

    This is only a speed-up of the hot path: it accepts a strict subset of
    what :func:`_decode_claims_generic` accepts and builds the same result
    (property tests hold the two together). It knows 4-byte NumericDates,
    short names, an Ed25519 ``cnf`` key, a geofence and an order reference;
    anything else — a P-256 courier key, a short integer form, bad UTF-8 —
    goes to the generic path, which is the one that decides.
    """
    try:
        count = p[0] - 0xA0
        if not (7 <= count <= 10) or p[1] != 0x01:
            return None
        head = p[2]
        if 0x60 <= head < 0x78:  # the usual short name, read in place
            pos = head - 0x5D
            issuer = p[3:pos].decode("utf-8")
        else:
            got = _longer_text(p, 2)
            if got is None:
                return None
            issuer, pos = got
        if p[pos] != 0x03:
            return None
        head = p[pos + 1]
        if 0x60 <= head < 0x78:
            start, pos = pos + 2, pos + 2 + head - 0x60
            vehicle_id = p[start:pos].decode("utf-8")
        else:
            got = _longer_text(p, pos + 1)
            if got is None:
                return None
            vehicle_id, pos = got
        (exp_label, expires, nbf_label, not_before, iat_label, issued_at, cti_label,
         token_id) = _TIMES.unpack_from(p, pos)
        pos += _TIMES.size
        courier_key = None
        if p[pos] == 0x08:
            if p[pos : pos + _CNF_PREFIX_LEN] != _CNF_ED25519_PREFIX:
                return None
            start = pos + _CNF_PREFIX_LEN
            pos = start + 32
            if pos > len(p):
                return None
            courier_key = VerificationKey._ed25519(p[start:pos])
        if p[pos : pos + 5] != _ACCESS_LABEL:
            return None
        access = p[pos + 5]
        pos += 6
        geofence = None
        if p[pos : pos + 5] == _GEOFENCE_LABEL:
            geofence, pos = fence_at(p, pos + 5)
            if geofence is None:
                return None
        order_ref = None
        if p[pos : pos + 5] == _ORDER_LABEL:
            order_ref, pos = cbor.read_item(p, pos + 5, max_depth=0)
            if type(order_ref) is not bytes or not (0 < len(order_ref) <= MAX_ORDER_BYTES):
                return None
    except (IndexError, UnicodeDecodeError, struct.error, DecodeError, InvalidRequest):
        return None
    action = _BIT_TO_ACTION.get(access & ACTION_MASK)
    purpose = _BIT_TO_PURPOSE.get(access & PURPOSE_MASK)
    if (
        pos != len(p)
        or count != 7 + (courier_key is not None) + (geofence is not None)
        + (order_ref is not None)
        or exp_label != b"\x04\x1a"
        or nbf_label != b"\x05\x1a"
        or iat_label != b"\x06\x1a"
        or cti_label != b"\x07\x50"
        # Below 0x10000 the 4-byte form is not the shortest: the generic path refuses it.
        or expires < 0x10000
        or not_before < 0x10000
        or issued_at < 0x10000
        or access >= 24
        or access & ~(ACTION_MASK | PURPOSE_MASK)
        or action is None
        or purpose is None
        or not issuer
        or not vehicle_id
    ):
        return None
    # Built field by field, as the dataclass's own __init__ would, but without
    # its keyword handling: this runs once per verification.
    claims: TokenClaims = _new(TokenClaims)
    _set_issuer(claims, issuer)
    _set_vehicle_id(claims, vehicle_id)
    _set_not_before(claims, not_before)
    _set_expires(claims, expires)
    _set_issued_at(claims, issued_at)
    _set_token_id(claims, token_id)
    _set_action(claims, action)
    _set_purpose(claims, purpose)
    _set_geofence(claims, geofence)
    _set_courier_key(claims, courier_key)
    _set_order_ref(claims, order_ref)
    return claims


def _decode_claims_generic(payload: bytes) -> TokenClaims:
    members = cbor.decode(payload)
    if type(members) is not dict:
        raise DecodeError("claims set must be a map")
    keys = members.keys()
    if not keys >= _REQUIRED:
        raise DecodeError(f"missing claims: {sorted(_REQUIRED - keys)}")
    if not keys <= _KNOWN:
        raise DecodeError(f"unknown claims: {sorted(keys - _KNOWN, key=repr)}")
    token_id = members[CTI]
    if type(token_id) is not bytes or len(token_id) != TOKEN_ID_LENGTH:
        raise DecodeError(f"cti must be {TOKEN_ID_LENGTH} bytes")
    access = members[ACCESS]
    if type(access) is not int or access & ~(ACTION_MASK | PURPOSE_MASK):
        raise DecodeError("access must be an unsigned integer with no reserved bits set")
    action = _BIT_TO_ACTION.get(access & ACTION_MASK)
    purpose = _BIT_TO_PURPOSE.get(access & PURPOSE_MASK)
    if action is None:
        raise DecodeError("access must name exactly one action")
    if purpose is None:
        raise DecodeError("access must name exactly one purpose")
    geofence = None
    if GEOFENCE in members:
        g = members[GEOFENCE]
        if type(g) is not list or len(g) != 3 or any(type(v) is not int for v in g):
            raise DecodeError("geofence must be [lat_e7, lon_e7, radius_m]")
        try:
            geofence = Geofence(lat_e7=g[0], lon_e7=g[1], radius_m=g[2])
        except InvalidRequest as exc:
            raise DecodeError(f"geofence out of range: {exc}") from None
    courier_key = None
    if CNF in members:
        cnf = members[CNF]
        if type(cnf) is not dict or set(cnf) != {CNF_COSE_KEY}:
            raise DecodeError("cnf must hold exactly one COSE_Key")
        if type(cnf[CNF_COSE_KEY]) is not dict:
            # RFC 8747 §3.2: the COSE_Key itself, a map; from_cose_key would also
            # read one wrapped in a byte string, a second encoding of one claim.
            raise DecodeError("cnf COSE_Key must be a map")
        courier_key = VerificationKey.from_cose_key(cnf[CNF_COSE_KEY])
    order_ref = None
    if ORDER in members:
        order_ref = members[ORDER]
        if type(order_ref) is not bytes or not (0 < len(order_ref) <= MAX_ORDER_BYTES):
            raise DecodeError(f"order reference must be 1 to {MAX_ORDER_BYTES} bytes")
    return TokenClaims(
        issuer=_text(members[ISS], "iss"),
        vehicle_id=_text(members[AUD], "aud"),
        not_before=_time(members[NBF], "nbf"),
        expires=_time(members[EXP], "exp"),
        issued_at=_time(members[IAT], "iat"),
        token_id=token_id,
        action=action,
        purpose=purpose,
        geofence=geofence,
        courier_key=courier_key,
        order_ref=order_ref,
    )
