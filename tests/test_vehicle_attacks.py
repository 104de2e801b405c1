"""Attacks on the vehicle unit through its public API: a careless operator and a
failing real-time clock (the checks each attack found missing live in
``vehicle/unit.py`` (boot) and ``vehicle/timekeeping.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trunkkey import (
    AccessDenied,
    InvalidRequest,
    LedgerError,
    Location,
    ManualClock,
    MemoryLedger,
    Reason,
    SigningKey,
)
from trunkkey.logentry import EntryKind, decode_entry
from trunkkey.testing.vehicle import SimulatedBody, SimulatedGps, World
from trunkkey.vehicle import (
    EventKind,
    GapDetector,
    MemoryTimeStore,
    UnitState,
    VehicleUnit,
    make_time_sync,
    verify_receipt,
)

T0 = 1_800_000_000
PLACE = Location.from_degrees(48.137154, 11.576124)
VIN = "VIN-ATTACK"


class FlakyClock:
    """A real-time clock whose reads can fail (``OSError``) or answer nonsense."""

    def __init__(self, start: int) -> None:
        self.clock = ManualClock(start)
        self.broken = False
        self.answer: object = None  # when set, returned instead of the time

    def now(self) -> int:
        if self.broken:
            raise OSError("RTC read failed")
        if self.answer is not None:
            return self.answer  # type: ignore[return-value]
        return self.clock.now()


class Bench:
    """A unit on an in-memory ledger with a clock the test can break."""

    def __init__(self, *, broken_at_boot: bool = False) -> None:
        self.world = World(start=T0, ledger="memory")
        self.carmaker = self.world.carmaker_key
        self.clock = FlakyClock(T0)
        self.clock.broken = broken_at_boot
        self.body = SimulatedBody()
        self.body.trunk_unlatched = True  # whatever the car was doing before the boot
        self.seen = GapDetector()
        self.unit = VehicleUnit(
            vehicle_id=VIN, vehicle_key=SigningKey.generate(),
            trust_store=self.world.trust_store, carmaker_key=self.carmaker.public_key,
            clock=self.clock, actuator=self.body, gps=SimulatedGps(PLACE),
            ledger=MemoryLedger(), time_store=MemoryTimeStore(),
        )
        self.unit.subscribe(self.seen)

    def token(self) -> bytes:
        return self.world.mint(VIN, courier=None)


# -- a clock that cannot be read ------------------------------------------------


def test_a_clock_that_cannot_be_read_denies_with_clock_untrusted_and_never_raises() -> None:
    bench = Bench()
    token = bench.token()
    bench.clock.broken = True
    outcome = bench.unit.present(token, action="trunk")
    assert outcome.reason is Reason.CLOCK_UNTRUSTED
    assert outcome.detail == "the clock cannot be read; refusing to decide"
    with pytest.raises(AccessDenied) as refused:
        bench.unit.challenge()
    assert refused.value.reason is Reason.CLOCK_UNTRUSTED
    bench.unit.tick()
    assert bench.unit.trunk_closed() is False
    assert bench.body.trunk_openings == 0
    # A read that fails is not a rollback: the clock back, the token opens.
    bench.clock.broken = False
    assert bench.unit.present(token, action="trunk").allowed


@pytest.mark.parametrize(
    "answer", [T0 + 10.5, "1800000010", None.__class__, True, -1, 2**40, 2**63 - 1],
)
def test_a_clock_that_answers_something_other_than_unix_seconds_is_not_trusted(
    answer: object,
) -> None:
    bench = Bench()
    token = bench.token()
    bench.clock.answer = answer
    assert bench.unit.present(token, action="trunk").reason is Reason.CLOCK_UNTRUSTED
    assert type(bench.unit.trusted_time_floor) is int
    assert bench.unit.trusted_time_floor == T0
    assert bench.body.trunk_openings == 0


def test_an_open_trunk_relocks_at_once_when_the_clock_stops_answering() -> None:
    bench = Bench()
    assert bench.unit.present(bench.token(), action="trunk").allowed
    bench.clock.clock.advance(5)
    bench.clock.broken = True
    bench.unit.tick()
    assert bench.unit.state is UnitState.LOCKED
    assert bench.body.locked
    receipt = verify_receipt(bench.unit.receipts[-1], bench.unit.public_key)
    assert receipt.relock_cause == "clock_untrusted"
    assert EventKind.CLOCK_UNTRUSTED in bench.seen.kinds()


def test_closing_the_trunk_relocks_while_the_clock_cannot_be_read() -> None:
    bench = Bench()
    assert bench.unit.present(bench.token(), action="trunk").allowed
    bench.clock.broken = True
    assert bench.unit.trunk_closed() is True
    assert bench.unit.state is UnitState.LOCKED
    assert bench.body.locked


def test_a_unit_whose_clock_cannot_be_read_at_boot_still_comes_up_and_locks() -> None:
    bench = Bench(broken_at_boot=True)
    assert bench.body.locked
    assert bench.unit.boot_number == 1
    token = bench.token()
    assert bench.unit.present(token, action="trunk").reason is Reason.CLOCK_UNTRUSTED
    bench.clock.broken = False
    assert bench.unit.present(token, action="trunk").allowed


def test_a_time_sync_is_refused_not_raised_while_the_clock_cannot_be_read() -> None:
    bench = Bench()
    nonce = bench.unit.time_sync_nonce()
    bench.clock.broken = True
    sync = make_time_sync(bench.carmaker, vehicle_id=VIN, nonce=nonce, time=T0 + 100)
    outcome = bench.unit.apply_time_sync(sync)
    assert not outcome.accepted
    assert outcome.detail == "the clock cannot be read"
    assert bench.unit.trusted_time_floor == T0


# -- two units over one state directory -----------------------------------------


def _parts(world: World) -> dict[str, object]:
    return {
        "vehicle_id": VIN, "vehicle_key": SigningKey.generate(),
        "trust_store": world.trust_store, "carmaker_key": world.carmaker_key.public_key,
        "clock": ManualClock(T0), "actuator": SimulatedBody(), "gps": SimulatedGps(PLACE),
    }


def test_a_second_unit_cannot_boot_over_a_state_directory_a_live_unit_holds(
    tmp_path: Path,
) -> None:
    # Two live units over one directory would each allow "one opening at a
    # time" on the same car, count boots twice, and fork the access log: the
    # first unit's receipts would carry proofs its own journal does not hold.
    world = World(start=T0, ledger="memory")
    parts = _parts(world)
    first = VehicleUnit.boot(tmp_path, **parts)
    with pytest.raises(LedgerError, match="held by another running unit"):
        VehicleUnit.boot(tmp_path, **parts)
    token = world.mint(VIN, courier=None)
    assert first.present(token, action="trunk").allowed
    assert first.trunk_closed() is True
    receipt = verify_receipt(first.receipts[-1], first.public_key, vehicle_id=VIN)
    assert receipt.log is not None  # its proof holds: checked by verify_receipt
    first.close()
    again = VehicleUnit.boot(tmp_path, **parts)
    assert again.boot_number == 2
    assert again.present(token, action="trunk").reason is Reason.ALREADY_USED
    again.close()
    again.close()  # closing twice is harmless


def test_a_boot_that_fails_leaves_the_state_directory_free(tmp_path: Path) -> None:
    world = World(start=T0, ledger="memory")
    parts = _parts(world)
    with pytest.raises(InvalidRequest):
        VehicleUnit.boot(tmp_path, **{**parts, "vehicle_id": ""})
    unit = VehicleUnit.boot(tmp_path, **parts)
    assert unit.state is UnitState.LOCKED
    unit.close()


# -- a lock at boot that fails --------------------------------------------------


def test_a_lock_that_failed_at_boot_is_retried_until_the_car_is_locked(tmp_path: Path) -> None:
    # The unit died with the trunk open; at the next boot the body controller
    # refuses the lock once. A relock that fails is retried on every tick:
    # so must this one, or the trunk stays unlatched until someone notices.
    world = World(start=T0, state_dir=tmp_path)
    car = world.enrol_car(VIN)
    world.park(car, PLACE, radius_m=50)
    assert car.unit.present(world.mint(car, courier=None), action="trunk").allowed
    assert car.body.trunk_unlatched
    car.body.fail_next = "lock_all"
    unit = world.reboot(car)
    assert unit.boot_lock_failed is True
    assert car.body.trunk_unlatched
    world.advance(1)
    assert car.body.locked
    assert unit.boot_lock_failed is False
    assert unit.state is UnitState.LOCKED


def test_a_presentation_first_retries_a_lock_that_failed_at_boot(tmp_path: Path) -> None:
    world = World(start=T0, state_dir=tmp_path)
    car = world.enrol_car(VIN)
    world.park(car, PLACE, radius_m=50)
    car.body.doors_unlocked = True
    car.body.fail_next = "lock_all"
    unit = world.reboot(car)
    seen = GapDetector()
    unit.subscribe(seen)
    car.body.fail_next = "lock_all"  # and once more, at the presentation's retry
    assert unit.present(world.mint(car, courier=None), action="trunk").allowed
    failed = [e.detail for e in seen.events if e.kind is EventKind.ACTUATOR_FAILED]
    assert failed == ["lock at boot failed", "lock at boot failed"]
    assert unit.boot_lock_failed is True
    assert unit.trunk_closed() is True  # the relock locks everything, doors included
    assert car.body.locked
    assert unit.boot_lock_failed is False


def test_a_unit_in_another_process_holds_its_directory_until_that_process_dies(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from trunkkey.vehicle import _statelock; "
         f"_statelock.hold({str(tmp_path)!r}); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        world = World(start=T0, ledger="memory")
        with pytest.raises(LedgerError, match="held by another running unit"):
            VehicleUnit.boot(tmp_path, **_parts(world))
        assert not (tmp_path / "ledger.sqlite").exists()  # refused before touching state
        holder.kill()  # a crash, not a clean close: the kernel drops the lock
        holder.wait()
        unit = VehicleUnit.boot(tmp_path, **_parts(world))
        unit.close()
    finally:
        holder.kill()
        holder.wait()
        holder.stdin.close()  # type: ignore[union-attr]
        holder.stdout.close()


@pytest.mark.parametrize("planted", ["symlink", "directory"])
def test_a_lock_file_that_is_not_a_plain_file_refuses_the_boot(
    tmp_path: Path, planted: str,
) -> None:
    lock = tmp_path / "unit.lock"
    if planted == "symlink":
        lock.symlink_to(tmp_path / "elsewhere")
    else:
        lock.mkdir()
    world = World(start=T0, ledger="memory")
    with pytest.raises(LedgerError, match="cannot open"):
        VehicleUnit.boot(tmp_path, **_parts(world))
    assert not (tmp_path / "elsewhere").exists()


# -- a ledger lost from a state directory ----------------------------------------


def _lose_ledger(state: Path) -> None:
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (state / name).unlink(missing_ok=True)


def test_a_token_does_not_open_twice_when_the_ledger_file_is_lost(tmp_path: Path) -> None:
    # A careless clean-up (or a file system repair) removes ledger.sqlite. A
    # new empty ledger would have forgotten every spent token: each would
    # open the trunk again for the rest of its window.
    world = World(start=T0, ledger="memory")
    parts = _parts(world)
    token = world.mint(VIN, courier=None)
    unit = VehicleUnit.boot(tmp_path, **parts)
    assert unit.present(token, action="trunk").allowed
    assert unit.trunk_closed() is True
    unit.close()
    _lose_ledger(tmp_path)
    again = VehicleUnit.boot(tmp_path, **parts)
    outcome = again.present(token, action="trunk")
    assert outcome.reason is Reason.ISSUED_BEFORE_LEDGER
    kinds = [decode_entry(raw).kind for raw in again.access_log.entries(0)]
    assert kinds[:2] == [EntryKind.LEDGER_RECOVERED, EntryKind.BOOT]
    assert list(tmp_path.glob("ledger.sqlite.damaged-*")) == []  # nothing was there to move
    # Tokens issued after the new ledger's start open as usual.
    world.true_clock.advance(301)
    parts["clock"].advance(301)  # type: ignore[attr-defined]
    fresh = world.mint(VIN, courier=None)
    assert again.present(fresh, action="trunk").allowed
    again.close()


def test_a_first_boot_makes_a_ledger_that_refuses_nothing(tmp_path: Path) -> None:
    world = World(start=T0, ledger="memory")
    unit = VehicleUnit.boot(tmp_path, **_parts(world))
    assert unit.present(world.mint(VIN, courier=None), action="trunk").allowed
    unit.close()


def test_a_lost_ledger_beside_an_unreadable_time_file_refuses_the_boot(tmp_path: Path) -> None:
    world = World(start=T0, ledger="memory")
    parts = _parts(world)
    VehicleUnit.boot(tmp_path, **parts).close()
    _lose_ledger(tmp_path)
    (tmp_path / "time.json").write_text("{not json")
    with pytest.raises(LedgerError, match="ledger recover"):
        VehicleUnit.boot(tmp_path, **parts)
    assert not (tmp_path / "ledger.sqlite").exists()


# -- a time floor lost from a state directory -------------------------------------


def test_a_time_floor_lost_beside_a_used_ledger_leaves_the_unit_untrusted_until_a_sync(
    tmp_path: Path,
) -> None:
    # Without time.json a boot looked like a first install: floor 0, trusted,
    # so a clock set back by a workshop tool made an expired token valid again.
    world = World(start=T0, ledger="memory")
    parts = _parts(world)
    clock = parts["clock"]
    assert isinstance(clock, ManualClock)
    late = world.mint(VIN, courier=None, window=100)
    unit = VehicleUnit.boot(tmp_path, **parts)
    clock.advance(1000)
    assert unit.present(late, action="trunk").reason is Reason.EXPIRED
    unit.close()
    (tmp_path / "time.json").unlink()
    clock.set(T0 + 10)  # set back: the token would look valid again
    again = VehicleUnit.boot(tmp_path, **parts)
    assert again.clock_trusted is False
    assert again.present(late, action="trunk").reason is Reason.CLOCK_UNTRUSTED
    nonce = again.time_sync_nonce()
    sync = make_time_sync(world.carmaker_key, vehicle_id=VIN, nonce=nonce, time=T0 + 1000)
    assert again.apply_time_sync(sync).accepted
    assert again.present(late, action="trunk").reason is Reason.EXPIRED
    again.close()
    # A reboot keeps the restored floor: the file is there again.
    third = VehicleUnit.boot(tmp_path, **parts)
    assert third.clock_trusted is True
    third.close()
