"""Unlinkable presence: how a waiting car is found without naming itself.

A courier must find the right car among the parked ones, over BLE, without
the car broadcasting anything derived from its VIN (published designs have
advertised a name derived from it). Here the car and the backend share a
per-car secret, provisioned at enrolment; the car advertises a 16-byte
identifier that is a keyed BLAKE2b of the current *period* (every
:data:`DEFAULT_PERIOD` seconds, five minutes) under that secret:

    presence_id = BLAKE2b-128(key = secret, person = "trunkkey presence",
                              data = "v1" || period number, 8 bytes big-endian)

* The car advertises only while it expects a delivery (:meth:`PresenceBeacon.expect`),
  and only inside the window it was told.
* The backend gives the courier the identifiers of *that window* only
  (:func:`presence_ids`), never the secret: the list is useless on any other
  day, and the courier cannot compute tomorrow's.
* Without the secret, identifiers of two periods are independent random
  strings: an observer who records the car's advertisement on two days, or
  at two periods of one day, cannot link them.

What it does not hide: that *some* car near here is waiting (an
advertisement exists), the radio fingerprint of the transmitter, and the
car's position to anyone who sees it. A courier who was given the window's
identifiers can recognise the car during that window — which is the point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest

DEFAULT_PERIOD = 300
PRESENCE_ID_BYTES = 16
SECRET_BYTES = 32
_PERSON = b"trunkkey presenc"  # BLAKE2b personalisation: exactly 16 bytes


class PresenceSecret:
    """The per-car secret the car and the backend share; never in ``repr``, never pickled."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if type(secret) is not bytes or len(secret) != SECRET_BYTES:
            raise InvalidRequest(f"a presence secret is {SECRET_BYTES} bytes")
        self._secret = secret

    @classmethod
    def generate(cls) -> PresenceSecret:
        import secrets  # noqa: PLC0415 -- its hmac import loads OpenSSL; a car's wake never needs it

        return cls(secrets.token_bytes(SECRET_BYTES))

    def id_for_period(self, period: int) -> bytes:
        """The identifier advertised during period number ``period``."""
        import nacl.bindings  # noqa: PLC0415

        if type(period) is not int or period < 0:
            raise InvalidRequest("period must be a non-negative int")
        return bytes(nacl.bindings.crypto_generichash_blake2b_salt_personal(
            b"v1" + period.to_bytes(8, "big"), digest_size=PRESENCE_ID_BYTES,
            key=self._secret, person=_PERSON,
        ))

    def __repr__(self) -> str:
        return "PresenceSecret(…)"

    def __reduce__(self) -> Any:
        raise TypeError("a presence secret is not pickled")


def _periods(not_before: int, expires: int, period: int) -> Iterator[int]:
    if type(period) is not int or period <= 0:
        raise InvalidRequest("period must be a positive number of seconds")
    if type(not_before) is not int or type(expires) is not int or expires <= not_before:
        raise InvalidRequest("a window needs int times with expires > not_before")
    return iter(range(not_before // period, (expires - 1) // period + 1))


@dataclass(frozen=True, slots=True)
class PresenceWindow:
    """What the backend hands the courier for one delivery: the window's identifiers."""

    not_before: int
    expires: int
    period: int
    #: One identifier per period that overlaps ``[not_before, expires)``, in order.
    ids: tuple[bytes, ...]

    def matches(self, advertised: bytes, at: int) -> bool:
        """Whether ``advertised``, seen at ``at``, is the car this window is for."""
        if not (self.not_before <= at < self.expires):
            return False
        index = at // self.period - self.not_before // self.period
        return 0 <= index < len(self.ids) and self.ids[index] == advertised


def presence_ids(
    secret: PresenceSecret, *, not_before: int, expires: int, period: int = DEFAULT_PERIOD
) -> PresenceWindow:
    """The backend's side: the identifiers the car will advertise in the window, no more."""
    ids = tuple(secret.id_for_period(p) for p in _periods(not_before, expires, period))
    return PresenceWindow(not_before=not_before, expires=expires, period=period, ids=ids)


class PresenceBeacon:
    """The car's side: advertise the current identifier while a delivery is expected."""

    def __init__(self, secret: PresenceSecret, *, period: int = DEFAULT_PERIOD) -> None:
        if not isinstance(secret, PresenceSecret):
            raise InvalidRequest("secret must be a PresenceSecret")
        self._secret = secret
        self._period = period
        self._windows: list[tuple[int, int]] = []

    def expect(self, *, not_before: int, expires: int) -> None:
        """The backend told the car a delivery is due in ``[not_before, expires)``."""
        list(_periods(not_before, expires, self._period))  # the window's own checks
        self._windows.append((not_before, expires))

    def advertisement(self, now: int) -> bytes | None:
        """What the car broadcasts at ``now``: an identifier inside an expected window,
        nothing otherwise (a car that waits for nobody stays silent)."""
        self._windows = [(nb, exp) for nb, exp in self._windows if now < exp]
        if not any(nb <= now < exp for nb, exp in self._windows):
            return None
        return self._secret.id_for_period(now // self._period)

    def __repr__(self) -> str:
        return f"PresenceBeacon({len(self._windows)} windows, period {self._period} s)"
