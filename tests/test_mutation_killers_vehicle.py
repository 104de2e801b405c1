"""Tests written to kill mutants of ``vehicle/unit.py`` that survived ``scripts/mutation.py``.

Each pins a boundary, a refusal or a piece of state the unit's own tests left
loose: the moved-car margin to the metre, the configuration's validation,
the immutability of what the unit hands out, and the boot plumbing. See
docs/mutation-testing.md for the scores and the survivors judged equivalent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trunkkey import (
    AccessDenied,
    Action,
    InvalidRequest,
    Location,
    ManualClock,
    MemoryLedger,
    Reason,
    SigningKey,
    TrustStore,
)
from trunkkey.consent import sign_revocation_list
from trunkkey.geo import distance_m
from trunkkey.testing.vehicle import Car, SimulatedBody, SimulatedGps, World, courier_present
from trunkkey.vehicle import (
    EventKind,
    GapDetector,
    MemoryTimeStore,
    UnitConfig,
    UnitState,
    VehicleUnit,
    verify_receipt,
)
from trunkkey.vehicle.state import DEFAULT_MOVED_MARGIN_M, Opening, Outcome

T0 = 1_800_000_000
PLACE = Location.from_degrees(48.137154, 11.576124)


def _stage(tmp_path: Path, config: UnitConfig | None = None) -> tuple[World, Car]:
    world = World(start=T0, state_dir=tmp_path, config=config)
    car = world.enrol_car("VIN-1")
    world.park(car, PLACE, radius_m=50)
    return world, car


def _north_of(place: Location, metres: float) -> Location:
    """A point due north of ``place`` at ``metres`` (to within a centimetre)."""
    lo, hi = 0, 10**6
    while lo < hi:  # the smallest lat_e7 step whose distance reaches ``metres``
        mid = (lo + hi) // 2
        if distance_m(place, Location(lat_e7=place.lat_e7 + mid, lon_e7=place.lon_e7)) < metres:
            lo = mid + 1
        else:
            hi = mid
    return Location(lat_e7=place.lat_e7 + lo, lon_e7=place.lon_e7)


# -- "the car was moved": the margin, to the metre -----------------------------------


@pytest.mark.parametrize(("away", "reason"), [
    (50 + DEFAULT_MOVED_MARGIN_M - 0.4, Reason.OUTSIDE_GEOFENCE),
    (50 + DEFAULT_MOVED_MARGIN_M + 0.6, Reason.CAR_MOVED),
])
def test_moved_margin_is_250_m_beyond_the_fence(tmp_path: Path, away: float,
                                                reason: Reason) -> None:
    assert DEFAULT_MOVED_MARGIN_M == 250
    world, car = _stage(tmp_path)
    courier = SigningKey.generate()
    fence = world.park(car, PLACE, radius_m=50)
    token = world.mint(car, courier=courier, geofence=fence)
    car.gps.position = _north_of(PLACE, away)
    outcome = courier_present(car, token, courier)
    assert outcome.reason is reason
    if reason is Reason.CAR_MOVED:
        assert outcome.detail == "car is 301 m from the place the owner confirmed (radius 50 m)"
    assert car.body.locked


def test_a_configured_margin_moves_the_boundary(tmp_path: Path) -> None:
    world, car = _stage(tmp_path, UnitConfig(moved_margin_m=0))
    courier = SigningKey.generate()
    fence = world.park(car, PLACE, radius_m=50)
    token = world.mint(car, courier=courier, geofence=fence)
    car.gps.position = _north_of(PLACE, 51)
    assert courier_present(car, token, courier).reason is Reason.CAR_MOVED


# -- configuration ---------------------------------------------------------------------


def test_unit_config_refusals_say_why() -> None:
    for timeout in (4, 601, 60.0):
        with pytest.raises(InvalidRequest, match=r"^relock_timeout must be 5 to 600 seconds$"):
            UnitConfig(relock_timeout=timeout)  # type: ignore[arg-type]
    assert UnitConfig(relock_timeout=5).relock_timeout == 5
    assert UnitConfig(relock_timeout=600).relock_timeout == 600
    # A float margin is refused even though it is not negative.
    for margin in (-1, 1.5, True):
        with pytest.raises(InvalidRequest, match=r"^moved_margin_m must be a non-negative int$"):
            UnitConfig(moved_margin_m=margin)  # type: ignore[arg-type]
    assert UnitConfig(moved_margin_m=0).moved_margin_m == 0
    with pytest.raises(InvalidRequest, match=r"^policy must be a trunkkey\.VerifierPolicy$"):
        UnitConfig(policy={"max_skew": 60})  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [UnitConfig, Opening, Outcome])
def test_what_the_unit_hands_out_is_frozen_slotted_and_keyword_only(cls: type) -> None:
    # A validated configuration, an opening's relock deadline and an outcome
    # cannot be rewritten after the fact by whoever holds them.
    fields = dataclasses.fields(cls)
    assert all(f.kw_only for f in fields)
    assert "__slots__" in vars(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_config_and_opening_cannot_be_changed_in_place(tmp_path: Path) -> None:
    config = UnitConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.relock_timeout = 10**6  # type: ignore[misc]
    world, car = _stage(tmp_path)
    courier = SigningKey.generate()
    outcome = courier_present(car, world.mint(car, courier=courier), courier)
    assert outcome.allowed is True
    opening = car.unit.opening
    assert opening is not None
    assert opening.relock_deadline == T0 + 120
    with pytest.raises(dataclasses.FrozenInstanceError):
        opening.relock_deadline = T0 + 10**6  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.reason = Reason.EXPIRED  # type: ignore[misc]


def test_outcome_allowed_is_a_boolean_and_the_outcome_is_not(tmp_path: Path) -> None:
    world, car = _stage(tmp_path)
    courier = SigningKey.generate()
    token = world.mint(car, courier=courier)
    allowed = courier_present(car, token, courier)
    assert allowed.allowed is True
    assert (allowed.detail, allowed.decision is not None) == ("opened", True)
    busy = courier_present(car, world.mint(car, courier=courier), courier)
    assert busy.allowed is False
    assert (busy.reason, busy.detail) == (Reason.UNIT_BUSY, "an opening is already in progress")
    assert (busy.token_id, busy.decision) == (None, None)
    with pytest.raises(TypeError, match=r"^test outcome\.allowed, not the outcome itself$"):
        bool(busy)


# -- construction and boot ---------------------------------------------------------------


def _parts(tmp_path: Path | None = None) -> dict[str, object]:
    root = SigningKey.generate()
    parts: dict[str, object] = {
        "vehicle_id": "VIN-9", "vehicle_key": SigningKey.generate(), "trust_store": TrustStore(),
        "carmaker_key": root.public_key, "clock": ManualClock(T0), "actuator": SimulatedBody(),
        "gps": SimulatedGps(PLACE),
    }
    if tmp_path is None:
        parts.update(ledger=MemoryLedger(), time_store=MemoryTimeStore())
    return parts


def test_unit_construction_refusals_say_why() -> None:
    with pytest.raises(InvalidRequest, match=r"^vehicle_id must be a non-empty string$"):
        VehicleUnit(**{**_parts(), "vehicle_id": ""})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^vehicle_key must be a trunkkey\.SigningKey$"):
        VehicleUnit(**{**_parts(), "vehicle_key": SigningKey.generate().public_key})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest,
                       match=r"^consent must be a trunkkey\.consent\.ConsentVerifier$"):
        VehicleUnit(**_parts(), consent=object())  # type: ignore[arg-type]


def test_unit_reports_who_it_is(tmp_path: Path) -> None:
    unit = VehicleUnit(**_parts())  # type: ignore[arg-type]
    assert unit.vehicle_id == "VIN-9"
    assert unit.state is UnitState.LOCKED
    assert unit.opening is None
    assert unit.revocations_version == 0
    assert repr(unit) == "VehicleUnit('VIN-9', locked, boot=1)"


def test_boot_creates_a_nested_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "fleet" / "VIN-9" / "state"
    unit = VehicleUnit.boot(state, **_parts(tmp_path))
    assert (state / "ledger.sqlite").exists()
    assert unit.boot_number == 1
    unit.close()


def test_relock_after_the_timeout_uses_the_configured_timeout_only(tmp_path: Path) -> None:
    world, car = _stage(tmp_path, UnitConfig(relock_timeout=5))
    seen = GapDetector()
    car.unit.subscribe(seen)
    courier = SigningKey.generate()
    assert courier_present(car, world.mint(car, courier=courier), courier).allowed
    world.advance(4)
    assert car.unit.state is UnitState.TRUNK_OPEN
    world.advance(1)
    assert car.unit.state is UnitState.LOCKED
    relocked = [e for e in seen.events if e.kind is EventKind.RELOCKED]
    assert [(e.at, e.detail) for e in relocked] == [(T0 + 5, "timeout")]
    assert car.unit.opening is None
    assert Action.TRUNK.value == "trunk"


# -- an untrusted clock: every refusal, its event, and the alarm raised once per episode --


def test_untrusted_clock_refusals_and_the_alarm_are_exact(tmp_path: Path) -> None:
    world, car = _stage(tmp_path)
    seen = GapDetector()
    car.unit.subscribe(seen)
    courier = SigningKey.generate()
    token = world.mint(car, courier=courier)
    floor = car.unit.trusted_time_floor
    assert floor == T0
    car.clock.advance(-3600)
    outcome = car.unit.present(token, action="trunk")
    assert (outcome.reason, outcome.detail) == (
        Reason.CLOCK_UNTRUSTED, "clock went back; awaiting time sync")
    with pytest.raises(AccessDenied) as raised:
        car.unit.challenge()
    assert (raised.value.reason, raised.value.detail) == (
        Reason.CLOCK_UNTRUSTED, "clock went back; awaiting time sync")
    assert [(e.kind, e.reason, e.detail) for e in seen.events] == [
        (EventKind.CLOCK_UNTRUSTED, None, f"clock below trusted floor {floor}"),
        (EventKind.ACCESS_DENIED, Reason.CLOCK_UNTRUSTED, "clock went back; awaiting time sync"),
        (EventKind.ACCESS_DENIED, Reason.CLOCK_UNTRUSTED,
         "no challenge while the clock is untrusted"),
    ]
    # A signed sync ends the episode; the next rollback raises the alarm again.
    assert world.time_sync(car).accepted
    assert car.unit.clock_trusted is True
    car.clock.advance(-3600)
    assert car.unit.present(token, action="trunk").reason is Reason.CLOCK_UNTRUSTED
    alarms = [e for e in seen.events if e.kind is EventKind.CLOCK_UNTRUSTED]
    assert len(alarms) == 2


def test_a_request_for_anything_else_is_denied_with_the_reason(tmp_path: Path) -> None:
    world, car = _stage(tmp_path)
    outcome = car.unit.present(world.mint(car, courier=None), action="start-engine")
    assert (outcome.reason, outcome.detail) == (
        Reason.WRONG_ACTION,
        "the unit only opens the trunk or unlocks the doors; nothing else exists",
    )
    outcome = car.unit.present(world.mint(car, courier=None), action="trunk", purpose="theft")
    assert outcome.reason is Reason.WRONG_ACTION
    assert car.body.locked


# -- signed updates on a unit that cannot take them ---------------------------------------


def test_a_unit_without_consent_refuses_updates_exactly_and_says_so(tmp_path: Path) -> None:
    world, car = _stage(tmp_path)
    seen = GapDetector()
    car.unit.subscribe(seen)
    listing = sign_revocation_list(world.carmaker_key, version=1, issued_at=T0)
    for apply, refused in ((car.unit.apply_revocations, EventKind.REVOCATIONS_REFUSED),
                           (car.unit.apply_trust_update, EventKind.TRUST_UPDATE_REFUSED)):
        outcome = apply(listing)
        assert (outcome.reason, outcome.detail, outcome.version, outcome.applied) == (
            Reason.CHAIN_INVALID, "this unit holds no consent anchors", 0, False)
        event = seen.events[-1]
        assert (event.kind, event.reason, event.detail, event.at) == (
            refused, Reason.CHAIN_INVALID, "this unit holds no consent anchors", T0)
    # A list carried by a handheld changes nothing either; the token is judged as usual.
    courier = SigningKey.generate()
    presented = courier_present(car, world.mint(car, courier=courier), courier,
                                revocations=listing)
    assert presented.allowed is True
    assert car.unit.revocations_version == 0


def test_updates_under_an_untrusted_clock_keep_the_version_held(tmp_path: Path) -> None:
    world = World(start=T0, state_dir=tmp_path)
    car = world.enrol_car("VIN-C", consent=True)
    seen = GapDetector()
    car.unit.subscribe(seen)
    first = sign_revocation_list(world.carmaker_key, version=3, issued_at=T0)
    assert car.unit.apply_revocations(first).applied
    assert car.unit.revocations_version == 3
    newer = sign_revocation_list(world.carmaker_key, version=4, issued_at=T0)
    car.clock.advance(-3600)
    for apply in (car.unit.apply_revocations, car.unit.apply_trust_update):
        outcome = apply(newer)
        assert (outcome.reason, outcome.detail, outcome.version) == (
            Reason.CLOCK_UNTRUSTED, "clock went back; awaiting time sync", 3)
        assert (seen.events[-1].reason, seen.events[-1].at) == (Reason.CLOCK_UNTRUSTED, None)
    assert car.unit.revocations_version == 3
    plain = World(start=T0, state_dir=tmp_path / "plain")
    plain_car = plain.enrol_car("VIN-P")
    plain_car.clock.advance(-3600)
    outcome = plain_car.unit.apply_revocations(newer)
    assert (outcome.reason, outcome.version) == (Reason.CLOCK_UNTRUSTED, 0)


def test_a_consent_unit_applies_a_carried_newer_list_once(tmp_path: Path) -> None:
    world = World(start=T0, state_dir=tmp_path)
    car = world.enrol_car("VIN-C", consent=True)
    world.park(car, PLACE)
    seen = GapDetector()
    car.unit.subscribe(seen)
    listing = sign_revocation_list(world.carmaker_key, version=1, issued_at=T0)
    courier = SigningKey.generate()
    assert courier_present(car, world.mint(car, courier=courier), courier,
                           revocations=listing).allowed
    assert car.unit.revocations_version == 1
    applied = [e for e in seen.events if e.kind is EventKind.REVOCATIONS_APPLIED]
    assert len(applied) == 1
    assert applied[0].detail == "revocation list v1: 0 grants, 0 keys, 0 tokens, 0 orders"


# -- actuator faults and time sync: the unit says exactly what happened ---------------------


def test_actuator_fault_details_are_exact(tmp_path: Path) -> None:
    world, car = _stage(tmp_path)
    seen = GapDetector()
    car.unit.subscribe(seen)
    courier = SigningKey.generate()
    car.body.fail_next = "open_trunk"
    outcome = courier_present(car, world.mint(car, courier=courier), courier)
    assert (outcome.reason, outcome.detail) == (
        Reason.ACTUATOR_FAILED, "actuator failed after the token was spent")
    assert outcome.token_id is not None
    assert outcome.decision is not None
    failed = [e for e in seen.events if e.kind is EventKind.ACTUATOR_FAILED]
    assert [(e.detail, e.token_id) for e in failed] == [
        ("OSError; token stays spent, car stays locked", outcome.token_id)]
    assert car.body.locked


def test_a_refused_time_sync_is_reported_with_its_cause(tmp_path: Path) -> None:
    _world, car = _stage(tmp_path)
    seen = GapDetector()
    car.unit.subscribe(seen)
    outcome = car.unit.apply_time_sync(b"\xd2\x84")
    assert not outcome.accepted
    event = seen.events[-1]
    assert (event.kind, event.reason, event.at) == (
        EventKind.ACCESS_DENIED, Reason.CLOCK_UNTRUSTED, None)
    assert event.detail == f"time sync refused: {outcome.detail}"


# -- "the car was moved" only refines a geofence denial ------------------------------------


@pytest.mark.parametrize(("action", "advance", "reason"), [
    ("unlock-relock", 0, Reason.WRONG_ACTION),
    ("trunk", 5 * 3600, Reason.EXPIRED),
])
def test_a_moved_car_does_not_mask_an_earlier_denial(
    tmp_path: Path, action: str, advance: int, reason: Reason,
) -> None:
    world, car = _stage(tmp_path)
    courier = SigningKey.generate()
    fence = world.park(car, PLACE, radius_m=50)
    token = world.mint(car, courier=courier, geofence=fence)
    world.advance(advance)
    if advance:
        world.time_sync(car)
    car.gps.position = _north_of(PLACE, 2500)
    assert courier_present(car, token, courier, action=action).reason is reason
    assert courier_present(car, token, courier).reason is (
        Reason.CAR_MOVED if not advance else Reason.EXPIRED)


# -- relocking: the exact instant, the receipt's times, a failing lock -----------------------


def test_relock_deadline_holds_on_trusted_time_after_a_set_back_clock(tmp_path: Path) -> None:
    # The floor reached the deadline (a challenge read the clock then); the clock is
    # then set back within the skew. Trusted time is still at the deadline: relock now.
    world, car = _stage(tmp_path)
    courier = SigningKey.generate()
    assert courier_present(car, world.mint(car, courier=courier), courier).allowed
    car.clock.advance(120)
    car.unit.challenge()
    assert car.unit.state is UnitState.TRUNK_OPEN  # a challenge does not act on time
    car.clock.advance(-40)
    car.unit.tick()
    assert car.unit.state is UnitState.LOCKED
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key)
    assert (receipt.relocked_at, receipt.relock_cause) == (T0 + 120, "timeout")


def test_closing_records_the_trusted_time_of_closing(tmp_path: Path) -> None:
    world, car = _stage(tmp_path)
    courier = SigningKey.generate()
    assert courier_present(car, world.mint(car, courier=courier), courier).allowed
    car.clock.advance(30)  # no tick in between: the floor is still at the opening
    assert car.unit.trunk_closed() is True
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key)
    assert (receipt.closed_at, receipt.relocked_at, receipt.relock_cause) == (
        T0 + 30, T0 + 30, "closed")


def test_closing_under_an_untrusted_clock_is_stamped_with_the_floor(tmp_path: Path) -> None:
    world, car = _stage(tmp_path)
    courier = SigningKey.generate()
    assert courier_present(car, world.mint(car, courier=courier), courier).allowed
    world.advance(10)
    car.clock.advance(-3600)
    assert car.unit.trunk_closed() is True
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key)
    assert (receipt.closed_at, receipt.relocked_at, receipt.relock_cause) == (
        T0 + 10, T0 + 10, "clock_untrusted")
    assert car.body.locked


def test_a_failing_relock_is_reported_and_retried(tmp_path: Path) -> None:
    world, car = _stage(tmp_path)
    seen = GapDetector()
    car.unit.subscribe(seen)
    courier = SigningKey.generate()
    assert courier_present(car, world.mint(car, courier=courier), courier).allowed
    car.body.fail_next = "lock_all"
    world.advance(120)
    assert car.unit.state is UnitState.TRUNK_OPEN
    failed = [e for e in seen.events if e.kind is EventKind.ACTUATOR_FAILED]
    assert [(e.detail, e.at) for e in failed] == [("relock failed (OSError); retrying", T0 + 120)]
    world.advance(1)
    assert car.unit.state is UnitState.LOCKED
    assert car.body.locked


# -- the simulated hardware: the attack suite's assertions rest on it -------------------------


def test_simulated_body_reports_the_locks_as_hardware_would() -> None:
    body = SimulatedBody()
    assert (body.trunk_unlatched, body.doors_unlocked, body.locked) == (False, False, True)
    assert body.fail_next is None
    assert repr(body) == "SimulatedBody(trunk_unlatched=False, doors_unlocked=False)"
    body.open_trunk()
    body.open_trunk()
    assert (body.trunk_unlatched, body.trunk_openings, body.locked) == (True, 2, False)
    body.lock_all()
    assert (body.trunk_unlatched, body.doors_unlocked, body.locked) == (False, False, True)
    body.unlock_doors()
    body.unlock_doors()
    # Doors alone, trunk latched: not locked.
    assert (body.doors_unlocked, body.door_unlocks, body.locked) == (True, 2, False)
    assert repr(body) == "SimulatedBody(trunk_unlatched=False, doors_unlocked=True)"
    body.lock_all()
    assert body.locked is True
    assert body.trunk_unlatched is False
    assert body.doors_unlocked is False


@pytest.mark.parametrize("operation", ["open_trunk", "unlock_doors", "lock_all"])
def test_simulated_body_faults_once_on_the_named_operation(operation: str) -> None:
    body = SimulatedBody()
    body.open_trunk()
    body.fail_next = operation
    with pytest.raises(OSError, match=rf"^simulated {operation} fault$"):
        getattr(body, operation)()
    assert body.fail_next is None
    assert body.trunk_unlatched is True  # the failed operation changed nothing
    getattr(body, operation)()  # the next call works


def test_simulated_gps_reports_its_position() -> None:
    assert SimulatedGps()() is None
    gps = SimulatedGps(PLACE)
    assert gps() == PLACE
    assert repr(gps) == f"SimulatedGps({PLACE!r})"
