"""The replay ledger protocol: what makes a token single-use.

Everything a single opening depends on is decided inside one atomic step of
the ledger, :meth:`Ledger.spend`: whether the token was spent before, whether
an owner's daily limit still has room, and whether the token predates a
ledger that was started afresh after a loss. Checked anywhere else, a rule
races with itself (two presentations both see room under a limit of one);
checked here, no interleaving of presentations can break it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from ..errors import InvalidRequest

#: Bounds on a ledger key, so no backend ever stores unbounded input.
MAX_VEHICLE_ID_BYTES = 64
MAX_TOKEN_ID_BYTES = 64
#: A daily limit names its grant by a SHA-256 identity digest.
LIMIT_KEY_BYTES = 32
#: At most one limit per grant of the longest consent chain.
MAX_LIMITS = 8
#: Days are UTC days of the decision time: ``at // DAY_SECONDS``.
DAY_SECONDS = 86_400
#: Times are Unix seconds below this (twice a claim's bound: a keep-until is
#: a token's expiry plus the verifier's skew allowance).
_MAX_TIME = 2**41


@dataclass(frozen=True, slots=True)
class DailyLimit:
    """At most ``limit`` openings per UTC day, per vehicle, under grant ``grant``.

    ``grant`` is the grant's identity digest (the SHA-256 of what was signed,
    so no re-encoding of its signature names a different counter).
    """

    grant: bytes
    limit: int

    def __post_init__(self) -> None:
        if type(self.grant) is not bytes or len(self.grant) != LIMIT_KEY_BYTES:
            raise InvalidRequest(
                f"a daily limit names its grant by a {LIMIT_KEY_BYTES}-byte digest"
            )
        if type(self.limit) is not int or not (1 <= self.limit <= 1_000_000):
            raise InvalidRequest("a daily limit is an int from 1 to 1,000,000")


class SpendOutcome(Enum):
    """What one atomic :meth:`Ledger.spend` decided. Only ``FIRST_USE`` opens."""

    #: Recorded now: this call spent the token (and counted it against every limit).
    FIRST_USE = "first_use"
    #: The token was spent before; nothing was written.
    ALREADY_USED = "already_used"
    #: A daily limit had no room left today; nothing was written.
    LIMIT_REACHED = "limit_reached"
    #: The ledger was started afresh after a loss, after this token was issued:
    #: it cannot know whether the token was spent, so it refuses; nothing was written.
    ISSUED_BEFORE_LEDGER = "issued_before_ledger"


@runtime_checkable
class Ledger(Protocol):
    """A set of spent (vehicle, token id) pairs with a keep-until time.

    :meth:`spend` is the way in, and it is one atomic check-and-set: there is
    deliberately no ``contains`` to build a has-then-add race from.
    """

    def spend(
        self,
        vehicle_id: str,
        token_id: bytes,
        keep_until: int,
        *,
        issued_at: int,
        at: int,
        limits: tuple[DailyLimit, ...] = (),
    ) -> SpendOutcome:
        """In one atomic step: refuse, or record the token as spent and count it.

        In this order, and with nothing written unless the answer is
        ``FIRST_USE``: a ledger started afresh after a loss refuses a token
        issued (``issued_at``) before it began (``ISSUED_BEFORE_LEDGER``); a
        token already spent is ``ALREADY_USED``; if any limit's counter for
        (vehicle, grant, UTC day of ``at``) has reached its limit,
        ``LIMIT_REACHED``; otherwise the token is recorded until
        ``keep_until``, every limit's counter goes up by one, and the answer is
        ``FIRST_USE``, durable to the ledger's stated guarantee before it is
        returned. Raise (anything) if the ledger cannot tell for sure: the
        verifier then denies with ``ledger_unavailable``.
        """
        ...

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        """Record the token as spent, with no limits: ``True`` on first use.

        A shorthand kept for tools and tests. A ledger started afresh after a
        loss raises here, since it cannot tell a token's issue time; the
        verifier always calls :meth:`spend`.
        """
        ...

    def prune(self, now: int, *, limit: int | None = None) -> int:
        """Delete entries whose ``keep_until`` is before ``now``; return how many.

        Daily-limit counters of days before yesterday (UTC, by ``now``) go too.
        ``limit`` bounds the work of one call (a batch); ``None`` prunes all.
        """
        ...

    def count(self) -> int:
        """How many spent tokens are held (expired but unpruned ones included)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncLedger(Protocol):
    """:class:`Ledger` for asyncio: the same calls, each awaited.

    :meth:`spend` keeps every promise of :meth:`Ledger.spend` (one atomic
    step, nothing written on a refusal, raise when unsure). Used by
    :class:`trunkkey.AsyncVerifier`; ``AsyncRedisLedger``,
    ``AsyncRedisClusterLedger`` and ``AsyncPostgresLedger`` implement it.
    """

    async def spend(
        self,
        vehicle_id: str,
        token_id: bytes,
        keep_until: int,
        *,
        issued_at: int,
        at: int,
        limits: tuple[DailyLimit, ...] = (),
    ) -> SpendOutcome: ...

    async def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool: ...

    async def prune(self, now: int, *, limit: int | None = None) -> int: ...

    async def count(self) -> int: ...

    async def close(self) -> None: ...


def check_key(vehicle_id: str, token_id: bytes) -> bytes:
    """Validate a ledger key; return the vehicle id as UTF-8 bytes."""
    if type(vehicle_id) is not str or type(token_id) is not bytes:
        raise InvalidRequest("ledger keys are (str vehicle id, bytes token id)")
    raw = vehicle_id.encode("utf-8")
    if not (0 < len(raw) <= MAX_VEHICLE_ID_BYTES) or not (
        0 < len(token_id) <= MAX_TOKEN_ID_BYTES
    ):
        raise InvalidRequest("ledger key out of bounds")
    return raw


#: No token expires after this second (``claims.MAX_TIME``, year 36812): a
#: later "now" for :meth:`Ledger.prune` is a mistake — milliseconds for seconds —
#: that would forget every spent token still live.
_MAX_PRUNE_TIME = 2**40


def check_prune(now: int, limit: int | None) -> int:
    """Validate a :meth:`Ledger.prune` request and return ``now``; every ledger calls this first.

    Pruning deletes the only record that a token was spent, so a ``now`` that
    is not Unix seconds is refused rather than believed.
    """
    if type(now) is not int or not (0 <= now < _MAX_PRUNE_TIME):
        raise InvalidRequest("prune's now must be an int of Unix seconds")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise InvalidRequest("limit must be a non-negative int or None")
    return now


def check_spend(  # noqa: PLR0917 -- mirrors Ledger.spend, argument for argument
    vehicle_id: str,
    token_id: bytes,
    keep_until: int,
    issued_at: int,
    at: int,
    limits: tuple[DailyLimit, ...],
) -> tuple[bytes, int]:
    """Validate a :meth:`Ledger.spend` request; the vehicle as UTF-8 and the UTC day.

    Every ledger calls this first, so every ledger refuses the same requests.
    """
    vehicle = check_key(vehicle_id, token_id)
    for name, value in (("keep_until", keep_until), ("issued_at", issued_at), ("at", at)):
        if type(value) is not int or not (0 <= value < _MAX_TIME):
            raise InvalidRequest(f"{name} must be an int of Unix seconds")
    if type(limits) is not tuple or len(limits) > MAX_LIMITS:
        raise InvalidRequest(f"limits must be a tuple of at most {MAX_LIMITS} DailyLimit")
    seen: set[bytes] = set()
    for item in limits:
        if type(item) is not DailyLimit:
            raise InvalidRequest("limits must hold trunkkey.ledger.DailyLimit values")
        if item.grant in seen:
            raise InvalidRequest("a grant's daily limit is given twice")
        seen.add(item.grant)
    return vehicle, at // DAY_SECONDS
