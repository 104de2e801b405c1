"""Trusted time: the floor, rollback detection, and signed nonce-bound re-sync."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkkey import ManualClock, SigningKey
from trunkkey.cose import Typ, sign1
from trunkkey.errors import DecodeError, InvalidRequest, SignatureError
from trunkkey.vehicle import (
    FileTimeStore,
    MemoryTimeStore,
    SyncOutcome,
    TimeKeeper,
    TimeState,
    make_time_sync,
    read_time_sync,
)

T0 = 1_800_000_000
VIN = "VIN-1"
CARMAKER = SigningKey.generate()


def keeper(clock: ManualClock, store: object, skew: int = 60) -> TimeKeeper:
    return TimeKeeper(clock=clock, store=store, carmaker_key=CARMAKER.public_key,  # type: ignore[arg-type]
                      vehicle_id=VIN, max_skew=skew, randomness=secrets.token_bytes)


def test_time_moves_forward_and_never_below_the_floor() -> None:
    clock = ManualClock(T0)
    tk = keeper(clock, MemoryTimeStore())
    assert tk.now() == T0
    clock.advance(100)
    assert tk.now() == T0 + 100
    clock.advance(-30)  # within the skew: tolerated, but time does not go back
    assert tk.now() == T0 + 100
    assert tk.trusted


def test_rollback_beyond_skew_fails_closed_and_persists() -> None:
    clock, store = ManualClock(T0), MemoryTimeStore()
    tk = keeper(clock, store)
    tk.now()
    clock.advance(-61)
    assert tk.now() is None
    clock.advance(10_000)  # putting the clock forward again does not restore trust
    assert tk.now() is None
    assert not keeper(clock, store).trusted  # nor does a reboot


def test_floor_and_boot_survive_a_reboot_through_a_file(tmp_path: Path) -> None:
    clock, store = ManualClock(T0), FileTimeStore(tmp_path / "time.json")
    tk = keeper(clock, store)
    assert tk.boot == 1
    clock.advance(3600)
    tk.now()
    tk.checkpoint()
    clock.set(T0)  # the battery was pulled: the clock restarts an hour back
    again = keeper(clock, store)
    assert again.boot == 2
    assert again.floor == T0 + 3600
    assert again.now() is None
    assert (tmp_path / "time.json").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"floor": "soon"}),
        json.dumps({"floor": 1, "offset": 0, "untrusted": "no", "boot": 1}),
        "not json",
    ],
)
def test_corrupt_state_file_means_untrusted(tmp_path: Path, content: str) -> None:
    path = tmp_path / "time.json"
    path.write_text(content)
    with pytest.raises((DecodeError, ValueError)):
        FileTimeStore(path).load()
    tk = keeper(ManualClock(T0), FileTimeStore(path))
    assert not tk.trusted
    assert tk.now() is None


def test_file_store_round_trip(tmp_path: Path) -> None:
    store = FileTimeStore(tmp_path / "time.json")
    assert store.load() is None
    state = TimeState(floor=5, offset=-3, untrusted=True, boot=7)
    store.save(state)
    assert store.load() == state


def test_signed_nonce_bound_sync_restores_trust_at_the_true_time() -> None:
    clock = ManualClock(T0)
    tk = keeper(clock, MemoryTimeStore())
    tk.now()
    clock.advance(-7200)
    assert tk.now() is None
    nonce = tk.sync_nonce()
    outcome = tk.apply_sync(make_time_sync(CARMAKER, vehicle_id=VIN, nonce=nonce, time=T0 + 5))
    assert outcome.accepted, outcome.detail
    assert tk.now() == T0 + 5  # the offset corrects the still-wrong local clock
    clock.advance(10)
    assert tk.now() == T0 + 15


def test_sync_replay_wrong_key_wrong_car_and_backwards_are_refused() -> None:
    clock = ManualClock(T0)
    tk = keeper(clock, MemoryTimeStore())
    tk.now()
    old = tk.sync_nonce()
    good = make_time_sync(CARMAKER, vehicle_id=VIN, nonce=old, time=T0)
    assert tk.apply_sync(good).accepted
    assert not tk.apply_sync(good).accepted  # replay: the nonce is spent
    nonce = tk.sync_nonce()
    other_key = SigningKey.generate()
    forged = make_time_sync(other_key, vehicle_id=VIN, nonce=nonce, time=T0)
    assert not tk.apply_sync(forged).accepted
    elsewhere = make_time_sync(CARMAKER, vehicle_id="VIN-2", nonce=nonce, time=T0)
    assert not tk.apply_sync(elsewhere).accepted
    back = tk.apply_sync(make_time_sync(CARMAKER, vehicle_id=VIN, nonce=nonce, time=T0 - 3600))
    assert not back.accepted
    assert "floor" in back.detail
    assert tk.floor == T0


def test_a_sync_message_is_its_own_type() -> None:
    nonce = b"\x01" * 16
    message = make_time_sync(CARMAKER, vehicle_id=VIN, nonce=nonce, time=T0)
    assert read_time_sync(message, CARMAKER.public_key).time == T0
    payload = message[message.index(b"\xa3"):-66]  # the map payload, sans signature
    as_receipt = sign1(CARMAKER, payload, typ=Typ.RECEIPT)
    with pytest.raises(SignatureError):
        read_time_sync(as_receipt, CARMAKER.public_key)
    tampered = bytearray(message)
    tampered[-1] ^= 1
    with pytest.raises(SignatureError):
        read_time_sync(bytes(tampered), CARMAKER.public_key)
    with pytest.raises(DecodeError):
        read_time_sync(b"\x00" * 300, CARMAKER.public_key)


@pytest.mark.parametrize("kwargs", [{"nonce": b"short"}, {"time": -1}, {"vehicle_id": ""}])
def test_make_time_sync_refuses_bad_requests(kwargs: dict[str, object]) -> None:
    request: dict[str, object] = {"vehicle_id": VIN, "nonce": b"\x00" * 16, "time": T0}
    request.update(kwargs)
    with pytest.raises(InvalidRequest):
        make_time_sync(CARMAKER, **request)  # type: ignore[arg-type]


# -- a decision's time is on the store before the decision leaves the keeper ----------------


class FlakyStore(MemoryTimeStore):
    """Counts writes; ``broken`` makes every write raise (a worn-out flash)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.broken = False

    def save(self, state: TimeState) -> None:
        if self.broken:
            raise OSError("flash refused the write")
        self.writes += 1
        super().save(state)


def saved_floor(store: MemoryTimeStore) -> int:
    state = store.load()
    assert state is not None
    return state.floor


def test_decision_time_is_on_the_store_before_it_is_returned() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    clock.advance(10)
    assert tk.now() == T0 + 10
    assert saved_floor(store) == T0  # a peek at the time is not a decision
    assert tk.decision_time() == T0 + 10
    assert saved_floor(store) == T0 + 10


def test_the_floor_is_written_only_when_it_moved() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    writes = store.writes
    for _ in range(100):
        assert tk.decision_time() == T0
    assert store.writes == writes
    clock.advance(1)
    for _ in range(100):
        assert tk.decision_time() == T0 + 1
    assert store.writes == writes + 1
    clock.advance(-30)  # within the skew: time is held at the floor, nothing to write
    assert tk.decision_time() == T0 + 1
    assert store.writes == writes + 1


def test_without_decisions_the_floor_is_written_every_minute_of_clock() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    clock.advance(59)
    tk.now()
    assert saved_floor(store) == T0
    clock.advance(1)
    tk.now()
    assert saved_floor(store) == T0 + 60


def test_a_power_cut_loses_only_floor_no_decision_relied_on() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    clock.advance(40)
    assert tk.decision_time() == T0 + 40
    clock.advance(50)
    assert tk.now() == T0 + 90  # the floor reaches T0+90 in memory only
    clock.set(T0 + 40)  # power off, clock set back; no checkpoint ran
    again = keeper(clock, store)
    assert again.floor == T0 + 40
    assert again.decision_time() == T0 + 40


def test_a_checkpoint_keeps_the_whole_floor_over_a_clean_reboot() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    clock.advance(50)
    tk.now()
    assert tk.checkpoint() is True
    clock.advance(-50)
    assert keeper(clock, store).decision_time() == T0 + 50


def test_a_store_that_cannot_write_gives_no_decision_time_until_it_can() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    store.broken = True
    assert tk.decision_time() == T0  # the floor on the store already covers this second
    clock.advance(1)
    assert tk.now() == T0 + 1
    assert tk.checkpoint() is False
    assert tk.decision_time() is None
    assert tk.trusted  # nothing says the clock is wrong: only the store failed
    store.broken = False
    assert tk.decision_time() == T0 + 1
    assert saved_floor(store) == T0 + 1


def test_a_store_that_cannot_write_at_boot_gives_no_decision_time() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    keeper(clock, store)
    store.broken = True
    clock.advance(5)
    tk = keeper(clock, store)  # boots; the boot count cannot be written yet
    assert tk.boot == 2
    assert tk.decision_time() is None
    store.broken = False
    assert tk.decision_time() == T0 + 5
    assert store.load() == TimeState(floor=T0 + 5, boot=2)


def test_a_rollback_the_store_cannot_record_still_fails_closed() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    store.broken = True
    clock.advance(-61)
    assert tk.now() is None
    assert not tk.trusted
    clock.advance(61)
    assert tk.decision_time() is None  # untrusted for the rest of this boot


def test_a_sync_the_store_cannot_record_is_refused_and_changes_nothing() -> None:
    clock, store = ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    clock.advance(-7200)
    assert tk.now() is None
    store.broken = True
    nonce = tk.sync_nonce()
    outcome = tk.apply_sync(make_time_sync(CARMAKER, vehicle_id=VIN, nonce=nonce, time=T0))
    assert not outcome.accepted
    assert outcome.detail == "synchronised time could not be persisted (OSError)"
    assert not tk.trusted
    assert tk.now() is None


def test_a_sync_outcome_is_not_a_bool() -> None:
    clock = ManualClock(T0)
    tk = keeper(clock, MemoryTimeStore())
    refused = tk.apply_sync(b"junk")
    assert isinstance(refused, SyncOutcome)
    assert refused.accepted is False
    with pytest.raises(TypeError, match="accepted"):
        bool(refused)
    accepted = tk.apply_sync(
        make_time_sync(CARMAKER, vehicle_id=VIN, nonce=tk.sync_nonce(), time=T0))
    assert accepted.accepted is True
    with pytest.raises(TypeError, match="accepted"):
        bool(accepted)


def test_elapsed_time_never_runs_back_when_the_clock_does() -> None:
    clock = ManualClock(T0)
    tk = keeper(clock, MemoryTimeStore())
    start = tk.monotonic()
    clock.advance(10)
    assert tk.monotonic() == start + 10
    clock.advance(-25)  # seen going back: counts as no time at all
    assert tk.monotonic() == start + 10
    clock.advance(50)
    assert tk.monotonic() == start + 60
    nonce = tk.sync_nonce()  # a sync moves trusted time, not the elapsed count
    assert tk.apply_sync(make_time_sync(CARMAKER, vehicle_id=VIN, nonce=nonce,
                                        time=T0 + 3600)).accepted
    assert tk.monotonic() == start + 60


_STEPS = st.one_of(
    # Weighted towards what a revival needs: steps shorter than the minute
    # between periodic writes, set-backs within the skew, and power cuts.
    st.tuples(st.just("advance"), st.integers(0, 59)),
    st.tuples(st.just("advance"), st.integers(0, 59)),
    st.tuples(st.just("advance"), st.integers(60, 400)),
    st.tuples(st.just("back"), st.integers(1, 60)),  # within the skew
    st.tuples(st.just("back"), st.integers(1, 60)),
    st.tuples(st.just("back"), st.integers(61, 7200)),
    st.tuples(st.just("fast"), st.integers(1, 300)),  # the car's clock runs ahead
    st.tuples(st.just("reboot"), st.just(0)),
    st.tuples(st.just("power_cut"), st.just(0)),
    st.tuples(st.just("power_cut"), st.just(0)),
    st.tuples(st.just("sync"), st.just(0)),
)


@settings(max_examples=500, deadline=None)
@given(steps=st.lists(st.tuples(_STEPS, st.sampled_from(["decide", "peek", "none"])),
                      max_size=30))
def test_no_clock_steps_reboots_or_power_cuts_take_decision_time_back(
    steps: list[tuple[tuple[str, int], str]],
) -> None:
    """After each step the keeper is asked for a decision's time, or only for the time."""
    true, clock, store = ManualClock(T0), ManualClock(T0), FlakyStore()
    tk = keeper(clock, store)
    latest = 0
    for (step, seconds), then in steps:
        if step == "advance":
            true.advance(seconds)
            clock.advance(seconds)
        elif step == "back":
            clock.advance(-seconds)
        elif step == "fast":
            clock.advance(seconds)
        elif step == "reboot":
            tk.checkpoint()
            tk = keeper(clock, store)
        elif step == "power_cut":
            tk = keeper(clock, store)
        else:
            floor = tk.floor
            outcome = tk.apply_sync(make_time_sync(
                CARMAKER, vehicle_id=VIN, nonce=tk.sync_nonce(), time=true.now()))
            # The carmaker's true time is refused only below the floor (a fast clock).
            assert outcome.accepted is (true.now() >= floor - 60)
        if then == "peek":
            tk.now()
        elif then == "decide":
            at = tk.decision_time()
            if at is not None:
                assert at >= latest, "a decision was made at an earlier time than one before it"
                assert saved_floor(store) >= at, "a decision's time is not on the store"
                latest = at


def test_every_time_promise_in_the_vehicle_docs_cites_tests_that_exist() -> None:
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "vehicle.md").read_text(encoding="utf-8")
    section = text[text.index("## Trusted time"):text.index("## Relay attacks")]
    rows = [line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith(("| promise", "|---"))]
    assert len(rows) >= 15
    for row in rows:
        cited = re.findall(r"`tests/(\w+\.py)::(\w+)`", row)
        assert cited, f"a promise with no test: {row}"
        for filename, name in cited:
            source = (root / "tests" / filename).read_text(encoding="utf-8")
            assert re.search(rf"^(def|class) {name}\b|^{name} = ", source, re.MULTILINE), (
                filename, name)
