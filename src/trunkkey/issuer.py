"""Minting: the retailer's (or carrier's) side."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from .claims import (
    MAX_ORDER_BYTES,
    TOKEN_ID_LENGTH,
    Action,
    Purpose,
    TokenClaims,
    check_name,
    encode_claims,
)
from .clock import Clock, SystemClock, to_unix
from .cose import Typ, sign1
from .errors import InvalidRequest
from .geo import Geofence
from .keys import SigningKey, VerificationKey

#: Longest window an issuer will mint by default (and a verifier accept).
DEFAULT_MAX_LIFETIME = 24 * 3600


class Issuer:
    """Mints tokens under one signing key and issuer name.

    The clock and the token-id source are injected; the id source exists only
    so known-answer tests can fix ids, and must otherwise stay the CSPRNG.
    """

    def __init__(
        self,
        signing_key: SigningKey,
        issuer: str,
        *,
        clock: Clock | None = None,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        _token_ids: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if not isinstance(signing_key, SigningKey):
            raise InvalidRequest("signing_key must be a trunkkey.SigningKey")
        if type(max_lifetime) is not int or max_lifetime <= 0:
            raise InvalidRequest("max_lifetime must be a positive number of seconds")
        self._key = signing_key
        self._issuer = check_name(issuer, "issuer")
        self._clock: Clock = clock if clock is not None else SystemClock()
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
    ) -> TokenClaims:
        """Validate a request and build its claims (with a fresh token id)."""
        check_name(vehicle_id, "vehicle_id")
        try:
            action = Action(action)
        except ValueError:
            raise InvalidRequest(
                f"unknown action {action!r}: use 'trunk' or 'unlock-relock'"
            ) from None
        try:
            purpose = Purpose(purpose)
        except ValueError:
            raise InvalidRequest(
                f"unknown purpose {purpose!r}: use 'delivery' or 'return-pickup'"
            ) from None
        nbf, exp = to_unix(not_before), to_unix(expires)
        now = self._clock.now()
        if exp <= nbf:
            raise InvalidRequest("window is empty or inverted: expires must be after not_before")
        if exp - nbf > self._max_lifetime:
            raise InvalidRequest(
                f"window of {exp - nbf} s exceeds the maximum of {self._max_lifetime} s"
            )
        if exp <= now:
            raise InvalidRequest("window has already ended")
        if nbf < 0:
            raise InvalidRequest("not_before must not be before 1970")
        if geofence is not None and not isinstance(geofence, Geofence):
            raise InvalidRequest("geofence must be a trunkkey.Geofence")
        if courier_key is not None and not isinstance(courier_key, VerificationKey):
            raise InvalidRequest("courier_key must be a trunkkey.VerificationKey (public)")
        if order_ref is not None and (
            type(order_ref) is not bytes or not (0 < len(order_ref) <= MAX_ORDER_BYTES)
        ):
            raise InvalidRequest(f"order_ref must be 1 to {MAX_ORDER_BYTES} bytes")
        token_id = self._token_ids(TOKEN_ID_LENGTH)
        if len(token_id) != TOKEN_ID_LENGTH:
            raise InvalidRequest("token id source returned the wrong length")
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
    ) -> bytes:
        """Mint a signed token for one vehicle, one action and one window; return its bytes."""
        claims = self.claims_for(
            vehicle_id=vehicle_id,
            action=action,
            not_before=not_before,
            expires=expires,
            purpose=purpose,
            geofence=geofence,
            courier_key=courier_key,
            order_ref=order_ref,
        )
        return self.sign_claims(claims)

    def sign_claims(self, claims: TokenClaims) -> bytes:
        """Sign already-validated claims. Prefer :meth:`mint`."""
        if claims.issuer != self._issuer:
            raise InvalidRequest("claims name another issuer")
        return sign1(self._key, encode_claims(claims), typ=Typ.TOKEN)
