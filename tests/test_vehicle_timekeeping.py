"""Trusted time: the floor, rollback detection, and signed nonce-bound re-sync."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from trunkkey import ManualClock, SigningKey
from trunkkey.cose import Typ, sign1
from trunkkey.errors import DecodeError, InvalidRequest, SignatureError
from trunkkey.vehicle import (
    FileTimeStore,
    MemoryTimeStore,
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
