"""Sequenced events from the vehicle unit to its subscribers.

Every event carries the unit's boot number and a counter that rises by one
per event within a boot, so a subscriber (the backend that sends the
customer's notifications) sees a lost event as a gap — the lesson of the
camera that went quiet while the door was open. :class:`GapDetector` does
that bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ..reasons import Reason


class EventKind(StrEnum):
    CHALLENGE_ISSUED = "challenge_issued"
    TOKEN_ACCEPTED = "token_accepted"  # noqa: S105 -- an event name, not a secret
    TRUNK_OPENED = "trunk_opened"
    DOORS_UNLOCKED = "doors_unlocked"
    TRUNK_CLOSED = "trunk_closed"
    DOORS_CLOSED = "doors_closed"
    RELOCKED = "relocked"
    ACCESS_DENIED = "access_denied"
    ACTUATOR_FAILED = "actuator_failed"
    CLOCK_UNTRUSTED = "clock_untrusted"
    CLOCK_SYNCED = "clock_synced"
    RECEIPT_SIGNED = "receipt_signed"
    # Signed updates from the carmaker (trunkkey.consent), by LTE or a courier's handheld.
    REVOCATIONS_APPLIED = "revocations_applied"
    REVOCATIONS_REFUSED = "revocations_refused"
    TRUST_UPDATED = "trust_updated"
    TRUST_UPDATE_REFUSED = "trust_update_refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One thing that happened at the car, in order."""

    vehicle_id: str
    boot: int
    seq: int
    at: int | None  #: trusted time, or None when the clock is untrusted
    kind: EventKind
    token_id: bytes | None = None
    reason: Reason | None = None
    detail: str = ""
    receipt: bytes | None = None

    def describe(self) -> str:
        when = "??????????" if self.at is None else str(self.at)
        parts = [f"#{self.boot}.{self.seq:<3} t={when} {self.kind.value}"]
        if self.token_id is not None:
            parts.append(f"token={self.token_id.hex()[:8]}")
        if self.reason is not None:
            parts.append(f"reason={self.reason.value}")
        if self.detail:
            parts.append(f"({self.detail})")
        return " ".join(parts)


Subscriber = Callable[[Event], None]

#: How many events emitted before the first subscriber are kept for it.
BACKLOG = 256


class EventBus:
    """Numbers events and hands each to every subscriber, in order."""

    def __init__(
        self, *, vehicle_id: str, boot: int, recorder: Subscriber | None = None
    ) -> None:
        """``recorder``: handed every event first, before any subscriber (the
        unit's access log); it is not a subscriber and takes no backlog."""
        self._vehicle = vehicle_id
        self._boot = boot
        self._seq = 0
        self._subscribers: list[Subscriber] = []
        self._recorder = recorder
        self.delivery_failures = 0
        #: Events the recorder failed to keep (a full disk, say).
        self.record_failures = 0
        # Events emitted before anyone listened (a failed lock at boot, say)
        # wait here for the first subscriber, so they are never lost silently.
        self._backlog: list[Event] = []
        self._ever_subscribed = False

    def __repr__(self) -> str:
        return f"EventBus(boot={self._boot}, seq={self._seq}, subscribers={len(self._subscribers)})"

    @property
    def last_seq(self) -> int:
        return self._seq

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; return a function that removes it.

        The first subscriber is first handed, in order, the events emitted
        before anyone subscribed (at most :data:`BACKLOG` of them).
        """
        self._subscribers.append(subscriber)
        self._ever_subscribed = True
        backlog, self._backlog = self._backlog, []
        for event in backlog:
            self._deliver(subscriber, event)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(
        self, kind: EventKind, *, at: int | None, token_id: bytes | None = None,
        reason: Reason | None = None, detail: str = "", receipt: bytes | None = None,
    ) -> Event:
        self._seq += 1
        event = Event(
            vehicle_id=self._vehicle, boot=self._boot, seq=self._seq, at=at, kind=kind,
            token_id=token_id, reason=reason, detail=detail, receipt=receipt,
        )
        if self._recorder is not None:
            try:
                self._recorder(event)
            except Exception:  # noqa: BLE001 -- a log that cannot write must not stop a relock
                self.record_failures += 1
        if not self._ever_subscribed and len(self._backlog) < BACKLOG:
            self._backlog.append(event)
        for subscriber in list(self._subscribers):
            self._deliver(subscriber, event)
        return event

    def _deliver(self, subscriber: Subscriber, event: Event) -> None:
        try:
            subscriber(event)
        except Exception:  # noqa: BLE001 -- a broken subscriber must never stop a relock
            # The sequence number is spent anyway: the subscriber sees a gap.
            self.delivery_failures += 1


class GapDetector:
    """A subscriber that records events and notices missing sequence numbers."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.gaps: list[tuple[int, int, int]] = []  #: (boot, expected seq, got seq)
        self._last: dict[str, tuple[int, int]] = {}

    def __call__(self, event: Event) -> None:
        last = self._last.get(event.vehicle_id)
        if last is not None:
            boot, seq = last
            expected = seq + 1 if event.boot == boot else 1
            if event.boot < boot or event.seq != expected:
                self.gaps.append((event.boot, expected, event.seq))
        self._last[event.vehicle_id] = (event.boot, event.seq)
        self.events.append(event)

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]
