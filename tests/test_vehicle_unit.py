"""The vehicle unit's state machine, end to end with real keys and a durable ledger."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from trunkkey import (
    AccessDenied,
    Action,
    Location,
    Purpose,
    Reason,
    SigningKey,
    SqliteLedger,
    make_proof,
)
from trunkkey.vehicle import (
    EventKind,
    GapDetector,
    UnitConfig,
    UnitState,
    VehicleUnit,
    verify_receipt,
)
from trunkkey.vehicle.sim import Car, World, courier_present

T0 = 1_800_000_000
PLACE = Location.from_degrees(48.137154, 11.576124)


class Stage:
    def __init__(self, tmp_path: Path, config: UnitConfig | None = None) -> None:
        self.world = World(start=T0, state_dir=tmp_path, config=config)
        self.car: Car = self.world.enrol_car("VIN-1")
        self.fence = self.world.park(self.car, PLACE, radius_m=50)
        self.courier = SigningKey.generate()
        self.seen = GapDetector()
        self.car.unit.subscribe(self.seen)

    @property
    def unit(self) -> VehicleUnit:
        return self.car.unit

    def token(self, **kw: object) -> bytes:
        kw.setdefault("courier", self.courier)
        kw.setdefault("geofence", self.fence)
        return self.world.mint(self.car, **kw)  # type: ignore[arg-type]

    def present(self, token: bytes, **kw: object) -> Reason:
        return courier_present(self.car, token, self.courier, **kw).reason  # type: ignore[arg-type]


@pytest.fixture
def stage(tmp_path: Path) -> Stage:
    return Stage(tmp_path)


def test_trunk_token_opens_only_the_trunk_and_closing_relocks(stage: Stage) -> None:
    token = stage.token()
    assert stage.present(token) is Reason.ALLOWED
    assert stage.unit.state is UnitState.TRUNK_OPEN
    assert stage.car.body.trunk_unlatched
    assert not stage.car.body.doors_unlocked
    assert stage.unit.doors_closed() is False  # a door sensor cannot end a trunk opening
    stage.world.advance(30)
    assert stage.unit.trunk_closed() is True
    assert stage.unit.state is UnitState.LOCKED
    assert stage.car.body.locked
    assert stage.seen.kinds() == [
        EventKind.CHALLENGE_ISSUED, EventKind.TOKEN_ACCEPTED, EventKind.TRUNK_OPENED,
        EventKind.TRUNK_CLOSED, EventKind.RELOCKED, EventKind.RECEIPT_SIGNED,
    ]
    assert stage.seen.gaps == []
    receipt = verify_receipt(stage.unit.receipts[-1], stage.unit.public_key,
                             vehicle_id="VIN-1")
    assert (receipt.opened_at, receipt.closed_at, receipt.relocked_at) == (T0, T0 + 30, T0 + 30)
    assert receipt.relock_cause == "closed"
    assert stage.seen.events[-1].receipt == stage.unit.receipts[-1]


def test_unlock_relock_token_unlocks_doors_once(stage: Stage) -> None:
    token = stage.token(action=Action.UNLOCK_RELOCK)
    assert stage.present(token, action=Action.UNLOCK_RELOCK) is Reason.ALLOWED
    assert stage.unit.state is UnitState.DOORS_UNLOCKED
    assert stage.car.body.doors_unlocked
    assert not stage.car.body.trunk_unlatched
    assert stage.unit.trunk_closed() is False
    assert stage.unit.doors_closed() is True
    assert stage.car.body.locked
    assert stage.present(token, action=Action.UNLOCK_RELOCK) is Reason.ALREADY_USED
    assert stage.car.body.door_unlocks == 1
    receipt = verify_receipt(stage.unit.receipts[-1], stage.unit.public_key)
    assert receipt.action is Action.UNLOCK_RELOCK


@pytest.mark.parametrize("timeout", [120, 45])
def test_relocks_by_itself_after_the_timeout(tmp_path: Path, timeout: int) -> None:
    stage = Stage(tmp_path, UnitConfig(relock_timeout=timeout))
    assert stage.present(stage.token()) is Reason.ALLOWED
    stage.world.advance(timeout - 1)
    assert stage.unit.state is UnitState.TRUNK_OPEN
    stage.world.advance(1)
    assert stage.unit.state is UnitState.LOCKED
    assert stage.car.body.locked
    receipt = verify_receipt(stage.unit.receipts[-1], stage.unit.public_key)
    assert receipt.closed_at is None
    assert receipt.relock_cause == "timeout"
    assert receipt.relocked_at - receipt.opened_at == timeout


def test_a_clock_set_back_within_the_skew_does_not_stretch_the_relock(stage: Stage) -> None:
    # The trusted floor holds the unit's time up while the clock reads 50 s
    # behind (still within the 60 s skew): the timeout runs on the clock itself.
    stage.car.clock.advance(-50)
    assert stage.present(stage.token()) is Reason.ALLOWED
    stage.world.advance(stage.unit.config.relock_timeout - 1)
    assert stage.unit.state is UnitState.TRUNK_OPEN
    stage.world.advance(1)
    assert stage.unit.state is UnitState.LOCKED
    assert stage.car.body.locked


def test_a_clock_set_back_within_the_skew_during_an_opening_relocks_at_once(
    stage: Stage,
) -> None:
    # Within the skew the trusted floor does not notice the step; the timeout,
    # run on the clock reading, would be stretched by it. The unit relocks.
    assert stage.present(stage.token()) is Reason.ALLOWED
    stage.world.advance(10)
    stage.car.clock.advance(-30)
    stage.unit.tick()
    assert stage.unit.state is UnitState.LOCKED
    assert stage.car.body.locked
    receipt = verify_receipt(stage.unit.receipts[-1], stage.unit.public_key)
    assert receipt.relock_cause == "clock_untrusted"


def test_default_relock_timeout_is_120_seconds() -> None:
    assert UnitConfig().relock_timeout == 120
    assert UnitConfig().challenge_ttl == 30


def test_no_operation_can_drive_the_car_or_manage_keys(stage: Stage) -> None:
    forbidden = ("enrol", "enroll", "add_key", "remove_key", "pair", "start", "drive",
                 "engine", "ignition", "immobili", "trust_store", "keys")
    public = [name for name, _ in inspect.getmembers(VehicleUnit) if not name.startswith("_")]
    assert not [n for n in public if any(word in n.lower() for word in forbidden)]
    # No public instance state either: the trust store, ledger and actuator are private.
    assert [name for name in vars(stage.unit) if not name.startswith("_")] == []
    # The state itself has no state in which the car can move.
    assert {s.value for s in UnitState} == {"locked", "trunk_open", "doors_unlocked"}
    assert {a.value for a in Action} == {"trunk", "unlock-relock"}
    trusted_before = list(stage.world.trust_store)
    token = stage.token()
    assert stage.present(token) is Reason.ALLOWED
    for request in ("enrol-key", "add-key", "start", "drive", "TRUNK "):
        outcome = stage.unit.present(token, action=request)
        assert outcome.reason is Reason.WRONG_ACTION
    assert list(stage.world.trust_store) == trusted_before
    stage.world.advance(120)
    for request in ("enrol-key", "remove-key"):
        assert stage.unit.present(stage.token(), action=request).reason is Reason.WRONG_ACTION


def test_token_is_spent_in_the_durable_ledger_before_the_actuator_moves(stage: Stage) -> None:
    token = stage.token()
    ledger_path = stage.world.state_dir / "VIN-1" / "ledger.sqlite"  # type: ignore[operator]
    observed: list[bool] = []
    body = stage.car.body
    original = body.open_trunk

    def open_trunk() -> None:
        # A second connection (another process, after a crash) must already see it spent.
        with SqliteLedger(ledger_path) as other:
            claims_id = stage.seen.events[-1].token_id
            assert claims_id is not None
            observed.append(other.consume("VIN-1", claims_id, T0 + 10**6))
        original()

    body.open_trunk = open_trunk  # type: ignore[method-assign]
    assert stage.present(token) is Reason.ALLOWED
    assert observed == [False]


def test_actuator_fault_after_consume_leaves_car_locked_and_token_spent(stage: Stage) -> None:
    token = stage.token()
    stage.car.body.fail_next = "open_trunk"
    assert stage.present(token) is Reason.ACTUATOR_FAILED
    assert stage.car.body.locked
    assert stage.unit.state is UnitState.LOCKED
    assert EventKind.ACTUATOR_FAILED in stage.seen.kinds()
    assert stage.present(token) is Reason.ALREADY_USED


class PowerCut(BaseException):
    """The unit dies mid-call: nothing after this line of its code runs."""


def test_crash_between_consume_and_actuation_then_reboot(stage: Stage) -> None:
    token = stage.token()

    def die() -> None:
        raise PowerCut

    stage.car.body.open_trunk = die  # type: ignore[method-assign]
    with pytest.raises(PowerCut):
        stage.present(token)
    assert stage.car.body.locked
    del stage.car.body.open_trunk  # the hardware works again after the reboot
    stage.world.reboot(stage.car)
    assert stage.unit.boot_number == 2
    assert stage.present(token) is Reason.ALREADY_USED
    assert stage.car.body.trunk_openings == 0


def test_reboot_refuses_every_token_the_old_unit_accepted(tmp_path: Path) -> None:
    stage = Stage(tmp_path)
    tokens = [stage.token() for _ in range(3)]
    for token in tokens:
        assert stage.present(token) is Reason.ALLOWED
        stage.unit.trunk_closed()
    stage.world.reboot(stage.car)
    for token in tokens:
        assert stage.present(token) is Reason.ALREADY_USED


def test_boot_from_a_state_directory(tmp_path: Path) -> None:
    world = World(start=T0, ledger="memory")
    car = world.enrol_car("VIN-7")
    car.gps.position = PLACE
    kwargs: dict[str, object] = {
        "vehicle_id": "VIN-7", "vehicle_key": car.vehicle_key,
        "trust_store": world.trust_store, "carmaker_key": world.carmaker_key.public_key,
        "clock": car.clock, "actuator": car.body, "gps": car.gps,
    }
    unit = VehicleUnit.boot(tmp_path / "state", **kwargs)
    token = world.mint("VIN-7", courier=None)
    assert unit.present(token, action="trunk").allowed
    unit.trunk_closed()
    unit.close()
    again = VehicleUnit.boot(tmp_path / "state", **kwargs)
    assert again.present(token, action="trunk").reason is Reason.ALREADY_USED
    assert (tmp_path / "state" / "ledger.sqlite").exists()
    assert (tmp_path / "state" / "time.json").exists()
    again.close()


def test_geofence_edge_moved_and_unknown_position(stage: Stage) -> None:
    token = stage.token()
    stage.car.gps.position = Location.from_degrees(48.13775, 11.576124)  # ~66 m
    assert stage.present(token) is Reason.OUTSIDE_GEOFENCE
    stage.car.gps.position = Location.from_degrees(48.16, 11.576124)  # ~2.5 km
    assert stage.present(token) is Reason.CAR_MOVED
    stage.car.gps.position = None
    assert stage.present(token) is Reason.LOCATION_UNKNOWN

    def broken() -> Location:
        raise OSError("no satellites")

    stage.car.gps = broken  # type: ignore[assignment]
    stage.unit._gps = broken  # the receiver itself fails
    assert stage.present(token) is Reason.LOCATION_UNKNOWN
    stage.unit._gps = lambda: Location.from_degrees(48.13740, 11.576124)  # ~27 m: inside
    assert stage.present(token) is Reason.ALLOWED


def test_moved_margin_is_configurable(tmp_path: Path) -> None:
    stage = Stage(tmp_path, UnitConfig(moved_margin_m=0))
    stage.car.gps.position = Location.from_degrees(48.13775, 11.576124)  # ~66 m
    assert stage.present(stage.token()) is Reason.CAR_MOVED


def test_clock_rollback_fails_closed_and_signed_sync_recovers(stage: Stage) -> None:
    token = stage.token(window=3600)
    stage.world.advance(2 * 3600)
    stage.car.clock.advance(-2 * 3600)
    assert stage.present(token) is Reason.CLOCK_UNTRUSTED
    with pytest.raises(AccessDenied) as raised:
        stage.unit.challenge()
    assert raised.value.reason is Reason.CLOCK_UNTRUSTED
    assert not stage.unit.clock_trusted
    assert EventKind.CLOCK_UNTRUSTED in stage.seen.kinds()
    assert stage.world.time_sync(stage.car).accepted
    assert stage.unit.clock_trusted
    assert stage.present(token) is Reason.EXPIRED
    assert stage.present(stage.token()) is Reason.ALLOWED


def test_clock_rollback_during_an_opening_relocks_at_once(stage: Stage) -> None:
    assert stage.present(stage.token()) is Reason.ALLOWED
    stage.car.clock.advance(-3600)
    stage.unit.tick()
    assert stage.car.body.locked
    receipt = verify_receipt(stage.unit.receipts[-1], stage.unit.public_key)
    assert receipt.relock_cause == "clock_untrusted"


def test_one_opening_at_a_time_and_the_waiting_token_is_not_spent(stage: Stage) -> None:
    first, second = stage.token(), stage.token()
    assert stage.present(first) is Reason.ALLOWED
    assert stage.present(second) is Reason.UNIT_BUSY
    stage.unit.trunk_closed()
    assert stage.present(second) is Reason.ALLOWED


def test_challenge_ttl_and_single_use(stage: Stage) -> None:
    token = stage.token()
    assert stage.present(token, delay=lambda: stage.world.advance(31)) is Reason.CHALLENGE_EXPIRED
    challenge = stage.unit.challenge()
    proof = make_proof(stage.courier, token=token, vehicle_id="VIN-1", challenge=challenge)
    foreign = make_proof(stage.courier, token=token, vehicle_id="VIN-1", challenge=b"\x05" * 16)
    assert stage.unit.present(token, action="trunk", proof=foreign,
                             challenge=b"\x05" * 16).reason is Reason.CHALLENGE_UNKNOWN
    assert stage.unit.present(token, action="trunk", proof=proof).reason is Reason.PROOF_INVALID
    outcome = stage.unit.present(token, action="trunk", proof=proof, challenge=challenge)
    assert outcome.allowed


def test_a_failed_proof_burns_the_challenge(stage: Stage) -> None:
    token = stage.token()
    challenge = stage.unit.challenge()
    wrong = make_proof(SigningKey.generate(), token=token, vehicle_id="VIN-1",
                       challenge=challenge)
    assert stage.unit.present(token, action="trunk", proof=wrong,
                             challenge=challenge).reason is Reason.PROOF_INVALID
    right = make_proof(stage.courier, token=token, vehicle_id="VIN-1", challenge=challenge)
    assert stage.unit.present(token, action="trunk", proof=right,
                             challenge=challenge).reason is Reason.CHALLENGE_UNKNOWN


def test_relock_failure_is_retried_on_the_next_tick(stage: Stage) -> None:
    assert stage.present(stage.token()) is Reason.ALLOWED
    stage.car.body.fail_next = "lock_all"
    assert stage.unit.trunk_closed() is True
    assert stage.unit.state is UnitState.TRUNK_OPEN
    assert EventKind.ACTUATOR_FAILED in stage.seen.kinds()
    stage.world.advance(120)
    assert stage.car.body.locked
    assert stage.unit.state is UnitState.LOCKED


def test_a_broken_subscriber_cannot_stop_the_relock(stage: Stage) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("push service down")

    stage.unit.subscribe(broken)
    assert stage.present(stage.token()) is Reason.ALLOWED
    stage.unit.trunk_closed()
    assert stage.car.body.locked


def test_purpose_is_checked_and_carried_into_the_receipt(stage: Stage) -> None:
    token = stage.token(purpose=Purpose.RETURN_PICKUP)
    challenge = stage.unit.challenge()
    proof = make_proof(stage.courier, token=token, vehicle_id="VIN-1", challenge=challenge)
    assert stage.unit.present(token, action="trunk", proof=proof, challenge=challenge,
                             purpose="delivery").reason is Reason.WRONG_PURPOSE
    assert stage.present(token) is Reason.ALLOWED
    stage.unit.trunk_closed()
    receipt = verify_receipt(stage.unit.receipts[-1], stage.unit.public_key)
    assert receipt.purpose is Purpose.RETURN_PICKUP


def test_outcome_is_not_a_bool(stage: Stage) -> None:
    outcome = stage.unit.present(b"junk", action="trunk")
    assert outcome.reason is Reason.MALFORMED
    with pytest.raises(TypeError):
        bool(outcome)


def test_repr_shows_no_secrets(stage: Stage) -> None:
    text = repr(stage.unit)
    assert "VIN-1" in text
    assert "locked" in text
