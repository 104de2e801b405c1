"""The vehicle unit's state machine, end to end with real keys and a durable ledger."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import trunkkey
from trunkkey import (
    AccessDenied,
    Action,
    InvalidRequest,
    Location,
    ManualClock,
    MemoryLedger,
    Purpose,
    Reason,
    SigningKey,
    SqliteLedger,
    TrustStore,
    make_proof,
)
from trunkkey.consent import UpdateRefused, sign_revocation_list
from trunkkey.geo import distance_m
from trunkkey.testing.vehicle import Car, SimulatedBody, SimulatedGps, World, courier_present
from trunkkey.vehicle import (
    Event,
    EventKind,
    GapDetector,
    MemoryTimeStore,
    TimeState,
    UnitConfig,
    UnitState,
    VehicleUnit,
    verify_receipt,
)
from trunkkey.vehicle.state import DEFAULT_MOVED_MARGIN_M, Opening, Outcome

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


# -- time that never runs back: what a decision relied on is on disk first ---------------


def power_cut(stage: Stage) -> None:
    """The unit dies without a word: only what it persisted survives.

    ``World.reboot`` is the clean shutdown (``close()`` first); here the old
    unit never runs again, and a new one boots over the same files.
    """
    car = stage.car
    path = car.ledger.path  # type: ignore[attr-defined]
    car.ledger.close()  # the connection dies with the process; its commits stay
    car.ledger = SqliteLedger(path)
    car.unit = stage.world._boot(car)


@pytest.mark.parametrize(("clock_after", "reason"), [
    (70, Reason.CLOCK_UNTRUSTED),  # the review's sequence: within the skew of the old floor
    (125, Reason.EXPIRED),  # within the skew of the floor the refusal relied on
])
def test_a_token_refused_as_expired_stays_refused_after_a_power_cut_and_a_set_back_clock(
    stage: Stage, clock_after: int, reason: Reason,
) -> None:
    token = stage.token(window=100)
    stage.world.advance(130)  # the periodic write puts the floor at T0+130 on disk
    stage.world.advance(55)  # too little for another periodic write
    assert stage.present(token) is Reason.EXPIRED
    stage.car.clock.set(T0 + clock_after)  # set back while the power is off
    power_cut(stage)
    assert stage.present(token) is reason
    assert stage.car.body.trunk_openings == 0


def test_a_clean_shutdown_persists_the_floor(stage: Stage) -> None:
    stage.world.advance(30)  # ticks only: the floor moves in memory, not yet on disk
    assert stage.car.time_store.load().floor == T0  # type: ignore[union-attr]
    stage.car.clock.advance(-30)  # back within the skew while the unit is off
    stage.world.reboot(stage.car)
    assert stage.unit.trusted_time_floor == T0 + 30
    assert stage.unit.clock_trusted


class FlakyTimeStore(MemoryTimeStore):
    """A time store that counts its writes and can be made to refuse them (worn flash)."""

    def __init__(self, state: TimeState | None = None) -> None:
        super().__init__()
        self.writes = 0
        self.broken = False
        if state is not None:
            super().save(state)

    def save(self, state: TimeState) -> None:
        if self.broken:
            raise OSError("flash refused the write")
        self.writes += 1
        super().save(state)


def use_time_store(stage: Stage, store: FlakyTimeStore) -> None:
    """Reboot the stage's car over ``store`` (seeded with what its old store held)."""
    stage.car.time_store = store
    stage.world.reboot(stage.car)
    stage.seen = GapDetector()
    stage.unit.subscribe(stage.seen)


def test_no_event_reports_a_time_the_store_does_not_hold(stage: Stage) -> None:
    store = FlakyTimeStore(stage.car.time_store.load())
    use_time_store(stage, store)
    ahead: list[EventKind] = []

    def check(event: Event) -> None:
        saved = store.load()
        if event.at is not None and (saved is None or saved.floor < event.at):
            ahead.append(event.kind)

    stage.unit.subscribe(check)
    token = stage.token(window=100)
    stage.world.advance(5)
    assert stage.present(token) is Reason.ALLOWED
    stage.world.advance(20)
    assert stage.unit.trunk_closed() is True
    stage.world.advance(7)
    stage.unit.challenge()
    stage.world.advance(90)
    assert stage.present(token) is Reason.ALREADY_USED
    stage.world.advance(3)
    assert stage.present(stage.token()) is Reason.ALLOWED
    stage.world.advance(stage.unit.config.relock_timeout)  # relocks by itself
    assert stage.car.body.locked
    stage.world.advance(11)
    assert stage.unit.present(b"junk", action="trunk").reason is Reason.MALFORMED
    stage.world.advance(13)
    assert stage.unit.apply_revocations(b"junk").reason is Reason.CHAIN_INVALID
    assert {e.kind for e in stage.seen.events} >= {
        EventKind.CHALLENGE_ISSUED, EventKind.TOKEN_ACCEPTED, EventKind.TRUNK_OPENED,
        EventKind.TRUNK_CLOSED, EventKind.RELOCKED, EventKind.RECEIPT_SIGNED,
        EventKind.ACCESS_DENIED, EventKind.REVOCATIONS_REFUSED,
    }
    assert ahead == []


def test_a_time_store_that_cannot_write_fails_closed_until_it_can(stage: Stage) -> None:
    store = FlakyTimeStore(stage.car.time_store.load())
    use_time_store(stage, store)
    token = stage.token()
    store.broken = True
    stage.world.advance(1)  # the floor moved: a decision now needs a write first
    outcome = stage.unit.present(token, action="trunk")
    assert (outcome.reason, outcome.detail) == (
        Reason.CLOCK_UNTRUSTED, "trusted time could not be persisted; refusing to decide")
    with pytest.raises(AccessDenied) as raised:
        stage.unit.challenge()
    assert raised.value.reason is Reason.CLOCK_UNTRUSTED
    assert stage.unit.apply_revocations(b"junk").reason is Reason.CLOCK_UNTRUSTED
    synced = stage.world.time_sync(stage.car)
    assert not synced.accepted
    assert "could not be persisted" in synced.detail
    assert stage.car.body.trunk_openings == 0
    store.broken = False  # the write goes through again: no sync is needed
    assert stage.present(token) is Reason.ALLOWED


def test_a_unit_whose_time_store_cannot_write_boots_locked_and_refuses(stage: Stage) -> None:
    token = stage.token()
    store = FlakyTimeStore(stage.car.time_store.load())
    store.broken = True
    stage.car.body.doors_unlocked = True  # whatever the car was doing before
    use_time_store(stage, store)
    assert stage.car.body.locked
    assert stage.present(token) is Reason.CLOCK_UNTRUSTED
    store.broken = False
    assert stage.present(token) is Reason.ALLOWED
    assert store.load().boot == 2  # type: ignore[union-attr]  # the boot is counted late, not lost


def test_a_flood_of_presentations_writes_the_floor_once_per_second_of_clock(
    stage: Stage,
) -> None:
    store = FlakyTimeStore(stage.car.time_store.load())
    use_time_store(stage, store)
    before = store.writes
    for _ in range(10):
        for _ in range(20):
            assert stage.unit.present(b"junk", action="trunk").reason is Reason.MALFORMED
        stage.car.clock.advance(1)  # no tick: only the presentations read the clock
    # The first second's floor was already on the store; each later one costs one write.
    assert store.writes - before == 9


def test_a_clock_stepped_back_after_a_challenge_does_not_stretch_its_lifetime(
    stage: Stage,
) -> None:
    token = stage.token()
    challenge = stage.unit.challenge()
    stage.car.clock.advance(-25)  # within the skew: the trusted floor does not notice
    stage.unit.tick()
    stage.car.clock.advance(50)  # 50 s have passed; the clock reads 25 s after the issue
    proof = make_proof(stage.courier, token=token, vehicle_id="VIN-1", challenge=challenge)
    outcome = stage.unit.present(token, action="trunk", proof=proof, challenge=challenge)
    assert outcome.reason is Reason.CHALLENGE_EXPIRED
    assert outcome.detail == "answered 50 s after issue; lifetime is 30 s"
    assert stage.present(token) is Reason.ALLOWED  # the token was not spent


def test_update_refused_names_exactly_the_reasons_its_raisers_use() -> None:
    # A unit's UpdateOutcome.reason is UpdateRefused.reason: its docstring is the
    # list a backend alarms on, so it must name every code raised and no other.
    raised: set[str] = set()
    for path in Path(trunkkey.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                and isinstance(node.exc.func, ast.Name) and node.exc.func.id == "UpdateRefused"
            ):
                code = node.exc.args[0]
                assert isinstance(code, ast.Attribute), f"{path}:{node.lineno}: not Reason.X"
                raised.add(Reason[code.attr].value)
    doc = UpdateRefused.__doc__ or ""
    named = set(re.findall(r"\* ``([a-z_]+)``", doc))
    assert raised
    assert named == raised


def test_a_clock_run_far_ahead_refuses_tokens_and_no_sync_of_true_time_undoes_it(
    stage: Stage,
) -> None:
    token = stage.token(window=3600)
    stage.car.clock.advance(2 * 3600)  # not detectable: forward is what clocks do
    assert stage.present(token) is Reason.EXPIRED
    stage.car.clock.advance(-2 * 3600)  # put right locally: now far below the floor
    assert stage.present(stage.token()) is Reason.CLOCK_UNTRUSTED
    synced = stage.world.time_sync(stage.car)
    assert (synced.accepted, synced.detail) == (False, "time sync is below the trusted floor")
    assert stage.present(stage.token()) is Reason.CLOCK_UNTRUSTED
    assert stage.car.body.trunk_openings == 0


def test_residual_a_clock_held_back_while_the_unit_is_off_is_not_detected(
    stage: Stage,
) -> None:
    # The documented limit of a floor: it keeps the car's time from running
    # back, not from running slow. A token never refused can outlive its window
    # in true time by as long as the clock was held back while the unit was off.
    token = stage.token(window=100)
    stage.world.advance(50)
    assert stage.unit.challenge()  # a decision: the floor T0+50 is stored
    stage.world.true_clock.advance(3600)  # an hour off; the clock is stopped meanwhile
    stage.world.reboot(stage.car)
    assert stage.unit.clock_trusted
    assert stage.present(token) is Reason.ALLOWED
    assert stage.world.now > T0 + 100 + stage.unit.config.policy.max_skew


def test_a_spent_token_pruned_at_a_stored_time_does_not_come_back(stage: Stage) -> None:
    token = stage.token(window=100)
    assert stage.present(token) is Reason.ALLOWED
    assert stage.unit.trunk_closed() is True
    stage.world.advance(450)
    stage.unit.challenge()  # a decision: the floor T0+450 is stored
    assert stage.car.ledger.prune(T0 + 450) == 1  # kept until T0+100+300 only
    stage.car.clock.set(T0 + 400)  # within the skew of the stored floor
    power_cut(stage)
    assert stage.present(token) is Reason.EXPIRED
    assert stage.car.body.trunk_openings == 1


def test_a_lock_that_fails_at_boot_is_reported_to_the_first_subscriber(stage: Stage) -> None:
    stage.car.body.fail_next = "lock_all"
    unit = stage.world.reboot(stage.car)
    seen = GapDetector()
    unit.subscribe(seen)
    failed = [(e.kind, e.detail) for e in seen.events if e.kind is EventKind.ACTUATOR_FAILED]
    assert failed == [(EventKind.ACTUATOR_FAILED, "lock at boot failed")]
    assert unit.boot_lock_failed is True


def test_a_unit_whose_boot_lock_held_says_the_car_is_locked(stage: Stage) -> None:
    assert stage.unit.boot_lock_failed is False
    assert stage.world.reboot(stage.car).boot_lock_failed is False


def test_a_presentation_refused_before_its_token_is_read_names_no_token(stage: Stage) -> None:
    outcome = stage.unit.present(b"\x00", action="trunk", proof=b"p", challenge=bytes(16))
    assert not outcome.allowed
    assert outcome.token_id is None


# -- "the car was moved": the margin, to the metre -------------------------------------


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


# -- configuration, and what the unit hands out ----------------------------------------


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


# -- construction and boot -------------------------------------------------------------


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
    with pytest.raises(
        InvalidRequest,
        match=r"^vehicle_key must be a trunkkey\.SigningKey or another SigningBackend$",
    ):
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


# -- an untrusted clock: every refusal, its event, the alarm once per episode ----------


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


# -- signed updates: a unit that cannot take them, and one that can --------------------


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


# -- actuator faults and relocking: the exact instant, a failing lock ------------------


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


# -- the simulated hardware: the attack suite's assertions rest on it ------------------


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


def test_an_outcome_built_without_a_token_names_none() -> None:
    # A refusal before any token was read carries neither a token id nor a decision.
    outcome = Outcome(reason=Reason.MALFORMED, detail="no token")
    assert outcome.token_id is None
    assert outcome.decision is None
