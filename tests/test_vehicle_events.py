"""Events: numbered, in order, delivered to every subscriber, gaps visible."""

from __future__ import annotations

from trunkkey import Reason
from trunkkey.vehicle import EventBus, EventKind, GapDetector


def test_sequence_numbers_rise_by_one_and_reach_every_subscriber() -> None:
    bus = EventBus(vehicle_id="V", boot=1)
    first, second = GapDetector(), GapDetector()
    bus.subscribe(first)
    bus.subscribe(second)
    bus.emit(EventKind.CHALLENGE_ISSUED, at=10)
    bus.emit(EventKind.ACCESS_DENIED, at=11, reason=Reason.EXPIRED, detail="late")
    assert [e.seq for e in first.events] == [1, 2]
    assert first.events == second.events
    assert first.events[1].reason is Reason.EXPIRED
    assert first.gaps == []


def test_a_failing_subscriber_neither_stops_others_nor_hides_the_gap() -> None:
    bus = EventBus(vehicle_id="V", boot=1)
    seen = GapDetector()
    calls = []

    def flaky(event: object) -> None:
        calls.append(event)
        raise RuntimeError("notification service down")

    bus.subscribe(flaky)
    bus.subscribe(seen)
    bus.emit(EventKind.TRUNK_OPENED, at=1)
    assert len(calls) == 1
    assert len(seen.events) == 1
    assert bus.delivery_failures == 1


def test_gap_detector_sees_missing_events_and_new_boots() -> None:
    bus = EventBus(vehicle_id="V", boot=1)
    seen = GapDetector()
    bus.emit(EventKind.CHALLENGE_ISSUED, at=1)  # before anyone listened: not a gap
    unsubscribe = bus.subscribe(seen)
    bus.emit(EventKind.TOKEN_ACCEPTED, at=2)
    unsubscribe()
    bus.emit(EventKind.TRUNK_OPENED, at=2)  # lost on the way
    bus.subscribe(seen)
    bus.emit(EventKind.RELOCKED, at=3)
    assert seen.gaps == [(1, 3, 4)]
    rebooted = EventBus(vehicle_id="V", boot=2)
    rebooted.subscribe(seen)
    rebooted.emit(EventKind.CHALLENGE_ISSUED, at=4)
    assert seen.gaps == [(1, 3, 4)]  # seq 1 of a new boot is no gap


def test_describe_is_readable() -> None:
    bus = EventBus(vehicle_id="V", boot=3)
    event = bus.emit(EventKind.ACCESS_DENIED, at=None, token_id=b"\xab" * 16,
                     reason=Reason.CLOCK_UNTRUSTED)
    text = event.describe()
    assert "#3.1" in text
    assert "clock_untrusted" in text
    assert "abababab" in text


def test_events_before_the_first_subscriber_reach_it_in_order() -> None:
    from trunkkey.vehicle.events import EventBus, EventKind, GapDetector

    bus = EventBus(vehicle_id="VIN-1", boot=1)
    bus.emit(EventKind.ACTUATOR_FAILED, at=None, detail="lock at boot failed")
    bus.emit(EventKind.CHALLENGE_ISSUED, at=5)
    first, second = GapDetector(), GapDetector()
    bus.subscribe(first)
    bus.subscribe(second)
    bus.emit(EventKind.CHALLENGE_ISSUED, at=6)
    assert [e.seq for e in first.events] == [1, 2, 3]
    assert first.events[0].kind is EventKind.ACTUATOR_FAILED
    assert first.gaps == []
    assert [e.seq for e in second.events] == [3]  # the backlog goes to the first only
