"""Unlinkable presence (trunkkey.vehicle.presence): the courier finds the car in its
window; nobody can link its advertisements across periods or days."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkkey.errors import InvalidRequest
from trunkkey.testing.vehicle import World
from trunkkey.vehicle import PresenceBeacon, PresenceSecret, presence_ids
from trunkkey.vehicle.presence import DEFAULT_PERIOD

DAY = 86_400
START = 1_800_000_000
SECRET = PresenceSecret(bytes(range(32)))


def test_the_courier_recognises_the_car_throughout_its_window_and_only_then() -> None:
    beacon = PresenceBeacon(SECRET)
    beacon.expect(not_before=START, expires=START + 3600)
    window = presence_ids(SECRET, not_before=START, expires=START + 3600)
    for at in range(START, START + 3600, 97):
        advertised = beacon.advertisement(at)
        assert advertised is not None
        assert window.matches(advertised, at)
    # The same car tomorrow: the courier's list says nothing about it.
    beacon.expect(not_before=START + DAY, expires=START + DAY + 3600)
    tomorrow = beacon.advertisement(START + DAY + 10)
    assert tomorrow is not None
    assert tomorrow not in window.ids
    assert not window.matches(tomorrow, START + DAY + 10)


def test_a_car_that_waits_for_nobody_advertises_nothing() -> None:
    beacon = PresenceBeacon(SECRET)
    assert beacon.advertisement(START) is None
    beacon.expect(not_before=START + 600, expires=START + 1200)
    assert beacon.advertisement(START) is None
    assert beacon.advertisement(START + 600) is not None
    assert beacon.advertisement(START + 1200) is None


def test_the_window_list_holds_the_windows_periods_and_no_more() -> None:
    window = presence_ids(SECRET, not_before=START, expires=START + 3600)
    first, last = START // DEFAULT_PERIOD, (START + 3599) // DEFAULT_PERIOD
    assert len(window.ids) == last - first + 1
    assert window.ids == tuple(SECRET.id_for_period(p) for p in range(first, last + 1))
    assert not window.matches(window.ids[0], START - 1)
    assert not window.matches(window.ids[-1], START + 3600)


@settings(max_examples=60)
@given(one=st.integers(0, 2**40), two=st.integers(0, 2**40))
def test_identifiers_of_two_periods_are_unrelated(one: int, two: int) -> None:
    a, b = SECRET.id_for_period(one), SECRET.id_for_period(two)
    assert (a == b) == (one == two)
    if one != two:
        # No shared byte run longer than chance between two 16-byte strings.
        assert not any(a[i : i + 4] in b for i in range(len(a) - 3))


@settings(max_examples=30)
@given(secret=st.binary(min_size=32, max_size=32), period=st.integers(0, 2**40))
def test_another_cars_identifier_is_unrelated(secret: bytes, period: int) -> None:
    if secret != bytes(range(32)):
        assert PresenceSecret(secret).id_for_period(period) != SECRET.id_for_period(period)


def test_nothing_advertised_is_derived_from_the_vin_alone(tmp_path: Path) -> None:
    world = World(start=START, state_dir=tmp_path)
    car = world.enrol_car("WVWZZZ1JZXW000001")
    window = world.book(car, window=3600)
    assert car.beacon is not None
    advertised = car.beacon.advertisement(world.now)
    assert advertised is not None
    assert window.matches(advertised, world.now)
    assert b"WVWZZZ" not in advertised
    # A second car with the same VIN in another world (another secret) advertises otherwise.
    other = World(start=START, state_dir=tmp_path / "other").enrol_car("WVWZZZ1JZXW000001")
    assert other.beacon is not None
    other.beacon.expect(not_before=START, expires=START + 3600)
    assert other.beacon.advertisement(START) != advertised


def test_the_secret_stays_secret_and_bad_input_is_refused() -> None:
    assert bytes(range(32)).hex() not in repr(SECRET)
    with pytest.raises(TypeError):
        pickle.dumps(SECRET)
    with pytest.raises(InvalidRequest):
        PresenceSecret(b"short")
    with pytest.raises(InvalidRequest):
        presence_ids(SECRET, not_before=START, expires=START)
    with pytest.raises(InvalidRequest):
        SECRET.id_for_period(-1)
