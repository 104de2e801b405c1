"""Consent grants: what one key lets the next key do, and how a grant only narrows.

A grant is a strict-profile COSE_Sign1 with ``typ`` = :attr:`Typ.GRANT` whose
payload is a deterministic CBOR map with small integer labels. Bytes are
spent where they buy security and nowhere else, because a whole presentation
(chain + token + proof) has to cross a short-range radio link:

* the grantee's key travels **raw** (32 bytes: Ed25519; 64 bytes: P-256
  ``x || y``) — the length fixes the algorithm, so there is no ``alg`` to lie;
* only the first grant of a chain names its signer (``kid`` of a carmaker root
  in the car's anchors); every later grant is signed by the grantee of the
  one before, so a ``kid`` would only be something more to check;
* vehicles are 8-byte tags (truncated SHA-256 of the vehicle id) rather than
  17-character VINs; a tag is only ever compared with the tag of the car's own
  id, and forging a collision means finding a second preimage of 64 bits for
  a VIN the carmaker itself signs for.

A child grant may leave out ``vehicles``, ``places`` and ``daily_limit``: it
then inherits them. What it states must lie inside its parent (see
:func:`narrow`); a child can never state anything wider, only fail to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import cbor
from .._sodium import sha256
from ..claims import (
    ACTION_MASK,
    MAX_TIME,
    PURPOSE_MASK,
    Action,
    Purpose,
    check_name,
)
from ..clock import to_unix
from ..cose import Typ, sign1, signed_identity
from ..errors import DecodeError, InvalidRequest
from ..geo import Geofence
from ..keys import Algorithm, VerificationKey
from ..signing import SigningBackend, signing_backend

# Payload labels.
GRANTEE, NAME, ACCESS, NBF, EXP, DEPTH, VEHICLES, PLACES, DAILY_LIMIT = range(1, 10)

VEHICLE_TAG_LENGTH = 8
DIGEST_LENGTH = 32
#: Longest delegation chain a grant may allow below itself. Three covers
#: carmaker -> retailer -> carrier -> depot; more is a smell, not a feature.
MAX_DEPTH = 3
MAX_VEHICLES = 16
MAX_PLACES = 8
MAX_DAILY_LIMIT = 1000
#: A grant is a few hundred bytes at most; anything larger is refused unread.
MAX_GRANT_BYTES = 512


def vehicle_tag(vehicle_id: str) -> bytes:
    """The 8-byte tag a grant uses to name ``vehicle_id``."""
    return sha256(check_name(vehicle_id, "vehicle_id").encode("utf-8"))[:VEHICLE_TAG_LENGTH]


def grant_digest(grant: bytes) -> bytes:
    """A signed grant's identity: its name in chains by reference, revocation lists and
    daily-limit counters.

    The SHA-256 of the COSE ``Sig_structure`` — of what the signature covers,
    never of the signature — so no re-encoding of the signature renames the
    grant (:func:`trunkkey.cose.identity_of`). Raises :class:`DecodeError` if
    ``grant`` is not a strict-profile COSE_Sign1.
    """
    return signed_identity(grant)


def access_mask(
    actions: Iterable[Action | str], purposes: Iterable[Purpose | str]
) -> int:
    """The access bits for a set of actions and purposes (each set non-empty)."""
    bits = 0
    try:
        for action in actions:
            bits |= Action(action).bit
        for purpose in purposes:
            bits |= Purpose(purpose).bit
    except ValueError:
        raise InvalidRequest("unknown action or purpose") from None
    if not bits & ACTION_MASK or not bits & PURPOSE_MASK:
        raise InvalidRequest("a grant allows at least one action and one purpose")
    return bits


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """The decoded payload of one grant (unverified on its own).

    ``vehicles``, ``places`` and ``daily_limit`` are ``None`` when the grant
    does not state them (a child inherits its parent's).
    """

    grantee: VerificationKey
    grantee_name: str
    access: int
    not_before: int
    expires: int
    depth: int
    vehicles: frozenset[bytes] | None = None
    places: tuple[Geofence, ...] | None = None
    daily_limit: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """What a chain allows after every link so far: the narrowest of them all.

    ``places`` is ``None`` for "anywhere"; ``daily_limit`` ``None`` for "no
    limit"; ``depth`` is how many more delegations may follow.
    """

    vehicles: frozenset[bytes]
    access: int
    not_before: int
    expires: int
    depth: int
    places: tuple[Geofence, ...] | None = None
    daily_limit: int | None = None

    def allows_place(self, fence: Geofence | None) -> bool:
        """True when ``fence`` (``None``: anywhere) lies inside one of the scope's places."""
        places = self.places
        if places is None:
            return True
        if fence is None:
            return False
        for place in places:  # noqa: SIM110 -- no generator on the hot path
            if fence.within(place):
                return True
        return False


def root_scope(grant: Grant) -> Scope | str:
    """The scope of a chain's first grant, or why it cannot start a chain."""
    if grant.vehicles is None:
        return "the first grant of a chain must name its vehicles"
    return Scope(vehicles=grant.vehicles, access=grant.access, not_before=grant.not_before,
                 expires=grant.expires, depth=grant.depth, places=grant.places,
                 daily_limit=grant.daily_limit)


def narrow(parent: Scope, grant: Grant) -> Scope | str:
    """The scope after ``grant`` under ``parent``, or what ``grant`` tried to widen."""
    if parent.depth < 1:
        return "the parent grant allows no further delegation"
    if grant.depth >= parent.depth:
        return f"depth {grant.depth} is not below the parent's {parent.depth}"
    if grant.access & ~parent.access:
        return f"access bits {grant.access:#x} are not a subset of {parent.access:#x}"
    if grant.not_before < parent.not_before or grant.expires > parent.expires:
        return "window is not inside the parent's"
    vehicles = parent.vehicles
    if grant.vehicles is not None:
        if not grant.vehicles <= parent.vehicles:
            return "names a vehicle outside the parent's"
        vehicles = grant.vehicles
    places = parent.places
    if grant.places is not None:
        if parent.places is not None and not all(
            parent.allows_place(place) for place in grant.places
        ):
            return "a place is not inside any of the parent's"
        places = grant.places
    limit = parent.daily_limit
    if grant.daily_limit is not None:
        if limit is not None and grant.daily_limit > limit:
            return f"daily limit {grant.daily_limit} exceeds the parent's {limit}"
        limit = grant.daily_limit
    return Scope(vehicles=vehicles, access=grant.access, not_before=grant.not_before,
                 expires=grant.expires, depth=grant.depth, places=places, daily_limit=limit)


# -- encoding -----------------------------------------------------------------

def encode_grant(grant: Grant) -> bytes:
    """The deterministic payload of ``grant``."""
    members: dict[int, Any] = {
        GRANTEE: grant.grantee.raw,
        NAME: grant.grantee_name,
        ACCESS: grant.access,
        NBF: grant.not_before,
        EXP: grant.expires,
        DEPTH: grant.depth,
    }
    if grant.vehicles is not None:
        members[VEHICLES] = sorted(grant.vehicles)
    if grant.places is not None:
        members[PLACES] = [[p.lat_e7, p.lon_e7, p.radius_m] for p in grant.places]
    if grant.daily_limit is not None:
        members[DAILY_LIMIT] = grant.daily_limit
    return cbor.encode(members)


def _uint(value: Any, what: str, upper: int) -> int:
    if type(value) is not int or not (0 <= value < upper):
        raise DecodeError(f"{what} must be an unsigned integer below {upper}")
    return value


def _key(raw: Any) -> VerificationKey:
    if type(raw) is not bytes or len(raw) not in (32, 64):
        raise DecodeError("grantee key must be 32 (Ed25519) or 64 (P-256) raw bytes")
    algorithm = Algorithm.EDDSA if len(raw) == 32 else Algorithm.ES256
    try:
        return VerificationKey(algorithm, raw)
    except (InvalidRequest, ValueError) as exc:
        raise DecodeError(f"grantee key is not a valid public key: {exc}") from None


def _vehicles(value: Any) -> frozenset[bytes]:
    if type(value) is not list or not (1 <= len(value) <= MAX_VEHICLES):
        raise DecodeError(f"vehicles must be a list of 1 to {MAX_VEHICLES} tags")
    previous = b""
    for tag in value:
        if type(tag) is not bytes or len(tag) != VEHICLE_TAG_LENGTH:
            raise DecodeError(f"a vehicle tag is {VEHICLE_TAG_LENGTH} bytes")
        # One encoding per set: sorted, no duplicates.
        if tag <= previous:
            raise DecodeError("vehicle tags must be sorted and distinct")
        previous = tag
    return frozenset(value)


def _places(value: Any) -> tuple[Geofence, ...]:
    if type(value) is not list or not (1 <= len(value) <= MAX_PLACES):
        raise DecodeError(f"places must be a list of 1 to {MAX_PLACES} geofences")
    out = []
    for g in value:
        if type(g) is not list or len(g) != 3 or any(type(v) is not int for v in g):
            raise DecodeError("a place is [lat_e7, lon_e7, radius_m]")
        try:
            out.append(Geofence(lat_e7=g[0], lon_e7=g[1], radius_m=g[2]))
        except InvalidRequest as exc:
            raise DecodeError(f"place out of range: {exc}") from None
    return tuple(out)


#: Every payload label, encoded, in the order deterministic CBOR puts them.
_LABELS = tuple(cbor.encode(label) for label in range(GRANTEE, DAILY_LIMIT + 1))


def decode_grant(payload: bytes) -> Grant:
    """Strictly decode a grant payload; raise :class:`DecodeError` on anything off-profile.

    Refuses anything but ``bytes`` of at most :data:`MAX_GRANT_BYTES` before
    parsing: a payload is shorter than the signed grant that carries it.
    """
    if type(payload) is not bytes or len(payload) > MAX_GRANT_BYTES:
        cbor.refuse_oversized(payload, MAX_GRANT_BYTES, "grant payload")
    values = cbor.decode_map(
        payload, _LABELS, not_a_map="grant must be a map", unknown="grant has unknown members {}"
    )
    grantee, name, access, nbf, exp, depth, vehicles, places, limit = values
    if None in (grantee, name, access, nbf, exp, depth):
        missing = [label for label, value in enumerate(values[:DEPTH], GRANTEE) if value is None]
        raise DecodeError(f"grant lacks {missing}")
    if type(name) is not str:
        raise DecodeError("grantee name must be text")
    try:
        check_name(name, "grantee name")
    except InvalidRequest as exc:
        raise DecodeError(str(exc)) from None
    access = _uint(access, "access", 0x10)
    if not access & ACTION_MASK or not access & PURPOSE_MASK:
        raise DecodeError("access must allow at least one action and one purpose")
    nbf = _uint(nbf, "nbf", MAX_TIME)
    exp = _uint(exp, "exp", MAX_TIME)
    if exp <= nbf:
        raise DecodeError("grant window is empty or inverted")
    if limit is not None:
        limit = _uint(limit, "daily limit", MAX_DAILY_LIMIT + 1)
        if limit == 0:
            raise DecodeError("a daily limit of 0 is a revocation, not a grant")
    return Grant(
        grantee=_key(grantee),
        grantee_name=name,
        access=access,
        not_before=nbf,
        expires=exp,
        depth=_uint(depth, "depth", MAX_DEPTH + 1),
        vehicles=None if vehicles is None else _vehicles(vehicles),
        places=None if places is None else _places(places),
        daily_limit=limit,
    )


# -- minting (the carmaker's and the delegators' side) -------------------------

def make_grant(
    *,
    grantee: VerificationKey,
    grantee_name: str,
    access: int,
    not_before: int | datetime,
    expires: int | datetime,
    depth: int = 0,
    vehicle_ids: Sequence[str] | None = None,
    places: Sequence[Geofence] | None = None,
    daily_limit: int | None = None,
) -> Grant:
    """Validate a grant request and build its (unsigned) content."""
    if not isinstance(grantee, VerificationKey):
        raise InvalidRequest("grantee must be a trunkkey.VerificationKey")
    check_name(grantee_name, "grantee_name")
    if type(access) is not int or access & ~(ACTION_MASK | PURPOSE_MASK):
        raise InvalidRequest("access must be action and purpose bits (see access_mask)")
    if not access & ACTION_MASK or not access & PURPOSE_MASK:
        raise InvalidRequest("a grant allows at least one action and one purpose")
    nbf, exp = to_unix(not_before), to_unix(expires)
    if not (0 <= nbf < exp < MAX_TIME):
        raise InvalidRequest("window is empty, inverted or out of range")
    if type(depth) is not int or not (0 <= depth <= MAX_DEPTH):
        raise InvalidRequest(f"depth must be 0 to {MAX_DEPTH}")
    vehicles = None
    if vehicle_ids is not None:
        if not (1 <= len(vehicle_ids) <= MAX_VEHICLES):
            raise InvalidRequest(f"name 1 to {MAX_VEHICLES} vehicles")
        vehicles = frozenset(vehicle_tag(v) for v in vehicle_ids)
    fences = None
    if places is not None:
        if not (1 <= len(places) <= MAX_PLACES) or not all(
            isinstance(p, Geofence) for p in places
        ):
            raise InvalidRequest(f"places must be 1 to {MAX_PLACES} trunkkey.Geofence")
        fences = tuple(places)
    if daily_limit is not None and (
        type(daily_limit) is not int or not (1 <= daily_limit <= MAX_DAILY_LIMIT)
    ):
        raise InvalidRequest(f"daily_limit must be 1 to {MAX_DAILY_LIMIT}")
    return Grant(
        grantee=grantee, grantee_name=grantee_name, access=access, not_before=nbf,
        expires=exp, depth=depth, vehicles=vehicles, places=fences, daily_limit=daily_limit,
    )


def sign_root_grant(root_key: SigningBackend, grant: Grant) -> bytes:
    """The carmaker root signs the first grant of a chain (its ``kid`` in the header)."""
    signing_backend(root_key, "root_key")
    if root_scope(grant).__class__ is str:
        raise InvalidRequest("the first grant of a chain must name its vehicles")
    return sign1(root_key, encode_grant(grant), typ=Typ.GRANT, include_kid=True)


def sign_delegation(delegator_key: SigningBackend, parent: Scope, grant: Grant) -> bytes:
    """A grantee delegates ``grant`` under ``parent``; refused here if it would widen.

    The car checks the same rule again; refusing at minting time only turns a
    failed delivery into an error the delegator sees at once.
    """
    signing_backend(delegator_key, "delegator_key")
    narrowed = narrow(parent, grant)
    if isinstance(narrowed, str):
        raise InvalidRequest(f"delegation would widen its parent: {narrowed}")
    return sign1(delegator_key, encode_grant(grant), typ=Typ.GRANT, include_kid=False)


def encode_chain(links: Sequence[bytes]) -> bytes:
    """A chain as presented to the car: root grant first, each link a grant or its digest.

    A 32-byte link names a grant by :func:`grant_digest`; the car accepts it
    only if it already holds that grant, verified, in its cache.
    """
    if not links or not all(type(link) is bytes for link in links):
        raise InvalidRequest("a chain is a non-empty sequence of grant bytes")
    return cbor.encode(list(links))
