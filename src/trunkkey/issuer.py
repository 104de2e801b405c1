"""Minting: the retailer's (or carrier's) side."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import datetime

from .claims import (
    MAX_ORDER_BYTES,
    MAX_TIME,
    TOKEN_ID_LENGTH,
    Action,
    Purpose,
    TokenClaims,
    access_bits,
    check_name,
    encode_claim_fields,
    encode_claims,
)
from .clock import Clock, SystemClock, check_clock, to_unix
from .cose import Typ, sign1
from .errors import InvalidRequest
from .geo import Geofence
from .keys import VerificationKey
from .parcels import PARCEL_SALT_BYTES, Parcels
from .signing import SigningBackend, signing_backend

#: Longest window an issuer will mint by default (and a verifier accept).
DEFAULT_MAX_LIFETIME = 24 * 3600


class Issuer:
    """Mints tokens under one signing key and issuer name.

    The clock and the token-id source are injected; the id source exists only
    so known-answer tests can fix ids, and must otherwise stay the CSPRNG.
    """

    def __init__(
        self,
        signing_key: SigningBackend,
        issuer: str,
        *,
        clock: Clock | None = None,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        _token_ids: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._key = signing_backend(signing_key, "signing_key")
        if type(max_lifetime) is not int or max_lifetime <= 0:
            raise InvalidRequest("max_lifetime must be a positive number of seconds")
        self._issuer = check_name(issuer, "issuer")
        self._clock: Clock = SystemClock() if clock is None else check_clock(clock, "clock")
        self._max_lifetime = max_lifetime
        self._token_ids = _token_ids

    @property
    def name(self) -> str:
        return self._issuer

    @property
    def public_key(self) -> VerificationKey:
        return self._key.public_key

    def __repr__(self) -> str:
        return f"Issuer({self._issuer!r}, {self._key!r})"

    def _validate(  # noqa: PLR0917 -- private; mirrors mint's keywords in order
        self,
        vehicle_id: str,
        action: Action | str,
        not_before: int | datetime,
        expires: int | datetime,
        purpose: Purpose | str,
        geofence: Geofence | None,
        courier_key: VerificationKey | None,
        order_ref: bytes | None,
    ) -> tuple[Action, Purpose, int, int, int]:
        check_name(vehicle_id, "vehicle_id")
        try:
            action = action if action.__class__ is Action else Action(action)
        except ValueError:
            raise InvalidRequest(
                f"unknown action {action!r}: use 'trunk' or 'unlock-relock'"
            ) from None
        try:
            purpose = purpose if purpose.__class__ is Purpose else Purpose(purpose)
        except ValueError:
            raise InvalidRequest(
                f"unknown purpose {purpose!r}: use 'delivery' or 'return-pickup'"
            ) from None
        nbf = not_before if type(not_before) is int else to_unix(not_before)
        exp = expires if type(expires) is int else to_unix(expires)
        now = self._clock.now()
        if type(now) is not int or not (0 <= now < MAX_TIME):
            # It becomes iat: a float crashed the encoder, True minted iat = 1.
            raise InvalidRequest(f"the issuer's clock gave {now!r}, not int Unix seconds")
        if exp <= nbf:
            raise InvalidRequest("window is empty or inverted: expires must be after not_before")
        if exp - nbf > self._max_lifetime:
            raise InvalidRequest(
                f"window of {exp - nbf} s exceeds the maximum of {self._max_lifetime} s"
            )
        if exp <= now:
            raise InvalidRequest("window has already ended")
        if nbf < 0 or exp >= MAX_TIME:
            raise InvalidRequest("window must lie between 1970 and the year 36812")
        if geofence is not None and not isinstance(geofence, Geofence):
            raise InvalidRequest("geofence must be a trunkkey.Geofence")
        if courier_key is not None and not isinstance(courier_key, VerificationKey):
            raise InvalidRequest("courier_key must be a trunkkey.VerificationKey (public)")
        if courier_key is not None and courier_key.algorithm.post_quantum:
            # cnf holds an Ed25519 or P-256 key (docs/token-format.md §2): an
            # ML-DSA key makes a claims set past the cap, a token no car opens.
            raise InvalidRequest("courier_key must be an Ed25519 or P-256 key")
        if order_ref is not None and (
            type(order_ref) is not bytes or not (0 < len(order_ref) <= MAX_ORDER_BYTES)
        ):
            raise InvalidRequest(f"order_ref must be 1 to {MAX_ORDER_BYTES} bytes")
        return action, purpose, nbf, exp, now

    def _parcels(
        self, parcels: Iterable[str] | None, courier_key: VerificationKey | None
    ) -> Parcels | None:
        """The order's parcels committed under a fresh salt (from the token-id source,
        drawn after the token id)."""
        if parcels is None:
            return None
        if courier_key is None:
            raise InvalidRequest("parcels need a courier_key: the scan is signed by the device")
        salt = self._token_ids(PARCEL_SALT_BYTES)
        if type(salt) is not bytes or len(salt) != PARCEL_SALT_BYTES:
            raise InvalidRequest("token id source returned the wrong length")
        return Parcels.commit(parcels, salt=salt)

    def _new_token_id(self) -> bytes:
        token_id = self._token_ids(TOKEN_ID_LENGTH)
        if type(token_id) is not bytes or len(token_id) != TOKEN_ID_LENGTH:
            raise InvalidRequest("token id source returned the wrong length")
        return token_id

    def claims_for(
        self,
        *,
        vehicle_id: str,
        action: Action | str,
        not_before: int | datetime,
        expires: int | datetime,
        purpose: Purpose | str = Purpose.DELIVERY,
        geofence: Geofence | None = None,
        courier_key: VerificationKey | None = None,
        order_ref: bytes | None = None,
        parcels: Iterable[str] | None = None,
    ) -> TokenClaims:
        """Validate a request and build its claims (with a fresh token id), unsigned."""
        action, purpose, nbf, exp, now = self._validate(
            vehicle_id, action, not_before, expires, purpose, geofence, courier_key, order_ref
        )
        token_id = self._new_token_id()
        committed = self._parcels(parcels, courier_key)
        return TokenClaims(
            issuer=self._issuer,
            vehicle_id=vehicle_id,
            not_before=nbf,
            expires=exp,
            issued_at=now,
            token_id=token_id,
            action=action,
            purpose=purpose,
            geofence=geofence,
            courier_key=courier_key,
            order_ref=order_ref,
            parcels=committed,
        )

    def mint(
        self,
        *,
        vehicle_id: str,
        action: Action | str,
        not_before: int | datetime,
        expires: int | datetime,
        purpose: Purpose | str = Purpose.DELIVERY,
        geofence: Geofence | None = None,
        courier_key: VerificationKey | None = None,
        order_ref: bytes | None = None,
        parcels: Iterable[str] | None = None,
    ) -> bytes:
        """Mint a signed token for one vehicle, one action and one window; return its bytes.

        ``parcels``: the identifiers of the order's parcels (1 to 16) — for a
        delivery those to put in, for a return pickup those to take out. The
        token carries only salted commitments to them, and the car opens only
        for a courier whose device scanned some of them (``courier_key`` is
        then required).

        Raises :class:`InvalidRequest` for a request that makes no sense: an
        empty or inverted window, one longer than ``max_lifetime``, one already
        over, an empty vehicle id, an unknown action or purpose.
        """
        action, purpose, nbf, exp, now = self._validate(
            vehicle_id, action, not_before, expires, purpose, geofence, courier_key, order_ref
        )
        token_id = self._new_token_id()
        committed = self._parcels(parcels, courier_key)
        payload = encode_claim_fields(
            issuer=self._issuer,
            vehicle_id=vehicle_id,
            expires=exp,
            not_before=nbf,
            issued_at=now,
            token_id=token_id,
            access=access_bits(action, purpose),
            courier_key=courier_key,
            geofence=geofence,
            order_ref=order_ref,
            parcels=committed,
        )
        return sign1(self._key, payload, typ=Typ.TOKEN)

    def sign_claims(self, claims: TokenClaims) -> bytes:
        """Sign already-built claims. Prefer :meth:`mint`, which validates the request."""
        if claims.issuer != self._issuer:
            raise InvalidRequest("claims name another issuer")
        return sign1(self._key, encode_claims(claims), typ=Typ.TOKEN)
