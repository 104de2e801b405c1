"""What a vehicle unit is set up with and what it answers: its config, state and outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NoReturn

from ..claims import Action, Purpose
from ..errors import InvalidRequest
from ..geo import Location, distance_m
from ..parcels import ParcelRecord
from ..reasons import Reason
from ..verifier import Decision, VerifierPolicy
from .challenge import DEFAULT_CHALLENGE_TTL

DEFAULT_RELOCK_TIMEOUT = 120
#: How far beyond the geofence's edge the car may read before the unit says
#: "the car was moved" rather than "just outside": a few GPS errors.
DEFAULT_MOVED_MARGIN_M = 250


class UnitState(StrEnum):
    LOCKED = "locked"
    TRUNK_OPEN = "trunk_open"
    DOORS_UNLOCKED = "doors_unlocked"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitConfig:
    relock_timeout: int = DEFAULT_RELOCK_TIMEOUT
    challenge_ttl: int = DEFAULT_CHALLENGE_TTL
    moved_margin_m: int = DEFAULT_MOVED_MARGIN_M
    policy: VerifierPolicy = field(default_factory=VerifierPolicy)

    def __post_init__(self) -> None:
        if type(self.relock_timeout) is not int or not (5 <= self.relock_timeout <= 600):
            raise InvalidRequest("relock_timeout must be 5 to 600 seconds")
        if type(self.moved_margin_m) is not int or self.moved_margin_m < 0:
            raise InvalidRequest("moved_margin_m must be a non-negative int")
        if not isinstance(self.policy, VerifierPolicy):
            raise InvalidRequest("policy must be a trunkkey.VerifierPolicy")


@dataclass(frozen=True, slots=True, kw_only=True)
class Opening:
    """The opening in progress."""

    token_id: bytes
    action: Action
    purpose: Purpose
    opened_at: int
    relock_deadline: int
    order_ref: bytes | None = None
    #: Which of the order's parcels were scanned (a token bound to parcels).
    parcels: ParcelRecord | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What the unit did with one presentation. Test ``.allowed``, not the object."""

    reason: Reason
    detail: str
    token_id: bytes | None = None
    decision: Decision | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is Reason.ALLOWED

    def __bool__(self) -> NoReturn:
        raise TypeError("test outcome.allowed, not the outcome itself")


def refine(
    decision: Decision, location: Location | None, moved_margin_m: int
) -> tuple[Reason, str]:
    """Tell "the car was moved" from "the car reads just outside the fence"."""
    claims = decision.claims
    if (
        decision.reason is Reason.OUTSIDE_GEOFENCE
        and claims is not None
        and claims.geofence is not None
        and location is not None
    ):
        fence = claims.geofence
        away = distance_m(fence.centre, location)
        if away > fence.radius_m + moved_margin_m:
            return (
                Reason.CAR_MOVED,
                f"car is {away:.0f} m from the place the owner confirmed "
                f"(radius {fence.radius_m} m)",
            )
    return decision.reason, decision.detail
