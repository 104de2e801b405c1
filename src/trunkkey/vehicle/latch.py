"""The car's locks in the unit's hands: one opening at a time, and its relock.

An opening ends when the trunk or doors report closed, when the relock
timeout passes, or at once when the clock stops being trustworthy; every
relock is answered with a receipt signed by the vehicle key. A relock that
fails is retried on the next tick: the opening stays until the car is locked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from ..claims import Action, TokenClaims
from ..parcels import ParcelRecord
from ..signing import SigningBackend
from .accesslog import AccessLog
from .events import EventBus, EventKind
from .receipt import Receipt, sign_receipt
from .state import Opening
from .timekeeping import TimeKeeper


class Actuator(Protocol):
    """The car's body controller, as far as trunkkey may drive it."""

    def open_trunk(self) -> None: ...

    def unlock_doors(self) -> None: ...

    def lock_all(self) -> None: ...


class Latch:
    """Drives the :class:`~trunkkey.vehicle.Actuator` for openings the unit allowed."""

    def __init__(
        self, *, actuator: Actuator, time: TimeKeeper, events: EventBus, vehicle_id: str,
        vehicle_key: SigningBackend, relock_timeout: int, log: AccessLog,
    ) -> None:
        self._actuator = actuator
        self._time = time
        self._events = events
        self._vehicle = vehicle_id
        self._key = vehicle_key
        self._relock_timeout = relock_timeout
        self.opening: Opening | None = None
        #: The relock deadline on the raw clock reading: measured on the floored
        #: time alone, a clock set back within the skew would keep the trunk
        #: open that much longer (as for a challenge's lifetime).
        self._relock_reading = 0
        #: The raw reading at the opening: a clock that goes back below it
        #: during an opening relocks at once, rather than stretching the
        #: timeout by the step (within the skew the trusted floor would not
        #: notice it).
        self._opened_reading = 0
        self.receipts: list[bytes] = []
        self._log = log
        #: The access-log index of the opening's entry, proven in its receipt.
        self._entry: int | None = None
        #: Locking everything at boot raised, and no lock has succeeded since.
        self.boot_lock_failed = False

    def lock_at_boot(self) -> None:
        """Lock everything, whatever the car was doing when the last unit died.

        If that raises, :meth:`expire` tries again, as for a relock, until a
        lock succeeds: a trunk left open by a crash must not stay unlatched
        because the body controller refused once.
        """
        try:
            self._actuator.lock_all()
        except Exception:  # noqa: BLE001 -- nothing was opened by this unit yet
            self.boot_lock_failed = True
            # Perhaps nobody has subscribed yet: the bus keeps it for the first subscriber.
            self._events.emit(EventKind.ACTUATOR_FAILED, at=None, detail="lock at boot failed")
            return
        self.boot_lock_failed = False

    def open(
        self, wanted: Action, claims: TokenClaims, now: int, entry: int | None,
        parcels: ParcelRecord | None = None,
    ) -> bool:
        """Actuate for an allowed token; ``False`` (car locked, token spent) if that fails.

        ``entry``: the index of the opening's (already durable) log entry;
        ``parcels``: which of the order's parcels were scanned, for the receipt.
        """
        try:
            if wanted is Action.TRUNK:
                self._actuator.open_trunk()
            else:
                self._actuator.unlock_doors()
        except Exception as exc:  # noqa: BLE001 -- any actuator fault leaves the car locked
            self._lock_quietly()
            self._events.emit(
                EventKind.ACTUATOR_FAILED, at=now, token_id=claims.token_id,
                detail=f"{type(exc).__name__}; token stays spent, car stays locked",
            )
            return False
        self._entry = self._log.pinned = entry
        self._opened_reading = self._time.reading()
        self._relock_reading = self._opened_reading + self._relock_timeout
        self.opening = Opening(
            token_id=claims.token_id, action=wanted, purpose=claims.purpose, opened_at=now,
            relock_deadline=now + self._relock_timeout, order_ref=claims.order_ref,
            parcels=parcels,
        )
        kind = EventKind.TRUNK_OPENED if wanted is Action.TRUNK else EventKind.DOORS_UNLOCKED
        self._events.emit(kind, at=now, token_id=claims.token_id)
        return True

    def closed(self, action: Action, kind: EventKind, now: Callable[[], int | None]) -> bool:
        """The trunk or doors report closed: relock. ``False`` if that was not open."""
        opening = self.opening
        if opening is None or opening.action is not action:
            return False
        when = now()
        at = self._time.floor if when is None else when
        # Best effort: the report should not run ahead of the stored floor,
        # but relocking never waits for a store that refuses.
        self._time.checkpoint()
        self._events.emit(kind, at=at, token_id=opening.token_id)
        self._relock(at, "closed" if when is not None else "clock_untrusted", closed_at=at)
        return True

    def expire(self, now: int | None) -> None:
        """Relock after the timeout, or at once if the clock cannot be trusted."""
        opening = self.opening
        if opening is None:
            if self.boot_lock_failed:
                self.lock_at_boot()
            return
        reading = self._time.reading()
        if now is None:
            self._relock(self._time.floor, "clock_untrusted", closed_at=None)
        elif reading < self._opened_reading:
            self._relock(now, "clock_untrusted", closed_at=None)
        elif now >= opening.relock_deadline or reading >= self._relock_reading:
            self._relock(now, "timeout", closed_at=None)

    def _relock(self, at: int, cause: str, *, closed_at: int | None) -> None:
        opening = self.opening
        if opening is None:
            return
        self._time.checkpoint()  # best effort, as for closing
        try:
            self._actuator.lock_all()
        except Exception as exc:  # noqa: BLE001 -- retried on the next tick
            self._events.emit(
                EventKind.ACTUATOR_FAILED, at=at, token_id=opening.token_id,
                detail=f"relock failed ({type(exc).__name__}); retrying",
            )
            return
        self.opening = None
        self.boot_lock_failed = False  # the car is locked now, whatever failed at boot
        self._events.emit(EventKind.RELOCKED, at=at, token_id=opening.token_id, detail=cause)
        entry, self._entry, self._log.pinned = self._entry, None, None
        evidence = None
        if entry is not None:
            # The relock stands whatever happens here; a receipt without
            # evidence tells the retailer the car's log could not be read.
            with contextlib.suppress(Exception):
                evidence = self._log.evidence(entry)
        receipt = sign_receipt(
            self._key,
            Receipt(
                vehicle_id=self._vehicle, token_id=opening.token_id, action=opening.action,
                purpose=opening.purpose, opened_at=opening.opened_at, closed_at=closed_at,
                relocked_at=max(at, opening.opened_at), relock_cause=cause,
                order_ref=opening.order_ref, parcels=opening.parcels,
                log=evidence,
            ),
        )
        self.receipts.append(receipt)
        self._events.emit(
            EventKind.RECEIPT_SIGNED, at=at, token_id=opening.token_id, receipt=receipt
        )

    def _lock_quietly(self) -> None:
        # The open never happened; a failing lock here leaves nothing to undo.
        with contextlib.suppress(Exception):
            self._actuator.lock_all()
