"""A hypothesis state machine of the vehicle unit.

Couriers and attackers mint, present, replay and relay tokens while time
moves, trunks close, the unit reboots over the same ledger file and the clock
is rolled back and re-synchronised. After every step:

* the trunk never opens without a valid, unused token and a proof from the
  device key in its ``cnf``;
* the cabin is never unlocked by a trunk token;
* every opening is relocked within the timeout (the unit is ticked as time
  moves, so an opening still in progress is always younger than the timeout);
* no token opens twice, across reboots included.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from trunkkey import Action, Location, Reason, SigningKey, inspect_unverified
from trunkkey.vehicle import UnitState
from trunkkey.vehicle.sim import World, courier_present

T0 = 1_800_000_000
PLACE = Location.from_degrees(59.329323, 18.068581)
SKEW = 60
TIMEOUT = 120
#: A RAM-backed directory when there is one: the ledger is still a real SQLite
#: file (reopened on "reboot"), only the fsyncs stop costing disk latency.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


@dataclass(frozen=True, slots=True)
class Minted:
    token: bytes
    token_id: bytes
    action: Action
    vehicle_id: str
    not_before: int
    expires: int


class UnitMachine(RuleBasedStateMachine):
    tokens = Bundle("tokens")

    @initialize()
    def boot(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tk-stateful-", dir=SCRATCH))
        self.world = World(start=T0, state_dir=self.dir)
        self.car = self.world.enrol_car("VIN-S")
        self.fence = self.world.park(self.car, PLACE, radius_m=50)
        self.courier = SigningKey.generate()
        self.thief = SigningKey.generate()
        self.opened: set[bytes] = set()  # token ids that ever opened anything
        self.current: Minted | None = None  # the token of the opening in progress
        self.opened_true_at = 0  # true time of that opening (the car's clock may differ)

    def teardown(self) -> None:
        if hasattr(self, "car"):
            opened = len(self.opened)
            event(f"tokens that opened: {min(opened, 3)}{'+' if opened > 2 else ''}")
            event(f"boots: {min(self.car.unit.boot_number, 3)}")
            self.car.unit.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- retailer -------------------------------------------------------------
    @rule(target=tokens, action=st.sampled_from(list(Action)),
          window=st.sampled_from([300, 3600]), elsewhere=st.booleans())
    def mint(self, action: Action, window: int, elsewhere: bool) -> Minted:
        return self._mint(action, window, elsewhere)

    def _mint(self, action: Action, window: int, elsewhere: bool) -> Minted:
        vehicle = "VIN-OTHER" if elsewhere else self.car.vehicle_id
        token = self.world.mint(vehicle, courier=self.courier, geofence=self.fence,
                                action=action, window=window)
        claims = inspect_unverified(token).claims
        return Minted(token, claims.token_id, action, vehicle, claims.not_before,
                      claims.expires)

    @rule(target=tokens, action=st.sampled_from(list(Action)))
    def honest_delivery(self, action: Action) -> Minted:
        """The common case: a fresh token for this car, presented at once with its proof."""
        minted = self._mint(action, 3600, False)
        self._present(minted, "proof", action)
        return minted

    # -- presentations ----------------------------------------------------------
    def _present(self, minted: Minted, how: str, action: Action) -> None:
        if how == "proof":
            outcome = courier_present(self.car, minted.token, self.courier, action=action)
        elif how == "bare":
            outcome = self.car.unit.present(minted.token, action=action)
        elif how == "thief":
            outcome = courier_present(self.car, minted.token, self.thief, action=action)
        else:  # a proof for a challenge that went stale in a relay
            outcome = courier_present(self.car, minted.token, self.courier, action=action,
                                      delay=lambda: self.world.advance(31))
        if not outcome.allowed:
            return
        now = self.world.now
        # The trunk (or doors) opened: everything about the token must be right.
        assert how == "proof", f"opened without a fresh proof ({how})"
        assert outcome.token_id == minted.token_id
        assert minted.vehicle_id == self.car.vehicle_id
        assert minted.action is action
        assert minted.not_before - SKEW <= now < minted.expires + SKEW
        assert self.car.unit.clock_trusted
        self._record(minted, outcome.token_id)

    @rule(minted=tokens, how=st.sampled_from(["proof", "bare", "thief", "relay"]))
    def present(self, minted: Minted, how: str) -> None:
        self._present(minted, how, minted.action)

    @rule(minted=tokens)
    def present_for_the_cabin(self, minted: Minted) -> None:
        self._present(minted, "proof", Action.UNLOCK_RELOCK)

    @rule(minted=tokens)
    def replay(self, minted: Minted) -> None:
        """Present again whatever was presented: a spent token must say so."""
        was_spent = minted.token_id in self.opened
        outcome = courier_present(self.car, minted.token, self.courier, action=minted.action)
        if was_spent:
            assert not outcome.allowed
            assert outcome.reason in {Reason.ALREADY_USED, Reason.UNIT_BUSY,
                                      Reason.CLOCK_UNTRUSTED, Reason.EXPIRED}
        elif outcome.allowed:
            self._record(minted, outcome.token_id)

    def _record(self, minted: Minted, token_id: bytes | None) -> None:
        assert token_id == minted.token_id
        assert minted.token_id not in self.opened, "a token opened twice"
        self.opened.add(minted.token_id)
        self.current = minted
        self.opened_true_at = self.world.now

    # -- the car and time ---------------------------------------------------------
    @rule(seconds=st.integers(min_value=1, max_value=400))
    def advance(self, seconds: int) -> None:
        self.world.advance(seconds)

    @rule()
    def close(self) -> None:
        self.car.unit.trunk_closed()
        self.car.unit.doors_closed()

    @rule()
    def reboot(self) -> None:
        self.world.reboot(self.car)

    @rule(seconds=st.integers(min_value=1, max_value=6 * 3600))
    def roll_clock_back(self, seconds: int) -> None:
        self.car.clock.advance(-seconds)
        self.car.unit.tick()
        if seconds > SKEW:
            assert not self.car.unit.clock_trusted

    @rule()
    def resync(self) -> None:
        assert self.world.time_sync(self.car).accepted

    # -- invariants -----------------------------------------------------------------
    @invariant()
    def hardware_matches_the_unit(self) -> None:
        if not hasattr(self, "car"):
            return
        body, unit = self.car.body, self.car.unit
        assert body.trunk_unlatched == (unit.state is UnitState.TRUNK_OPEN)
        assert body.doors_unlocked == (unit.state is UnitState.DOORS_UNLOCKED)
        if unit.opening is None:
            self.current = None

    @invariant()
    def cabin_never_unlocked_by_a_trunk_token(self) -> None:
        if not hasattr(self, "car") or not self.car.body.doors_unlocked:
            return
        opening = self.car.unit.opening
        assert opening is not None
        assert opening.action is Action.UNLOCK_RELOCK
        assert self.current is not None
        assert self.current.action is Action.UNLOCK_RELOCK

    @invariant()
    def every_opening_relocks_within_the_timeout(self) -> None:
        if not hasattr(self, "car"):
            return
        opening = self.car.unit.opening
        if opening is not None:
            # In true time: the car's own clock may have been set back before the opening.
            assert self.world.now - self.opened_true_at < TIMEOUT
            assert opening.relock_deadline - opening.opened_at == TIMEOUT

    @invariant()
    def openings_match_spent_tokens(self) -> None:
        if not hasattr(self, "car"):
            return
        body = self.car.body
        # Count only hardware openings of this boot's body: one per token, never more.
        assert body.trunk_openings + body.door_unlocks == len(self.opened)


TestVehicleUnit = UnitMachine.TestCase
TestVehicleUnit.settings = settings(
    max_examples=1000 if os.environ.get("CI") else 400,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
