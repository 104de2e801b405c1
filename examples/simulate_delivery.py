"""The whole happy path of a delivery into a parked car, then a return pickup.

Run it with no arguments:  python examples/simulate_delivery.py

Everything runs on simulated time and simulated locks; the keys, the
signatures, the proofs and the durable ledger are real.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from trunkkey import Action, Location, Purpose, Reason, SigningKey
from trunkkey.vehicle import Event, EventKind, GapDetector, UnitState, verify_receipt
from trunkkey.vehicle.sim import Car, World, courier_present

#: 2027-06-01 08:00 UTC: the morning of delivery day.
START = int(datetime(2027, 6, 1, 8, 0, tzinfo=UTC).timestamp())
MUNICH_CAR_PARK = Location.from_degrees(48.137154, 11.576124)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One claim the story makes, with what actually happened."""

    label: str
    expected: str
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


def _clock(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def _show(value: object) -> str:
    """Enums by their stable string value, containers element-wise."""
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return str(value.value) if isinstance(value, Enum) else str(value)


_CUSTOMER_TEXT = {
    EventKind.TRUNK_OPENED: "Your courier has opened your trunk.",
    EventKind.TRUNK_CLOSED: "The trunk is closed.",
    EventKind.RELOCKED: "Your car is locked again.",
    EventKind.ACCESS_DENIED: "Someone tried to open your car and was refused.",
}


def run(state_dir: str, say: Callable[[str], None] = print) -> list[Check]:
    checks: list[Check] = []

    def check(label: str, expected: object, actual: object) -> None:
        c = Check(label=label, expected=_show(expected), actual=_show(actual))
        checks.append(c)
        say(f"      {'ok ' if c.ok else 'BAD'} {label}: expected {c.expected}, got {c.actual}")

    def step(text: str) -> None:
        say(f"[{_clock(world.now)}] {text}")

    world = World(start=START, state_dir=state_dir)
    step("Carmaker enrols car VIN-MUC-0001: vehicle key made, retailer key trusted, unit booted.")
    car = world.enrol_car("VIN-MUC-0001")
    notifications = GapDetector()
    car.unit.subscribe(notifications)

    def notify_customer(event: Event) -> None:
        text = _CUSTOMER_TEXT.get(event.kind)
        if text is not None and event.at is not None:
            say(f"      customer's phone <- {_clock(event.at)} {text}")

    car.unit.subscribe(notify_customer)
    step("Owner parks in the Munich car park and confirms the place (50 m geofence).")
    place = world.park(car, MUNICH_CAR_PARK, radius_m=50)
    courier = SigningKey.generate()
    step("Courier's handheld has a fresh device key for today's route.")
    token = world.mint(
        car, courier=courier, geofence=place, starts_in=3600, window=4 * 3600,
        order_ref=b"order-1001",
    )
    step(f"Retailer mints a trunk token for 09:00-13:00, {len(token)} bytes, bound to the device.")
    world.advance(2 * 3600 + 17 * 60)
    step("Courier arrives at the car; the handheld asks for a challenge and signs it.")
    outcome = courier_present(car, token, courier)
    check("courier's token opens the trunk", Reason.ALLOWED, outcome.reason)
    check(
        "only the trunk is open (trunk, doors)", (True, False),
        (car.body.trunk_unlatched, car.body.doors_unlocked),
    )
    check("unit state", UnitState.TRUNK_OPEN, car.unit.state)
    world.advance(40)
    step("Package in; the courier closes the trunk.")
    car.unit.trunk_closed()
    check("car relocked", True, car.body.locked)
    receipt_bytes = car.unit.receipts[-1]
    receipt = verify_receipt(
        receipt_bytes, car.unit.public_key, vehicle_id=car.vehicle_id,
        token_id=outcome.token_id,
    )
    step(
        f"Retailer verifies the signed receipt ({len(receipt_bytes)} bytes): "
        f"{receipt.purpose.value}, opened {_clock(receipt.opened_at)}, closed "
        f"{_clock(receipt.closed_at or 0)}, relocked {_clock(receipt.relocked_at)}."
    )
    check("receipt purpose", Purpose.DELIVERY, receipt.purpose)
    check("receipt relock cause", "closed", receipt.relock_cause)
    step("The car's event log, as the backend received it:")
    for event in notifications.events:
        say(f"        #{event.boot}.{event.seq} {_clock(event.at or 0)} {event.kind.value}")
    check("no gap in the event sequence", [], notifications.gaps)
    check(
        "customer saw the delivery",
        [EventKind.TRUNK_OPENED, EventKind.TRUNK_CLOSED, EventKind.RELOCKED],
        [k for k in notifications.kinds() if k in
         (EventKind.TRUNK_OPENED, EventKind.TRUNK_CLOSED, EventKind.RELOCKED)],
    )

    step("The core checks: each of these must be refused.")
    world.advance(60)
    check("a second try with the same token", Reason.ALREADY_USED,
          courier_present(car, token, courier).reason)
    cabin = world.mint(car, courier=courier, geofence=place)
    check("a cabin unlock with a trunk token", Reason.WRONG_ACTION,
          courier_present(car, cabin, courier, action=Action.UNLOCK_RELOCK).reason)
    other = world.mint("VIN-HAM-0002", courier=courier)
    check("a token for another car", Reason.WRONG_VEHICLE,
          courier_present(car, other, courier).reason)
    late = world.mint(car, courier=courier, geofence=place, window=600)
    world.advance(601 + 60)
    check("a late token (window over)", Reason.EXPIRED, courier_present(car, late, courier).reason)
    check("car still locked after every refusal", True, car.body.locked)

    _return_pickup(world, car, place, step, check)
    return checks


def _return_pickup(
    world: World, car: Car, place: object, step: Callable[[str], None],
    check: Callable[[str, object, object], None],
) -> None:
    world.advance(3 * 3600)
    step("Afternoon: the owner left a return in the trunk; the retailer mints a pickup token.")
    courier = SigningKey.generate()
    token = world.mint(
        car, courier=courier, geofence=place,  # type: ignore[arg-type]
        purpose=Purpose.RETURN_PICKUP, window=2 * 3600, order_ref=b"return-77",
    )
    world.advance(25 * 60)
    outcome = courier_present(car, token, courier)
    check("pickup token opens the trunk", Reason.ALLOWED, outcome.reason)
    step("Courier takes the parcel and walks away without closing the trunk.")
    world.advance(car.unit.config.relock_timeout)
    check("car relocked by itself after the timeout", True, car.body.locked)
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key, token_id=outcome.token_id)
    step(
        f"Receipt: {receipt.purpose.value}, relocked {_clock(receipt.relocked_at)} "
        f"({receipt.relock_cause}), closed_at={receipt.closed_at}."
    )
    check("pickup receipt", (Purpose.RETURN_PICKUP, "timeout"),
          (receipt.purpose, receipt.relock_cause))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--quiet", action="store_true", help="print only the verdict")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        if not args.quiet:
            print(line)

    with tempfile.TemporaryDirectory(prefix="trunkkey-sim-") as state_dir:
        checks = run(state_dir, say)
    bad = [c for c in checks if not c.ok]
    print(f"\n{len(checks) - len(bad)}/{len(checks)} checks as expected.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
